#!/usr/bin/env bash
# Proves the README's promise on a machine that has nothing: bootstraps a minimal Debian system from
# Debian's own packages into a chroot under /tmp, copies a clean clone of this repository's HEAD into
# it, and runs `make test` there (and `make demo` with --full), printing how long each step took.
#
# Why a chroot and not this machine: a package installed here once by hand (or pulled in as a
# Recommends of something else) hides a missing name in scripts/install-deps.sh. The chroot starts
# from Debian's `apt` variant (Essential packages + apt) plus `make`, the one tool the README's
# commands themselves need; everything else must come from install-deps.sh. It has no CUDA, so it also
# proves the CPU-only path (CUDA tests skip visibly). Nothing on the host changes: the system lives in
# a temporary directory, every mount is undone and the directory removed on exit (unless --keep).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/fresh-check.sh [--full] [--ci] [--keep] [--suite NAME] [--mirror URL] [--dir DIR]

Builds a clean minimal Debian system in a chroot and runs the README's `make test` inside it.
  --full         also run `make demo` (adds the demo's run time, about 7 minutes on 2 cores)
  --ci           run CI's whole entry point .ci/run instead of `make test` alone
  --keep         leave the chroot in place afterwards (its path is printed) for inspection
  --suite NAME   Debian suite to bootstrap (default: this host's, from /etc/os-release)
  --mirror URL   Debian mirror (default: http://deb.debian.org/debian)
  --dir DIR      where to build the system (default: a new directory under /tmp)
Needs root (chroot, mounts) and mmdebstrap (apt-get install mmdebstrap). Tests the committed HEAD:
commit first, uncommitted changes are not copied, exactly as CI sees a clean clone.
EOF
}

FULL=0
CI=0
KEEP=0
SUITE=""
MIRROR="http://deb.debian.org/debian"
DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --full) FULL=1 ;;
    --ci) CI=1 ;;
    --keep) KEEP=1 ;;
    --suite) SUITE="${2:?--suite needs a name}"; shift ;;
    --mirror) MIRROR="${2:?--mirror needs a URL}"; shift ;;
    --dir) DIR="${2:?--dir needs a path}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fresh-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "fresh-check: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root for chroot and mounts (run it with sudo)"
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
git -C "$REPO" rev-parse --verify HEAD >/dev/null 2>&1 || die "$REPO is not a git checkout with a commit"
if [ -z "$SUITE" ]; then
  SUITE="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [ -n "$SUITE" ] || die "cannot read this host's Debian suite from /etc/os-release; pass --suite"
fi
if [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]; then
  echo "fresh-check: note: uncommitted changes in $REPO are not part of the check (HEAD is)"
fi

if [ -z "$DIR" ]; then
  DIR="$(mktemp -d /tmp/selfsup-fresh.XXXXXX)"
else
  [ ! -e "$DIR" ] || [ -z "$(ls -A "$DIR")" ] || die "--dir $DIR exists and is not empty"
  mkdir -p "$DIR"
fi
ROOT="$DIR/root"
MOUNTS=()

cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  if [ "$KEEP" -eq 1 ]; then
    echo "fresh-check: kept the system at $ROOT (chroot $ROOT bash)"
  else
    rm -rf --one-file-system "$DIR"
  fi
}
trap cleanup EXIT

# Each step prints its own duration; the table at the end repeats them. A failing step names itself.
STEPS=()
step() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "fresh-check: == $name"
  if ! "$@"; then
    die "FAILED: $name (after $((SECONDS - t0))s, on a fresh Debian $SUITE system)"
  fi
  local dt=$((SECONDS - t0))
  STEPS+=("$(printf '%-28s %4dm%02ds' "$name" $((dt / 60)) $((dt % 60)))")
  echo "fresh-check: $name took ${dt}s"
}

bootstrap() {
  # The same archive areas a stock Debian install has: the release, its updates, its security fixes.
  local sources=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main")
  case "$SUITE" in
    sid|unstable) sources=("deb $MIRROR $SUITE main") ;;
    *) sources+=("deb http://deb.debian.org/debian-security $SUITE-security main") ;;
  esac
  mmdebstrap --quiet --mode=root --variant=apt --include=make "$SUITE" "$ROOT" "${sources[@]}"
}

mount_system() {
  local m
  for m in proc sys dev dev/pts; do mkdir -p "$ROOT/$m"; done
  mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
  mount -t sysfs sys "$ROOT/sys"; MOUNTS+=("$ROOT/sys")
  mount --bind /dev "$ROOT/dev"; MOUNTS+=("$ROOT/dev")
  mount --bind /dev/pts "$ROOT/dev/pts"; MOUNTS+=("$ROOT/dev/pts")
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
}

copy_clone() {
  # A clone, not a copy of the working tree: what CI checks out is what gets tested.
  git clone --quiet --no-hardlinks "$REPO" "$ROOT/src/selfsup" || return 1
  echo "fresh-check: testing $(git -C "$ROOT/src/selfsup" log -1 --format='%h %s' | cut -c1-100)"
}

in_chroot() {
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /src/selfsup && $1"
}

echo "fresh-check: Debian $SUITE from $MIRROR into $ROOT"
step "bootstrap (mmdebstrap)" bootstrap
mount_system
step "clone" copy_clone
if [ "$CI" -eq 1 ]; then
  step ".ci/run" in_chroot "bash .ci/run"
else
  step "make test" in_chroot "make test"
fi
if [ "$FULL" -eq 1 ]; then
  step "make demo" in_chroot "make demo"
fi

echo "fresh-check: passed on a fresh Debian $SUITE system"
printf '  %s\n' "${STEPS[@]}"
