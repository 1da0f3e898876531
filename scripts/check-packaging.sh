#!/usr/bin/env bash
# scripts/check-packaging.sh — self-check of packaging/ (run by scripts/test.sh):
#   * mount.storgate turns mount(8)'s arguments into the right storgate call
#     (checked against a stub binary, no mount happens);
#   * storgate.service starts `storgate mount -f`;
#   * every asset of [package.metadata.deb] in Cargo.toml exists.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

HELPER=$REPO_ROOT/packaging/mount.storgate
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0

# A stand-in for storgate: records its arguments, one per line.
cat >"$TMP/storgate" <<EOF
#!/bin/sh
: >"$TMP/args"
for a in "\$@"; do printf '%s\n' "\$a" >>"$TMP/args"; done
exit \${STUB_EXIT:-0}
EOF
chmod +x "$TMP/storgate"

# expect "ARGS STORGATE GETS (space separated, or NOT-RUN)" mount.storgate-args...
expect() {
  local want=$1 got rc=0
  shift
  rm -f "$TMP/args"
  STORGATE_BIN=$TMP/storgate "$HELPER" "$@" 2>"$TMP/err" || rc=$?
  if [ -f "$TMP/args" ]; then got=$(paste -sd' ' "$TMP/args"); else got=NOT-RUN; fi
  if [ "$got" = "$want" ] && [ $rc -eq 0 ]; then
    ok "mount.storgate $*"
  else
    printf '   FAIL: mount.storgate %s\n         want: %s\n         got:  %s (exit %s) %s\n' \
      "$*" "$want" "$got" "$rc" "$(cat "$TMP/err")"
    fails=$((fails + 1))
  fi
}

section "mount.storgate option handling"
expect "mount --config /etc/storgate/storgate.json -o allow_other /mnt/storgate" \
  /etc/storgate/storgate.json /mnt/storgate -o _netdev,allow_other
expect "mount --config /c.json /m" \
  /c.json /m -o rw,defaults,auto,noauto,nofail,user,nouser,users,exec,noexec,suid,nosuid,dev,nodev,_netdev
expect "mount --config /c.json --bucket site -o ro,allow_other,uid=1000,gid=1000 /m" \
  /c.json /m -o ro,x-systemd.automount,allow_other,comment=x,uid=1000,bucket=site,gid=1000
expect "mount --config /c.json -o allow_other,ro /m" /c.json /m -n -t storgate -o allow_other -o ro
expect "mount --config /c.json -o allow_other /m" /c.json /m -oallow_other
expect "mount --config /c.json /m" /c.json /m
expect "NOT-RUN" /c.json /m -sfnv -o allow_other
expect "mount --config /etc/my configs/a.json -o allow_other /mnt/a b" "/etc/my configs/a.json" "/mnt/a b" -o allow_other

rc=0
STUB_EXIT=3 STORGATE_BIN=$TMP/storgate "$HELPER" /c.json /m -o allow_other 2>/dev/null || rc=$?
if [ $rc -eq 3 ]; then ok "storgate's exit status is passed on"; else
  echo "   FAIL: exit status $rc, want 3"
  fails=$((fails + 1))
fi
rc=0
STORGATE_BIN=$TMP/storgate "$HELPER" /c.json 2>/dev/null || rc=$?
if [ $rc -ne 0 ]; then ok "missing TARGET is refused"; else
  echo "   FAIL: missing TARGET accepted"
  fails=$((fails + 1))
fi

section "storgate.service"
unit=packaging/storgate.service
if grep -Eq '^ExecStart=/usr/bin/storgate mount -f ' "$unit"; then ok "ExecStart runs storgate mount -f"; else
  echo "   FAIL: $unit does not run 'storgate mount -f'"
  fails=$((fails + 1))
fi
for key in '^\[Unit\]' '^\[Service\]' '^\[Install\]' '^WantedBy='; do
  grep -Eq "$key" "$unit" || {
    echo "   FAIL: $unit lacks $key"
    fails=$((fails + 1))
  }
done

section "Cargo.toml [package.metadata.deb] assets"
if ! python3 - <<'EOF'; then fails=$((fails + 1)); fi
import glob, sys, tomllib
meta = tomllib.load(open("Cargo.toml", "rb"))["package"]["metadata"]["deb"]
bad = 0
for src, dest, mode in meta["assets"]:
    if src.startswith("target/"):
        print(f"   ok: {src} -> {dest} (built)")
    elif glob.glob(src):
        print(f"   ok: {src} -> {dest}")
    else:
        print(f"   FAIL: asset {src} does not exist")
        bad += 1
if "fuse3" not in meta.get("depends", ""):
    print("   FAIL: the package must depend on fuse3")
    bad += 1
sys.exit(1 if bad else 0)
EOF

echo
if [ $fails -eq 0 ]; then
  echo "packaging: all checks passed"
else
  echo "packaging: $fails check(s) FAILED"
  exit 1
fi
