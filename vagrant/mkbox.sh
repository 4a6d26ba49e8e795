#!/usr/bin/env bash
# Turns the appliance's disk image into a libvirt Vagrant box (make vagrant-box):
#
#   vagrant/mkbox.sh bin/e2sgate.img bin/e2sgate.box
#
# A box is a tar of box.img (the disk as qcow2), metadata.json and a
# Vagrantfile with the box's defaults (UEFI, q35, no synced folder, no SSH
# provisioning: the appliance has no shell account for Vagrant). The disk
# is the image as built: no keys, no config; the seed comes as a second
# disk (vagrant/Vagrantfile).
set -euo pipefail
img=${1:?usage: mkbox.sh IMAGE.img OUT.box} out=${2:?usage: mkbox.sh IMAGE.img OUT.box}
command -v qemu-img >/dev/null || { echo "mkbox.sh: qemu-img is missing (Debian package qemu-utils)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/e2s-box.XXXXXX")
trap 'rm -rf "$work"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
qemu-img convert -q -c -O qcow2 "$img" "$work/box.img"
gib=$(( ($(stat -c %s "$img") + (1 << 30) - 1) >> 30 ))
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$gib" >"$work/metadata.json"
install -m 0644 "$here/box/Vagrantfile" "$work/Vagrantfile"
tar -C "$work" -czf "$out.tmp" metadata.json Vagrantfile box.img
mv "$out.tmp" "$out"
echo "mkbox.sh: $out ($(du -h "$out" | cut -f1); disk $(du -h --apparent-size "$img" | cut -f1), qcow2 $(du -h "$work/box.img" | cut -f1)); version $(cat "$img.version" 2>/dev/null || echo unknown)" >&2
