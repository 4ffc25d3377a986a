#!/usr/bin/env bash
# Compile-checks the C++ sources for 64-bit Windows without a Windows machine: every kernel unit
# for every x86-64 ISA, the dispatcher, the thread pool and the memory blocks (cpp/cpu/), with the
# MinGW-w64 GCC cross compiler and, where installed, with Clang targeting Windows on the MinGW
# headers (the compiler family of the clang-cl wheel build). Syntax and semantics only: nothing is
# linked or run, and the pybind11 bindings (portable pybind11 code needing Windows Python headers)
# are not included. Debian: apt-get install g++-mingw-w64-x86-64-posix.
#
#   tools/check_windows.sh        # exit status 0 when every unit compiles without a warning
set -euo pipefail
cd "$(dirname "$0")/.."
GXX=${GXX:-x86_64-w64-mingw32-g++}
command -v "$GXX" >/dev/null || { echo "check_windows: $GXX not found" >&2; exit 2; }

# The header CMake generates (fastloss/build_lists.hpp) from its family and ISA lists.
GEN=$(mktemp -d)
trap 'rm -rf "$GEN"' EXIT
# The set() may span several lines.
families=$(awk '/^set\(FASTLOSS_FAMILIES/ {on = 1} on {print} on && /\)/ {exit}' CMakeLists.txt |
           sed -e 's/set(FASTLOSS_FAMILIES//' -e 's/)//' | tr -s ' \n' '  ')
[ -n "${families// /}" ] || { echo "check_windows: no kernel families found in CMakeLists.txt" >&2; exit 2; }
mkdir -p "$GEN/fastloss"
{
  echo "#pragma once"
  echo "#define FASTLOSS_ISAS(X) X(baseline) X(avx2) X(avx512)"
  printf "#define FASTLOSS_KERNEL_UNITS(X)"
  for isa in baseline avx2 avx512; do for f in $families; do printf " X(%s, %s)" "$f" "$isa"; done; done
  echo
} >"$GEN/fastloss/build_lists.hpp"

declare -A ISA_FLAGS=(
  [baseline]="-march=x86-64"
  [avx2]="-march=x86-64 -mavx2 -mfma -mbmi -mbmi2"
  [avx512]="-march=x86-64 -mavx2 -mfma -mbmi -mbmi2 -mavx512f -mavx512dq -mavx512bw -mavx512vl"
)
COMMON="-std=c++17 -O1 -fsyntax-only -Werror -Wall -Wextra -Wno-unused-parameter -Icpp/include -I$GEN"
compilers=("$GXX -Wno-psabi")
GCCDIR=$(dirname "$("$GXX" -print-libgcc-file-name)")
if command -v clang++ >/dev/null; then
  compilers+=("clang++ --target=x86_64-w64-windows-gnu -nostdinc++ -isystem $GCCDIR/include/c++ \
-isystem $GCCDIR/include/c++/x86_64-w64-mingw32 -isystem /usr/x86_64-w64-mingw32/include")
fi
fail=0
for cxx in "${compilers[@]}"; do
  for isa in baseline avx2 avx512; do
    for unit in $families; do
      $cxx $COMMON ${ISA_FLAGS[$isa]} -DFL_ISA=$isa -DFL_ISA_NS=isa_$isa "cpp/cpu/$unit.cpp" || fail=1
    done
  done
  for unit in dispatch parallel memory; do $cxx $COMMON ${ISA_FLAGS[baseline]} "cpp/cpu/$unit.cpp" || fail=1; done
  echo "check_windows: ${cxx%% *}: $([ $fail = 0 ] && echo ok || echo FAILED)"
done
exit $fail
