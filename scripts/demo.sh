#!/usr/bin/env bash
# scripts/demo.sh — the README's first command: build storgate, mount the
# example mount-configs/local-merge.json (local directories only, no cloud
# account) at /mnt/storgate-demo and show it working, workflows included
# (step 9); then mount mount-configs/publish-on-upload.json (SPEC §1 scenario 2)
# at /mnt/storgate-publish with a webhook receiver on 127.0.0.1:8099 and show
# an upload being published (step 10). Run as root.
#
# It creates its directories under /srv/storgate-demo afresh on every run,
# unmounts earlier demo mounts first, and leaves the first mount up at the end
# (the second one and the webhook receiver are stopped after step 10).
# STORGATE_DEMO_MNT and STORGATE_DEMO_PUBLISH_MNT override the mount points.
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
HOOK=$DEMO/hooks/log-webhook # webhook program of local-merge.json (written in step 2)
HOOKLOG=$DEMO/hooks/webhook.log # ... which appends one line per call here
# Step 10: SPEC §1 scenario 2, its own mount, stateDir and webhook receiver.
PUBCONFIG=$REPO_ROOT/mount-configs/publish-on-upload.json
PUBMNT=${STORGATE_DEMO_PUBLISH_MNT:-/mnt/storgate-publish}
PUBERR=$DEMO/publish-mount-stderr.log
PUBLOG=$DEMO/state-publish/storgate.log
WEBHOOK_PORT=8099 # must match the webhook URLs in publish-on-upload.json
RECV_OUT=$DEMO/webhook-receiver.out # "listening on ..." or why not
RECV_LOG=$DEMO/webhook-receiver.log # one line per webhook call
RECV_PID=""

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
# wait_for SECONDS WHAT CMD...: run CMD every 50 ms until it succeeds; say
# how long it took, or warn and return 1 after SECONDS.
wait_for() {
  local limit=$1 what=$2 deadline=$((SECONDS + $1)) t0
  shift 2
  t0=$(now)
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      warn "no $what after $limit s"
      return 1
    fi
    sleep 0.05
  done
  info "$what: after $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms (polled every 50 ms)"
}
# The second mount and the webhook receiver never outlive the demo.
stop_publish() {
  unmount_quietly "$PUBMNT"
  if [ -n "$RECV_PID" ]; then
    kill "$RECV_PID" 2>/dev/null || true
    wait "$RECV_PID" 2>/dev/null || true
    RECV_PID=""
  fi
}
trap stop_publish EXIT

on_error() {
  local rc=$? line=$1
  printf '\n%sdemo failed (line %s, exit %s).%s\n' "$_R" "$line" "$rc" "$_N" >&2
  local f
  for f in "$ERR" "$LOG" "$HOOKLOG" "$PUBERR" "$PUBLOG" "$RECV_OUT" "$RECV_LOG"; do
    if [ -s "$f" ]; then
      echo "$f:" >&2
      tail -n 30 "$f" | sed 's/^/    /' >&2
    fi
  done
  if mountpoint -q "$MNT" 2>/dev/null; then
    echo "The mount is left up for a look; unmount it with: fusermount3 -u $MNT" >&2
  fi
  stop_publish
  exit "$rc"
}
trap 'on_error $LINENO' ERR

# --- 1 ------------------------------------------------------------------------
section "1. dependencies and build"
ensure_rust
ensure_packages fuse3 rsync pkg-config python3
ensure_fuse
cargo build --release --locked
[ -x "$BIN" ] || die "build produced no $BIN"
ok "built $BIN"

# --- 2 ------------------------------------------------------------------------
section "2. origin directories under $DEMO"
for m in "$MNT" "$PUBMNT"; do
  if mountpoint -q "$m" 2>/dev/null || grep -qs " $m fuse" /proc/mounts; then
    info "unmounting the earlier demo mount at $m"
    unmount_quietly "$m"
    wait_unmounted "$m" 20 || die "could not unmount the old demo mount at $m"
  fi
