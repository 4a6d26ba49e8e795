#!/usr/bin/env bash
# Updates an appliance's disk to a new image, offline (the VM powered off),
# into the slot not in use (A/B), with a way back:
#
#   [TRIES=1] [SB_CERT=cert.pem] images/vm/update.sh NEW.img DISK
#
#   1. The image the disk boots now is the newest kernel image on its ESP
#      (EFI/Linux/e2sgate-VERSION.efi) that systemd-boot's boot assessment
#      marks good: no try counter in its name.
#   2. NEW's root and verity partitions are written into the disk's other
#      slot (e2s-root-a/b, e2s-verity-a/b), whose GPT UUIDs become the new
#      root hash's halves (the initramfs finds the root by them).
#   3. NEW's signed kernel image goes to EFI/Linux/e2sgate-NEWVERSION+TRIES.efi
#      last, so an interrupted update leaves the disk booting the old image.
#      Every other entry but the current one is removed.
#
# At the next boot systemd-boot boots the newest entry and counts a try.
# When the appliance comes up, e2sgate-bootcheck lets boot-complete.target
# be reached and systemd-bless-boot renames the entry to
# e2sgate-NEWVERSION.efi (good). When it does not (a kernel panic, a root
# that fails verification, the appliance not up within the bootcheck's
# timeout: it reboots), the tries run out and systemd-boot boots the old
# image again, from its untouched slot. The e2s-var partition
# (/var/lib/e2sgate, the audit log, the seed state) is never written.
set -euo pipefail
new=${1:?usage: update.sh NEW.img DISK} disk=${2:?usage: update.sh NEW.img DISK}
tries=${TRIES:-1}
die() { echo "update.sh: $*" >&2; exit 1; }
say() { echo "update.sh: $*" >&2; }
for t in sfdisk mdir mcopy mdel objcopy dd; do
  command -v "$t" >/dev/null || die "$t is missing; 'make deps' installs it"
done
export MTOOLS_SKIP_CHECK=1
work=$(mktemp -d "${TMPDIR:-/tmp}/e2s-update.XXXXXX")
trap 'rm -rf "$work"' EXIT

# partitions as "name start size uuid" (sectors of 512 bytes)
parts() {
  sfdisk --dump "$1" | grep -E '^[^ ]+ : start=' | sed -E \
    's/^[^ ]+ : start= *([0-9]+), size= *([0-9]+),.*uuid=([0-9A-Fa-f-]+).*name="([^"]*)".*/\4 \1 \2 \3/'
}
layout() { parts "$1" | awk '{print $1, $2, $3}'; }
[ "$(layout "$new")" = "$(layout "$disk")" ] || die "$new and $disk differ in partition layout; not updating (an image from before A/B slots needs a fresh install)"
field() { parts "$1" | awk -v n="$2" -v f="$3" '$1 == n {print $f}'; } # IMAGE NAME COLUMN
index() { parts "$1" | awk -v n="$2" '$1 == n {print NR}'; }
esp() { echo "$1@@$(( $(field "$1" esp 2) * 512 ))"; }
entries() { mdir -b -i "$(esp "$1")" ::/EFI/Linux 2>/dev/null | sed -n 's|^::/EFI/Linux/||p' | grep '^e2sgate-.*\.efi$' || true; }
version() { echo "$1" | sed -E 's/^e2sgate-([0-9.]+)(\+[0-9]+(-[0-9]+)?)?\.efi$/\1/'; }
roothash() { # IMAGE ENTRY
  mcopy -n -i "$(esp "$1")" "::/EFI/Linux/$2" "$work/uki.efi"
  objcopy -O binary --only-section=.cmdline "$work/uki.efi" "$work/cmdline"
  tr ' ' '\n' <"$work/cmdline" | sed -n 's/^e2s.roothash=\([0-9a-f]\{64\}\)$/\1/p'
}
guid() { echo "$1" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12})$/\1-\2-\3-\4-\5/'; }

