#!/usr/bin/env bash
# scripts/bench.sh — storgate side by side with the alternatives, in one run.
#
# Local part: a bucket with one local root mount is mounted with --bucket
# (release build); every benchmark runs on the bare directory and on the
# mount of a directory on the same file system; ratio = storgate/bare time.
#
#   seq write   dd if=/dev/zero bs=1M count=N conv=fsync  (1 GiB)
#   seq read    dd of=/dev/null bs=1M, cold cache (drop_caches before)
#   small files create+write+close of 10,000 4 KiB files (python loop)
#   find, ls    find | wc -l and ls -lR >/dev/null over 1,000 dirs x 100 files,
#               cold (after drop_caches) and warm (right after)
#
# S3 part: storgate, s3fs and `rclone mount` on the same S3 server and bucket
# (each under the same key prefix, each in a directory of its own there);
# ratio = storgate time / the other's time (below 1.00 = storgate faster).
#
#   seq write   dd if=/dev/zero bs=1M count=N conv=fsync (1 GiB), timed until
#               the object is in the bucket at full size (rclone uploads after
#               close, in the background; every tool pays the same check)
#   seq read    the same file, right after a remount (no tool's cache) and
#               drop_caches: dd of=/dev/null bs=1M
#   listing     ls -l | wc -l and find | wc -l of a directory of 10,000 objects,
#               each right after a remount
#   creates     create+write+close of 1,000 4 KiB files (python loop), timed
#               until all are in the bucket
#   Mount options: storgate metadataTtl 1 s, timeout 30 s; s3fs defaults
#   (no use_cache) with use_path_request_style; rclone --vfs-cache-mode writes
#   --vfs-write-back 0s (writes staged locally and uploaded after close, as
#   storgate and s3fs stage them; its read cache is wiped at each remount).
#
# Events part: what a post onPut workflow costs and how fast it delivers,
# against the shell pipeline it replaces — storgate (a bucket with /in and a
# hidden /out, both local; onPut post -> a copy task to /out) vs
#   inotifywait -m -r -e close_write --format '%w%f' SRC | while read -r f; do cp "$f" DST/; done
# on plain directories of the same file system. The same writer (10,000 x
# 4 KiB files, one after another, the time after each close recorded) and the
# same observer (inotify on the output directory: when each output is there
# in full) on both sides; no S3 needed.
#
#   write       the writer's time (storgate: through the mount, each release
#               journaled)
#   throughput  items / (first write -> last output)
#   latency     close() returned -> output complete, p50 and p99
#
# Batch part: the scan rate of `storgate batch run BUCKET 0` (one onBatch
# scan in the foreground; no FUSE mount needed) with filter {recursive: true},
# chunkSize 1000, cursor continue, throttling off and a no-op workflow
# ("tasks": []), against the bare listing the scan cannot do without:
#
#   local       100,000 empty files, 1,000 dirs x 100, in a bucket with one
#               local root mount vs find PATH -type f | wc -l on the same
#               tree, cold (after drop_caches) and warm (right after)
#   S3          10,000 objects of 1 KiB under one prefix of the S3 server, in
#               a bucket with one S3 root mount vs rclone lsf -R --files-only
#               --fast-list of the same prefix (ListObjects pages only)
#   items/s = items / wall time of the command (also shown: the elapsed the
#   CLI prints); ratio = storgate time / baseline time.
#
# Watch part: change detection (SPEC 4.5), against the plain tools in the same
# run; no FUSE traffic at all (the daemons mount, nothing uses the mounts):
#
#   poll cost   a daemon with watch {mode: poll} and an onPut event (no-op
#               workflow) on an unchanging origin, beside the same daemon with
#               watch {mode: off}: time per round (elapsed_ms of its DEBUG
#               "poll round" line, target storgate::watch), CPU per round
#               (utime+stime of /proc/PID/stat), peak memory (VmHWM, vs the
#               off daemon). Baselines, run right after each round:
#     local     100,000 files in 1,000 dirs vs
#               find ORIGIN -printf '%s %T@\n' | wc -l (walk + stat)
#     S3        100,000 objects under one prefix (parallel boto3 puts; as many
#               as the server stores in BENCH_WATCH_S3_BUDGET s, the output
#               says when fewer) vs one paginated ListObjectsV2 (boto3)
#   notify      500 files written straight into the origin of a mount with
#               watch {mode: notify} (not through the mount), one every 10 ms,
#               onPut post -> copy to a hidden /out: latency close -> output,
#               p50/p99/max, vs the events part's inotifywait | cp loop
#
# Root needed (mount, drop_caches). Not part of scripts/test.sh. Installs what
# it lacks (fuse3, python3; for the S3 part s3fs, rclone and, without an
# endpoint, moto; for the events and watch parts inotify-tools; the watch
# part's S3 poll also boto3, from pip when missing).
# Environment:
#   BENCH_SCALE=small    quick check: 64 MiB, 1,000 files, 100 x 100 tree;
#                        S3: 64 MiB, 1,000 objects listed, 200 creates;
#                        events: 1,000 files; batch: 100 x 100 tree,
#                        1,000 S3 objects; watch: 100 x 100 tree, 2,000 S3
#                        objects, 200 notify files
#   BENCH_RUNS=N         runs per benchmark, the median is shown (default 3)
#   BENCH_PARTS="local s3 events batch watch"  which parts to run (default all)
#   BENCH_DIR=DIR        working directory (default /var/tmp/storgate-bench)
#   BENCH_FILE_MIB, BENCH_SMALL_FILES, BENCH_SMALL_SIZE, BENCH_TREE_DIRS,
#   BENCH_TREE_FILES     override single sizes of the local part
#   BENCH_S3_FILE_MIB, BENCH_S3_LIST, BENCH_S3_CREATES, BENCH_S3_RUNS
#                        override sizes and runs of the S3 part
#   BENCH_EVENT_FILES, BENCH_EVENT_SIZE  files and their size in the events
#                        part (default 10,000 / 1,000 small, 4096 bytes)
#   BENCH_EVENT_IDLE     seconds without a new output after which a run of the
#                        events part gives up on the missing ones (default 60)
#   BENCH_BATCH_DIRS, BENCH_BATCH_FILES, BENCH_BATCH_CHUNK  the batch part's
#                        local tree (default 1,000 / 100 small x 100) and chunkSize
#   BENCH_BATCH_S3       objects of its S3 scan (default 10,000 / 1,000 small;
#                        0 = no S3 scan); runs: BENCH_S3_RUNS
#   BENCH_WATCH_DIRS, BENCH_WATCH_FILES  the watch part's local tree (default
#                        1,000 / 100 small x 100)
#   BENCH_WATCH_INTERVAL, BENCH_WATCH_S3_INTERVAL  intervalSeconds of the poll
#                        daemons (default auto: from the warm-up baseline, at
#                        least 5 s, so that a round and its baseline do not
#                        overlap)
#   BENCH_WATCH_ROUNDS, BENCH_WATCH_S3_ROUNDS  rounds measured after the first
#                        (default 5 local, 3 S3)
#   BENCH_WATCH_S3       objects of the S3 prefix (default 100,000 / 2,000
#                        small; 0 = no S3 poll)
#   BENCH_WATCH_S3_BUDGET  seconds the puts may take (default 180)
#   BENCH_WATCH_EVENT_FILES, BENCH_WATCH_EVENT_GAP_MS  files of the notify
#                        latency runs and the pause between them (default
#                        500 / 200 small, 10 ms); runs: BENCH_RUNS
#   STORGATE_WORKERS     storgate's worker pool (events and batch parts; default 8)
#   BENCH_S3_ENDPOINT    S3 server URL (default: a private moto server started
#                        on a free loopback port, stopped at the end); with it:
#   BENCH_S3_KEY, BENCH_S3_SECRET  its keys (default testing/testing)
#   BENCH_S3_BUCKET      bucket (default storgate-bench; created if missing)
#   BENCH_S3_REGION      region (default us-east-1)
#                        The run works under a key prefix of its own and
#                        deletes it at the end.
#   BENCH_KEEP=1         keep the data afterwards
#   BENCH_BASE_BIN=PATH  local part: also mount the same origin with this
#                        storgate binary (e.g. a build of an earlier commit)
#                        and report storgate time / its time (before vs after
#                        in one run, interleaved)
# Results: printed and written to target/bench/results.txt.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
exec </dev/null

case "${BENCH_SCALE:-full}" in
  full) d_mib=1024 d_small=10000 d_dirs=1000 d_files=100 d_s3mib=1024 d_s3list=10000 d_s3creates=1000 d_evfiles=10000 d_bdirs=1000 d_bs3=10000 d_wdirs=1000 d_ws3=100000 d_wev=500 ;;
  small) d_mib=64 d_small=1000 d_dirs=100 d_files=100 d_s3mib=64 d_s3list=1000 d_s3creates=200 d_evfiles=1000 d_bdirs=100 d_bs3=1000 d_wdirs=100 d_ws3=2000 d_wev=200 ;;
  *) die "BENCH_SCALE must be 'full' or 'small'" ;;
esac
FILE_MIB=${BENCH_FILE_MIB:-$d_mib}
SMALL_FILES=${BENCH_SMALL_FILES:-$d_small}
SMALL_SIZE=${BENCH_SMALL_SIZE:-4096}
TREE_DIRS=${BENCH_TREE_DIRS:-$d_dirs}
TREE_FILES=${BENCH_TREE_FILES:-$d_files}
RUNS=${BENCH_RUNS:-3}
PARTS=${BENCH_PARTS:-local s3 events batch watch}
S3_MIB=${BENCH_S3_FILE_MIB:-$d_s3mib}
S3_LIST=${BENCH_S3_LIST:-$d_s3list}
S3_CREATES=${BENCH_S3_CREATES:-$d_s3creates}
S3_RUNS=${BENCH_S3_RUNS:-$RUNS}
EV_FILES=${BENCH_EVENT_FILES:-$d_evfiles}
EV_SIZE=${BENCH_EVENT_SIZE:-4096}
EV_IDLE=${BENCH_EVENT_IDLE:-60}
BATCH_DIRS=${BENCH_BATCH_DIRS:-$d_bdirs}
BATCH_FILES=${BENCH_BATCH_FILES:-100}
BATCH_CHUNK=${BENCH_BATCH_CHUNK:-1000}
BATCH_S3_OBJECTS=${BENCH_BATCH_S3:-$d_bs3}
WATCH_DIRS=${BENCH_WATCH_DIRS:-$d_wdirs}
WATCH_FILES=${BENCH_WATCH_FILES:-100}
WATCH_INTERVAL=${BENCH_WATCH_INTERVAL:-auto}
WATCH_ROUNDS=${BENCH_WATCH_ROUNDS:-5}
WATCH_S3_OBJECTS=${BENCH_WATCH_S3:-$d_ws3}
WATCH_S3_BUDGET=${BENCH_WATCH_S3_BUDGET:-180}
WATCH_S3_INTERVAL=${BENCH_WATCH_S3_INTERVAL:-auto}
WATCH_S3_ROUNDS=${BENCH_WATCH_S3_ROUNDS:-3}
WATCH_EV_FILES=${BENCH_WATCH_EVENT_FILES:-$d_wev}
WATCH_EV_GAP_MS=${BENCH_WATCH_EVENT_GAP_MS:-10}
WORK=${BENCH_DIR:-/var/tmp/storgate-bench}
BIN=$TARGET_DIR/release/storgate
HELPER=$REPO_ROOT/scripts/bench-files.py
OUT_DIR=$TARGET_DIR/bench
RESULTS=$OUT_DIR/results.txt

