# Sourced by the scripts that run tools of the host inside the Soft-RoCE VM
# (qemu-vm-migrate.sh, bench-qemu-plugin.sh, fault-matrix-vm.sh).  The VM's initramfs has busybox
# only; these put bash and python3 (binary and standard library) in
# BUILD/vm-tools, which the VM sees by 9p, and softroce-vm.sh adds the
# libraries they need to the VM's initramfs (it scans the build folder).
#
#   stage_vm_tools BUILD_ABS     -> $VMT (BUILD_ABS/vm-tools); in the VM:
#       PYTHONHOME=$VMT/py $VMT/bin/python3 -S ...   and   $VMT/bin/bash ...
stage_vm_tools() {
  VMT=$1/vm-tools
  local pyv
  pyv=$(/usr/bin/python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
  mkdir -p "$VMT/bin" "$VMT/py/lib"
  cp -uL "/usr/bin/$pyv" "$VMT/bin/python3"
  cp -uL /bin/bash "$VMT/bin/bash"
  if [ ! -d "$VMT/py/lib/$pyv" ]; then
    # The standard library without what the harnesses never import (and
    # whose extension modules would drag more libraries into the VM).
    # ctypes stays: the fault matrix sends a thread-directed SIGINT with it.
    cp -a "/usr/lib/$pyv" "$VMT/py/lib/"
    (cd "$VMT/py/lib/$pyv" && rm -rf test idlelib tkinter turtledemo ensurepip pydoc_data \
       lib2to3 site-packages dist-packages config-* \
       lib-dynload/_ssl.* lib-dynload/_hashlib.* lib-dynload/_sqlite3.* lib-dynload/_tkinter.* \
       lib-dynload/_dbm.* lib-dynload/_gdbm.* lib-dynload/readline.* lib-dynload/_curses* \
       lib-dynload/_lzma.* lib-dynload/_bz2.* lib-dynload/_uuid.* \
       lib-dynload/_decimal.* lib-dynload/xxlimited* lib-dynload/_testcapi* \
       lib-dynload/_testinternalcapi* lib-dynload/_testbuffer* lib-dynload/_testmultiphase* \
       lib-dynload/_test*)
  fi
}

# The RDMA backends the VM stages run, from BUILD_ABS's rdmamig: verbs, and
# ofi/verbs where the ofi backend is compiled in (said when it is not, by
# the caller named in $2).  Sets RDMA_SPECS.
vm_rdma_specs() {
  RDMA_SPECS=verbs
  if "$1/tools/rdmamig" backends 2>/dev/null | grep -q '^ofi/verbs .*not compiled in'; then
    echo "$2: the ofi backend is not compiled in: ofi/verbs is not run"
  else
    RDMA_SPECS="verbs ofi/verbs"
  fi
}

# A QEMU for the VM: stage_vm_qemu BIN DIR copies BIN to DIR/bin (the VM
# sees DIR by 9p; softroce-vm.sh adds the libraries ldd lists to the VM's
# initramfs), Debian's TCG accelerator module where BIN is a modular build
# (DIR/qemu-modules: QEMU_MODULE_DIR; without it "could not load module for
# type 'tcg-accel-ops'") and the firmware a -nodefaults -bios boot of the
# test guest opens, kvmvapic.bin (DIR/firmware: -L), from BIN's build tree
# (pc-bios beside it) or Debian's qemu-system-data.  Sets VM_QEMU (the
# binary in DIR) and VM_QEMU_ENV (the environment to run it with).
stage_vm_qemu() {
  local bin=$1 dir=$2 mod fw f
  mkdir -p "$dir/bin" "$dir/firmware"
  # A new file renamed over the old one: a VM still running the old binary
  # (another stage or benchmark on this build folder) keeps its own.
  if ! cmp -s "$bin" "$dir/bin/qemu-system-x86_64"; then
    cp -L "$bin" "$dir/bin/.qemu-system-x86_64.$$" && mv -f "$dir/bin/.qemu-system-x86_64.$$" "$dir/bin/qemu-system-x86_64"
  fi
  VM_QEMU=$dir/bin/qemu-system-x86_64
  VM_QEMU_ENV="QEMU=$VM_QEMU"
  mod=/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so
  if [ "$(readlink -f "$bin")" = /usr/bin/qemu-system-x86_64 ] && [ -e "$mod" ]; then
    mkdir -p "$dir/qemu-modules"
    cp -u "$mod" "$dir/qemu-modules/"
    VM_QEMU_ENV+=" QEMU_MODULE_DIR=$dir/qemu-modules"
  fi
  for fw in "$(dirname "$(readlink -f "$bin")")/pc-bios" /usr/share/qemu; do
    f=$fw/kvmvapic.bin
    [ -e "$f" ] && { cp -uL "$f" "$dir/firmware/"; return 0; }
  done
  echo "stage_vm_qemu: kvmvapic.bin not found beside $bin nor in /usr/share/qemu (apt-get install qemu-system-data)" >&2
  return 1
}
