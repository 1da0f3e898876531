#!/usr/bin/env bash
# scripts/test.sh — the one test command (README, .ci/run, TESTING.md).
#
# Installs what the tests need when it is missing, checks /dev/fuse, then runs
#   cargo fmt --check, cargo clippy -D warnings, a lint of the shell scripts,
#   the packaging self-check and the whole test suite (cargo test: unit, mount and doc tests)
# and prints one summary. Exits non-zero if any step fails.
#
# Idempotent and non-interactive; needs root (apt, /dev/fuse, mounts).
# Environment:
#   STORGATE_TEST_TIMEOUT  seconds allowed for `cargo test` (default 2700)
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

# FUSE mounts left behind by tests (or a killed earlier run) under the temp dir.
cleanup_test_mounts() {
  local tmp=${TMPDIR:-/tmp} n=0 src dir type _rest
  while read -r src dir type _rest; do
    case "$type" in fuse | fuse.* | fuseblk) ;; *) continue ;; esac
    case "$src $type" in *storgate*) ;; *) continue ;; esac
    case "$dir" in "$tmp"/*) ;; *) continue ;; esac
    warn "unmounting leftover test mount $dir ($src, $type)"
    fusermount3 -u -z "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || true
    n=$((n + 1))
  done < <(cat /proc/mounts)
  return "$n"
}

# --- 1. what the tests need ---------------------------------------------------
section "dependencies"
ensure_rust
ensure_rust_components
# fuse3 (fusermount3) to mount; rsync and inotify-tools: tests drive the mount
# with them; pkg-config and curl: builds and webhook tests; the shell linter
# for scripts/ and packaging/.
ensure_packages fuse3 rsync inotify-tools pkg-config curl shellcheck
ensure_python_pip

# --- S3 test server (TESTING.md layer 4) -----------------------------------
# TODO(S3 issue): the S3 tests start `moto_server -H 127.0.0.1 -p PORT`.
# Enable this line when they land:
#   ensure_pip_tool moto_server 'moto[server]'
# ---------------------------------------------------------------------------

ensure_fuse
cleanup_test_mounts >/dev/null || true

# --- 2. lint ------------------------------------------------------------------
if [ "${SKIP_LINT:-0}" != 1 ]; then
  step fmt cargo fmt --all -- --check --color never
  step clippy cargo clippy --locked --all-targets -- -D warnings
  step shellcheck shellcheck -x scripts/*.sh packaging/mount.storgate .ci/run
fi
step packaging scripts/check-packaging.sh

# --- 3. build and run every test ---------------------------------------------
TEST_COUNTS="0 0 0"
if step build cargo test --locked --no-run; then
  # shellcheck disable=SC2086 # TEST_ARGS is a word list on purpose
  step test timeout -k 60 "${STORGATE_TEST_TIMEOUT:-2700}" cargo test --locked ${TEST_ARGS:-}
  rc=$?
  [ "$rc" -eq 124 ] && warn "cargo test timed out after ${STORGATE_TEST_TIMEOUT:-2700} s"
  TEST_COUNTS=$(awk '/^test result:/ {
      for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^passed/) p += $i
        if ($(i+1) ~ /^failed/) f += $i
        if ($(i+1) ~ /^ignored/) s += $i
      }
    } END { print p+0, f+0, s+0 }' "$LOG_DIR/test.log")
else
  record test 1 0
fi
if ! cleanup_test_mounts; then
  STEP_NAMES+=("leaked-mounts")
  STEP_RESULTS+=("FAILED  (tests left FUSE mounts behind; unmounted now)")
  FAILED_STEPS+=("leaked-mounts")
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