[ "$(id -u)" -eq 0 ] || die "run as root (mount, drop_caches)"
want() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

BARE=$WORK/bare
ORIGIN=$WORK/origin
MNT=$WORK/mnt
MNT_BASE=$WORK/mnt-base # BENCH_BASE_BIN's mount of the same origin
CONFIG_BASE=$WORK/bench-base.json
CONFIG=$WORK/bench.json
ERR=$WORK/mount-stderr.log # what `storgate mount` printed
LOG=$WORK/state/storgate.log # the daemon's log (stateDir/storgate.log)

# S3 part
S3W=$WORK/s3
TOOLS=(storgate s3fs rclone)
MOTO_PID=""
S3_PREFIX="bench-$(date -u +%Y%m%d-%H%M%S)-$$"
RCLONE_CONF=$S3W/rclone.conf
S3FS_PASSWD=$S3W/s3fs.passwd

# events part
EW=$WORK/events
EV_PIDS=() # background processes of the events part (observer, baseline pipeline)

# batch part
BW=$WORK/batch

# watch part
WW=$WORK/watch
WATCH_PIDS=() # its storgate daemons (mount -f in the background) …
WATCH_MNTS=() # … and their mount points
CLK_TCK=$(getconf CLK_TCK)

cleanup() {
  local t p
  for p in "${EV_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${EV_PIDS[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  for t in "${WATCH_MNTS[@]}"; do
    unmount_quietly "$t"
    wait_unmounted "$t" 20 || warn "$t still mounted"
  done
  for p in "${WATCH_PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  unmount_quietly "$MNT"
  wait_unmounted "$MNT" 20 || warn "$MNT still mounted"
  unmount_quietly "$MNT_BASE"
  wait_unmounted "$MNT_BASE" 20 || warn "$MNT_BASE still mounted"
  unmount_quietly "$EW/mnt"
  wait_unmounted "$EW/mnt" 20 || warn "$EW/mnt still mounted"
  for t in "${TOOLS[@]}"; do
    unmount_quietly "$S3W/mnt-$t"
    wait_unmounted "$S3W/mnt-$t" 20 || warn "$S3W/mnt-$t still mounted"
  done
  # On a server of the user's, remove what this run wrote (moto just stops).
  if [ -n "${BENCH_S3_ENDPOINT:-}" ] && [ "${BENCH_KEEP:-0}" != 1 ] && [ -f "$RCLONE_CONF" ]; then
    rclone_cmd purge "bench:$S3_BUCKET/$S3_PREFIX" >/dev/null 2>&1 || true
  fi
  if [ -n "$MOTO_PID" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  if [ "${BENCH_KEEP:-0}" != 1 ] && ! grep -qs " $WORK/" /proc/mounts; then
    rm -rf "${WORK:?}"
  fi
}

CAN_DROP=1 # set for real in "set up"
drop_caches() {
  sync
  if [ $CAN_DROP = 1 ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }
rate() { awk -v a="$1" -v t="$2" 'BEGIN { r = a / t; printf (r >= 100 ? "%.0f" : "%.1f"), r }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
dashes=--------------------------------------------

# ---- local benchmarks, each prints its elapsed seconds; $1 = root dir --------
b_write() {
  rm -f "$1/big.bin"
  sync
  local t0 t1
  t0=$(now)
  dd if=/dev/zero of="$1/big.bin" bs=1M count="$FILE_MIB" conv=fsync status=none
  t1=$(now)
  elapsed "$t0" "$t1"
}
b_read() {
  local t0 t1
  drop_caches
  t0=$(now)
  dd if="$1/big.bin" of=/dev/null bs=1M status=none
  t1=$(now)
  elapsed "$t0" "$t1"
}
b_small() {
  rm -rf "$1/small"
  mkdir "$1/small"
  sync
  python3 "$HELPER" files "$1/small" "$SMALL_FILES" "$SMALL_SIZE"
}
b_find() { # $1 dir, $2 cold|warm
  local t0 t1 n
  [ "$2" = cold ] && drop_caches
  t0=$(now)
  n=$(find "$1/tree" | wc -l)
  t1=$(now)
  [ "$n" = "$entries" ] || warn "find in $1 counted $n entries, expected $entries"
  elapsed "$t0" "$t1"
}
b_ls() { # $1 dir, $2 cold|warm
  local t0 t1
  [ "$2" = cold ] && drop_caches
  t0=$(now)
  ls -lR "$1/tree" >/dev/null
  t1=$(now)
  elapsed "$t0" "$t1"
}

# ---- S3: the three mounts ------------------------------------------------------
# rclone 1.60 (AWS SDK for Go v1) refuses an AWS_CA_BUNDLE with its own HTTP
# transport (LoadCustomCABundleError): drop it for plain-http endpoints.
rclone_cmd() {
  if [[ $S3_ENDPOINT == http://* ]]; then
    env -u AWS_CA_BUNDLE rclone --config "$RCLONE_CONF" "$@"
  else
    rclone --config "$RCLONE_CONF" "$@"
  fi
}

mount_tool() { # $1 tool
  local t=$1 dir=$S3W/mnt-$1
  mkdir -p "$dir"
  case $t in
    storgate)
      STORGATE_LOG=${STORGATE_LOG:-warn} "$BIN" mount --config "$S3W/storgate.json" --bucket bench "$dir" \
        2>>"$S3W/storgate-mount.log" || die "storgate mount failed: $(tail -n 5 "$S3W/storgate-mount.log")"
      ;;
    s3fs)
      s3fs "$S3_BUCKET:/$S3_PREFIX" "$dir" \
        -o "url=$S3_ENDPOINT,use_path_request_style,passwd_file=$S3FS_PASSWD,endpoint=$S3_REGION" \
        -o logfile="$S3W/s3fs.log" || die "s3fs mount failed: $(tail -n 5 "$S3W/s3fs.log" 2>/dev/null)"
      ;;
    rclone)
      rm -rf "$S3W/rclone-cache"
      rclone_cmd mount "bench:$S3_BUCKET/$S3_PREFIX" "$dir" --daemon \
        --vfs-cache-mode writes --vfs-write-back 0s --cache-dir "$S3W/rclone-cache" \
        --log-file "$S3W/rclone.log" || die "rclone mount failed: $(tail -n 5 "$S3W/rclone.log")"
      ;;
  esac
  local deadline=$((SECONDS + 30))
  until mountpoint -q "$dir"; do
    [ $SECONDS -lt $deadline ] || die "$t: $dir did not become a mount point"
    sleep 0.1
  done
}
umount_tool() {
  unmount_quietly "$S3W/mnt-$1"
  wait_unmounted "$S3W/mnt-$1" 30 || die "$1: cannot unmount $S3W/mnt-$1"
}
remount_tool() {
  umount_tool "$1"
  mount_tool "$1"
}

# s3_objects DIR: how many objects the bucket holds below PREFIX/DIR/ (asked
# of the server with rclone, not through any mount).
s3_objects() { rclone_cmd lsf --files-only "bench:$S3_BUCKET/$S3_PREFIX/$1/" 2>/dev/null | wc -l; }
# s3_size KEY: size of PREFIX/KEY in the bucket, empty while absent.
s3_size() { rclone_cmd lsf --format s "bench:$S3_BUCKET/$S3_PREFIX/$1" 2>/dev/null | head -n 1; }
wait_bucket() { # $1 what, then a condition command
  local what=$1 deadline=$((SECONDS + 1800))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "$what never reached the bucket"
    sleep 0.05
  done
}
big_in_bucket() { [ "$(s3_size "w-$1/big.bin")" = "$((S3_MIB << 20))" ]; }
big_gone() { [ -z "$(s3_size "w-$1/big.bin")" ]; }
creates_in_bucket() { [ "$(s3_objects "w-$1/small")" -ge "$S3_CREATES" ]; }
creates_gone() { [ "$(s3_objects "w-$1/small")" -eq 0 ]; }

# ---- S3 benchmarks, each prints its elapsed seconds; $1 = tool ------------------
s_write() {
  local d=$S3W/mnt-$1/w-$1 t0 t1
  rm -f "$d/big.bin"
  wait_bucket "$1: removal of big.bin" big_gone "$1"
  sync
  t0=$(now)
  dd if=/dev/zero of="$d/big.bin" bs=1M count="$S3_MIB" conv=fsync status=none
  wait_bucket "$1: big.bin" big_in_bucket "$1"
  t1=$(now)
  elapsed "$t0" "$t1"
}
s_read() {
  local t0 t1
  remount_tool "$1"
  drop_caches
  t0=$(now)
  dd if="$S3W/mnt-$1/w-$1/big.bin" of=/dev/null bs=1M status=none
  t1=$(now)
  elapsed "$t0" "$t1"
}
s_list() { # $1 tool, $2 ls|find
  local t0 t1 n want
  remount_tool "$1"
  drop_caches
  t0=$(now)
  if [ "$2" = ls ]; then
    # shellcheck disable=SC2012 # ls -l is the benchmark (a stat per entry)
    n=$(ls -l "$S3W/mnt-$1/list" | wc -l)
    want=$((S3_LIST + 1)) # "total" line
  else
    n=$(find "$S3W/mnt-$1/list" | wc -l)
    want=$((S3_LIST + 1))
  fi
  t1=$(now)
  [ "$n" = "$want" ] || warn "$1: $2 counted $n lines, expected $want"
  elapsed "$t0" "$t1"
}
s_creates() {
  local d=$S3W/mnt-$1/w-$1/small t0 t1
  rm -rf "$d"
  wait_bucket "$1: removal of small/" creates_gone "$1"
  mkdir -p "$d"
  sync
  t0=$(now)
  python3 "$HELPER" files "$d" "$S3_CREATES" 4096 >/dev/null
  wait_bucket "$1: small files" creates_in_bucket "$1"
  t1=$(now)
  elapsed "$t0" "$t1"
}

# ---- set up ------------------------------------------------------------------
section "build (release)"
ensure_rust
ensure_packages fuse3 python3
ensure_fuse
cargo build --release --locked
[ -x "$BIN" ] || die "no $BIN"

section "set up $WORK"
if grep -qs " $MNT fuse" /proc/mounts; then unmount_quietly "$MNT"; fi
rm -rf "${WORK:?}"
mkdir -p "$WORK/state" "$OUT_DIR"
trap cleanup EXIT
if ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
  CAN_DROP=0
  warn "cannot write /proc/sys/vm/drop_caches: 'cold' figures will be warm"
fi
FSTYPE=$(findmnt -n -o FSTYPE -T "$WORK" 2>/dev/null || stat -f -c %T "$WORK")
case "$FSTYPE" in tmpfs | ramfs) warn "$WORK is on $FSTYPE: set BENCH_DIR to a disk-backed directory" ;; esac
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$RESULTS"

header() {
  echo "storgate bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "scale=${BENCH_SCALE:-full}  fs=$FSTYPE at $WORK  kernel $(uname -r)  $(nproc) cores  load avg at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  [ $CAN_DROP = 1 ] || echo "NOTE: page cache could not be dropped; 'cold' figures are warm"
}

# ---- local part ----------------------------------------------------------------
local_part() {
  mkdir -p "$BARE" "$ORIGIN" "$MNT"
  [ "$(stat -c %d "$BARE")" = "$(stat -c %d "$ORIGIN")" ] || die "bare and origin are not on the same file system"
  entries=$((TREE_DIRS * TREE_FILES + TREE_DIRS + 1))
  info "tree fixture: $TREE_DIRS dirs x $TREE_FILES files = $entries entries in each of bare/ and origin/"
  python3 "$HELPER" tree "$BARE/tree" "$TREE_DIRS" "$TREE_FILES"
  python3 "$HELPER" tree "$ORIGIN/tree" "$TREE_DIRS" "$TREE_FILES"
  sync

  cat >"$CONFIG" <<EOF
{
  "stateDir": "$WORK/state",
  "buckets": [
    { "meta": { "name": "bench" },
      "mounts": [ { "mountPoint": null, "originPath": "$ORIGIN" } ] }
  ]
}
EOF
  "$BIN" check --config "$CONFIG" >/dev/null
  STORGATE_LOG=${STORGATE_LOG:-warn} "$BIN" mount --config "$CONFIG" --bucket bench "$MNT" 2>"$ERR" ||
    die "storgate mount failed: $(cat "$ERR"; tail -n 5 "$LOG" 2>/dev/null)"
  mountpoint -q "$MNT" || die "$MNT is not a mount point"
  ok "mounted $ORIGIN at $MNT (bucket 'bench', --bucket)"
  local sides=(bare storgate)
  if [ -n "${BENCH_BASE_BIN:-}" ]; then
    [ -x "$BENCH_BASE_BIN" ] || die "BENCH_BASE_BIN=$BENCH_BASE_BIN is not an executable"
    mkdir -p "$MNT_BASE" "$WORK/state-base"
    sed "s|\"$WORK/state\"|\"$WORK/state-base\"|" "$CONFIG" >"$CONFIG_BASE"
    STORGATE_LOG=${STORGATE_LOG:-warn} "$BENCH_BASE_BIN" mount --config "$CONFIG_BASE" --bucket bench "$MNT_BASE" 2>>"$ERR" ||
      die "base storgate mount failed: $(tail -n 5 "$ERR")"
    mountpoint -q "$MNT_BASE" || die "$MNT_BASE is not a mount point"
    ok "mounted $ORIGIN at $MNT_BASE with the base binary $BENCH_BASE_BIN"
    sides=(bare base storgate)
  fi
  [ "$(find "$MNT/tree" | wc -l)" = "$entries" ] || die "the mount does not show the tree fixture"

  # name;unit for the rate column;amount for the rate;function;argument
  local BENCHES=(
    "seq write ${FILE_MIB} MiB (dd bs=1M fsync);MiB/s;$FILE_MIB;b_write;"
    "seq read ${FILE_MIB} MiB, cold (dd bs=1M);MiB/s;$FILE_MIB;b_read;"
    "create+write+close ${SMALL_FILES} x $((SMALL_SIZE / 1024)) KiB;files/s;$SMALL_FILES;b_small;"
    "find | wc -l, ${entries} entries, cold;entries/s;$entries;b_find;cold"
    "find | wc -l, ${entries} entries, warm;entries/s;$entries;b_find;warm"
    "ls -lR, ${entries} entries, cold;entries/s;$entries;b_ls;cold"
    "ls -lR, ${entries} entries, warm;entries/s;$entries;b_ls;warm"
  )
  local -A T
  local run i name unit amount fn arg side dir t
  for ((run = 1; run <= RUNS; run++)); do
    section "local: run $run of $RUNS"
    for i in "${!BENCHES[@]}"; do
      IFS=';' read -r name _ _ fn arg <<<"${BENCHES[$i]}"
      local order=("${sides[@]}")
      # With a base binary, every other run measures storgate before base:
      # what one side leaves the file system to finish (deferred frees after
      # the rm -rf, writeback) lands on each side equally often.
      if [ ${#sides[@]} = 3 ] && [ $((run % 2)) = 0 ]; then order=(bare storgate base); fi
      for side in "${order[@]}"; do
        case $side in bare) dir=$BARE ;; base) dir=$MNT_BASE ;; *) dir=$MNT ;; esac
        # shellcheck disable=SC2086 # $arg is empty or one word
        t=$($fn "$dir" $arg)
        T[$i,$side]="${T[$i,$side]:-} $t"
        printf '   %-46s %-8s %8.3f s\n' "$name" "$side" "$t"
      done
    done
  done
  unmount_quietly "$MNT"
  [ -n "${BENCH_BASE_BIN:-}" ] && unmount_quietly "$MNT_BASE"

  if [ -n "${BENCH_BASE_BIN:-}" ]; then
    {
      echo
      echo "== local: storgate vs the base binary  (runs=$RUNS, median shown, interleaved in one run)"
      echo "base = $BENCH_BASE_BIN at $MNT_BASE; storgate = $BIN at $MNT; both mount $ORIGIN"
      echo "ratio = storgate time / base time (below 1.00 = this build is faster)"
      echo
      printf '%-44s | %-12s | %-12s | %-12s | %s\n' benchmark bare base storgate "storgate/base"
      local tb0 tb1 ts1
      for i in "${!BENCHES[@]}"; do
        IFS=';' read -r name _ _ _ _ <<<"${BENCHES[$i]}"
        # shellcheck disable=SC2086 # word lists of numbers
        tb0=$(median ${T[$i,bare]})
        # shellcheck disable=SC2086
        tb1=$(median ${T[$i,base]})
        # shellcheck disable=SC2086
        ts1=$(median ${T[$i,storgate]})
        printf '%-44s | %10.3f s | %10.3f s | %10.3f s | %s\n' "$name" "$tb0" "$tb1" "$ts1" "$(ratio "$ts1" "$tb1")"
      done
    } >>"$RESULTS"
  fi

  {
    echo
    echo "== local: storgate vs the bare directory  (runs=$RUNS, median shown)"
    echo "bare = $BARE; storgate = $MNT (bucket with one local root mount of $ORIGIN, same fs)"
    echo "ratio = storgate time / bare time (1.00 = as fast as the bare directory, 2.00 = twice as slow)"
    echo
    printf '%-44s | %-28s | %-28s | %s\n' benchmark bare storgate ratio
    printf '%s-+-%s-+-%s-+-%s\n' "$dashes" "${dashes:0:28}" "${dashes:0:28}" -----
    local tb ts cb cs
    for i in "${!BENCHES[@]}"; do
      IFS=';' read -r name unit amount _ _ <<<"${BENCHES[$i]}"
      # shellcheck disable=SC2086 # word lists of numbers
      tb=$(median ${T[$i,bare]})
      # shellcheck disable=SC2086
      ts=$(median ${T[$i,storgate]})
      cb=$(printf '%.3f s (%s %s)' "$tb" "$(rate "$amount" "$tb")" "$unit")
      cs=$(printf '%.3f s (%s %s)' "$ts" "$(rate "$amount" "$ts")" "$unit")
      printf '%-44s | %-28s | %-28s | %s\n' "$name" "$cb" "$cs" "$(ratio "$ts" "$tb")"
    done
  } >>"$RESULTS"
}

