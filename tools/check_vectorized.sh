#!/usr/bin/env bash
# Fails when a loop of the elementwise driver's map_block (cpp/include/fastloss/elementwise.hpp) is
# not vectorized for some loss body. A body that gcc cannot if-convert (a select on `a && b`, on
# `bool & bool`, or on a loop-invariant bool) silently turns its whole kernel scalar, 4-10x slower,
# and every test still passes: this compiles the AVX-512 kernel objects of the given families with
# -fopt-info-vec and reads gcc's verdict on those loops.
#
# usage: tools/check_vectorized.sh [BUILD_DIR] [FAMILY ...]
#   BUILD_DIR  a configured Ninja build directory (default build/dev); FAMILY a file cpp/cpu/FAMILY.cpp
#   (default: binary regression). Needs gcc; about 30-60 s of CPU per family.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/dev}
shift || true
families=("$@")
[ ${#families[@]} -gt 0 ] || families=(binary regression)
hdr=$root/cpp/include/fastloss/elementwise.hpp
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Line numbers of the per-element loops inside map_block.
lines=$(awk '/void map_block\(/ {on = 1} on && /for \(index_t i = 0; i < len; \+\+i\)/ {print NR}
             on && /^}/ {exit}' "$hdr")
[ -n "$lines" ] || { echo "check_vectorized: no map_block loops found in $hdr" >&2; exit 2; }

status=0
for fam in "${families[@]}"; do
  src=$root/cpp/cpu/$fam.cpp
  cmd=$(ninja -C "$build" -t commands | grep -E -- "-DFL_ISA=avx512 .* -c [^ ]*/cpp/cpu/$fam\.cpp$" | tail -1 || true)
  [ -n "$cmd" ] || { echo "check_vectorized: no AVX-512 compile command for $src in $build" >&2; exit 2; }
  cmd=$(sed -e 's/^ccache //' -e 's/ -MD -MT [^ ]* -MF [^ ]*//' -e "s| -o [^ ]* -c | -o $tmp/$fam.o -c |" <<<"$cmd")
  (cd "$build" && eval "$cmd -fopt-info-vec-all=$tmp/$fam.vec")
  vectorized=0 failed=0
  for l in $lines; do
    n_ok=$(grep -c -E "elementwise\.hpp:$l:[0-9]+: optimized: loop vectorized" "$tmp/$fam.vec" || true)
    n_missed=$(grep -c -E "elementwise\.hpp:$l:[0-9]+: missed: couldn't vectorize loop" "$tmp/$fam.vec" || true)
    vectorized=$((vectorized + n_ok))
    if [ "$n_missed" -gt 0 ]; then
      failed=1
      echo "FAIL $fam: $n_missed instantiation(s) of the loop at elementwise.hpp:$l not vectorized; gcc says:"
      grep -A2 -E "elementwise\.hpp:$l:[0-9]+: missed: couldn't vectorize loop" "$tmp/$fam.vec" |
        grep -E "missed: not vectorized" | sed -e 's/^[^ ]* //' -e 's/_[0-9][0-9]*/_N/g' | sort | uniq -c | head -5
      echo "     (a select on a combined or loop-invariant condition in the loss body is the usual cause)"
    fi
  done
  if [ "$vectorized" -eq 0 ]; then
    failed=1
    echo "FAIL $fam: gcc reported no vectorized map_block loop at all (lines: $lines)"
  elif [ "$failed" -eq 0 ]; then
    echo "ok   $fam: every map_block loop vectorized ($vectorized loop versions)"
  fi
  [ "$failed" -eq 0 ] || status=1
done
exit $status
