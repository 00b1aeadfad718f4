# Sourced by the scripts that run tools of the host inside the Soft-RoCE VM
# (qemu-vm-migrate.sh, fault-matrix-vm.sh).  The VM's initramfs has busybox
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