# 1. what the disk boots now
cur=$(entries "$disk" | grep -v '+' | sort -V -t- -k2 | tail -1)
[ -n "$cur" ] || die "no kernel image on $disk is marked good (EFI/Linux/e2sgate-VERSION.efi): boot it once so that one comes up, then update"
cur_hash=$(roothash "$disk" "$cur")
[ -n "$cur_hash" ] || die "$cur on $disk has no e2s.roothash on its command line"
cur_uuid=$(guid "${cur_hash:0:32}")
if [ "$(field "$disk" e2s-root-a 4 | tr A-F a-f)" = "$cur_uuid" ]; then
  from=a to=b
elif [ "$(field "$disk" e2s-root-b 4 | tr A-F a-f)" = "$cur_uuid" ]; then
  from=b to=a
else
  die "neither slot of $disk holds the root of $cur (root hash $cur_hash)"
fi

# 2. the new image: its one kernel image and root (a fresh image's slot a)
new_entry=$(entries "$new" | head -1)
[ -n "$new_entry" ] && [ "$(entries "$new" | wc -l)" = 1 ] || die "$new is not a fresh image from build.sh (one EFI/Linux/e2sgate-VERSION.efi on its ESP)"
new_version=$(version "$new_entry") cur_version=$(version "$cur")
new_hash=$(roothash "$new" "$new_entry")
[ "$(guid "${new_hash:0:32}")" = "$(field "$new" e2s-root-a 4 | tr A-F a-f)" ] || die "$new: its root partition does not carry its kernel image's root hash"
[ "$new_hash" != "$cur_hash" ] || die "$disk already runs $new (root hash $new_hash)"
[ "$new_version" != "$cur_version" ] && [ "$(printf '%s\n%s\n' "$cur_version" "$new_version" | sort -V | tail -1)" = "$new_version" ] ||
  die "$new is version $new_version, the disk runs $cur_version: systemd-boot boots the highest version, so an update must be newer"
if [ -n "${SB_CERT:-}" ]; then
  command -v sbverify >/dev/null || die "sbverify is missing (Debian package sbsigntool)"
  sbverify --cert "$SB_CERT" "$work/uki.efi" >/dev/null 2>&1 || die "$new_entry is not signed by $SB_CERT; not updating"
fi
cp "$work/uki.efi" "$work/new.efi"
say "$disk runs $cur_version from slot $from; writing $new_version into slot $to"

for kind in root verity; do
  dst=e2s-$kind-$to
  [ "$(field "$new" "e2s-$kind-a" 3)" = "$(field "$disk" "$dst" 3)" ] || die "e2s-$kind slots differ in size"
  say "$dst ($(( $(field "$disk" "$dst" 3) / 2048 )) MiB)"
  # (no conv=sparse: the slot holds the old image, zeros must be written)
  dd if="$new" of="$disk" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc status=none \
    skip=$(( $(field "$new" "e2s-$kind-a" 2) * 512 )) seek=$(( $(field "$disk" "$dst" 2) * 512 )) \
    count=$(( $(field "$disk" "$dst" 3) * 512 ))
done
sync "$disk"
sfdisk -q --part-uuid "$disk" "$(index "$disk" "e2s-root-$to")" "$(guid "${new_hash:0:32}")"
sfdisk -q --part-uuid "$disk" "$(index "$disk" "e2s-verity-$to")" "$(guid "${new_hash:32:32}")"

# 3. the boot entries: the current one, and the new one with its tries
for e in $(entries "$disk"); do
  [ "$e" = "$cur" ] || { say "removing boot entry $e"; mdel -i "$(esp "$disk")" "::/EFI/Linux/$e"; }
done
mcopy -i "$(esp "$disk")" "$work/new.efi" "::/EFI/Linux/e2sgate-$new_version+$tries.efi"
sync "$disk"
say "$disk boots $new_version next ($tries tr$([ "$tries" = 1 ] && echo y || echo ies)), then $cur_version again unless $new_version comes up; e2s-var kept"
