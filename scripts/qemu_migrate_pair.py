#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Live-migrate the test guest between two hosts (two Soft-RoCE VMs).

Used by scripts/bench-qemu-plugin.sh.  Both VMs run this with the same
arguments and --me a or b; they meet in --dir, a folder both see (the pair's
run folder, shared by 9p).  The guest boots on a; migration i goes from the
VM holding the guest to the other one (so the direction alternates), by
each method in turn, --runs times.  The QEMU processes, QMP and the serial
console are qemu_migrate.py's (imported, not copied).

The destination side starts QEMU with -incoming and writes i.ready; the
source migrates, writes i.mig (QEMU's total time, MB sent, its STOP event
time); the destination waits for RESUME, checks the guest's heartbeat and
pages and writes i.done (0 wrong pages or the migration fails).  The pause
(source STOP to destination RESUME) spans two clocks: b serves its clock on
TCP and a measures the offset (the sample with the shortest round trip,
whose half bounds the error) before the migrations.

Methods: qemu-tcp, qemu-rdma, plugin:BACKEND, rdmamig:BACKEND as in
qemu_migrate.py; qemu-tcp:N is QEMU's tcp: with multifd and N channels;
proxy:BACKEND:N is QEMU's unix: migration (multifd with N channels, 0: off)
through rdmamig proxy-out on the source VM and proxy-in on the destination
VM (used by scripts/bench-proxy.sh).  A proxy pair is started for each
migration, before it, and stopped after it.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qemu_migrate as qm  # noqa: E402

CLOCK_PORT = 7599


def put(a, name, obj):
    tmp = os.path.join(a.dir, f".{name}.{a.me}")
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, os.path.join(a.dir, name))