# ---- S3 part -------------------------------------------------------------------
# s3_server: the S3 server (BENCH_S3_ENDPOINT, else a private moto server on a
# free loopback port), rclone's and s3fs's credentials, the bucket. Once per
# bench run; the s3 and batch parts share it.
S3_READY=0
s3_server() {
  [ $S3_READY = 0 ] || return 0
  section "S3: server"
  ensure_packages rclone curl
  mkdir -p "$S3W"
  S3_REGION=${BENCH_S3_REGION:-us-east-1}
  S3_BUCKET=${BENCH_S3_BUCKET:-storgate-bench}
  S3_KEY=${BENCH_S3_KEY:-testing}
  S3_SECRET=${BENCH_S3_SECRET:-testing}
  if [ -n "${BENCH_S3_ENDPOINT:-}" ]; then
    S3_ENDPOINT=$BENCH_S3_ENDPOINT
    S3_SERVER="$S3_ENDPOINT (BENCH_S3_ENDPOINT)"
  else
    ensure_pip_tool moto_server 'moto[server]>=5.2.5'
    local port
    port=$(python3 "$HELPER" free-port)
    S3_ENDPOINT=http://127.0.0.1:$port
    moto_server -H 127.0.0.1 -p "$port" >"$S3W/moto.log" 2>&1 &
    MOTO_PID=$!
    local deadline=$((SECONDS + 60))
    until curl -s -o /dev/null "$S3_ENDPOINT/"; do
      kill -0 "$MOTO_PID" 2>/dev/null || die "moto_server exited: $(tail -n 5 "$S3W/moto.log")"
      [ $SECONDS -lt $deadline ] || die "moto_server did not answer on port $port"
      sleep 0.2
    done
    S3_SERVER="moto $(python3 -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || echo '?') at $S3_ENDPOINT (private, pid $MOTO_PID)"
  fi
  info "server: $S3_SERVER; bucket $S3_BUCKET; key prefix $S3_PREFIX/"

  cat >"$RCLONE_CONF" <<EOF
[bench]
type = s3
provider = Other
env_auth = false
access_key_id = $S3_KEY
secret_access_key = $S3_SECRET
endpoint = $S3_ENDPOINT
region = $S3_REGION
force_path_style = true
EOF
  chmod 600 "$RCLONE_CONF"
  printf '%s:%s\n' "$S3_KEY" "$S3_SECRET" >"$S3FS_PASSWD"
  chmod 600 "$S3FS_PASSWD"
  rclone_cmd mkdir "bench:$S3_BUCKET" || die "cannot create bucket $S3_BUCKET"
  S3_READY=1
}

