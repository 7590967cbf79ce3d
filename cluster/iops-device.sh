#!/usr/bin/env bash
# Prints the block device whose IOPS limit really throttles I/O to the given
# place, for Docker's --device-read-iops/--device-write-iops, or stops with the
# reason (status 1).
#
# The kernel throttles whole disks and device-mapper devices only: it refuses a
# partition's major:minor with ENODEV (block/blk-cgroup.c, blkg_conf_open_bdev),
# and Docker then cannot start the container. So a partition resolves to its
# disk: sysfs marks a partition with a `partition` file, and its directory sits
# inside the disk's (/sys/class/block/sda/sda3). A device-mapper device (LVM,
# LUKS) is kept as it is, never walked down through its `slaves`: the
# filesystem's I/O enters the block layer there, the device can be throttled
# (block/blk-throttle.c works on any disk, bio-based ones included), and what
# lies under it is often a partition (LVM on /dev/sda3), sometimes several.
#
#   cluster/iops-device.sh PATH|DEVICE|MAJ:MIN
#
# PATH     a directory: the device of the filesystem holding it (findmnt)
# DEVICE   a block device node, e.g. /dev/nvme0n1p2
# MAJ:MIN  a device number, e.g. 259:2
# SPILLWAY_SYSFS  where sysfs is mounted (default /sys)
set -euo pipefail

SYSFS="${SPILLWAY_SYSFS:-/sys}"

fail() {
  echo "iops-device.sh: $*" >&2
  exit 1
}

# The "major:minor" of a block device node.
device_number() {
  local hex
  [[ -b $1 ]] || fail "$1 is not a block device on this host"
  hex="$(stat -L -c '%t %T' "$1")"
  read -r major minor <<<"${hex}"
  echo "$((16#${major})):$((16#${minor}))"
}

# The "major:minor" of the filesystem that holds a directory.
filesystem_device() {
  local number source fstype
  command -v findmnt >/dev/null 2>&1 || fail "findmnt (util-linux) is needed to find the disk under $1"
  read -r number source fstype < <(findmnt -rn -o MAJ:MIN,SOURCE,FSTYPE --target "$1") ||
    fail "cannot find the filesystem holding $1"
  if [[ ${number%%:*} != 0 ]]; then
    echo "${number}"
    return
  fi
  # btrfs and the like report an anonymous device (major 0); their SOURCE may
  # still name the real one, e.g. /dev/sda2[/@].
  source="${source%%\[*}"
  [[ -b ${source} ]] ||
    fail "$1 is on ${fstype} (${source}), which has no block device the kernel can throttle"
  device_number "${source}"
}

case "${1:-}" in
  '') fail "usage: cluster/iops-device.sh PATH|DEVICE|MAJ:MIN" ;;
  [0-9]*:[0-9]*) number="$1" ;;
  /dev/*) number="$(device_number "$1")" ;;
  *)
    [[ -d $1 ]] || fail "$1 is not a directory, a /dev node or a MAJ:MIN"
    number="$(filesystem_device "$1")"
    ;;
esac

[[ -e ${SYSFS}/dev/block/${number} ]] || fail "no block device ${number} in ${SYSFS}/dev/block"
dir="$(cd -P "${SYSFS}/dev/block/${number}" && pwd)"
name="${dir##*/}"
if [[ -f ${dir}/partition ]]; then
  disk="${dir%/*}"
  echo "iops-device.sh: ${name} is a partition; limiting its disk, ${disk##*/}" >&2
  name="${disk##*/}"
fi
# sysfs writes "/" in a device name as "!" (cciss!c0d0 is /dev/cciss/c0d0).
echo "/dev/${name//!//}"
