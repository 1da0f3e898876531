#!/usr/bin/env bash
# scripts/bench.sh — storgate against the bare directory, side by side, in one run.
#
# A bucket with one local root mount is mounted with --bucket (release build);
# every benchmark runs on the bare directory and on the mount of a directory
# on the same file system, and the table gives both figures and the ratio
# storgate/bare of the times (1.00 = as fast as the bare directory).
#
#   seq write   dd if=/dev/zero bs=1M count=N conv=fsync  (1 GiB)
#   seq read    dd of=/dev/null bs=1M, cold cache (drop_caches before)
#   small files create+write+close of 10,000 4 KiB files (python loop)
#   find, ls    find | wc -l and ls -lR >/dev/null over 1,000 dirs x 100 files,
#               cold (after drop_caches) and warm (right after)
#
# Root needed (mount, drop_caches). Not part of scripts/test.sh.
# Environment:
#   BENCH_SCALE=small    quick check: 64 MiB, 1,000 files, 100 x 100 tree
#   BENCH_RUNS=N         runs per benchmark, the median is shown (default 3)
#   BENCH_DIR=DIR        working directory (default /var/tmp/storgate-bench)
#   BENCH_FILE_MIB, BENCH_SMALL_FILES, BENCH_SMALL_SIZE, BENCH_TREE_DIRS,
#   BENCH_TREE_FILES     override single sizes
#   BENCH_KEEP=1         keep the data afterwards
# Results: printed and written to target/bench/results.txt.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
exec </dev/null

case "${BENCH_SCALE:-full}" in
  full) d_mib=1024 d_small=10000 d_dirs=1000 d_files=100 ;;
  small) d_mib=64 d_small=1000 d_dirs=100 d_files=100 ;;
  *) die "BENCH_SCALE must be 'full' or 'small'" ;;
esac
FILE_MIB=${BENCH_FILE_MIB:-$d_mib}
SMALL_FILES=${BENCH_SMALL_FILES:-$d_small}
SMALL_SIZE=${BENCH_SMALL_SIZE:-4096}
TREE_DIRS=${BENCH_TREE_DIRS:-$d_dirs}
TREE_FILES=${BENCH_TREE_FILES:-$d_files}
RUNS=${BENCH_RUNS:-3}
WORK=${BENCH_DIR:-/var/tmp/storgate-bench}
BIN=$TARGET_DIR/release/storgate
HELPER=$REPO_ROOT/scripts/bench-files.py
OUT_DIR=$TARGET_DIR/bench
RESULTS=$OUT_DIR/results.txt

[ "$(id -u)" -eq 0 ] || die "run as root (mount, drop_caches)"

BARE=$WORK/bare
ORIGIN=$WORK/origin
MNT=$WORK/mnt
CONFIG=$WORK/bench.json
ERR=$WORK/mount-stderr.log # what `storgate mount` printed
LOG=$WORK/state/storgate.log # the daemon's log (stateDir/storgate.log)

cleanup() {
  unmount_quietly "$MNT"
  wait_unmounted "$MNT" 20 || warn "$MNT still mounted"
  if [ "${BENCH_KEEP:-0}" != 1 ] && ! mountpoint -q "$MNT" 2>/dev/null; then
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

# ---- the benchmarks, each prints its elapsed seconds; $1 = root dir ---------
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
mkdir -p "$BARE" "$ORIGIN" "$MNT" "$WORK/state" "$OUT_DIR"
trap cleanup EXIT
if ! { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
  CAN_DROP=0
  warn "cannot write /proc/sys/vm/drop_caches: 'cold' figures will be warm"
fi
FSTYPE=$(findmnt -n -o FSTYPE -T "$WORK" 2>/dev/null || stat -f -c %T "$WORK")
[ "$(stat -c %d "$BARE")" = "$(stat -c %d "$ORIGIN")" ] || die "bare and origin are not on the same file system"
case "$FSTYPE" in tmpfs | ramfs) warn "$WORK is on $FSTYPE: set BENCH_DIR to a disk-backed directory" ;; esac
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
[ "$(find "$MNT/tree" | wc -l)" = "$entries" ] || die "the mount does not show the tree fixture"

# ---- run ---------------------------------------------------------------------
# name;unit for the rate column;amount for the rate;function;argument
BENCHES=(
  "seq write ${FILE_MIB} MiB (dd bs=1M fsync);MiB/s;$FILE_MIB;b_write;"
  "seq read ${FILE_MIB} MiB, cold (dd bs=1M);MiB/s;$FILE_MIB;b_read;"
  "create+write+close ${SMALL_FILES} x $((SMALL_SIZE / 1024)) KiB;files/s;$SMALL_FILES;b_small;"
  "find | wc -l, ${entries} entries, cold;entries/s;$entries;b_find;cold"
  "find | wc -l, ${entries} entries, warm;entries/s;$entries;b_find;warm"
  "ls -lR, ${entries} entries, cold;entries/s;$entries;b_ls;cold"
  "ls -lR, ${entries} entries, warm;entries/s;$entries;b_ls;warm"
)
declare -A T
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for ((run = 1; run <= RUNS; run++)); do
  section "run $run of $RUNS"
  for i in "${!BENCHES[@]}"; do
    IFS=';' read -r name _unit _amount fn arg <<<"${BENCHES[$i]}"
    for side in bare storgate; do
      dir=$BARE
      [ $side = storgate ] && dir=$MNT
      # shellcheck disable=SC2086 # $arg is empty or one word
      t=$($fn "$dir" $arg)
      T[$i,$side]="${T[$i,$side]:-} $t"
      printf '   %-46s %-8s %8.3f s\n' "$name" "$side" "$t"
    done
  done
done

# ---- report --------------------------------------------------------------------
rate() { awk -v a="$1" -v t="$2" 'BEGIN { r = a / t; printf (r >= 100 ? "%.0f" : "%.1f"), r }'; }
{
  echo "storgate bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "scale=${BENCH_SCALE:-full}  runs=$RUNS (median shown)  fs=$FSTYPE at $WORK  kernel $(uname -r)  $(nproc) cores  load avg at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "bare = $BARE; storgate = $MNT (bucket with one local root mount of $ORIGIN, same fs)"
  [ $CAN_DROP = 1 ] || echo "NOTE: page cache could not be dropped; 'cold' figures are warm"
  echo "ratio = storgate time / bare time (1.00 = as fast as the bare directory, 2.00 = twice as slow)"
  echo
  printf '%-44s | %-28s | %-28s | %s\n' benchmark bare storgate ratio
  dashes=--------------------------------------------
  printf '%s-+-%s-+-%s-+-%s\n' "$dashes" "${dashes:0:28}" "${dashes:0:28}" -----
  for i in "${!BENCHES[@]}"; do
    IFS=';' read -r name unit amount _fn _arg <<<"${BENCHES[$i]}"
    # shellcheck disable=SC2086 # word lists of numbers
    tb=$(median ${T[$i,bare]})
    # shellcheck disable=SC2086
    ts=$(median ${T[$i,storgate]})
    cb=$(printf '%.3f s (%s %s)' "$tb" "$(rate "$amount" "$tb")" "$unit")
    cs=$(printf '%.3f s (%s %s)' "$ts" "$(rate "$amount" "$ts")" "$unit")
    ratio=$(awk -v a="$ts" -v b="$tb" 'BEGIN { printf "%.2f", a / b }')
    printf '%-44s | %-28s | %-28s | %s\n' "$name" "$cb" "$cs" "$ratio"
  done
} >"$RESULTS"
section "results (also in ${RESULTS#"$REPO_ROOT"/})"
cat "$RESULTS"