s3_part() {
  section "S3: tools"
  ensure_packages s3fs
  s3_server
  python3 - "$S3W/storgate.json" "$S3W/state" "$S3_BUCKET" "$S3_ENDPOINT" "$S3_REGION" "$S3_KEY" "$S3_SECRET" "$S3_PREFIX" <<'PY'
import json, sys
out, state, bucket, endpoint, region, key, secret, prefix = sys.argv[1:]
cfg = {
    "stateDir": state,
    "aws_s3": [{"name": "s3", "bucket": bucket, "endpoint": endpoint, "forcePathStyle": True,
                "region": region, "accessKeyId": key, "secretAccessKey": secret,
                "metadataTtl": 1, "timeout": 30}],
    "buckets": [{"meta": {"name": "bench"},
                 "mounts": [{"mountPoint": None, "originPath": f"s3@aws_s3/{prefix}"}]}],
}
with open(out, "w") as f:
    json.dump(cfg, f, indent=2)
PY
  chmod 600 "$S3W/storgate.json"
  "$BIN" check --config "$S3W/storgate.json" >/dev/null

  section "S3: fixture of $S3_LIST objects (uploaded with rclone copy)"
  python3 "$HELPER" flat "$S3W/list-src" "$S3_LIST" 1024
  local t0
  t0=$(now)
  rclone_cmd copy "$S3W/list-src" "bench:$S3_BUCKET/$S3_PREFIX/list" --transfers 32 --checkers 32
  info "uploaded in $(elapsed "$t0" "$(now)") s"
  [ "$(s3_objects list)" = "$S3_LIST" ] || die "the fixture has $(s3_objects list) objects, not $S3_LIST"
  rm -rf "$S3W/list-src"

  local t
  for t in "${TOOLS[@]}"; do
    mount_tool "$t"
    mkdir -p "$S3W/mnt-$t/w-$t"
    ok "$t mounted at $S3W/mnt-$t"
  done

  # name;unit;amount;function;argument
  local BENCHES=(
    "seq write ${S3_MIB} MiB (dd fsync, until stored);MiB/s;$S3_MIB;s_write;"
    "seq read ${S3_MIB} MiB, after remount;MiB/s;$S3_MIB;s_read;"
    "ls -l | wc -l, ${S3_LIST} objects, after remount;objects/s;$S3_LIST;s_list;ls"
    "find | wc -l, ${S3_LIST} objects, after remount;objects/s;$S3_LIST;s_list;find"
    "create+write+close ${S3_CREATES} x 4 KiB, until stored;files/s;$S3_CREATES;s_creates;"
  )
  local -A T
  local run i name unit amount fn arg tv
  for ((run = 1; run <= S3_RUNS; run++)); do
    section "S3: run $run of $S3_RUNS"
    for i in "${!BENCHES[@]}"; do
      IFS=';' read -r name _ _ fn arg <<<"${BENCHES[$i]}"
      for t in "${TOOLS[@]}"; do
        # shellcheck disable=SC2086 # $arg is empty or one word
        tv=$($fn "$t" $arg)
        T[$i,$t]="${T[$i,$t]:-} $tv"
        printf '   %-50s %-8s %8.3f s\n' "$name" "$t" "$tv"
      done
    done
  done

  {
    echo
    echo "== S3: storgate vs s3fs $(s3fs --version 2>/dev/null | grep -o 'V[0-9][0-9.]*' | head -n 1) and rclone $(rclone version 2>/dev/null | head -n 1 | awk '{print $2}') mount  (runs=$S3_RUNS, median shown)"
    echo "server: $S3_SERVER; bucket $S3_BUCKET, prefix $S3_PREFIX/"
    echo "storgate: metadataTtl 1 s; s3fs: defaults + use_path_request_style; rclone: --vfs-cache-mode writes --vfs-write-back 0s"
    echo "ratio = storgate time / other time (below 1.00 = storgate faster, 2.00 = storgate twice as slow)"
    echo "note: storgate's listings answer from LIST plus its attribute index, s3fs and rclone HEAD every object for ls -l; for objects"
    echo "      it has not seen, storgate shows default modes and LastModified times (doc/SEMANTICS.md, Attributes in listings)"
    echo
    printf '%-50s | %-24s | %-24s | %-24s | %-8s | %s\n' benchmark storgate s3fs rclone "÷ s3fs" "÷ rclone"
    printf '%s-+-%s-+-%s-+-%s-+-%s-+-%s\n' "${dashes}------" "${dashes:0:24}" "${dashes:0:24}" "${dashes:0:24}" -------- --------
    local m cell
    for i in "${!BENCHES[@]}"; do
      IFS=';' read -r name unit amount _ _ <<<"${BENCHES[$i]}"
      declare -A M=()
      for t in "${TOOLS[@]}"; do
        # shellcheck disable=SC2086 # word lists of numbers
        M[$t]=$(median ${T[$i,$t]})
      done
      printf '%-50s' "$name"
      for t in "${TOOLS[@]}"; do
        m=${M[$t]}
        cell=$(printf '%.2f s (%s %s)' "$m" "$(rate "$amount" "$m")" "$unit")
        printf ' | %-24s' "$cell"
      done
      printf ' | %-8s | %s\n' "$(ratio "${M[storgate]}" "${M[s3fs]}")" "$(ratio "${M[storgate]}" "${M[rclone]}")"
    done
  } >>"$RESULTS"
  for t in "${TOOLS[@]}"; do umount_tool "$t"; done
}

# ---- events part ---------------------------------------------------------------
# storgate: a bucket with /in (local) and a hidden /out (local), onPut post ->
# workflow "copy" (function null, savePath /out/<path below /in>); the writer
# writes through the mount into /in. Baseline: the shell pipeline storgate
# replaces, on plain directories. Both sides: the same writer
# (bench-files.py writes: close time of every file) and the same observer
# (bench-files.py observe: inotify on the output directory, the time each
# output appears complete — IN_CLOSE_WRITE for cp, IN_MOVED_TO for storgate's
# temp + rename).

# baseline_copier SRC DST: the loop body of the pipeline, paths on stdin.
baseline_copier() {
  local f
  while IFS= read -r f; do
    cp -- "$f" "$2/${f#"$1"/}" || echo "baseline: cp $f failed" >&2
  done
}

# ev_wait_line FILE TEXT PID WHAT: wait until FILE has a line starting with
# TEXT, while PID lives.
ev_wait_line() {
  local deadline=$((SECONDS + 30))
  until grep -qs "^$2" "$1"; do
    kill -0 "$3" 2>/dev/null || die "$4 exited: $(cat "$1" 2>/dev/null)"
    [ $SECONDS -lt $deadline ] || die "$4 not ready after 30 s"
    sleep 0.02
  done
}

# ev_run SIDE RUN: one measurement; writes the latency line of bench-files.py
# (WRITE_S SPAN_S SEEN P50_MS P99_MS MAX_MS) to $EW/run-SIDE-RUN/result.
ev_run() {
  local side=$1 run=$2 src dst rc=0 start end inw_pid=0 copy_pid=0 obs_pid
  local d=$EW/run-$side-$run
  mkdir -p "$d"
  if [ "$side" = storgate ]; then
    src=${EV_STORGATE_IN:-$EW/mnt/in}/r$run # through the mount (watch part: the origin itself)
    dst=$EW/out-origin/r$run # where the workflow's outputs land
    mkdir "$src" "$dst"
  else
    src=$EW/bsrc/r$run
    dst=$EW/bout/r$run
    mkdir -p "$src" "$dst"
    # inotifywait -m -r -e close_write --format '%w%f' SRC | while read -r f; do cp …; done
    mkfifo "$d/pipe"
    : >"$d/inotifywait.err"
    inotifywait -m -r -e close_write --format '%w%f' "$src" 2>>"$d/inotifywait.err" >"$d/pipe" &
    inw_pid=$!
    EV_PIDS+=("$inw_pid")
    baseline_copier "$src" "$dst" <"$d/pipe" >/dev/null 2>"$d/copier.err" &
    copy_pid=$!
    EV_PIDS+=("$copy_pid")
    ev_wait_line "$d/inotifywait.err" 'Watches established' "$inw_pid" inotifywait
  fi
  python3 "$HELPER" observe "$dst" "$EV_FILES" "$d/seen" "$EV_IDLE" >"$d/observer.out" 2>"$d/observer.err" &
  obs_pid=$!
  EV_PIDS+=("$obs_pid")
  ev_wait_line "$d/observer.out" ready "$obs_pid" "the output observer"
  python3 "$HELPER" writes "$src" "$EV_FILES" "$EV_SIZE" "$d/closed" ${EV_GAP_MS:+"$EV_GAP_MS"} >"$d/writer.out" ||
    die "$side run $run: the writer failed"
  read -r start end <"$d/writer.out"
  wait "$obs_pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    warn "$side run $run: only $(wc -l <"$d/seen") of $EV_FILES outputs appeared (none for $EV_IDLE s) $(cat "$d/observer.err")"
  fi
  if [ "$side" = baseline ]; then
    kill "$inw_pid" 2>/dev/null || true
    wait "$inw_pid" 2>/dev/null || true
    wait "$copy_pid" 2>/dev/null || true
  fi
  EV_PIDS=() # all waited for: none left to stop
  python3 "$HELPER" latency "$d/closed" "$d/seen" "$start" "$end" >"$d/result"
}

