# shellcheck shell=bash
# Helpers shared by scripts/test.sh, scripts/demo.sh and scripts/bench.sh.
# Source it; do not run it.

# Repository root (the directory holding Cargo.toml).
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO_ROOT

# cargo's target directory (respects CARGO_TARGET_DIR).
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target}
export TARGET_DIR

if [ -t 1 ]; then
  _B=$'\e[1m' _G=$'\e[32m' _R=$'\e[31m' _Y=$'\e[33m' _N=$'\e[0m'
else
  _B='' _G='' _R='' _Y='' _N=''
fi

section() { printf '\n%s== %s%s\n' "$_B" "$*" "$_N"; }
info() { printf '   %s\n' "$*"; }
ok() { printf '%s   ok:%s %s\n' "$_G" "$_N" "$*"; }
warn() { printf '%swarning:%s %s\n' "$_Y" "$_N" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$_R" "$_N" "$*" >&2
  exit 1
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $*  (run this script as root)"
  fi
}

pkg_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# ensure_packages PKG...: install the Debian packages that are missing.
# Runs `apt-get update` only when something has to be installed.
ensure_packages() {
  local missing=() p
  if ! command -v dpkg-query >/dev/null 2>&1; then
    for p in "$@"; do info "not a Debian system: make sure '$p' is installed"; done
    return 0
  fi
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    ok "packages present: $*"
    return 0
  fi
  info "installing missing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq </dev/null ||
    die "apt-get update failed"
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null ||
    die "apt-get install ${missing[*]} failed"
  ok "installed: ${missing[*]}"
}

# ensure_python_pip: python3 with a working pip (for the S3 test server).
ensure_python_pip() {
  if ! command -v python3 >/dev/null 2>&1; then
    ensure_packages python3 python3-pip
  elif ! python3 -m pip --version >/dev/null 2>&1; then
    ensure_packages python3-pip
  fi
}

# ensure_pip_tool COMMAND SPEC: pip-install SPEC unless COMMAND is on PATH.
# Debian's own python3 refuses system-wide pip installs (PEP 668); allow it
# there, since these are test tools on a disposable/CI machine.
ensure_pip_tool() {
  local cmd=$1 spec=$2
  if command -v "$cmd" >/dev/null 2>&1; then
    ok "$cmd present"
    return 0
  fi
  ensure_python_pip
  info "pip install '$spec'"
  python3 -m pip install -q --disable-pip-version-check "$spec" </dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$spec" </dev/null ||
    die "pip install '$spec' failed"
  hash -r
  command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' still not on PATH after pip install '$spec'"
  ok "installed $spec"
}

# ensure_rust: cargo (edition 2024 needs Rust >= 1.85), rustfmt and clippy.
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
    export PATH
  fi
  command -v cargo >/dev/null 2>&1 ||
    die "no Rust toolchain: install one with rustup (Rust >= 1.85), then run this again"
  local v
  v=$(rustc --version | awk '{print $2}')
  local major=${v%%.*} minor
  minor=${v#*.}
  minor=${minor%%.*}
  if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 85 ]; }; then
    die "rustc $v is too old: storgate needs Rust >= 1.85 (edition 2024); run 'rustup update'"
  fi
  ok "rust $v"
}

ensure_rust_components() {
  local c missing=()
  cargo fmt --version >/dev/null 2>&1 || missing+=(rustfmt)
  cargo clippy --version >/dev/null 2>&1 || missing+=(clippy)
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v rustup >/dev/null 2>&1 || die "missing Rust components: ${missing[*]} (and no rustup to add them)"
  for c in "${missing[@]}"; do
    rustup component add "$c" || die "rustup component add $c failed"
  done
}

# ensure_fuse: fuse3 installed and /dev/fuse usable.
ensure_fuse() {
  ensure_packages fuse3
  if [ ! -c /dev/fuse ]; then
    as_root modprobe fuse 2>/dev/null || true
  fi
  [ -c /dev/fuse ] || die "/dev/fuse is missing: load the fuse module (modprobe fuse) or, in a container, pass --device /dev/fuse --cap-add SYS_ADMIN"
  { [ -r /dev/fuse ] && [ -w /dev/fuse ]; } || die "/dev/fuse is not readable and writable by $(id -un)"
  command -v fusermount3 >/dev/null 2>&1 || die "fusermount3 not found although fuse3 is installed"
  ok "/dev/fuse and fusermount3 usable"
}

# unmount_quietly DIR: unmount a FUSE mount if DIR is one (lazy as a fallback).
unmount_quietly() {
  local dir=$1
  if mountpoint -q "$dir" 2>/dev/null || grep -qs " $dir fuse" /proc/mounts; then
    fusermount3 -u "$dir" 2>/dev/null || fusermount3 -u -z "$dir" 2>/dev/null || umount -l "$dir" 2>/dev/null || true
  fi
}

# wait_unmounted DIR [SECONDS]: wait until DIR is no longer a mount point.
wait_unmounted() {
  local dir=$1 deadline=$((SECONDS + ${2:-20}))
  while mountpoint -q "$dir" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# Seconds since the epoch with microseconds (bash >= 5).
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
