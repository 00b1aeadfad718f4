#!/bin/bash
# librdmamig behaves inside someone else's process (ctest library_symbols):
#  1. it exports exactly the symbols librdmamig.map lists (no wildcard);
#  2. it imports nothing that prints, touches the environment or changes
#     process limits (the host logs, sets its environment, raises limits).
# usage: check-symbols.sh LIBRARY MAPFILE
set -u
lib=$1 map=$2 rc=0
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRWVi]$/ {print $3}' | sed 's/@.*//' | sort -u)
listed=$(sed -n 's/^[[:space:]]*\(rmig_[A-Za-z0-9_]*\);.*/\1/p' "$map" | sort -u)
if grep -E '^[[:space:]]*[A-Za-z0-9_]*\*[A-Za-z0-9_]*;' "$map" | grep -v '^[[:space:]]*\*;' >/dev/null; then
  echo "FAIL: $map has a wildcard pattern besides 'local: *'"; rc=1
fi
extra=$(comm -23 <(echo "$exported") <(echo "$listed"))
missing=$(comm -13 <(echo "$exported") <(echo "$listed"))
[ -n "$extra" ] && { echo "FAIL: exported but not in the map:"; echo "$extra"; rc=1; }
[ -n "$missing" ] && { echo "FAIL: in the map but not exported:"; echo "$missing"; rc=1; }
forbidden='setenv|unsetenv|putenv|clearenv|prlimit|prlimit64|printf|fprintf|vprintf|vfprintf|__printf_chk|__fprintf_chk|__vfprintf_chk|puts|fputs|putchar|perror|stdout|stderr'
bad=$(nm -D --undefined-only "$lib" | awk '{print $2}' | sed 's/@.*//' | grep -xE "$forbidden")
[ -n "$bad" ] && { echo "FAIL: the library imports"; echo "$bad"; rc=1; }
# setrlimit only inside rmig_memlock_raise: the call a host makes on purpose.
callers=$(objdump -d --no-show-raw-insn "$lib" | awk '/^[0-9a-f]+ <[^>]*>:$/ {fn=$2} /(call|jmp).*<setrlimit(64)?@plt>/ {print fn}' | sort -u | tr -d '<>:')
for f in $callers; do
  [ "$f" = rmig_memlock_raise ] || { echo "FAIL: $f calls setrlimit (only rmig_memlock_raise may)"; rc=1; }
done
n=$(echo "$exported" | grep -c .)
[ $rc = 0 ] && echo "ok: $n symbols exported, all listed in $(basename "$map"); none of setenv, printf, fprintf, puts, perror, stdout, stderr imported; setrlimit called only by: ${callers:-nothing}"
exit $rc
