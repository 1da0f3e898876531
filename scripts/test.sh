#!/usr/bin/env bash
# scripts/test.sh — the one test command (README, .ci/run, TESTING.md).
#
# Installs what the tests need when it is missing, checks /dev/fuse, then runs
#   cargo fmt --check, cargo clippy -D warnings, a lint of the shell scripts,
#   the packaging self-check and the whole test suite (cargo test: the unit
#   tests, the integration tests — one binary, tests/it/ — and the doc tests)
# and prints one summary. Exits non-zero if any step fails.
#
# Idempotent and non-interactive; needs root (apt, /dev/fuse, mounts).
# Environment:
#   STORGATE_TEST_TIMEOUT  seconds allowed for `cargo test` (default 5400, what
#                          CI allows: a machine busy with another job beside
#                          the suite runs it well past its idle 30 minutes)
#   STORGATE_TEST_TIME_FACTOR  multiplies every deadline inside the tests
#                          (default 3; tests/it/common/mod.rs)
#   TEST_ARGS              extra arguments for `cargo test` (e.g. a filter)
#   SKIP_LINT=1            skip fmt, clippy and shellcheck (local iteration)
set -uo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT" || exit 1
exec </dev/null
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_PROGRESS_WHEN=never
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}

LOG_DIR=$TARGET_DIR/test-logs
mkdir -p "$LOG_DIR"
START=$SECONDS
declare -a STEP_NAMES=() STEP_RESULTS=()
FAILED_STEPS=()

record() { # record NAME STATUS SECONDS
  STEP_NAMES+=("$1")
  if [ "$2" -eq 0 ]; then
    STEP_RESULTS+=("ok      ($3 s)")
  else
    STEP_RESULTS+=("FAILED  ($3 s, exit $2)")
    FAILED_STEPS+=("$1")
  fi
}

# step NAME CMD...: run a step, keep going on failure, log to target/test-logs/.
step() {
  local name=$1 t0=$SECONDS rc
  shift
  section "$name: $*"
  "$@" 2>&1 | tee "$LOG_DIR/$name.log"
  rc=${PIPESTATUS[0]}
  record "$name" "$rc" $((SECONDS - t0))
  return "$rc"
}