done
# local-merge.json: share, local, private, state, hooks; publish-on-upload.json:
# upload, html, publish-scratch, state-publish; derivatives.json (only checked,
# in step 3): media/{images,newimg,scratch}, state-media.
for d in share local private state hooks upload html publish-scratch state-publish media state-media nas landing-state; do
  rm -rf "${DEMO:?}/$d"
done
rm -f "$ERR" "$PUBERR" "$RECV_OUT" "$RECV_LOG"
mkdir -p "$DEMO"/{share/img,local/img,local/notes,private,state,hooks} "$MNT"
mkdir -p "$DEMO"/{upload,html,publish-scratch,state-publish,media/images,media/newimg,media/scratch,state-media} "$PUBMNT"
mkdir -p "$DEMO"/nas/upload "$DEMO"/nas/image/service
# The webhook program named in local-merge.json: storgate runs it after each
# completed item, with the JSON payload on stdin.
cat >"$HOOK" <<EOF
#!/bin/sh
# storgate webhook (written by scripts/demo.sh): one line per call in
# $HOOKLOG: time, event, bucket, bucket path, JSON payload.
payload=\$(tr '\n' ' ')
printf '%s %s %s %s %s\n' "\$(date +%H:%M:%S.%N)" "\$STORGATE_EVENT" "\$STORGATE_BUCKET" "\$STORGATE_PATH" "\$payload" >>"$HOOKLOG"
EOF
chmod 755 "$HOOK"
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
info "the two other local examples check as well (step 2 made their directories):"
run "$BIN" check --config "$PUBCONFIG"
run "$BIN" check --config "$REPO_ROOT/mount-configs/derivatives.json"
run "$BIN" check --config "$REPO_ROOT/mount-configs/landing-zone.json"

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
section "9. a workflow fires: onPut copies *.html into the hidden /private mount"
info "local-merge.json: events.onPut (filter *.html, timing post) runs the workflow"
info "'stage-html' (copy to /private/published{{ item.path }}), then the webhook program $HOOK:"
run cat "$HOOK"
STAGED=$DEMO/private/published/notes/hello.html
printf '<p>hello from the storgate demo, %s</p>\n' "$(date -u '+%F %T UTC')" >"$DEMO/hello.html"
run cp "$DEMO/hello.html" "$SITE/notes/hello.html"
rm -f "$DEMO/hello.html"
wait_for 10 "copy in $STAGED" test -f "$STAGED"
wait_for 10 "webhook call for /notes/hello.html" grep -qsF ' /notes/hello.html ' "$HOOKLOG"
run cmp "$SITE/notes/hello.html" "$STAGED"
if [ -f "$DEMO/private/published/upload/page.html" ]; then
  info "(rsync's upload/page.html of step 7 fired it too; its temporary .page.html.* did not: hidden)"
fi
run find "$DEMO/private" -type f
run cat "$HOOKLOG"
ok "the onPut workflow copied the file into the hidden mount and ran its webhook"

# --- 10 -----------------------------------------------------------------------
section "10. SPEC §1 scenario 2, publish on upload: mount-configs/publish-on-upload.json"
info "uploads into $PUBMNT (origin $DEMO/upload) are copied to the web root"
info "$DEMO/html (hidden mount /published) and reported to a webhook URL on"
info "127.0.0.1:$WEBHOOK_PORT, here scripts/webhook-receiver.py (logs each call)"
printf '%s$ %s%s\n' "$_B" "python3 scripts/webhook-receiver.py --port $WEBHOOK_PORT --log $RECV_LOG &" "$_N"
python3 "$REPO_ROOT/scripts/webhook-receiver.py" --port "$WEBHOOK_PORT" --log "$RECV_LOG" >"$RECV_OUT" 2>&1 &
RECV_PID=$!
receiver_up() {
  grep -qs '^listening' "$RECV_OUT" && return 0
  kill -0 "$RECV_PID" 2>/dev/null && return 1
  RECV_PID=""
  die "the webhook receiver did not start (is port $WEBHOOK_PORT taken?): $(cat "$RECV_OUT")"
}
wait_for 10 "webhook receiver listening" receiver_up
printf '%s$ %s%s\n' "$_B" "storgate mount --config $PUBCONFIG --bucket www $PUBMNT" "$_N"
if ! STORGATE_LOG=${STORGATE_LOG:-info} "$BIN" mount --config "$PUBCONFIG" --bucket www "$PUBMNT" 2>"$PUBERR"; then
  false # -> on_error prints the logs
