#!/usr/bin/env bash
# Updates an appliance's disk to a new image, offline (the VM powered off):
#
#   images/vm/update.sh NEW.img DISK
#
# The new image's ESP (its unified kernel image, with the new root hash),
# root and verity partitions replace the disk's; the e2s-var partition
# (/var/lib/e2sgate, the audit log, the seed state) is kept as it is. Both
# must have the same partition layout (build.sh's fixed slot sizes).
set -euo pipefail
new=${1:?usage: update.sh NEW.img DISK} disk=${2:?usage: update.sh NEW.img DISK}
layout() { sfdisk --dump "$1" | grep -E '^[^ ]+ : start=' | sed 's/^[^ ]* : //; s/, uuid=[^,]*//'; }
[ "$(layout "$new")" = "$(layout "$disk")" ] || {
  echo "update.sh: $new and $disk differ in partition layout; not updating" >&2
  exit 1
}
# every partition is MiB-aligned (build.sh), so dd copies whole MiB
layout "$new" | sed -E 's/^start= *([0-9]+), size= *([0-9]+),.*name="([^"]*)".*/\3 \1 \2/' |
while read -r name start size; do
  [ "$name" = e2s-var ] && continue
  echo "update.sh: $name ($((size / 2048)) MiB)" >&2
  dd if="$new" of="$disk" bs=1M skip=$((start / 2048)) seek=$((start / 2048)) count=$((size / 2048)) \
    conv=notrunc status=none
done
echo "update.sh: $disk now boots $(basename "$new"); e2s-var kept" >&2