events_part() {
  section "events: set up"
  ensure_packages inotify-tools
  mkdir -p "$EW"/{state,in-origin,out-origin,mnt,bsrc,bout}
  local config=$EW/storgate.json err=$EW/mount-stderr.log
  cat >"$config" <<EOF
{
  "stateDir": "$EW/state",
  "throttling": { "enable": false },
  "buckets": [
    { "meta": { "name": "ev" },
      "mounts": [
        { "mountPoint": "/in", "originPath": "$EW/in-origin" },
        { "mountPoint": "/out", "originPath": "$EW/out-origin", "expose": false }
      ],
      "events": {
        "onPut": { "enable": true, "trigger": { "workflow": "copy", "timing": "post" } }
      },
      "workflows": [
        { "name": "copy",
          "tasks": [ { "function": null, "savePath": "/out/{{ item.path | relpath(source_dir) }}" } ] }
      ] }
  ]
}
EOF
  "$BIN" check --config "$config" >/dev/null
  STORGATE_LOG=${STORGATE_LOG:-warn} "$BIN" mount --config "$config" --bucket ev "$EW/mnt" 2>"$err" ||
    die "storgate mount failed: $(cat "$err"; tail -n 5 "$EW/state/storgate.log" 2>/dev/null)"
  mountpoint -q "$EW/mnt" || die "$EW/mnt is not a mount point"
  ok "mounted bucket 'ev' at $EW/mnt: /in -> $EW/in-origin, hidden /out -> $EW/out-origin"

  local -A T
  ev_collect events
  unmount_quietly "$EW/mnt"
  wait_unmounted "$EW/mnt" 20 || warn "$EW/mnt still mounted"

  {
    echo
    echo "== events: onPut copy workflow vs an inotifywait | while read; cp loop  (runs=$RUNS, median shown)"
    echo "storgate: $EW/mnt (bucket: /in local, hidden /out local, onPut post -> copy to /out; workers ${STORGATE_WORKERS:-8 (default)}; throttling off)"
    echo "baseline: inotifywait -m -r -e close_write --format '%w%f' SRC | while read -r f; do cp \"\$f\" DST/; done  (plain directories, same fs)"
    echo "writer: $EV_FILES files of $EV_SIZE B written one after another (python); output seen = inotify IN_CLOSE_WRITE/IN_MOVED_TO on the output directory"
    echo "throughput = items / (first write -> last output); latency = close() returned -> output complete in the output directory"
    echo "(the writer does not wait for outputs: when a side copies slower than files arrive, its latency includes the queue)"
    echo "ratio = storgate / baseline (time or latency: below 1.00 = storgate faster)"
    echo
    ev_rows write span p50 p99
  } >>"$RESULTS"
}

# ev_collect WHAT: RUNS interleaved runs of ev_run (baseline, then storgate),
# their figures appended to the caller's `local -A T` (T[KEY,SIDE] = word
# list; KEY write, span, p50, p99, max; T[incomplete,SIDE] when outputs were
# missing). Also used by the watch part (notify latency).
ev_collect() {
  local run side w s n p50 p99 mx gap=""
  [ -z "${EV_GAP_MS:-}" ] || gap=", one every $EV_GAP_MS ms"
  for ((run = 1; run <= RUNS; run++)); do
    section "$1: run $run of $RUNS ($EV_FILES x $EV_SIZE B$gap)"
    for side in baseline storgate; do
      ev_run "$side" "$run"
      read -r w s n p50 p99 mx <"$EW/run-$side-$run/result"
      printf '   %-9s written in %8.3f s; %6s of %s outputs, last after %8s s; latency p50 %s ms, p99 %s ms, max %s ms\n' \
        "$side" "$w" "$n" "$EV_FILES" "$s" "$p50" "$p99" "$mx"
      [ "$n" = "$EV_FILES" ] || T[incomplete,$side]=1
      T[write,$side]="${T[write,$side]:-} $w"
      # A run with missing outputs has no throughput or latency figures.
      if [ "$n" = "$EV_FILES" ]; then
        T[span,$side]="${T[span,$side]:-} $s"
        T[p50,$side]="${T[p50,$side]:-} $p50"
        T[p99,$side]="${T[p99,$side]:-} $p99"
        T[max,$side]="${T[max,$side]:-} $mx"
      fi
    done
  done
}

# ev_rows KEY...: the table (header and one row per KEY) of what ev_collect
# put in the caller's T: baseline, storgate, ratio storgate/baseline.
ev_rows() {
  local k side m c_baseline c_storgate m_baseline m_storgate name
  printf '%-44s | %-28s | %-28s | %s\n' benchmark baseline storgate ratio
  printf '%s-+-%s-+-%s-+-%s\n' "$dashes" "${dashes:0:28}" "${dashes:0:28}" -----
  for k in "$@"; do
    case $k in
      write) name="write ${EV_FILES} x $((EV_SIZE / 1024)) KiB (writer only)" ;;
      span) name="throughput: first write -> last output" ;;
      p50) name="latency close -> output, p50" ;;
      p99) name="latency close -> output, p99" ;;
      max) name="latency close -> output, max" ;;
    esac
    for side in baseline storgate; do
      if [ -z "${T[$k,$side]:-}" ]; then
        printf -v "c_$side" '%s' "no complete run"
        continue
      fi
      # shellcheck disable=SC2086 # word lists of numbers
      m=$(median ${T[$k,$side]})
      case $k in
        write | span) printf -v "c_$side" '%.3f s (%s items/s)' "$m" "$(rate "$EV_FILES" "$m")" ;;
        *) printf -v "c_$side" '%.2f ms' "$m" ;;
      esac
      printf -v "m_$side" '%s' "$m"
    done
    if [ -n "${T[$k,baseline]:-}" ] && [ -n "${T[$k,storgate]:-}" ]; then
      printf '%-44s | %-28s | %-28s | %s\n' "$name" "$c_baseline" "$c_storgate" "$(ratio "$m_storgate" "$m_baseline")"
    else
      printf '%-44s | %-28s | %-28s | %s\n' "$name" "$c_baseline" "$c_storgate" -
    fi
  done
  for side in baseline storgate; do
    [ -z "${T[incomplete,$side]:-}" ] ||
      echo "NOTE: $side: some runs did not produce all $EV_FILES outputs (none new for $EV_IDLE s); their throughput and latency are left out"
  done
}

# ---- batch part ----------------------------------------------------------------
# `storgate batch run BUCKET 0` (one onBatch scan in the foreground, no FUSE
# mount) with a no-op workflow, against the plain listing it has to do at the
# least: `find -type f | wc -l` on the same local tree, and a recursive
# ListObjects of the same S3 prefix (rclone lsf, what the s3 part uses to ask
# the server directly).

# bt_write_config FILE STATE_DIR ORIGIN [S3_JSON]: a bucket "bb" with one root
# mount of ORIGIN (a local directory, or s3@aws_s3/PREFIX with the aws_s3
# entry S3_JSON) and one onBatch scan of /scan (recursive) into the workflow
# "noop" ("tasks": []). The schedule only matters to a daemon; batch run
# ignores it.
bt_write_config() {
  local s3=""
  [ -z "${4:-}" ] || s3=$'\n'"  \"aws_s3\": [ $4 ],"
  cat >"$1" <<EOF
{
  "stateDir": "$2",
  "throttling": { "enable": false },$s3
  "buckets": [
    { "meta": { "name": "bb" },
      "mounts": [ { "mountPoint": null, "originPath": "$3" } ],
      "events": {
        "onBatch": [
          { "enable": true, "path": "/scan", "schedule": "0 0 1 1 *",
            "chunkSize": $BATCH_CHUNK, "cursor": "continue", "filter": { "recursive": true },
            "trigger": { "workflow": "noop" } }
        ]
      },
      "workflows": [ { "name": "noop", "tasks": [] } ] }
  ]
}
EOF
  chmod 600 "$1"
  "$BIN" check --config "$1" >/dev/null || die "storgate check rejects $1"
}

# bt_scan CONFIG STATE_DIR WANT cold|warm: one `storgate batch run`; prints
# "WALL_S SCAN_S" (wall time of the command, the elapsed it reports itself).
bt_scan() {
  local out t0 t1 m c a sk ch el rc=0
  [ "$4" = cold ] && drop_caches
  t0=$(now)
  out=$("$BIN" batch run --config "$1" bb 0 2>>"$BW/batch-run.log") || rc=$?
  t1=$(now)
  [ $rc = 0 ] || die "storgate batch run exited $rc: $out $(tail -n 5 "$BW/batch-run.log")"
  read -r m c a sk ch el < <(sed -nE 's/^scan bb\[0\] [^:]*: matched ([0-9]+), completed ([0-9]+), aborted ([0-9]+), skipped ([0-9]+), chunks ([0-9]+), elapsed ([0-9.]+)s$/\1 \2 \3 \4 \5 \6/p' <<<"$out")
  [ -n "${el:-}" ] || die "unexpected summary from storgate batch run: $out"
  if [ "$m" != "$3" ] || [ "$c" != "$3" ] || [ "$a" != 0 ] || [ "$sk" != 0 ] ||
    [ "$ch" != $((($3 + BATCH_CHUNK - 1) / BATCH_CHUNK)) ]; then
    warn "batch run: $out (expected $3 matched and completed in chunks of $BATCH_CHUNK)"
  fi
  [ ! -e "$2/cursors/bb.0.json" ] || warn "batch run left its cursor behind: $2/cursors/bb.0.json"
  echo "$(elapsed "$t0" "$t1") $el"
}

# bt_find DIR WANT cold|warm: find DIR -type f | wc -l; prints seconds.
bt_find() {
  local t0 t1 n
  [ "$3" = cold ] && drop_caches
  t0=$(now)
  n=$(find "$1" -type f | wc -l)
  t1=$(now)
  [ "$n" = "$2" ] || warn "find -type f in $1 counted $n files, expected $2"
  elapsed "$t0" "$t1"
}