# The tests run with TMPDIR set to a directory of this run only, so whatever
# FUSE mount is still below it after `cargo test` was leaked by a test.
# fuse_mounts_under DIR: mount points of FUSE file systems below DIR.
fuse_mounts_under() {
  local _src dir type _rest
  while read -r _src dir type _rest; do
    case "$type" in fuse | fuse.* | fuseblk) ;; *) continue ;; esac
    case "$dir" in "$1"/*) printf '%s\n' "$dir" ;; esac
  done </proc/mounts
}
# Dead mounts (daemon gone: "Transport endpoint is not connected") left by an
# earlier, killed run. Live ones may belong to a run going on beside us.
cleanup_stale_runs() {
  local dir
  for dir in $(fuse_mounts_under "${TMPDIR:-/tmp}"); do
    case "$dir" in "${TMPDIR:-/tmp}"/storgate-testrun.*) ;; *) continue ;; esac
    if ! stat "$dir" >/dev/null 2>&1; then
      warn "unmounting dead mount $dir of an earlier run"
      fusermount3 -u -z "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || true
    fi
  done
}

# --- 1. what the tests need ---------------------------------------------------
section "dependencies"
ensure_rust
ensure_rust_components
# fuse3 (fusermount3) to mount; rsync and inotify-tools: tests drive the mount
# with them; bindfs: the change-detection tests' FUSE share "written by
# another host" (tests/it/common/bindfs.rs); pkg-config and curl: builds and
# webhook tests; the shell linter for scripts/ and packaging/.
ensure_packages fuse3 rsync inotify-tools bindfs pkg-config curl shellcheck
ensure_python_pip

# --- S3 test server (TESTING.md layer 4) -----------------------------------
# The S3 tests (tests/it/s3_client.rs, tests/it/s3_mount.rs, …) start their own
# `moto_server -H 127.0.0.1 -p PORT` on loopback (tests/it/common/s3.rs); they
# never contact AWS. moto >= 5.2.5: older 5.2.x answer CompleteMultipartUpload
# with a wrong XML root (getmoto/moto#10055), which the SDK rejects.
# s3fs and rclone are NOT needed here: only scripts/bench.sh uses them.
MOTO_SPEC='moto[server]>=5.2.5'
# moto_ok: moto_server on PATH, and (when python3 can see it) moto >= 5.2.5.
moto_ok() {
  command -v moto_server >/dev/null 2>&1 || return 1
  local v
  # A moto_server of another interpreter (pipx, a venv on PATH): trust it.
  v=$(python3 -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null) || return 0
  python3 -c 'import sys
want = (5, 2, 5)
have = tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in sys.argv[1].split(".")[:3])
sys.exit(0 if have >= want else 1)' "$v"
}
if moto_ok; then
  ok "moto_server present"
else
  ensure_python_pip
  info "pip install --upgrade '$MOTO_SPEC'"
  export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
  python3 -m pip install -q --upgrade "$MOTO_SPEC" </dev/null ||
    python3 -m pip install -q --upgrade --break-system-packages "$MOTO_SPEC" </dev/null ||
    die "pip install '$MOTO_SPEC' failed"
  hash -r
  moto_ok || die "moto_server (moto >= 5.2.5) still not usable after pip install '$MOTO_SPEC'"
  ok "installed $MOTO_SPEC"
fi
# ---------------------------------------------------------------------------

ensure_fuse
cleanup_stale_runs

# --- 2. lint ------------------------------------------------------------------
if [ "${SKIP_LINT:-0}" != 1 ]; then
  step fmt cargo fmt --all -- --check --color never
  step clippy cargo clippy --locked --all-targets -- -D warnings
  step shellcheck shellcheck -x scripts/*.sh packaging/mount.storgate .ci/run
fi
step layers python3 scripts/check-layers.py
step packaging scripts/check-packaging.sh

# --- 3. build and run every test ---------------------------------------------
TEST_COUNTS="0 0 0"
RUN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/storgate-testrun.XXXXXX")
if step build cargo test --locked --no-run; then
  # shellcheck disable=SC2086 # TEST_ARGS is a word list on purpose
  TMPDIR=$RUN_TMP step test timeout -k 60 "${STORGATE_TEST_TIMEOUT:-5400}" \
    cargo test --locked --no-fail-fast ${TEST_ARGS:-}
  rc=$?
  [ "$rc" -eq 124 ] && warn "cargo test timed out after ${STORGATE_TEST_TIMEOUT:-5400} s"
  # One `test result:` line per test binary. A binary that dies (a crash, the
  # timeout) prints none, and with all integration tests in one binary that
  # hides them all: then the run counts at least one failure.
  TEST_COUNTS=$(awk -v rc="$rc" '/^test result:/ {
      for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^passed/) p += $i
        if ($(i+1) ~ /^failed/) f += $i
        if ($(i+1) ~ /^ignored/) s += $i
      }
    } END { if (rc != 0 && f == 0) f = 1; print p+0, f+0, s+0 }' "$LOG_DIR/test.log")
  [ "$rc" -ne 0 ] && [ "$(grep -c '^test result: FAILED' "$LOG_DIR/test.log")" -eq 0 ] &&
    warn "cargo test failed (exit $rc) without a failed test: a test binary died before its summary"
else
  record test 1 0
fi
leaked=$(fuse_mounts_under "$RUN_TMP")
if [ -n "$leaked" ]; then
  for dir in $leaked; do
    warn "a test left $dir mounted: unmounting it"
    fusermount3 -u -z "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || true
  done
  record leaked-mounts 1 0
fi
# never rm through a mount: --one-file-system, and only once nothing is mounted
if [ -z "$(fuse_mounts_under "$RUN_TMP")" ]; then
  rm -rf --one-file-system "$RUN_TMP"
else
  warn "left $RUN_TMP in place: something is still mounted below it"
fi

# --- 4. summary ---------------------------------------------------------------
read -r PASSED FAILED SKIPPED <<<"$TEST_COUNTS"
section "summary ($((SECONDS - START)) s, logs in ${LOG_DIR#"$REPO_ROOT"/})"
for i in "${!STEP_NAMES[@]}"; do
  printf '   %-14s %s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}"
done
if [ ${#FAILED_STEPS[@]} -eq 0 ]; then
  printf '%sALL STEPS PASSED%s\n' "$_G" "$_N"
else
  printf '%sFAILED STEPS: %s%s\n' "$_R" "${FAILED_STEPS[*]}" "$_N"
fi
printf 'tests: %d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
[ ${#FAILED_STEPS[@]} -eq 0 ]