def get(a, name, timeout):
    """The JSON the peer put under name; Fail when the peer failed or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in (name, "failed"):
            p = os.path.join(a.dir, n)
            if os.path.exists(p):
                with open(p) as f:
                    obj = json.load(f)
                if n == "failed":
                    raise qm.Fail(f"the other VM failed: {obj['error']}")
                return obj
        time.sleep(0.05)
    raise qm.Fail(f"no {name} from the other VM within {timeout} s")


def serve_clock():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", CLOCK_PORT))
    srv.listen(1)

    def loop():
        while True:
            c, _ = srv.accept()
            with c:
                while c.recv(1):
                    c.sendall(repr(time.time()).encode().ljust(32))
    threading.Thread(target=loop, daemon=True).start()


def clock_offset(peer, n=30):
    """(peer clock - my clock, error bound) in seconds."""
    with socket.create_connection((peer, CLOCK_PORT), timeout=30) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        best = None
        for _ in range(n):
            t0 = time.time()
            c.sendall(b"?")
            buf = b""
            while len(buf) < 32:
                buf += c.recv(32 - len(buf))
            t1 = time.time()
            rtt = t1 - t0
            if best is None or rtt < best[1]:
                best = (float(buf) - (t0 + t1) / 2, rtt)
    return best[0], best[1] / 2


def multifd(method):
    """(base method, multifd channels): qemu-tcp:4 -> (qemu-tcp, 4)."""
    if method.startswith("proxy:"):
        return qm.proxy_parts(method)[0], qm.proxy_parts(method)[1]
    base, _, n = method.partition(":") if method.startswith("qemu-") else (method, "", "")
    return base, int(n or 0)


def spawn(a, name, argv):
    err = open(os.path.join(a.workdir, f"{name}.stderr"), "a")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                         start_new_session=True)
    err.close()
    return p


def stop_proc(p):
    if p and p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_path(p, path, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if p.poll() is not None or time.monotonic() > deadline:
            raise qm.Fail(f"{what} did not start")
        time.sleep(0.05)


def proxy_common(a, backend):
    return ["--backend", backend, "--timeout", str(a.stream_timeout_ms),
            "--key-file", a.key_file, "-v"]


def start_proxy_out(src, i, method, a, ready):
    """proxy-out on this (source) VM towards the destination's proxy-in; the
    unix: URI the source QEMU migrates to."""
    backend, _ = qm.proxy_parts(method)
    sock = os.path.join(a.workdir, f"out-{i}.sock")
    p = spawn(a, f"proxy-out-{i}", [a.rdmamig, "proxy-out", "--to",
                                    f"{ready['host']}:{ready['port']}",
                                    "--listen-unix", f"{sock}=m{i}"] + proxy_common(a, backend))
    wait_path(p, sock, f"proxy-out for migration {i}")
    src.proxy = p
    return f"unix:{sock}"


def as_source(src, i, method, a):
    try:
        migrate_out(src, i, method, a)
    finally:
        stop_proc(getattr(src, "proxy", None))


def migrate_out(src, i, method, a):
    ready = get(a, f"{i}.ready", a.migrate_timeout)
    base, n = multifd(method)
    if method.startswith("proxy:"):
        uri = start_proxy_out(src, i, method, a, ready)
    else:
        _, uri = qm.channel(base, ns(a, host=ready["host"]), ready["port"])
    # Always: this QEMU may have been the destination of a multifd migration.
    qm.set_caps(src, n, False, source=True)
    src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": a.bandwidth,
                                              "downtime-limit": a.downtime_ms})
    src.qmp.events.clear()
    t0 = time.monotonic()
    src.qmp.cmd("migrate", uri=uri)
    info = qm.wait_status(src, ("completed", "failed", "cancelled"), a.migrate_timeout)
    wall_ms = round((time.monotonic() - t0) * 1000)  # to 'completed' as polled
    if info["status"] != "completed":
        raise qm.Fail(f"{method}: migration {info['status']}: {info.get('error-desc', '')}; "
                      f"{src.stderr_text()}")
    stop = src.qmp.event("STOP", 5)
    time.sleep(0.5)  # the figures may follow 'completed'
    info = src.qmp.cmd("query-migrate")
    put(a, f"{i}.mig", {"total_ms": info.get("total-time", 0), "wall_ms": wall_ms, "stop": stop,
                        "mbytes": round(info.get("ram", {}).get("transferred", 0) / 1e6, 1)})
    get(a, f"{i}.done", 60)
    src.quit()


def start_destination(i, method, a, port):
    """The destination QEMU (-incoming defer, multifd set, migrate-incoming)
    and, for proxy:, proxy-in listening on port; (guest, proxy-in or None)."""
    base, n = multifd(method)
    pin = None
    if method.startswith("proxy:"):
        sock = os.path.join(a.workdir, f"in-{i}.sock")
        addr = os.path.join(a.workdir, f"in-{i}.addr")
        pin = spawn(a, f"proxy-in-{i}", [a.rdmamig, "proxy-in", "--listen", f"{a.host}:{port}",
                                         "--addr-file", addr, "--to-unix", f"{sock}=m{i}"]
                    + proxy_common(a, qm.proxy_parts(method)[0]))
        wait_path(pin, addr, f"proxy-in for migration {i}")
        uri = f"unix:{sock}"
    else:
        uri, _ = qm.channel(base, a, port)
        if not n:  # as before: -incoming URI
            return qm.Guest(f"p{i}", a, incoming=uri), None
    try:
        dst = qm.Guest(f"p{i}", a, incoming="defer")
    except Exception:
        stop_proc(pin)
        raise
    try:
        qm.set_caps(dst, n, False, source=False)
        dst.qmp.cmd("migrate-incoming", uri=uri)
    except Exception:
        dst.kill()
        stop_proc(pin)
        raise
    return dst, pin


def as_destination(i, method, a):
    port = 7600 + i
    dst, pin = start_destination(i, method, a, port)
    try:
        put(a, f"{i}.ready", {"host": a.host, "port": port})
        mig = get(a, f"{i}.mig", a.migrate_timeout + 30)
        resume = dst.qmp.event("RESUME", 15)
        if resume is None:
            raise qm.Fail(f"{method}: destination did not resume: {dst.stderr_text()}")
        before, after = dst.heartbeat_advances(10)
        bad, pages = dst.check_pages()
        if bad:
            raise qm.Fail(f"{method}: the guest found {bad} wrong pages after migration")
    except Exception:
        dst.kill()
        raise
    finally:
        stop_proc(pin)
    put(a, f"{i}.done", {"bad": bad, "pages": pages, "resume": resume})
    return dst, mig, resume, (before, after), (bad, pages)


def ns(a, **kw):
    d = dict(vars(a))
    d.update(kw)
    return argparse.Namespace(**d)


def run(a):
    os.makedirs(a.workdir, exist_ok=True)
    a.key_file = os.path.join(a.dir, "rdmamig.key")
    if a.me == "b":
        serve_clock()
        put(a, "b.up", {})
        offset, err = None, None
    else:
        get(a, "b.up", 120)
        offset, err = clock_offset(a.peer)  # b's clock minus a's
        fd = os.open(a.key_file + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        os.rename(a.key_file + ".tmp", a.key_file)
        put(a, "clock", {"offset": offset, "err": err})
        qm.log(f"clock of b minus clock of a: {offset * 1000:.1f} ms (+- {err * 1000:.1f} ms)")
    if a.me == "b":
        c = get(a, "clock", 120)
        offset, err = -c["offset"], c["err"]  # a's clock minus b's
    holder = "a"
    guest = None
    if a.me == "a":
        guest = qm.Guest("g0", a)
        m = guest.wait_line(r"READY pages=(\d+)", a.boot_timeout)
        if not m:
            raise qm.Fail(f"the guest did not boot within {a.boot_timeout} s: {guest.stderr_text()}")
        guest.heartbeat_advances(10)
        qm.log(f"guest booted on a and filled {m.group(1)} pages")
    results = []
    i = 0
    try:
        for r in range(a.runs):
            for method in a.methods:
                i += 1
                if holder == a.me:
                    as_source(guest, i, method, a)
                    guest = None
                else:
                    guest, mig, resume, hb, (bad, pages) = as_destination(i, method, a)
                    # resume is on my clock; offset is (the source's clock - mine).
                    pause = (resume + offset - mig["stop"]) * 1000 if mig["stop"] else None
                    res = {"method": method, "run": r, "to": a.me, "total_ms": mig["total_ms"],
                           "wall_ms": mig.get("wall_ms"),
                           "pause_ms": round(pause, 1) if pause is not None else None,
                           "pause_err_ms": round(err * 1000, 1), "mbytes": mig["mbytes"],
                           "bad": bad, "pages": pages}
                    results.append(res)
                    qm.log(f"{method} to {a.me}: completed in {mig['total_ms']} ms, "
                           f"{mig['mbytes']} MB, pause {res['pause_ms']} ms "
                           f"(+- {res['pause_err_ms']}), heartbeat {hb[0]}->{hb[1]}, "
                           f"{bad} wrong pages of {pages}")
                holder = "b" if holder == "a" else "a"
    except Exception as e:
        put(a, "failed", {"error": f"{a.me}: {e}"})
        raise
    finally:
        if guest:
            guest.quit()
    with open(os.path.join(a.dir, f"results-{a.me}.json"), "w") as f:
        json.dump(results, f, indent=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--me", choices=("a", "b"), required=True)
    p.add_argument("--host", required=True, help="this VM's address on the link")
    p.add_argument("--peer", required=True, help="the other VM's address")
    p.add_argument("--dir", required=True, help="a folder both VMs see")
    p.add_argument("--workdir", required=True, help="a local folder (QMP and serial sockets)")
    p.add_argument("--rdmamig", required=True)
    p.add_argument("--guest", required=True)
    p.add_argument("--library", default="librdmamig.so.0")
    p.add_argument("--firmware")
    p.add_argument("--methods", default="plugin:verbs,qemu-tcp")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--ram-mib", type=int, default=128)
    p.add_argument("--guest-mib", type=int, default=64)
    p.add_argument("--rate", type=int, default=0)
    p.add_argument("--hb", type=int, default=100)
    p.add_argument("--bandwidth", type=int, default=10 << 30)
    p.add_argument("--downtime-ms", type=int, default=300)
    p.add_argument("--stream-timeout-ms", type=int, default=20000)
    p.add_argument("--migrate-timeout", type=int, default=300)
    p.add_argument("--boot-timeout", type=int, default=300)
    p.add_argument("--start-timeout", type=int, default=60)
    a = p.parse_args()
    qm.QMP_TIMEOUT = 60  # TCG QEMU in an emulated VM: slow to answer while it migrates
    a.methods = [m for m in a.methods.split(",") if m]
    a.accel, a.send_args, a.recv_args = "tcg", "", ""
    os.environ.setdefault("RMIG_TIMEOUT_MS", str(a.stream_timeout_ms))
    try:
        run(a)
    except qm.Fail as e:
        qm.log(f"FAILED: {e}")
        return 1
    qm.log("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