# bt_list WANT: rclone lsf -R --files-only --fast-list of the S3 fixture
# (ListObjects pages, nothing else); prints seconds.
bt_list() {
  local t0 t1 n
  t0=$(now)
  n=$(rclone_cmd lsf -R --files-only --fast-list "bench:$S3_BUCKET/$S3_PREFIX/batch/scan/" | wc -l)
  t1=$(now)
  [ "$n" = "$1" ] || warn "rclone lsf counted $n objects, expected $1"
  elapsed "$t0" "$t1"
}

# bt_requests FROM_LINE: the S3 requests moto logged from line FROM_LINE on,
# as "N LIST, N GET, N HEAD, N other" (moto only; empty on another server).
bt_requests() {
  [ -n "$MOTO_PID" ] || return 0
  tail -n "+$1" "$S3W/moto.log" | awk -v b="/$S3_BUCKET" '
    $0 ~ /"(GET|HEAD|PUT|POST|DELETE) / {
      match($0, /"[A-Z]+ [^ ]+/); r = substr($0, RSTART + 1, RLENGTH - 1); split(r, w, " ")
      if (w[1] == "GET" && (w[2] == b || w[2] ~ "^" b "[/]?[?]")) list++
      else if (w[1] == "GET") get++
      else if (w[1] == "HEAD") head++
      else other++
    }
    END { printf "%d LIST, %d GET, %d HEAD, %d other", list, get, head, other }'
}
moto_lines() { if [ -n "$MOTO_PID" ]; then wc -l <"$S3W/moto.log"; else echo 0; fi; }

batch_part() {
  local -A T
  local run mode side tv w el n0 req_storgate="" req_list=""
  local items=$((BATCH_DIRS * BATCH_FILES))
  local workers=${STORGATE_WORKERS:-8}
  section "batch: local tree of $BATCH_DIRS dirs x $BATCH_FILES files = $items files"
  mkdir -p "$BW/origin"
  python3 "$HELPER" tree "$BW/origin/scan" "$BATCH_DIRS" "$BATCH_FILES"
  sync
  bt_write_config "$BW/local.json" "$BW/local-state" "$BW/origin"
  ok "config $BW/local.json: bucket bb, / -> $BW/origin, onBatch /scan -> workflow noop (tasks: [])"
  for ((run = 1; run <= RUNS; run++)); do
    section "batch local: run $run of $RUNS"
    for mode in cold warm; do
      tv=$(bt_find "$BW/origin/scan" "$items" "$mode")
      T[find,$mode]="${T[find,$mode]:-} $tv"
      printf '   %-36s %-5s %8.3f s\n' "find -type f | wc -l" "$mode" "$tv"
    done
    for mode in cold warm; do
      read -r w el < <(bt_scan "$BW/local.json" "$BW/local-state" "$items" "$mode")
      T[scan,$mode]="${T[scan,$mode]:-} $w"
      T[own,$mode]="${T[own,$mode]:-} $el"
      printf '   %-36s %-5s %8.3f s (scan elapsed %s s)\n' "storgate batch run" "$mode" "$w" "$el"
    done
  done

  local s3=0
  if [ "$BATCH_S3_OBJECTS" -gt 0 ]; then
    s3=1
    s3_server
    section "batch S3: fixture of $BATCH_S3_OBJECTS objects (uploaded with rclone copy)"
    python3 "$HELPER" flat "$BW/s3-src" "$BATCH_S3_OBJECTS" 1024
    local t0
    t0=$(now)
    rclone_cmd copy "$BW/s3-src" "bench:$S3_BUCKET/$S3_PREFIX/batch/scan" --transfers 32 --checkers 32
    info "uploaded in $(elapsed "$t0" "$(now)") s"
    [ "$(s3_objects batch/scan)" = "$BATCH_S3_OBJECTS" ] || die "the fixture has $(s3_objects batch/scan) objects, not $BATCH_S3_OBJECTS"
    rm -rf "$BW/s3-src"
    # Bucket root = PREFIX/batch, so the scan path /scan = PREFIX/batch/scan/.
    bt_write_config "$BW/s3.json" "$BW/s3-state" "s3@aws_s3/$S3_PREFIX/batch" "$(printf '{ "name": "s3", "bucket": "%s", "endpoint": "%s", "forcePathStyle": true, "region": "%s", "accessKeyId": "%s", "secretAccessKey": "%s", "timeout": 30 }' \
      "$S3_BUCKET" "$S3_ENDPOINT" "$S3_REGION" "$S3_KEY" "$S3_SECRET")"
    for ((run = 1; run <= S3_RUNS; run++)); do
      section "batch S3: run $run of $S3_RUNS"
      n0=$(($(moto_lines) + 1))
      tv=$(bt_list "$BATCH_S3_OBJECTS")
      [ "$run" -gt 1 ] || req_list=$(bt_requests "$n0")
      T[list,s3]="${T[list,s3]:-} $tv"
      printf '   %-36s %8.3f s\n' "rclone lsf -R --files-only" "$tv"
      n0=$(($(moto_lines) + 1))
      read -r w el < <(bt_scan "$BW/s3.json" "$BW/s3-state" "$BATCH_S3_OBJECTS" warm)
      [ "$run" -gt 1 ] || req_storgate=$(bt_requests "$n0")
      T[scan,s3]="${T[scan,s3]:-} $w"
      T[own,s3]="${T[own,s3]:-} $el"
      printf '   %-36s %8.3f s (scan elapsed %s s)\n' "storgate batch run" "$w" "$el"
    done
  fi

  {
    echo
    echo "== batch: storgate batch run (one onBatch scan, no-op workflow) vs a plain listing  (runs=$RUNS local, $S3_RUNS S3; median shown)"
    echo "scan: onBatch path /scan, filter {recursive: true}, chunkSize $BATCH_CHUNK, cursor continue, throttling off, $workers workers;"
    echo "      workflow \"noop\" with \"tasks\": [] (storgate check accepts it: each item completes without writing anything)"
    echo "time = wall time of the command (process start to exit, as for the baseline); scan = the elapsed storgate batch run prints"
    echo "ratio = storgate time / baseline time (2.00 = storgate takes twice as long)"
    echo "local: $BATCH_DIRS dirs x $BATCH_FILES empty files (bench-files.py tree) in $BW/origin/scan; bucket with one local root mount;"
    echo "       baseline find PATH -type f | wc -l; cold = after drop_caches, warm = right after"
    echo
    printf '%-40s | %-32s | %-30s | %-5s | %s\n' benchmark baseline "storgate batch run" ratio scan
    printf '%s-+-%s-+-%s-+-%s-+-%s\n' "${dashes:0:40}" "${dashes:0:32}" "${dashes:0:30}" ----- --------
    local mb ms mo cb cs
    for mode in cold warm; do
      # shellcheck disable=SC2086 # word lists of numbers
      mb=$(median ${T[find,$mode]})
      # shellcheck disable=SC2086
      ms=$(median ${T[scan,$mode]})
      # shellcheck disable=SC2086
      mo=$(median ${T[own,$mode]})
      cb=$(printf 'find: %.3f s (%s files/s)' "$mb" "$(rate "$items" "$mb")")
      cs=$(printf '%.3f s (%s items/s)' "$ms" "$(rate "$items" "$ms")")
      printf '%-40s | %-32s | %-30s | %-5s | %.2f s\n' "local, $items files, $mode" "$cb" "$cs" "$(ratio "$ms" "$mb")" "$mo"
    done
    if [ $s3 = 1 ]; then
      # shellcheck disable=SC2086
      mb=$(median ${T[list,s3]})
      # shellcheck disable=SC2086
      ms=$(median ${T[scan,s3]})
      # shellcheck disable=SC2086
      mo=$(median ${T[own,s3]})
      cb=$(printf 'rclone: %.3f s (%s obj/s)' "$mb" "$(rate "$BATCH_S3_OBJECTS" "$mb")")
      cs=$(printf '%.3f s (%s items/s)' "$ms" "$(rate "$BATCH_S3_OBJECTS" "$ms")")
      printf '%-40s | %-32s | %-30s | %-5s | %.2f s\n' "S3, $BATCH_S3_OBJECTS objects" "$cb" "$cs" "$(ratio "$ms" "$mb")" "$mo"
      echo
      echo "S3: $BATCH_S3_OBJECTS objects of 1 KiB under $S3_PREFIX/batch/scan/ on $S3_SERVER; bucket with one root mount of $S3_PREFIX/batch"
      echo "    (no FUSE mount: batch run reads the origin itself); baseline rclone lsf -R --files-only --fast-list (ListObjects pages only)"
      if [ -n "$req_storgate" ]; then
        echo "    requests moto logged in run 1: rclone lsf: $req_list; storgate batch run: $req_storgate"
      fi
    fi
  } >>"$RESULTS"
}

# ---- watch part ----------------------------------------------------------------
# What change detection (SPEC §4.5) costs and how fast it delivers:
#  - poll cost: a daemon with watch {mode: poll} and an onPut event (no-op
#    workflow) on an origin that does not change, beside the same daemon with
#    watch {mode: off} on the same origin; per round: the "poll round" DEBUG
#    line's elapsed_ms (target storgate::watch), CPU = utime+stime of
#    /proc/PID/stat sampled after the first (baseline) round and after the
#    last one, divided by the rounds; memory = VmHWM. Baseline, right after
#    each round (interleaved): the plain listing a round cannot do without —
#    find ORIGIN -printf '%s %T@\n' | wc -l (walk + stat), or one paginated
#    ListObjectsV2 of the prefix (boto3).
#  - notify latency: files written straight into the origin of a /in mount
#    with watch {mode: notify} (not through the mount), onPut post -> copy to
#    a hidden /out; the events part's writer, observer and inotifywait | cp
#    baseline (ev_run), the writer pausing between files.
# The daemons run as `storgate mount -f` in the background: their PIDs are
# ours to sample, and unmounting ends them.

# wt_start CONFIG BUCKET MNT LOG FILTER: storgate mount -f (log filter
# STORGATE_LOG=FILTER, stderr to LOG) in the background; sets WT_PID once MNT
# is a mount point.
wt_start() {
  mkdir -p "$3"
  STORGATE_LOG=$5 "$BIN" mount -f --config "$1" --bucket "$2" "$3" 2>>"$4" &
  WT_PID=$!
  WATCH_PIDS+=("$WT_PID")
  WATCH_MNTS+=("$3")
  local deadline=$((SECONDS + 60))
  until mountpoint -q "$3"; do
    kill -0 "$WT_PID" 2>/dev/null || die "storgate mount -f $3 exited: $(tail -n 5 "$4")"
    [ $SECONDS -lt $deadline ] || die "$3 did not become a mount point: $(tail -n 5 "$4")"
    sleep 0.1
  done
}

