#!/usr/bin/env bash
# pjdfstest (POSIX syscall conformance) on a bare directory of this machine's
# file system and on a storgate mount whose only bucket is one local
# directory, side by side: per-file failure counts for both, the totals, and
# the files where storgate fails more than the bare file system (issue 11:
# storgate must fail nothing the bare file system passes).
#
# Not part of scripts/test.sh: a full run takes about 10 minutes per target
# on a small machine (the storgate one longer under load).
#
# The pjdfstest source is not vendored and not downloaded here: give it as
#   PJDFSTEST_SRC   a checkout or an unpacked archive (a directory), or a
#                   .tar / .tar.gz of one, e.g. from
#                   `git clone https://github.com/pjd/pjdfstest` (BSD
#                   licensed; last run against commit 85a8aea).
# Other settings (environment):
#   PJDFSTEST_WORK  scratch directory (default $TARGET_DIR/pjdfstest); the
#                   bare run happens in it, so it decides which file system
#                   "bare" means. Emptied at start.
#   PJDFSTEST_TESTS test directories to run, e.g. "chown rename" (default:
#                   all of tests/)
#   PJDFSTEST_JOBS  parallel test files for prove (default 1)
#   STORGATE_BIN    the storgate binary (default: `cargo build --release`)
#   KEEP_LOGS=1     keep the scratch directory (TAP output, daemon log)
# Usage: sudo PJDFSTEST_SRC=/path/to/pjdfstest scripts/pjdfstest.sh
set -uo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT" || exit 1
exec </dev/null

[ "$(id -u)" -eq 0 ] || die "pjdfstest needs root (it changes owners and modes): run as root"
[ -n "${PJDFSTEST_SRC:-}" ] ||
  die "set PJDFSTEST_SRC to a pjdfstest source directory or tarball (git clone https://github.com/pjd/pjdfstest)"
[ -e "$PJDFSTEST_SRC" ] || die "PJDFSTEST_SRC=$PJDFSTEST_SRC does not exist"

WORK=${PJDFSTEST_WORK:-$TARGET_DIR/pjdfstest}
JOBS=${PJDFSTEST_JOBS:-1}
case $JOBS in '' | *[!0-9]*) die "PJDFSTEST_JOBS must be a number, got '$JOBS'" ;; esac

section "build dependencies"
ensure_packages autoconf automake gcc make perl fuse3

section "pjdfstest source and build"
rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/bare" "$WORK/origin" "$WORK/mnt" "$WORK/state" ||
  die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd)
if [ -d "$PJDFSTEST_SRC" ]; then
  cp -a "$PJDFSTEST_SRC/." "$WORK/src/" || die "cannot copy $PJDFSTEST_SRC"
else
  tar -xf "$PJDFSTEST_SRC" -C "$WORK/src" || die "cannot unpack $PJDFSTEST_SRC"
  # An archive with one top directory (pjdfstest-x.y/): step into it.
  if [ ! -e "$WORK/src/configure.ac" ]; then
    top=$(find "$WORK/src" -mindepth 2 -maxdepth 2 -name configure.ac -printf '%h\n' | head -n 1)
    [ -n "$top" ] || die "$PJDFSTEST_SRC holds no configure.ac"
    mv "$top" "$WORK/src.inner" && rm -rf "$WORK/src" && mv "$WORK/src.inner" "$WORK/src"
  fi
fi
[ -f "$WORK/src/pjdfstest.c" ] || die "$PJDFSTEST_SRC is not pjdfstest (no pjdfstest.c)"
(
  cd "$WORK/src" &&
    autoreconf -ifs >"$WORK/build.log" 2>&1 &&
    ./configure >>"$WORK/build.log" 2>&1 &&
    make pjdfstest >>"$WORK/build.log" 2>&1
) || die "pjdfstest build failed; see $WORK/build.log"
ok "built $WORK/src/pjdfstest"

TESTS=()
if [ -n "${PJDFSTEST_TESTS:-}" ]; then
  for t in $PJDFSTEST_TESTS; do
    [ -d "$WORK/src/tests/$t" ] || die "PJDFSTEST_TESTS: no test directory tests/$t"
    TESTS+=("$WORK/src/tests/$t")
  done
else
  TESTS=("$WORK/src/tests")
fi

if [ -n "${STORGATE_BIN:-}" ]; then
  BIN=$STORGATE_BIN
else
  section "storgate build"
  cargo build --release --locked --quiet || die "cargo build failed"
  BIN=$TARGET_DIR/release/storgate
fi
[ -x "$BIN" ] || die "no storgate binary at $BIN"

# run_prove DIR OUT: prove -r over the tests with DIR as working directory
# (pjdfstest creates its files in the current directory).
run_prove() {
  local dir=$1 out=$2 start
  start=$(date +%s)
  # -v: the "not ok" lines say what failed (expected X, got Y).
  (cd "$dir" && prove -r -v -j "$JOBS" "${TESTS[@]}") >"$out" 2>&1
  info "prove in $dir: $(($(date +%s) - start)) s"
}

