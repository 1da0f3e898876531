#!/usr/bin/env bash
# scripts/demo.sh — the README's first command: build storgate, mount the
# example mount-configs/local-merge.json (local directories only, no cloud
# account) at /mnt/storgate-demo and show it working. Run as root.
#
# It creates /srv/storgate-demo/{share,local,private} afresh on every run,
# unmounts an earlier demo mount first, and leaves the new mount up at the end.
# STORGATE_DEMO_MNT overrides the mount point.
set -Eeuo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

MNT=${STORGATE_DEMO_MNT:-/mnt/storgate-demo}
DEMO=/srv/storgate-demo # must match mount-configs/local-merge.json
CONFIG=$REPO_ROOT/mount-configs/local-merge.json
BIN=$TARGET_DIR/release/storgate
SITE=$MNT/site # the bucket "site" appears as a directory of the mount
ERR=$DEMO/mount-stderr.log # what `storgate mount` printed
LOG=$DEMO/state/storgate.log # the daemon's own log (stateDir/storgate.log)

[ "$(id -u)" -eq 0 ] || die "run the demo as root (it writes $DEMO and mounts $MNT)"

# Show a command, then run it with its output indented.
run() {
  printf '%s$ %s%s\n' "$_B" "$*" "$_N"
  "$@" 2>&1 | sed 's/^/    /'
  return "${PIPESTATUS[0]}"
}
# Which origin directory holds bucket path $1?
where() {
  local p=$1 o found=0
  for o in share local private; do
    if [ -e "$DEMO/$o$p" ]; then
      info "$p  ->  origin $DEMO/$o$p"
      found=1
    fi
  done
  [ $found = 1 ] || info "$p  ->  in no origin?!"
}

on_error() {
  local rc=$? line=$1
  printf '\n%sdemo failed (line %s, exit %s).%s\n' "$_R" "$line" "$rc" "$_N" >&2
  local f
  for f in "$ERR" "$LOG"; do
    if [ -s "$f" ]; then
      echo "$f:" >&2
      tail -n 30 "$f" | sed 's/^/    /' >&2
    fi
  done
  if mountpoint -q "$MNT" 2>/dev/null; then
    echo "The mount is left up for a look; unmount it with: fusermount3 -u $MNT" >&2
  fi
  exit "$rc"
}
trap 'on_error $LINENO' ERR

# --- 1 ------------------------------------------------------------------------
section "1. dependencies and build"
ensure_rust
ensure_packages fuse3 rsync pkg-config
ensure_fuse
cargo build --release --locked
[ -x "$BIN" ] || die "build produced no $BIN"
ok "built $BIN"

# --- 2 ------------------------------------------------------------------------
section "2. origin directories under $DEMO"
if mountpoint -q "$MNT" 2>/dev/null || grep -qs " $MNT fuse" /proc/mounts; then
  info "unmounting the earlier demo mount at $MNT"
  unmount_quietly "$MNT"
  wait_unmounted "$MNT" 20 || die "could not unmount the old demo mount at $MNT"
fi
rm -rf "${DEMO:?}/share" "${DEMO:?}/local" "${DEMO:?}/private" "${DEMO:?}/state" "$ERR"
mkdir -p "$DEMO"/{share/img,local/img,local/notes,private,state} "$MNT"
echo '<h1>storgate demo</h1>' >"$DEMO/share/index.html"
echo 'logo (in share)' >"$DEMO/share/img/logo.txt"
echo 'common.txt from share: declared first, so this copy is served' >"$DEMO/share/common.txt"
echo 'banner (in local)' >"$DEMO/local/img/banner.txt"
echo '- try storgate' >"$DEMO/local/notes/todo.txt"
echo 'common.txt from local: shadowed by the copy in share' >"$DEMO/local/common.txt"
echo 'only workflows can see this' >"$DEMO/private/secret.txt"
run find "$DEMO/share" "$DEMO/local" "$DEMO/private" -type f