# wt_stop_all: unmount every daemon of the watch part (each then exits) and
# wait for it; a daemon still there after 30 s gets SIGTERM.
wt_stop_all() {
  local m p deadline
  for m in "${WATCH_MNTS[@]}"; do unmount_quietly "$m"; done
  for m in "${WATCH_MNTS[@]}"; do wait_unmounted "$m" 30 || warn "$m still mounted"; done
  for p in "${WATCH_PIDS[@]}"; do
    deadline=$((SECONDS + 30))
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  WATCH_PIDS=()
  WATCH_MNTS=()
}

# wt_cpu PID: user+sys CPU seconds of the process (all its threads) so far.
wt_cpu() { awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"; }
# wt_mem PID FIELD: FIELD (VmHWM, VmRSS) of /proc/PID/status in KiB.
wt_mem() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# A round's line (not "poll round failed…"): message, then the fields.
WT_ROUND='poll round .*[[:space:]]elapsed_ms='
# wt_round LOG N FIELD: FIELD (elapsed_ms, entries, fired, pending) of the
# N-th "poll round" line of LOG; empty while there is none.
wt_round() {
  { grep -E "$WT_ROUND" "$1" 2>/dev/null || true; } | sed -n "$2p" | sed -nE "s/.*[[:space:]]$3=\"?([0-9.]+).*/\1/p"
}
wt_rounds() { grep -c -E "$WT_ROUND" "$1" 2>/dev/null || true; }
# wt_wait_round LOG N PID SECONDS: wait until LOG has N "poll round" lines.
wt_wait_round() {
  local deadline=$((SECONDS + $4))
  until [ "$(wt_rounds "$1")" -ge "$2" ]; do
    kill -0 "$3" 2>/dev/null || die "the polling daemon exited: $(tail -n 5 "$1")"
    [ $SECONDS -lt $deadline ] ||
      die "no poll round $2 within $4 s (is this a build with change detection? see $1: $(grep -c . "$1") lines)"
    sleep 0.05
  done
}

# wt_config FILE STATE ORIGIN WATCH_JSON [AWS_S3_JSON]: bucket "wp" with one
# root mount of ORIGIN (watch WATCH_JSON), onPut post -> workflow "noop".
wt_config() {
  local s3=""
  [ -z "${5:-}" ] || s3=$'\n'"  \"aws_s3\": [ $5 ],"
  cat >"$1" <<EOJ
{
  "stateDir": "$2",
  "throttling": { "enable": false },$s3
  "buckets": [
    { "meta": { "name": "wp" },
      "mounts": [ { "mountPoint": null, "originPath": "$3", "watch": $4 } ],
      "events": { "onPut": { "enable": true, "trigger": { "workflow": "noop", "timing": "post" } } },
      "workflows": [ { "name": "noop", "tasks": [] } ] }
  ]
}
EOJ
  chmod 600 "$1"
  "$BIN" check --config "$1" >/dev/null || die "storgate check rejects $1"
}

# wt_poll KIND ORIGIN INTERVAL ROUNDS EXPECT BASELINE_CMD... [AWS_S3_JSON in
# WT_S3_JSON]: the poll-cost measurement of one origin. KIND (local, s3) names
# the files and the keys of the global W: W[KIND,round|cpu_b|base|base_cpu]
# word lists, W[KIND,first|cpu|cpu_off|hwm|hwm_off|rss|rss_off|entries|...].
# BASELINE_CMD prints "WALL_S CPU_S COUNT"; COUNT must be EXPECT.
wt_poll() {
  local kind=$1 origin=$2 interval=$3 rounds=$4 expect=$5
  shift 5
  local log=$WW/$kind-poll.log log_off=$WW/$kind-off.log pid pid_off r k wall cpu n
  local c0 c1 o0 o1 t0 t1 overlap=0
  wt_config "$WW/$kind-poll.json" "$WW/$kind-poll-state" "$origin" "{ \"mode\": \"poll\", \"intervalSeconds\": $interval }" "${WT_S3_JSON:-}"
  wt_config "$WW/$kind-off.json" "$WW/$kind-off-state" "$origin" '{ "mode": "off" }' "${WT_S3_JSON:-}"
  : >"$log"
  : >"$log_off"
  wt_start "$WW/$kind-off.json" wp "$WW/$kind-mnt-off" "$log_off" "${STORGATE_LOG:-warn}"
  pid_off=$WT_PID
  wt_start "$WW/$kind-poll.json" wp "$WW/$kind-mnt-poll" "$log" "${STORGATE_LOG:-warn},storgate::watch=debug"
  pid=$WT_PID
  ok "$kind: daemons up: watch poll every $interval s (pid $pid), watch off (pid $pid_off)"
  # The first round of a fresh snapshot is the baseline: it builds the snapshot.
  wt_wait_round "$log" 1 "$pid" $((interval * 3 + 600))
  W[$kind,first]=$(wt_round "$log" 1 elapsed_ms)
  info "round 1 (baseline, builds the snapshot): $(grep -E "$WT_ROUND" "$log" | sed -n 1p | sed -E 's/.*poll round/poll round/')"
  c0=$(wt_cpu "$pid")
  o0=$(wt_cpu "$pid_off")
  t0=$(now)
  for ((r = 2; r <= rounds + 1; r++)); do
    # The baseline right after a round: both see the same (warm) state, and
    # it runs while the daemon waits for its next round.
    read -r wall cpu n < <("$@")
    [ "$n" = "$expect" ] || warn "$kind baseline counted $n, expected $expect"
    [ "$(wt_rounds "$log")" -lt "$r" ] || overlap=1
    W[$kind,base]="${W[$kind,base]:-} $wall"
    W[$kind,base_cpu]="${W[$kind,base_cpu]:-} $cpu"
    wt_wait_round "$log" "$r" "$pid" $((interval * 3 + 600))
    k=$(wt_round "$log" "$r" elapsed_ms)
    [ -n "$k" ] || die "no elapsed_ms in poll round $r: $(grep -E "$WT_ROUND" "$log" | sed -n "${r}p")"
    W[$kind,round]="${W[$kind,round]:-} $(awk -v m="$k" 'BEGIN { printf "%.6f", m / 1000 }')"
    printf '   %-6s round %2d: %8.3f s (entries %s, fired %s, pending %s); baseline %8.3f s, CPU %6.3f s\n' \
      "$kind" "$r" "$(awk -v m="$k" 'BEGIN { print m / 1000 }')" "$(wt_round "$log" "$r" entries)" \
      "$(wt_round "$log" "$r" fired)" "$(wt_round "$log" "$r" pending)" "$wall" "$cpu"
  done
  c1=$(wt_cpu "$pid")
  o1=$(wt_cpu "$pid_off")
  t1=$(now)
  W[$kind,cpu]=$(awk -v a="$c0" -v b="$c1" -v n="$rounds" 'BEGIN { printf "%.3f", (b - a) / n }')
  W[$kind,cpu_off]=$(awk -v a="$o0" -v b="$o1" -v n="$rounds" 'BEGIN { printf "%.3f", (b - a) / n }')
  W[$kind,window]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  W[$kind,hwm]=$(wt_mem "$pid" VmHWM)
  W[$kind,hwm_off]=$(wt_mem "$pid_off" VmHWM)
  W[$kind,rss]=$(wt_mem "$pid" VmRSS)
  W[$kind,rss_off]=$(wt_mem "$pid_off" VmRSS)
  W[$kind,entries]=$(wt_round "$log" $((rounds + 1)) entries)
  W[$kind,fired]=$(grep -E "$WT_ROUND" "$log" | sed -nE 's/.*[[:space:]]fired=([0-9]+).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
  W[$kind,snap]=$(du -sk "$WW/$kind-poll-state/watch" 2>/dev/null | cut -f1)
  W[$kind,overlap]=$overlap
  W[$kind,failed]=$(grep -c -F 'poll round failed' "$log" || true)
  W[$kind,interval]=$interval
  W[$kind,rounds]=$rounds
  wt_stop_all
  cp "$log" "$OUT_DIR/watch-$kind-poll.log" # the work directory goes at the end
}

# wt_poll_rows KIND WHAT BASELINE_NAME: the table rows of wt_poll's figures.
wt_poll_rows() {
  local kind=$1 what=$2 bname=$3 mr mb mc mbc
  # shellcheck disable=SC2086 # word lists of numbers
  mr=$(median ${W[$kind,round]})
  # shellcheck disable=SC2086
  mb=$(median ${W[$kind,base]})
  # shellcheck disable=SC2086
  mbc=$(median ${W[$kind,base_cpu]})
  mc=${W[$kind,cpu]}
  printf '%-50s | %-30s | %-30s | %s\n' "$what: time per round" "$(printf '%s %.3f s' "$bname" "$mb")" \
    "$(printf 'poll %.3f s' "$mr")" "$(ratio "$mr" "$mb")"
  printf '%-50s | %-30s | %-30s | %s\n' "$what: CPU per round (user+sys)" "$(printf '%s %.3f s' "$bname" "$mbc")" \
    "$(printf 'poll %.3f s (off: %.3f s)' "$mc" "${W[$kind,cpu_off]}")" \
    "$(awk -v a="$mc" -v b="$mbc" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
  printf '%-50s | %-30s | %-30s | %s\n' "$what: peak memory (VmHWM)" "$(printf 'watch off %s MiB' "$(mib "${W[$kind,hwm_off]}")")" \
    "$(printf 'poll %s MiB' "$(mib "${W[$kind,hwm]}")")" "$(ratio "${W[$kind,hwm]}" "${W[$kind,hwm_off]}")"
  printf '%-50s | %-30s | %-30s | %s\n' "$what: round 1 (builds the snapshot)" - \
    "$(awk -v m="${W[$kind,first]}" 'BEGIN { printf "poll %.3f s", m / 1000 }')" "$(ratio "$(awk -v m="${W[$kind,first]}" 'BEGIN { print m / 1000 }')" "$mb")"
}

watch_part() {
  local -A W
  local local_expect s3=0 s3_n=0 interval t0 wall cpu n put_s stored
  section "watch: poll cost, local origin of $WATCH_DIRS dirs x $WATCH_FILES files"
  mkdir -p "$WW/origin"
  # mtimes an hour old: no file is "still being written" (mtime within the
  # interval), every round sees a settled origin.
  python3 "$HELPER" tree "$WW/origin/tree" "$WATCH_DIRS" "$WATCH_FILES" 3600
  sync
  local_expect=$((WATCH_DIRS * WATCH_FILES + WATCH_DIRS + 2)) # + tree/ and the origin itself
  read -r wall cpu n < <(python3 "$HELPER" find-stat "$WW/origin")
  [ "$n" = "$local_expect" ] || die "find counted $n entries in $WW/origin, expected $local_expect"
  interval=$WATCH_INTERVAL
  [ "$interval" != auto ] || interval=$(awk -v f="$wall" 'BEGIN { i = int(6 * f) + 2; print (i < 5 ? 5 : i) }')
  info "find -printf: $wall s for $n entries (untimed warm-up); interval $interval s"
  wt_poll local "$WW/origin" "$interval" "$WATCH_ROUNDS" "$local_expect" python3 "$HELPER" find-stat "$WW/origin"

  if [ "$WATCH_S3_OBJECTS" -gt 0 ]; then
    s3=1
    s3_server
    if ! python3 -c 'import boto3' 2>/dev/null; then
      ensure_python_pip
      python3 -m pip install -q --disable-pip-version-check boto3 </dev/null ||
        python3 -m pip install -q --disable-pip-version-check --break-system-packages boto3 </dev/null ||
        die "pip install boto3 failed"
    fi
    local wprefix=$S3_PREFIX/watch/
    section "watch: poll cost, S3 prefix of $WATCH_S3_OBJECTS objects (boto3 puts, at most $WATCH_S3_BUDGET s)"
    read -r stored put_s < <(AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_DEFAULT_REGION=$S3_REGION \
      python3 "$HELPER" s3-put "$S3_ENDPOINT" "$S3_BUCKET" "$wprefix" "$WATCH_S3_OBJECTS" 64 "$WATCH_S3_BUDGET") ||
      die "the S3 puts failed"
    read -r wall cpu s3_n < <(AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_DEFAULT_REGION=$S3_REGION \
      python3 "$HELPER" s3-list "$S3_ENDPOINT" "$S3_BUCKET" "$wprefix")
    [ "$s3_n" = "$stored" ] || die "the prefix lists $s3_n objects, $stored were put"
    info "put $stored objects in $put_s s ($(rate "$stored" "$put_s") objects/s)"
    [ "$stored" = "$WATCH_S3_OBJECTS" ] ||
      warn "the S3 server took only $stored of $WATCH_S3_OBJECTS objects in $WATCH_S3_BUDGET s: measuring $stored"
    interval=$WATCH_S3_INTERVAL
    [ "$interval" != auto ] || interval=$(awk -v f="$wall" 'BEGIN { i = int(4 * f) + 2; print (i < 5 ? 5 : i) }')
    info "ListObjectsV2: $wall s for $s3_n keys (untimed warm-up); interval $interval s"
    WT_S3_JSON=$(printf '{ "name": "s3", "bucket": "%s", "endpoint": "%s", "forcePathStyle": true, "region": "%s", "accessKeyId": "%s", "secretAccessKey": "%s", "timeout": 60 }' \
      "$S3_BUCKET" "$S3_ENDPOINT" "$S3_REGION" "$S3_KEY" "$S3_SECRET")
    wt_poll s3 "s3@aws_s3/$S3_PREFIX/watch" "$interval" "$WATCH_S3_ROUNDS" "$s3_n" \
      env AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" AWS_DEFAULT_REGION="$S3_REGION" \
      python3 "$HELPER" s3-list "$S3_ENDPOINT" "$S3_BUCKET" "$wprefix"
    WT_S3_JSON=""
  fi

  section "watch: notify latency, $WATCH_EV_FILES files written into the origin"
  ensure_packages inotify-tools
  local -A T
  local EW=$WW/notify EV_FILES=$WATCH_EV_FILES EV_GAP_MS=$WATCH_EV_GAP_MS EV_STORGATE_IN=$WW/notify/in-origin
  mkdir -p "$EW"/{state,in-origin,out-origin,mnt,bsrc,bout}
  cat >"$EW/storgate.json" <<EOJ
{
  "stateDir": "$EW/state",
  "throttling": { "enable": false },
  "buckets": [
    { "meta": { "name": "wn" },
      "mounts": [
        { "mountPoint": "/in", "originPath": "$EW/in-origin", "watch": { "mode": "notify" } },
        { "mountPoint": "/out", "originPath": "$EW/out-origin", "expose": false, "watch": { "mode": "off" } }
      ],
      "events": {
        "onPut": { "enable": true, "trigger": { "workflow": "copy", "timing": "post" } }
      },
      "workflows": [
        { "name": "copy",
          "tasks": [ { "function": null, "savePath": "/out/{{ item.path | relpath(source_dir) }}" } ] }
      ] }
  ]
}
EOJ
  "$BIN" check --config "$EW/storgate.json" >/dev/null || die "storgate check rejects $EW/storgate.json"
  wt_start "$EW/storgate.json" wn "$EW/mnt" "$EW/storgate.log" "${STORGATE_LOG:-warn}"
  ok "bucket 'wn' at $EW/mnt: /in -> $EW/in-origin (watch notify; written directly), hidden /out -> $EW/out-origin"
  ev_collect "watch notify"
  wt_stop_all

  {
    echo
    echo "== watch: change detection — poll cost and notify latency  (median shown)"
    echo "poll: a daemon with watch {mode: poll} and onPut post -> a no-op workflow, beside the same daemon with watch {mode: off} on the"
    echo "      same origin; nothing changes between rounds (all files an hour old). time = elapsed_ms of the \"poll round\" DEBUG line;"
    echo "      CPU = user+sys of the daemon (/proc/PID/stat) from the end of the first round to the end of the last, / rounds;"
    echo "      memory = VmHWM of each daemon at the end. Baseline right after each round (interleaved, same warm state)."
    echo "      ratio = poll / baseline (memory: poll / watch off)"
    echo "local: $((WATCH_DIRS * WATCH_FILES)) empty files in $WATCH_DIRS dirs ($local_expect entries) at $WW/origin; interval ${W[local,interval]} s, ${W[local,rounds]} rounds;"
    printf '%s\n' "       baseline find ORIGIN -printf '%s %T@\\n' | wc -l (walk + stat; CPU of the pipeline)"
    if [ $s3 = 1 ]; then
      echo "S3:    $s3_n objects of 64 B under $S3_PREFIX/watch/ on $S3_SERVER; interval ${W[s3,interval]} s, ${W[s3,rounds]} rounds;"
      echo "       baseline one full paginated ListObjectsV2 with boto3 (CPU of that python process; the server's CPU is in neither)"
      [ "$s3_n" = "$WATCH_S3_OBJECTS" ] ||
        echo "NOTE:  the S3 server stored only $s3_n of $WATCH_S3_OBJECTS objects within $WATCH_S3_BUDGET s of parallel puts (${put_s} s, $(rate "$s3_n" "$put_s") objects/s): figures are for $s3_n"
    fi
    echo
    printf '%-50s | %-30s | %-30s | %s\n' benchmark baseline storgate ratio
    printf '%s-+-%s-+-%s-+-%s\n' "${dashes}------" "${dashes:0:30}" "${dashes:0:30}" -----
    wt_poll_rows local "local, $((WATCH_DIRS * WATCH_FILES)) files" find
    [ $s3 = 0 ] || wt_poll_rows s3 "S3, $s3_n objects" list
    echo
    echo "entries per round (logged): local ${W[local,entries]:-?}${W[s3,entries]:+, S3 ${W[s3,entries]}}; events fired by the rounds: local ${W[local,fired]}${W[s3,fired]:+, S3 ${W[s3,fired]}} (0 expected)"
    echo "snapshot on disk (du of stateDir/watch): local ${W[local,snap]:-?} KiB${W[s3,window]:+, S3 ${W[s3,snap]:-?} KiB}"
    echo "measured window (end of round 1 -> end of the last): local ${W[local,window]} s${W[s3,window]:+, S3 ${W[s3,window]} s}; VmRSS at the end: local poll $(mib "${W[local,rss]}") MiB, off $(mib "${W[local,rss_off]}") MiB${W[s3,rss]:+; S3 poll $(mib "${W[s3,rss]}") MiB, off $(mib "${W[s3,rss_off]:-0}") MiB}"
    local kk
    for kk in local s3; do
      [ "${W[$kk,failed]:-0}" = 0 ] ||
        echo "NOTE: $kk: ${W[$kk,failed]} poll rounds failed (see ${OUT_DIR#"$REPO_ROOT"/}/watch-$kk-poll.log); the figures are of the rounds that succeeded"
      [ "${W[$kk,overlap]:-0}" = 0 ] ||
        echo "NOTE: $kk: a poll round ended while its baseline ran (interval ${W[$kk,interval]} s too short): those figures overlap; raise $([ "$kk" = local ] && echo BENCH_WATCH_INTERVAL || echo BENCH_WATCH_S3_INTERVAL)"
    done
    echo
    echo "notify: a bucket with /in (local, watch {mode: notify}) and a hidden /out (watch off), onPut post -> copy to /out; $WATCH_EV_FILES files"
    echo "        of $EV_SIZE B written straight into /in's origin (not through the mount), one every $WATCH_EV_GAP_MS ms; runs=$RUNS, interleaved"
    echo "baseline: inotifywait -m -r -e close_write --format '%w%f' SRC | while read -r f; do cp \"\$f\" DST/; done  (plain directories, same fs)"
    echo "latency = close() returned -> output complete in the output directory (inotify on it); ratio = storgate / baseline"
    echo
    ev_rows p50 p99 max
  } >>"$RESULTS"
}

# ---- run -----------------------------------------------------------------------
want local && local_part
want s3 && s3_part
want events && events_part
want batch && batch_part
want watch && watch_part
section "results (also in ${RESULTS#"$REPO_ROOT"/})"
{
  header
  cat "$RESULTS"
} >"$RESULTS.tmp" && mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"