# failures OUT: "file count" for each test file with failed subtests (or a
# bad exit: counted as 1 when prove names no subtests), from prove's summary.
failures() {
  awk '
    /^Test Summary Report/ { summary = 1; next }
    !summary { next }
    /^[^ ].*\(Wstat: / {
      file = $1; sub(/.*\/tests\//, "", file)
      n = 0
      if (match($0, /Failed: [0-9]+/)) n = substr($0, RSTART + 8, RLENGTH - 8) + 0
      if (n == 0 && match($0, /Wstat: [1-9]/)) n = 1
      if (n > 0) fails[file] = n
    }
    END { for (f in fails) print f, fails[f] }
  ' "$1" | sort
}

section "bare: $WORK/bare ($(df -PT "$WORK/bare" | awk 'NR == 2 { print $2 }'))"
run_prove "$WORK/bare" "$WORK/bare.tap"

section "storgate: one bucket, one local directory mount"
cat >"$WORK/storgate.json" <<EOF
{
  "stateDir": "$WORK/state",
  "throttling": {"enable": false},
  "buckets": [
    {"meta": {"name": "pjd"}, "mounts": [{"mountPoint": null, "originPath": "$WORK/origin"}]}
  ]
}
EOF
"$BIN" mount -f --config "$WORK/storgate.json" --bucket pjd -o allow_other "$WORK/mnt" \
  >"$WORK/storgate.log" 2>&1 &
PID=$!
stop_storgate() {
  if kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID"
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  fi
  if grep -q " $WORK/mnt fuse" /proc/self/mounts; then
    fusermount3 -u -z "$WORK/mnt" 2>/dev/null || umount -l "$WORK/mnt"
  fi
  kill -0 "$PID" 2>/dev/null && kill -KILL "$PID"
  wait "$PID" 2>/dev/null
}
trap stop_storgate EXIT
mounted=0
for _ in $(seq 200); do
  if grep -q " $WORK/mnt fuse" /proc/self/mounts; then mounted=1 && break; fi
  kill -0 "$PID" 2>/dev/null || break
  sleep 0.1
done
[ "$mounted" -eq 1 ] || die "storgate did not mount; log: $(cat "$WORK/storgate.log")"
run_prove "$WORK/mnt" "$WORK/storgate.tap"
stop_storgate
trap - EXIT

total() { awk '{ s += $2 } END { print s + 0 }' "$1"; }

# too_long OUT: "file count" of failed subtests that got ENAMETOOLONG (a
# path near PATH_MAX that the file system itself refused).
too_long() {
  awk '
    /^\/.*\/tests\/.*\.t \.\./ { file = $1; sub(/.*\/tests\//, "", file) }
    /^not ok / && / got ENAMETOOLONG/ && !/# TODO/ { n[file]++ }
    END { for (f in n) print f, n[f] }
  ' "$1" | sort
}

section "failed subtests per file (bare | storgate, of which got ENAMETOOLONG)"
failures "$WORK/bare.tap" >"$WORK/bare.fail"
failures "$WORK/storgate.tap" >"$WORK/storgate.fail"
too_long "$WORK/storgate.tap" >"$WORK/storgate.toolong"
join -a1 -a2 -e0 -o 0,1.2,2.2 "$WORK/bare.fail" "$WORK/storgate.fail" |
  join -a1 -e0 -o 0,1.2,1.3,2.2 - "$WORK/storgate.toolong" |
  while read -r file bare sg toolong; do
    # A test of paths near PATH_MAX (its later steps fail with ENOENT once
    # the long name could not be created).
    kind=""
    grep -q '^desc=.*PATH_MAX' "$WORK/src/tests/$file" 2>/dev/null && kind=" PATH_MAX test"
    mark=""
    [ "$sg" -gt "$bare" ] && mark="   <- storgate only"
    printf '   %-20s %5d | %5d  (%d ENAMETOOLONG)%s%s\n' "$file" "$bare" "$sg" "$toolong" "$kind" "$mark"
  done
info "storgate: $(total "$WORK/storgate.toolong") failed subtests got ENAMETOOLONG"
info "other failed subtests through storgate (first 40, cut at 200 characters):"
grep -h '^not ok ' "$WORK/storgate.tap" | grep -v -e ' got ENAMETOOLONG' -e '# TODO' | head -n 40 |
  cut -c 1-200 | sed 's/^/   other: /'
files() { wc -l <"$1" | tr -d ' '; }
result() { grep -E '^Result: ' "$1" | tail -n 1; }
info "bare:     $(total "$WORK/bare.fail") failed subtests in $(files "$WORK/bare.fail") files ($(result "$WORK/bare.tap"))"
info "storgate: $(total "$WORK/storgate.fail") failed subtests in $(files "$WORK/storgate.fail") files ($(result "$WORK/storgate.tap"))"
worse=$(join -a2 -e0 -o 0,1.2,2.2 "$WORK/bare.fail" "$WORK/storgate.fail" | awk '$3 > $2' | wc -l)
if [ -n "${KEEP_LOGS:-}" ]; then
  info "TAP output and logs kept in $WORK"
else
  rm -rf "$WORK/bare" "$WORK/origin" "$WORK/src"
  info "TAP output and the daemon log: $WORK/{bare,storgate}.tap, $WORK/storgate.log"
fi
if [ "$worse" -gt 0 ]; then
  warn "$worse test files fail more through storgate than bare"
  exit 1
fi
ok "storgate fails nothing the bare file system passes"
