#!/bin/sh
# The io_full_disk test: runs test_io's full-disk case against a real full file system, a 1 MiB tmpfs
# mounted in a user namespace (no root needed). Exit 77 (ctest: skipped, and it says why) where the kernel
# or the container refuses unprivileged user namespaces or tmpfs mounts.
# Usage: full_disk.sh PATH/TO/test_io
set -u
test_io="$1"
mnt=$(mktemp -d "${TMPDIR:-/tmp}/selfsup_full_disk.XXXXXX") || exit 1
trap 'rmdir "$mnt"' EXIT
if ! unshare -rm sh -c "mount -t tmpfs -o size=1m selfsup_full_disk '$mnt'" 2>/dev/null; then
  echo "io_full_disk: SKIPPED: unprivileged tmpfs mounts are not allowed here (unshare -rm mount -t tmpfs failed)"
  exit 77
fi
# The mount lives only inside the namespace; the test runs there too.
unshare -rm sh -c "mount -t tmpfs -o size=1m selfsup_full_disk '$mnt' && \
  SELFSUP_FULL_DISK_DIR='$mnt' exec '$test_io' --no-skip --test-case='a full disk*'"