fi
mountpoint -q "$PUBMNT" || die "storgate mount returned but $PUBMNT is not a mount point"
ok "mounted; bucket 'www' is $PUBMNT itself (--bucket www)"

printf '<h1>news</h1>\n<p>published by storgate, %s</p>\n' "$(date -u '+%F %T UTC')" >"$DEMO/news.html"
run cp "$DEMO/news.html" "$PUBMNT/news.html"
rm -f "$DEMO/news.html"
wait_for 10 "published copy $DEMO/html/news.html" test -f "$DEMO/html/news.html"
wait_for 10 "webhook call for /news.html" grep -qsE '"path"[[:space:]]*:[[:space:]]*"/news\.html"' "$RECV_LOG"
run cmp "$PUBMNT/news.html" "$DEMO/html/news.html"

info "an FTP server would write straight into the upload directory: storgate watches it"
printf '<p>dropped into the origin</p>\n' >"$DEMO/ftp-drop.html"
run cp "$DEMO/ftp-drop.html" "$DEMO/upload/ftp-drop.html"
rm -f "$DEMO/ftp-drop.html"
wait_for 10 "published copy $DEMO/html/ftp-drop.html" test -f "$DEMO/html/ftp-drop.html"
wait_for 10 "webhook call for /ftp-drop.html" grep -qsE '"path"[[:space:]]*:[[:space:]]*"/ftp-drop\.html"' "$RECV_LOG"

info "deleting an upload removes its published copy (onDelete, workflow 'unpublish')"
run rm "$PUBMNT/news.html"
wait_for 10 "removal of $DEMO/html/news.html" test ! -e "$DEMO/html/news.html"
run ls -l --time-style=long-iso "$DEMO/html"
info "the webhook receiver's log (one POST per completed item):"
run cat "$RECV_LOG"
stop_publish
wait_unmounted "$PUBMNT" 20 || die "could not unmount $PUBMNT"
ok "scenario 2 works: published, webhook called; $PUBMNT unmounted and the receiver stopped again"

# --- 11. scenario 1: the NFS landing zone, one onBatch scan now --------------
section "11. SPEC §1 scenario 1, NFS landing zone: mount-configs/landing-zone.json"
info "files dropped into the landing directory (an NFS share in production) are moved"
info "by an onBatch scan (every 5 minutes in the daemon; here run once, now)"
for d in 2026/11/21 2026/11/22; do
  mkdir -p "$DEMO/nas/upload/$d"
  for i in 1 2 3; do echo "photo $d/$i" >"$DEMO/nas/upload/$d/photo$i.jpg"; done
done
run find "$DEMO/nas/upload" -type f
run "$BIN" batch run --config "$REPO_ROOT/mount-configs/landing-zone.json" image_landing_bucket
run find "$DEMO/nas" -type f
left=$(find "$DEMO/nas/upload" -type f | wc -l)
moved=$(find "$DEMO/nas/image/service" -type f | wc -l)
if [ "$left" -ne 0 ] || [ "$moved" -ne 6 ]; then
  die "landing zone: $left files left, $moved moved (want 0 and 6)"
fi
ok "the scan moved all 6 files under /image_service and deleted the sources; one webhook call per item in $HOOKLOG"

# --- done ---------------------------------------------------------------------
section "done"
ok "storgate is mounted at $MNT (bucket 'site' at $SITE), origins in $DEMO"
info "daemon log: $LOG; webhook calls: $HOOKLOG"
info "unmount with:  fusermount3 -u $MNT"
info "(the scenario-2 mount of step 10 is unmounted again; its commands are in $PUBCONFIG)"
