# Sourced by every command run in the Soft-RoCE VM (scripts/softroce-vm.sh
# prepends it): busybox sh functions.
#
#   guard NAME SECONDS COMMAND [ARGS...]
#
# runs COMMAND with a deadline of its own, so a hang names the test that
# hung instead of the whole VM hitting its global timeout.  Past the
# deadline it prints
#
#   SOFTROCE-HANG test=NAME seconds=S
#
# then what can be seen of every process under COMMAND (command line, state,
# wait channel and kernel stack of each thread, and each thread's user stack
# when gdb is staged: $RMIG_GDB), the tail of dmesg, kills the whole tree and
# returns 124.  Otherwise it returns COMMAND's status.

# Children of $1 (from /proc/*/stat: pid comm state ppid).
guard_kids() {
  for s in /proc/[0-9]*/stat; do
    read -r p c st pp rest <"$s" 2>/dev/null || continue
    [ "$pp" = "$1" ] && echo "$p"
  done
}

# $1 and everything under it, parents first.
guard_tree() {
  echo "$1"
  for k in $(guard_kids "$1"); do guard_tree "$k"; done
}

guard_dump() {
  for p in $(guard_tree "$1"); do
    [ -d /proc/$p ] || continue
    echo "--- pid $p: $(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null)"
    for t in /proc/$p/task/*; do
      # utime/stime (ticks): which one grows tells a user-space spin from a kernel one.
      echo "  thread ${t##*/} state $(cut -d' ' -f3 $t/stat 2>/dev/null) utime/stime $(cut -d' ' -f14,15 $t/stat 2>/dev/null) wchan $(cat $t/wchan 2>/dev/null) syscall $(cut -d' ' -f1 $t/syscall 2>/dev/null)"
      sed 's/^/    k /' $t/stack 2>/dev/null
      # A thread that spins shows no kernel stack: sample what it calls.
      for i in 1 2 3 4 5 6; do echo "    s $(cat $t/syscall 2>/dev/null)"; done | sort | uniq -c
    done
    if [ -n "${RMIG_GDB:-}" ] && [ -x "$RMIG_GDB" ]; then
      # A thread in uninterruptible sleep never stops for ptrace: bounded.
      timeout 60 "$RMIG_GDB" -nx -batch -p "$p" -ex 'thread apply all bt' 2>&1 |
        grep -E '^(Thread|#)' | sed 's/^/    u /'
    fi
  done
  # Kernel backtraces of the CPUs that run something now (a kernel spin).
  echo l >/proc/sysrq-trigger 2>/dev/null
  echo "--- dmesg (last 60 lines)"
  dmesg | grep -v 'speed is unknown' | tail -60
}

guard() {
  g_name=$1 g_secs=$2
  shift 2
  "$@" &
  g_pid=$!
  rm -f /tmp/guard-hung.$g_pid
  (
    i=0
    while [ $i -lt "$g_secs" ]; do
      sleep 1
      kill -0 $g_pid 2>/dev/null || exit 0
      i=$((i + 1))
    done
    echo "SOFTROCE-HANG test=$g_name seconds=$g_secs"
    touch /tmp/guard-hung.$g_pid
    guard_dump $g_pid
    for p in $(guard_tree $g_pid); do kill -9 "$p" 2>/dev/null; done
  ) &
  g_wd=$!
  g_rc=0
  wait $g_pid || g_rc=$?
  if [ -e /tmp/guard-hung.$g_pid ]; then
    wait $g_wd
    rm -f /tmp/guard-hung.$g_pid
    return 124
  fi
  kill $g_wd 2>/dev/null
  return $g_rc
}
