#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Live-migrate the test guest between two stock QEMUs, and judge it by the guest.

Used by scripts/qemu-migrate.sh (end-to-end test) and scripts/bench-qemu.sh
(benchmark).  Python 3 standard library only.

One source QEMU boots the test guest (guest/, a firmware image that fills its
memory with self-describing pages and keeps dirtying them); each migration
starts a destination QEMU, migrates to it, and the destination becomes the
next source.  A migration passes when QEMU says completed, the guest's
heartbeat advances on the destination and the guest finds 0 wrong pages.
Failure scenarios (cancel, receiver killed) pass when the source guest keeps
running with intact pages; a killed source passes when the destination exits
without ever running the guest.

Methods: qemu-tcp and qemu-rdma (QEMU's own), rdmamig:BACKEND (exec: through
rdmamig send/recv, any QEMU), plugin:BACKEND (the patched QEMU's own
rdmamig: transport, integrations/qemu/, loading librdmamig.so).
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
QMP_TIMEOUT = 10  # seconds a QMP command may take (--qmp-timeout)
try:
    QEMU_7 = b"version 7." in subprocess.run([QEMU, "--version"], capture_output=True).stdout
except OSError:
    QEMU_7 = False


class Fail(Exception):
    pass


def log(msg):
    print(f"qemu-migrate: {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect_unix(path, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise Fail(f"cannot connect to {path} within {timeout} s")
            time.sleep(0.02)


class QMP:
    """A QMP client: commands in order, events kept with their timestamps."""

    def __init__(self, path, timeout=10):
        self.sock = connect_unix(path, timeout)
        self.buf = b""
        self.events = []
        self._read(timeout)  # greeting
        self.cmd("qmp_capabilities")

    def _read(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("QMP: no reply in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise Fail("QMP: QEMU closed the monitor (it exited)")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        msg = json.loads(line)
        if "event" in msg:
            self.events.append(msg)
        return msg

    def cmd(self, name, timeout=None, **args):
        timeout = timeout or QMP_TIMEOUT
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        while True:
            msg = self._read(timeout)
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise Fail(f"QMP {name}: {msg['error'].get('desc')}")

    def event(self, name, timeout):
        """Timestamp (s, host clock) of the first event `name`, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name:
                    ts = e["timestamp"]
                    return ts["seconds"] + ts["microseconds"] / 1e6
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                self._read(min(left, 0.2))
            except Fail as e:
                if "no reply" not in str(e):
                    raise

    def close(self):
        self.sock.close()


class Guest:
    """One QEMU process running (or about to receive) the test guest."""

    def __init__(self, name, a, incoming=None):
        self.name = name
        self.dir = a.workdir
        self.qmp_path = os.path.join(a.workdir, f"{name}.qmp")
        self.ser_path = os.path.join(a.workdir, f"{name}.serial")
        self.err_path = os.path.join(a.workdir, f"{name}.stderr")
        for p in (self.qmp_path, self.ser_path):
            if os.path.exists(p):
                os.unlink(p)
        cmdline = f"mem={a.guest_mib} rate={a.rate} hb={a.hb}"
        accel = (["-enable-kvm", "-cpu", "qemu64,-cx16"] if a.accel == "kvm"
                 else ["-accel", "tcg"])
        argv = [QEMU] + accel + ["-machine", "pc",
                "-m", str(a.ram_mib), "-nodefaults", "-no-user-config", "-display", "none",
                "-bios", a.guest, "-fw_cfg", f"name=opt/rdmamig/cmdline,string={cmdline}",
                "-chardev", f"socket,id=s0,path={self.ser_path},server=on,wait=off",
                "-serial", "chardev:s0",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if a.firmware:  # a QEMU staged away from its data folder (the Soft-RoCE VM)
            argv += ["-L", a.firmware]
        if incoming:
            argv += ["-incoming", incoming]
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.err,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.lines = []  # (monotonic time, text)
        self.lock = threading.Lock()
        try:
            self.qmp = QMP(self.qmp_path, a.start_timeout)
            self.ser = connect_unix(self.ser_path, a.start_timeout)
        except Fail:
            self.kill()
            raise Fail(f"{name}: QEMU did not start: {self.stderr_text()}")
        threading.Thread(target=self._serial_reader, daemon=True).start()

    def _serial_reader(self):
        buf = b""
        with open(os.path.join(self.dir, f"{self.name}.console"), "wb") as out:
            while True:
                try:
                    data = self.ser.recv(4096)
                except OSError:
                    return
                if not data:
                    return
                out.write(data)
                out.flush()
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    with self.lock:
                        self.lines.append((time.monotonic(), line.decode(errors="replace").strip()))

    def stderr_text(self):
        try:
            with open(self.err_path) as f:
                return " | ".join(l.strip() for l in f if l.strip()
                                  and "host doesn't support requested feature" not in l)
        except OSError:
            return ""

    def wait_line(self, pattern, timeout, after=0):
        """First serial line matching pattern among lines[after:], as a match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                for _, text in self.lines[after:]:
                    m = rx.search(text)
                    if m:
                        return m
            if time.monotonic() > deadline:
                return None
            if self.proc.poll() is not None:
                raise Fail(f"{self.name}: QEMU exited: {self.stderr_text()}")
            time.sleep(0.02)

    def nlines(self):
        with self.lock:
            return len(self.lines)

    def heartbeat(self):
        with self.lock:
            for _, text in reversed(self.lines):
                m = re.match(r"HB n=(\d+)", text)
                if m:
                    return int(m.group(1))
        return 0

    def heartbeat_advances(self, timeout):
        """(before, after): the guest printed a newer heartbeat within timeout."""
        n0 = self.nlines()
        before = self.heartbeat()
        m = self.wait_line(r"HB n=(\d+)", timeout, after=n0)
        if not m:
            raise Fail(f"{self.name}: guest heartbeat stuck at {before} for {timeout} s")
        return before, int(m.group(1))

    def check_pages(self, timeout=60):
        n0 = self.nlines()
        self.ser.sendall(b"v")
        m = self.wait_line(r"CHECK n=\d+ bad=(\d+) pages=(\d+)", timeout, after=n0)
        if not m:
            raise Fail(f"{self.name}: guest did not answer the page check in {timeout} s")
        return int(m.group(1)), int(m.group(2))

    def status(self):
        return self.qmp.cmd("query-status")["status"]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.err.close()

    def quit(self):
        try:
            self.qmp.cmd("quit")
        except Exception:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


def channel(method, a, port):
    """(destination -incoming URI, source migrate URI) for a method."""
    if method in ("qemu-tcp", "qemu-rdma"):
        uri = f"{method[5:]}:{a.host}:{port}"
        return uri, uri
    if method.startswith("plugin:"):
        uri = (f"rdmamig:{a.host}:{port}?backend={method.split(':', 1)[1]}"
               f"&key-file={a.key_file}&library={a.library}")
        return uri, uri
    backend = method.split(":", 1)[1]
    common = f"--backend {backend} --timeout {a.stream_timeout_ms} -v --key-file {a.key_file}"
    return (f"exec:{a.rdmamig} recv --listen {a.host}:{port} {common} {a.recv_args}".strip(),
            f"exec:{a.rdmamig} send --to {a.host}:{port} {common} {a.send_args}".strip())


def descendants(pid):
    """Pids of all processes below pid."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def cmdline_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def proxy_lines(src, method, a):
    """What the proxies said about this migration (errors, and -v's byte counts)."""
    if not method.startswith("proxy:"):
        return []
    pair = a.proxies.get(proxy_parts(method)[0])
    return pair.lines(src.proxy_marks, lambda l: " bytes in " in l or "reset" in l) if pair else []


def stream_lines(g, since=0):
    """The rdmamig send/recv lines QEMU's stderr caught after offset since."""
    try:
        with open(g.err_path) as f:
            f.seek(since)
            return [l.strip() for l in f if l.startswith("rdmamig ")]
    except OSError:
        return []


def err_offset(g):
    try:
        return os.path.getsize(g.err_path)
    except OSError:
        return 0


class ProxyPair:
    """rdmamig proxy-out + proxy-in over one backend, serving every migration
    of that backend: route SLOT goes from proxy-out's socket src-SLOT to the
    destination QEMU's socket dst-SLOT."""

    SLOTS = ("mA", "mB")

    def __init__(self, a, backend):
        self.a, self.backend = a, backend
        self.tag = backend.replace("/", "-")
        self.dir = a.workdir
        self.pin = self.pout = None
        try:
            self.start()
        except Exception:
            self.stop()  # a proxy that did start must not outlive the run
            raise

    def path(self, side, slot):
        return os.path.join(self.dir, f"px-{self.tag}-{side}-{slot}.sock")

    def _spawn(self, name, argv):
        err = open(os.path.join(self.dir, f"proxy-{self.tag}-{name}.stderr"), "a")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                             start_new_session=True)
        err.close()
        return p

    def start(self):
        a = self.a
        common = ["--backend", self.backend, "--timeout", str(a.proxy_timeout_ms),
                  "--key-file", a.key_file, "-v"]
        addr_file = os.path.join(self.dir, f"proxy-{self.tag}.addr")
        if os.path.exists(addr_file):
            os.unlink(addr_file)
        argv = [a.rdmamig, "proxy-in", "--listen", f"{a.host}:0", "--addr-file", addr_file]
        for slot in self.SLOTS:
            argv += ["--to-unix", f"{self.path('dst', slot)}={slot}"]
        self.pin = self._spawn("in", argv + common)
        deadline = time.monotonic() + 10
        while not os.path.exists(addr_file):
            if self.pin.poll() is not None or time.monotonic() > deadline:
                raise Fail(f"proxy-in over {self.backend} did not start: {self.stderr('in')}")
            time.sleep(0.02)
        with open(addr_file) as f:
            self.addr = f.read().strip()
        argv = [a.rdmamig, "proxy-out", "--to", self.addr]
        for slot in self.SLOTS:
            if os.path.exists(self.path("src", slot)):  # left by a killed proxy-out
                os.unlink(self.path("src", slot))
            argv += ["--listen-unix", f"{self.path('src', slot)}={slot}"]
        self.pout = self._spawn("out", argv + common)
        while not all(os.path.exists(self.path("src", s)) for s in self.SLOTS):
            if self.pout.poll() is not None or time.monotonic() > deadline:
                raise Fail(f"proxy-out over {self.backend} did not start: {self.stderr('out')}")
            time.sleep(0.02)

    def stderr(self, name, since=0):
        try:
            with open(os.path.join(self.dir, f"proxy-{self.tag}-{name}.stderr")) as f:
                f.seek(since)
                return " | ".join(l.strip() for l in f if l.strip())
        except OSError:
            return ""

    def marks(self):
        return {n: os.path.getsize(os.path.join(self.dir, f"proxy-{self.tag}-{n}.stderr"))
                for n in ("in", "out")}

    def lines(self, marks, want=lambda l: True):
        out = []
        for n in ("out", "in"):
            out += [l for l in self.stderr(n, marks[n]).split(" | ") if l and want(l)]
        return out

    def stop(self):
        for p in (self.pout, self.pin):
            if p is None:
                continue
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def proxy_parts(method):
    """'proxy:BACKEND:N' -> (BACKEND, N multifd channels)."""
    _, backend, n = method.split(":")
    return backend, int(n)


def proxy_pair(a, backend):
    pair = a.proxies.get(backend)
    if pair is None or pair.pin.poll() is not None or pair.pout.poll() is not None:
        if pair:
            pair.stop()
        pair = a.proxies[backend] = ProxyPair(a, backend)
    return pair


def set_caps(g, n, libvirt, source):
    """multifd with n channels (0: off); with --libvirt-caps also what libvirt
    (9.x, non-tunnelled) turns on: return-path both ends, pause-before-switchover
    on the source (then migrate-continue), late-block-activate on the destination."""
    caps = [{"capability": "multifd", "state": n > 0}]
    if libvirt:
        caps += [{"capability": "return-path", "state": True},
                 {"capability": "pause-before-switchover" if source else "late-block-activate",
                  "state": True}]
    g.qmp.cmd("migrate-set-capabilities", capabilities=caps)
    if n:
        g.qmp.cmd("migrate-set-parameters", **{"multifd-channels": n})
    g.caps_set = n > 0 or libvirt


def clear_caps(g):
    """Back to plain precopy before a method that is not proxy: a guest that
    arrived by a proxy migration keeps its capabilities (rdmamig: refuses
    multifd: "Migration requires multi-channel URIs")."""
    if getattr(g, "caps_set", False):
        g.qmp.cmd("migrate-set-capabilities", capabilities=[
            {"capability": c, "state": False}
            for c in ("multifd", "return-path", "pause-before-switchover", "late-block-activate")])
        g.caps_set = False


def start_proxy_migration(src, dst_name, method, a, slot):
    """Destination QEMU as libvirt starts it (-incoming defer, capabilities,
    migrate-incoming unix:), then the source migrates to proxy-out's socket."""
    backend, n = proxy_parts(method)
    pair = proxy_pair(a, backend)
    src.proxy_marks = pair.marks()
    dst = Guest(dst_name, a, incoming="defer")
    try:
        libvirt = a.libvirt_caps == "all" or backend in a.libvirt_caps.split(",")
        set_caps(src, n, libvirt, source=True)
        set_caps(dst, n, libvirt, source=False)
        dst.qmp.cmd("migrate-incoming", uri=f"unix:{pair.path('dst', slot)}")
    except Exception:
        dst.kill()
        raise
    return dst, f"unix:{pair.path('src', slot)}"


def start_migration(src, dst_name, method, a, bandwidth, slot="mA", go=True):
    if method.startswith("proxy:"):
        dst, uri_out = start_proxy_migration(src, dst_name, method, a, slot)
    else:
        clear_caps(src)
        uri_in, uri_out = channel(method, a, free_port())
        dst = Guest(dst_name, a, incoming=uri_in)
    src.err_mark = err_offset(src)
    src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": bandwidth,
                                              "downtime-limit": a.downtime_ms})
    src.qmp.events.clear()
    t0 = time.monotonic()
    src.migrate_uri = uri_out
    if go:
        src.qmp.cmd("migrate", uri=uri_out)
    return dst, t0


def wait_status(src, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        info = src.qmp.cmd("query-migrate")
        st = info.get("status")
        if st in want:
            return info
        if st == "pre-switchover":  # pause-before-switchover: libvirt's next step
            src.qmp.cmd("migrate-continue", state="pre-switchover")
        if time.monotonic() > deadline:
            raise Fail(f"migration still '{st}' after {timeout} s")
        time.sleep(0.02)


def migrate(src, dst_name, method, a, check=True):
    """Migrate src to a new destination; returns (dst, result dict)."""
    dst, t0 = start_migration(src, dst_name, method, a, a.bandwidth)
    try:
        info = wait_status(src, ("completed", "failed", "cancelled"), a.migrate_timeout)
        wall = time.monotonic() - t0
        if info["status"] != "completed":
            raise Fail(f"{method}: migration {info['status']}: {info.get('error-desc', '')}; "
                       f"{' | '.join(stream_lines(src, src.err_mark) + stream_lines(dst) + proxy_lines(src, method, a))}")
        stop = src.qmp.event("STOP", 5)
        resume = dst.qmp.event("RESUME", 15)
        if resume is None:
            raise Fail(f"{method}: destination did not resume: {dst.stderr_text()}")
        time.sleep(0.5)  # QEMU 7.2 may answer 'completed' before filling in the figures
        info = src.qmp.cmd("query-migrate")
        ram = info.get("ram", {})
        before, after = dst.heartbeat_advances(10)
        bad, pages = dst.check_pages() if check else (0, None)
        if dst.status() != "running":
            raise Fail(f"{method}: destination is '{dst.status()}', not running")
    except Exception:
        dst.kill()
        raise
    src.quit()
    res = {"method": method, "total_ms": info.get("total-time", 0),
           "wall_ms": round(wall * 1000), "pause_ms": round((resume - stop) * 1000, 1)
           if stop else None, "qemu_downtime_ms": info.get("downtime"),
           "mbytes": round(ram.get("transferred", 0) / 1e6, 1), "mbps": ram.get("mbps"),
           "hb": (before, after), "bad": bad, "pages": pages,
           "stream": stream_lines(src, src.err_mark) + stream_lines(dst)
           + proxy_lines(src, method, a)}
    log(f"{method}: completed in {res['total_ms']} ms, {res['mbytes']} MB, "
        f"pause {res['pause_ms']} ms (QEMU downtime {res['qemu_downtime_ms']} ms), "
        f"heartbeat {before}->{after} on the destination, "
        + (f"{bad} wrong pages of {pages}" if check else "pages not checked this time"))
    for line in res["stream"][:a.max_stream_lines]:
        log(f"  {line}")
    if len(res["stream"]) > a.max_stream_lines:
        log(f"  ({len(res['stream']) - a.max_stream_lines} more stream lines)")
    if bad:
        raise Fail(f"{method}: the guest found {bad} wrong pages after migration")
    return dst, res


def source_survives(src, what):
    if src.status() != "running":
        raise Fail(f"{what}: source guest is '{src.status()}', not running")
    before, after = src.heartbeat_advances(10)
    bad, pages = src.check_pages()
    if bad:
        raise Fail(f"{what}: source guest found {bad} wrong pages")
    log(f"{what}: source keeps running (heartbeat {before}->{after}), {bad} wrong pages of {pages}")


def wait_bytes(src, nbytes, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = src.qmp.cmd("query-migrate")
        if info.get("status") != "active" and info.get("status") != "setup":
            raise Fail(f"migration '{info.get('status')}' before the test could interrupt it")
        if info.get("ram", {}).get("transferred", 0) >= nbytes:
            return
        time.sleep(0.02)
    raise Fail(f"migration did not move {nbytes} bytes within {timeout} s")


def scenario_cancel(src, method, a, n):
    """migrate_cancel mid-stream: the source keeps running, nothing hangs."""
    dst, t0 = start_migration(src, f"cancel{n}", method, a, a.slow_bandwidth)
    try:
        wait_bytes(src, 2 << 20, a.interrupt_timeout)
        src.qmp.cmd("migrate_cancel")
        info = wait_status(src, ("cancelled", "failed", "completed"), 15)
        if info["status"] != "cancelled":
            raise Fail(f"cancel over {method}: status '{info['status']}', not cancelled")
        log(f"cancel over {method}: cancelled {time.monotonic() - t0:.1f} s after start")
        source_survives(src, f"cancel over {method}")
        wait_gone(dst, f"cancel over {method}")
    finally:
        dst.kill()


def wait_gone(dst, what, timeout=15):
    """The destination QEMU and its rdmamig recv end by themselves (no hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in descendants(dst.proc.pid) if "rdmamig" in cmdline_of(p)]
        if dst.proc.poll() is not None and not left:
            break
        time.sleep(0.1)
    else:
        raise Fail(f"{what}: the destination side still runs {timeout} s later")
    last = dst.stderr_text().split(" | ")[-1]
    log(f"{what}: destination QEMU exited by itself ({last})")


def wait_failed(src, what, a):
    """Right after killing something: the source must report 'failed'."""
    t_kill = time.monotonic()
    info = wait_status(src, ("failed", "cancelled", "completed"),
                       a.stream_timeout_ms / 1000 + 15)
    if info["status"] != "failed":
        raise Fail(f"{what}: status '{info['status']}', not failed")
    log(f"{what}: source reported failed after {(time.monotonic() - t_kill) * 1000:.0f} ms "
        f"({info.get('error-desc', '')})")


def scenario_kill(src, method, a, n):
    """The receiving rdmamig dies mid-stream: migration fails, the source runs on.
    With the plugin the receiver is the destination QEMU itself."""
    dst, t0 = start_migration(src, f"kill{n}", method, a, a.slow_bandwidth)
    try:
        wait_bytes(src, 2 << 20, a.interrupt_timeout)
        if method.startswith("plugin:"):
            victims = [dst.proc.pid]
        else:
            victims = [p for p in descendants(dst.proc.pid) if " recv " in cmdline_of(p)]
        if not victims:
            raise Fail("cannot find the destination's rdmamig recv process")
        for p in victims:
            os.kill(p, 9)
        wait_failed(src, f"{'destination QEMU' if method.startswith('plugin:') else 'receiver'} "
                         f"killed over {method}", a)
        for line in stream_lines(src, src.err_mark):
            log(f"  {line}")
        source_survives(src, f"receiver killed over {method}")
    finally:
        dst.kill()


def scenario_kill_source(src, method, a, n):
    """The source QEMU dies mid-migration: the destination never runs the guest."""
    dst, t0 = start_migration(src, f"killsrc{n}", method, a, a.slow_bandwidth)
    try:
        wait_bytes(src, 2 << 20, a.interrupt_timeout)
        os.kill(src.proc.pid, 9)
        t_kill = time.monotonic()
        try:
            dst.proc.wait(a.stream_timeout_ms / 1000 + 15)
        except subprocess.TimeoutExpired:
            raise Fail(f"source killed over {method}: the destination still runs "
                       f"{time.monotonic() - t_kill:.0f} s later")
        try:
            dst.qmp.event("RESUME", 0.5)  # collects what QEMU said before it exited
        except Fail:
            pass
        if any(e["event"] == "RESUME" for e in dst.qmp.events):
            raise Fail(f"source killed over {method}: the destination started the guest")
        if any("HB n=" in t for _, t in dst.lines):
            raise Fail(f"source killed over {method}: the guest ran on the destination")
        last = dst.stderr_text().split(" | ")[-1]
        log(f"source killed over {method}: destination exited (status {dst.proc.returncode}) "
            f"{(time.monotonic() - t_kill) * 1000:.0f} ms later without starting the guest "
            f"({last})")
    finally:
        dst.kill()


def scenario_proxy_kill(src, method, a, n, which):
    """proxy-in or proxy-out dies mid-migration (SIGKILL): the source QEMU
    fails the migration, its guest runs on, the destination QEMU ends."""
    backend, _ = proxy_parts(method)
    what = f"proxy-{which} killed over {method}"
    dst, t0 = start_migration(src, f"pkill{n}", method, a, a.slow_bandwidth)
    try:
        wait_bytes(src, 2 << 20, a.interrupt_timeout)
        pair = a.proxies[backend]
        os.kill((pair.pin if which == "in" else pair.pout).pid, 9)
        wait_failed(src, what, a)
        for line in pair.lines(src.proxy_marks, lambda l: "reset" in l)[:3]:
            log(f"  {line}")
        source_survives(src, what)
        dest_outcome(dst, what, n_channels=proxy_parts(method)[1])
    finally:
        dst.kill()


def dest_outcome(dst, what, n_channels, timeout=10):
    """The destination QEMU should end by itself once its sockets closed.
    QEMU 7.2 with multifd may not: its main thread waits for the multifd
    receive threads' sync, which a thread that saw its socket close never
    posts.  That is QEMU's to fix, so it is reported, not failed; with no
    multifd channel, or a newer QEMU, it must end."""
    try:
        wait_gone(dst, what, timeout)
        return
    except Fail:
        if not n_channels or not QEMU_7:
            raise
    try:
        st = dst.qmp.cmd("query-migrate", timeout=2).get("status")
    except Fail as e:
        st = str(e)
    log(f"{what}: destination QEMU still waits {timeout} s later (its migration '{st}'; "
        f"QEMU 7.2's multifd receive side does not end on closed sockets), killed")


def scenario_proxy_concurrent(src, method, a, n):
    """Two guests migrate at the same time through one proxy pair (routes mA
    and mB); both arrive intact.  Returns the new src (the first one's dst)."""
    second = Guest(f"conc{n}s", a)
    try:
        if not second.wait_line(r"READY pages=(\d+)", a.boot_timeout):
            raise Fail(f"the second guest did not boot: {second.stderr_text()}")
        second.heartbeat_advances(10)
        d1, t0 = start_migration(src, f"conc{n}a", method, a, a.bandwidth, "mA", go=False)
        d2, _ = start_migration(second, f"conc{n}b", method, a, a.bandwidth, "mB", go=False)
    except Exception:
        second.kill()
        raise
    outs = []
    try:
        src.qmp.cmd("migrate", uri=src.migrate_uri)
        second.qmp.cmd("migrate", uri=second.migrate_uri)
        first = src.qmp.cmd("query-migrate").get("status")
        if first not in ("setup", "active"):
            raise Fail(f"concurrent over {method}: the first migration was '{first}' when the "
                       f"second started: not at the same time (a bigger --guest-mib?)")
        for g, d in ((src, d1), (second, d2)):
            info = wait_status(g, ("completed", "failed", "cancelled"), a.migrate_timeout)
            if info["status"] != "completed":
                raise Fail(f"concurrent over {method}: {g.name} {info['status']}: "
                           f"{info.get('error-desc', '')}; {' | '.join(proxy_lines(g, method, a))}")
            if d.qmp.event("RESUME", 15) is None:
                raise Fail(f"concurrent over {method}: {d.name} did not resume")
            before, after = d.heartbeat_advances(10)
            bad, pages = d.check_pages()
            if bad:
                raise Fail(f"concurrent over {method}: {d.name} found {bad} wrong pages")
            outs.append(f"{d.name} heartbeat {before}->{after}, {bad} wrong pages of {pages}")
        log(f"two at once over {method}: both completed in {time.monotonic() - t0:.1f} s; "
            + "; ".join(outs))
    except Exception:
        d1.kill()
        raise
    finally:
        d2.kill()
        second.quit()
    src.quit()
    return d1


def available_backends(rdmamig):
    """The stream backends `rdmamig backends` says run here; the others are named."""
    out = subprocess.run([rdmamig, "backends"], capture_output=True, text=True).stdout
    found = []
    for line in out.splitlines():
        spec, _, state = line.partition(" ")
        if spec == "best:":
            continue
        if state.strip() == "available":
            found.append(spec)
        elif "no RDMA device" not in state:  # no RDMA device on a host is the normal case
            log(f"{spec} left out: {state.strip()}")
    return found


def expand(specs, backends, channels=(0,)):
    """'auto' in a comma list stands for every backend that runs here;
    'proxy:auto' for each of them with each multifd channel count, and
    'proxy:BACKEND' for that backend with each count."""
    out = []
    for s in specs.split(","):
        if s in ("auto", "rdmamig:auto"):
            out += [f"rdmamig:{b}" for b in backends]
        elif s == "plugin:auto":
            out += [f"plugin:{b}" for b in backends]
        elif s == "proxy:auto":
            out += [f"proxy:{b}:{n}" for b in backends for n in channels]
        elif re.fullmatch(r"proxy:[a-z/]+", s):
            out += [f"{s}:{n}" for n in channels]
        elif s.startswith("proxy:"):
            out.append(s)
        elif s:
            out.append(s if s.startswith(("rdmamig:", "qemu-", "plugin:")) else f"rdmamig:{s}")
    return out


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def run(a):
    if a.accel == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise Fail("/dev/kvm is missing or not accessible: the test guest needs KVM "
                   "(load kvm, or run as a user in the kvm group)")
    os.makedirs(a.workdir, exist_ok=True)
    if not a.key_file:
        # Both rdmamig ends run here: a fresh random key authenticates them.
        a.key_file = os.path.join(a.workdir, "rdmamig.key")
        fd = os.open(a.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    t_boot = time.monotonic()
    src = Guest("g0", a)
    results, n = [], 0
    try:
        m = src.wait_line(r"READY pages=(\d+)", a.boot_timeout)
        if not m:
            raise Fail(f"the guest did not boot within {a.boot_timeout} s (KVM unusable?): "
                       f"{src.stderr_text()}")
        src.heartbeat_advances(10)
        log(f"guest booted and filled {m.group(1)} pages in {time.monotonic() - t_boot:.1f} s")
        for r in range(a.runs):
            for i, method in enumerate(a.methods):
                n += 1
                last = r == a.runs - 1 and i == len(a.methods) - 1
                src, res = migrate(src, f"g{n}", method, a, a.check == "all" or last)
                res["run"] = r
                results.append(res)
        for method in a.cancel:
            n += 1
            scenario_cancel(src, method, a, n)
        for method in a.kill:
            n += 1
            scenario_kill(src, method, a, n)
        for method in a.proxy_kill:
            for which in ("in", "out"):
                n += 1
                scenario_proxy_kill(src, method, a, n, which)
        for method in a.concurrent:
            n += 1
            src = scenario_proxy_concurrent(src, method, a, n)
        # Last: it kills the guest.
        for method in a.kill_source:
            n += 1
            scenario_kill_source(src, method, a, n)
    finally:
        src.quit()
        for pair in a.proxies.values():
            pair.stop()
    if a.runs > 1 or a.table:
        print_table(a, results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


def print_table(a, results):
    print(f"\n{a.runs} runs each, guest {a.guest_mib} MiB pattern in {a.ram_mib} MiB RAM, "
          f"dirtying {a.rate} pages/s, {a.accel}, downtime-limit {a.downtime_ms} ms; medians:\n")
    print("| channel | total time (ms) | guest pause STOP->RESUME (ms) | QEMU downtime (ms) | MB sent | QEMU's Mbit/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for method in a.methods:
        rs = [r for r in results if r["method"] == method]
        print(f"| {label(method)} | {median([r['total_ms'] for r in rs]):.0f} "
              f"| {median([r['pause_ms'] for r in rs]):.1f} "
              f"| {median([r['qemu_downtime_ms'] for r in rs]):.0f} "
              f"| {median([r['mbytes'] for r in rs]):.1f} "
              f"| {median([r['mbps'] for r in rs]):.0f} |")


def label(method):
    if method.startswith("qemu-"):
        return f"QEMU {method[5:]}:"
    if method.startswith("plugin:"):
        return f"rdmamig: (QEMU loads the plugin) over {method.split(':', 1)[1]}"
    if method.startswith("proxy:"):
        backend, n = proxy_parts(method)
        return f"unix: via rdmamig proxy over {backend}, {n} multifd channels"
    return f"exec:rdmamig over {method.split(':', 1)[1]}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rdmamig", required=True)
    p.add_argument("--guest", required=True, help="the test guest firmware image")
    p.add_argument("--workdir", required=True)
    p.add_argument("--methods", default="qemu-tcp,rdmamig:auto",
                   help="comma list of qemu-tcp, qemu-rdma, rdmamig:BACKEND; rdmamig:auto "
                        "is every backend that runs here")
    p.add_argument("--cancel", default="", help="backends (or auto) to test migrate_cancel over")
    p.add_argument("--kill", default="", help="backends (or auto) to test a killed receiver over")
    p.add_argument("--kill-source", default="",
                   help="methods to test a killed source over (last: it ends the guest)")
    p.add_argument("--library", default="librdmamig.so.0",
                   help="librdmamig.so for plugin: methods (the patched QEMU loads it)")
    p.add_argument("--proxy-channels", default="0,2,4",
                   help="multifd channel counts proxy:auto stands for")
    p.add_argument("--proxy-kill", default="",
                   help="proxy methods (proxy:BACKEND:N) to kill proxy-in, then proxy-out, "
                        "mid-migration over")
    p.add_argument("--concurrent", default="",
                   help="proxy methods to run two migrations at once through one proxy pair over")
    p.add_argument("--proxy-timeout-ms", type=int, default=10000,
                   help="the proxies' --timeout (connect, handshake, a silent peer); a "
                        "loaded 2-core machine sets up ofi/shm connections slowly")
    p.add_argument("--libvirt-caps", nargs="?", const="all", default="",
                   help="proxy methods over these backends (comma list; no value: all): the "
                        "capabilities libvirt sets (return-path, pause-before-switchover + "
                        "migrate-continue, late-block-activate)")
    p.add_argument("--max-stream-lines", type=int, default=4,
                   help="most rdmamig/proxy lines shown per migration")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--ram-mib", type=int, default=256)
    p.add_argument("--guest-mib", type=int, default=64)
    p.add_argument("--rate", type=int, default=5000, help="pages/s the guest dirties")
    p.add_argument("--hb", type=int, default=100, help="heartbeat period (guest ms)")
    p.add_argument("--bandwidth", type=int, default=10 << 30, help="max-bandwidth, bytes/s")
    p.add_argument("--slow-bandwidth", type=int, default=4 << 20,
                   help="max-bandwidth for the cancel/kill scenarios")
    p.add_argument("--downtime-ms", type=int, default=300)
    p.add_argument("--stream-timeout-ms", type=int, default=5000)
    p.add_argument("--migrate-timeout", type=int, default=120)
    p.add_argument("--interrupt-timeout", type=int, default=20,
                   help="seconds a migration to be cancelled or killed may take to move 2 MiB")
    p.add_argument("--start-timeout", type=int, default=10,
                   help="seconds QEMU may take to answer on QMP after it starts")
    p.add_argument("--qmp-timeout", type=int, default=10,
                   help="seconds a QMP command may take (a TCG QEMU in the emulated VM on a "
                        "loaded host answers slowly while it migrates)")
    p.add_argument("--boot-timeout", type=int, default=120)
    p.add_argument("--check", choices=("all", "last"), default="all",
                   help="run the guest's page check after every migration or the last only")
    p.add_argument("--accel", choices=("kvm", "tcg"), default="kvm",
                   help="tcg: software emulation (inside the Soft-RoCE VM); keep the guest "
                        "idle there (--rate 0): QEMU 7.2's TCG loses pages a guest dirties "
                        "during migration")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the channels use (inside the Soft-RoCE VM: rxe0's)")
    p.add_argument("--key-file",
                   help="pre-shared key for rdmamig send/recv (default: a random one "
                        "made in the work dir, mode 600)")
    p.add_argument("--send-args", default="", help="more options for rdmamig send")
    p.add_argument("--recv-args", default="", help="more options for rdmamig recv")
    p.add_argument("--firmware", help="folder of the firmware QEMU opens (-L), e.g. kvmvapic.bin")
    p.add_argument("--table", action="store_true")
    p.add_argument("--json")
    a = p.parse_args()
    global QMP_TIMEOUT
    QMP_TIMEOUT = a.qmp_timeout
    specs = (a.methods, a.cancel, a.kill, a.kill_source, a.proxy_kill, a.concurrent)
    backends = available_backends(a.rdmamig) if any("auto" in x for x in specs) else []
    channels = [int(x) for x in a.proxy_channels.split(",") if x]
    a.methods, a.cancel, a.kill, a.kill_source, a.proxy_kill, a.concurrent = (
        expand(x, backends, channels) for x in specs)
    a.proxies = {}
    os.environ.setdefault("RMIG_TIMEOUT_MS", str(a.stream_timeout_ms))
    for m in a.methods + a.cancel + a.kill + a.kill_source + a.proxy_kill + a.concurrent:
        if m not in ("qemu-tcp", "qemu-rdma") and not m.startswith(("rdmamig:", "proxy:", "plugin:")):
            p.error(f"unknown method {m}")
        if m.startswith("proxy:") and not re.fullmatch(r"proxy:[a-z/]+:\d+", m):
            p.error(f"method {m}: proxy:BACKEND:CHANNELS (e.g. proxy:tcp:2)")
    for m in a.kill:
        if not m.startswith(("rdmamig:", "plugin:")):
            p.error(f"--kill {m}: only rdmamig:BACKEND or plugin:BACKEND (proxies: --proxy-kill)")
    try:
        run(a)
    except Fail as e:
        log(f"FAILED: {e}")
        return 1
    log("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