# --- 3 ------------------------------------------------------------------------
section "3. check the configuration"
run grep -v '^[[:space:]]*#' "$CONFIG"
run "$BIN" check --config "$CONFIG"

# --- 4 ------------------------------------------------------------------------
section "4. mount it at $MNT"
printf '%s$ %s%s\n' "$_B" "storgate mount --config $CONFIG $MNT" "$_N"
if ! STORGATE_LOG=${STORGATE_LOG:-info} "$BIN" mount --config "$CONFIG" "$MNT" 2>"$ERR"; then
  false # -> on_error prints the log
fi
mountpoint -q "$MNT" || die "storgate mount returned but $MNT is not a mount point"
run findmnt "$MNT"
ok "mounted; the bucket 'site' is $SITE"

# --- 5 ------------------------------------------------------------------------
section "5. one merged tree: share + local"
run ls -R --color=never "$MNT"
run cat "$SITE/common.txt"
info "img/ exists in both origins: its listing is the union (logo from share, banner from local)"

# --- 6 ------------------------------------------------------------------------
section "6. cp into the mount"
run cp "$REPO_ROOT/README.md" "$SITE/notes/README.md"
where /notes/README.md
info "(notes/ exists only in local, so the new file went there)"
run cp "$REPO_ROOT/mount-configs/local-merge.json" "$SITE/config-copy.json"
where /config-copy.json
info "(a new file at the root goes to the first root mount, share)"
run cmp "$REPO_ROOT/README.md" "$SITE/notes/README.md"
ok "content read back through the mount is identical"

# --- 7 ------------------------------------------------------------------------
section "7. rsync -a into the mount"
SRC=$(mktemp -d /tmp/storgate-demo-src.XXXXXX)
mkdir -p "$SRC/upload/css" "$SRC/upload/js"
echo 'body { margin: 0 }' >"$SRC/upload/css/site.css"
echo 'console.log("hi")' >"$SRC/upload/js/app.js"
echo '<p>uploaded with rsync</p>' >"$SRC/upload/page.html"
touch -d '2024-01-02 03:04:05' "$SRC/upload/css/site.css" "$SRC/upload/js/app.js" "$SRC/upload/page.html"
run rsync -a --itemize-changes "$SRC/upload/" "$SITE/upload/"
where /upload/css/site.css
run ls -l --time-style=long-iso "$SITE/upload/css/site.css"
info "a second rsync -a finds nothing to transfer (times and sizes were kept):"
printf '%s$ %s%s\n' "$_B" "rsync -a --itemize-changes $SRC/upload/ $SITE/upload/" "$_N"
changes=$(rsync -a --itemize-changes "$SRC/upload/" "$SITE/upload/")
[ -z "$changes" ] || { warn "second rsync still sees changes:"; echo "$changes"; }
[ -z "$changes" ] && ok "second rsync transferred nothing"
rm -rf "$SRC"

# --- 8 ------------------------------------------------------------------------
section "8. the hidden mount /private (expose: false)"
run ls --color=never "$SITE"
if ls "$SITE/private" >/dev/null 2>&1; then
  die "$SITE/private is visible but should be hidden"
fi
run ls "$SITE/private" || true
run ls "$DEMO/private"
ok "/private is invisible in the mount; its origin holds secret.txt for workflows"

# --- 9 ------------------------------------------------------------------------
section "9. workflows"
# TODO(workflow issue): add an onPut workflow to mount-configs/local-merge.json
# (e.g. copy every new *.html into the hidden /private mount and run an exec
# webhook that appends to a log), then show it here: cp a file into the mount,
# wait for the output in $DEMO/private and print the webhook log.
info "TODO: workflows (onPut/onDelete/onBatch) are not implemented yet;"
info "      this step will show a workflow firing once they land."

# --- done ---------------------------------------------------------------------
section "done"
ok "storgate is mounted at $MNT (bucket 'site' at $SITE), origins in $DEMO"
info "daemon log: $LOG"
info "unmount with:  fusermount3 -u $MNT"
