#!/usr/bin/env bash
# Builds the appliance's VM disk image (`make image`), as root, from Debian
# packages only, with the apt sources this host's apt uses:
#
#   images/vm/build.sh BIN_DIR OUT.img
#
#   1. base    mmdebstrap of ./packages (Debian kernel, systemd, sshd, nftables,
#              runc, veritysetup in the initramfs), cached as a tarball named
#              by the hash of the package list and initramfs/ (CACHE_DIR)
#   2. rootfs  the base + the appliance programs from BIN_DIR + rootfs/
#              (units, sshd, nftables, sysctls) + one account per role;
#              package manager, host keys and /boot removed
#   3. verity  squashfs of the root, its dm-verity hash tree and root hash
#   4. uki     kernel + initramfs + command line (with the root hash) as one
#              UEFI executable, EFI/BOOT/BOOTX64.EFI on the ESP
#   5. disk    GPT: ESP, e2s-root-a, e2s-verity-a, e2s-var (ext4, writable)
#
# The seed (keys per role, e2sgate.yaml) is not in the image: it comes at
# first boot from a disk labelled E2SSEED (see rootfs/usr/lib/e2sgate/firstboot).
# A shell script rather than Go: every step is one Debian tool.
set -euo pipefail
# (in one function, so that bash has read all of it before it runs: editing
# the file during a build does not change the build)
main() {
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "${1:?usage: build.sh BIN_DIR OUT.img}" && pwd)
out=${2:?usage: build.sh BIN_DIR OUT.img}
cache=${CACHE_DIR:-$(dirname "$out")/image-cache}
var_mib=${VAR_MIB:-256}
step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { echo "build.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root, chroot)"
for t in mmdebstrap mksquashfs veritysetup objcopy mkfs.vfat mcopy mkfs.ext4 sfdisk; do
  command -v "$t" >/dev/null || die "$t is missing; 'make deps' installs it"
done
stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
[ -f "$stub" ] || die "$stub is missing (Debian package systemd-boot-efi)"
progs="e2sgated e2sctl outside inside purchasing payment keyhandler acquirer backoffice"
for p in $progs; do
  [ -x "$bin/$p" ] || die "$bin/$p is missing; run 'make build'"
done

# The host's Debian sources, as its apt has them: only files signed by the
# Debian archive keyring, so third-party repositories stay out.
codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] && grep -q debian-archive-keyring "$f" && sources+=("$f")
done
if [ ${#sources[@]} -eq 0 ]; then # one-line sources with no Signed-By
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && grep -Eq '^deb .*debian' "$f" && sources+=("$f")
  done
fi
[ ${#sources[@]} -gt 0 ] || die "no Debian apt sources found under /etc/apt"

work=$(mktemp -d "${TMPDIR:-/tmp}/e2s-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache" "$(dirname "$out")"

# 1. base ------------------------------------------------------------------
stage1_version=1
key=$( { echo "$stage1_version $codename"; cat "$here/packages"; find "$here/initramfs" -type f | sort | xargs cat; } | sha256sum | cut -c1-16)
base=$cache/base-$key.tar
if [ -f "$base" ]; then
  step "base: cached $base"
else
  step "base: mmdebstrap $codename ($(grep -vc '^#' "$here/packages") packages) from ${sources[*]}"
  pkgs=$(grep -v '^#' "$here/packages" | paste -sd, -)
  mmdebstrap --mode=root --variant=minbase --include="$pkgs" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --setup-hook='mkdir -p "$1/etc/initramfs-tools"' \
    --setup-hook="cp -r '$here/initramfs/.' \"\$1/etc/initramfs-tools/\"" \
    --customize-hook='chroot "$1" update-initramfs -u -k all' \
    "$codename" "$cache/partial-$key.tar" "${sources[@]}"
  mv "$cache/partial-$key.tar" "$base"
  find "$cache" -maxdepth 1 -name 'base-*.tar' ! -name "base-$key.tar" -delete # keep one
fi

# The image is a function of the base, the programs and this directory: when
# none changed since the last build, the last image stands.
inputs=$( { echo "$key"; (cd "$bin" && sha256sum $progs $(ls runc 2>/dev/null));
  find "$here" -type f ! -name '*_test.go' | sort | xargs sha256sum; } | sha256sum | cut -c1-16)
if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$inputs" ]; then
  step "up to date: $out (inputs $inputs)"
  exit 0
fi

# 2. rootfs ----------------------------------------------------------------
step "rootfs: unpack the base, add the appliance"
root=$work/root
mkdir "$root"
tar -C "$root" -xf "$base"
kver=$(basename "$(ls -d "$root"/lib/modules/* | sort -V | tail -1)")
install -m 0644 "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
install -m 0644 "$root/boot/initrd.img-$kver" "$work/initrd"
cp -a "$here/rootfs/." "$root/"
install -d -m 0755 "$root/usr/lib/e2sgate"
for p in e2sgated outside inside purchasing payment keyhandler acquirer backoffice; do
  install -m 0755 "$bin/$p" "$root/usr/lib/e2sgate/$p"
done
install -m 0755 "$bin/e2sctl" "$root/usr/bin/e2sctl"
# e2sgated runs the runc pinned in go.mod that `make build` put beside it,
# never one on PATH.
[ -x "$bin/runc" ] || { echo "no $bin/runc: run make build first" >&2; exit 1; }
install -m 0755 "$bin/runc" "$root/usr/lib/e2sgate/runc"
echo "runc: $bin/runc ($("$bin/runc" --version | head -1))" >&2
CGO_ENABLED=0 go build -trimpath -o "$root/usr/lib/e2sgate/login" "$here/login"
ln -sfn /var/lib/e2sgate-seed/etc "$root/etc/e2sgate"
# one account per role, fixed uids (the role book maps them, see firstboot)
uid=60101
for role in secadmin keyadmin auditor operator contentmgr; do
  chroot "$root" groupadd -K GID_MAX=65000 --gid $uid "e2s-$role"
  chroot "$root" useradd -K UID_MAX=65000 --uid $uid --gid "e2s-$role" --no-create-home --home-dir / \
    --shell /usr/lib/e2sgate/login --comment "e2sgate $role" "$role"
  chroot "$root" usermod -p '*' "$role" # no password, not locked: key only
  uid=$((uid + 1))
done
chroot "$root" passwd -l root >/dev/null
chroot "$root" systemctl enable -q systemd-networkd.service nftables.service ssh.service \
  e2sgate-firstboot.service e2sgated.service
chroot "$root" systemctl mask -q apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer 2>/dev/null || true
echo "systemd-analyze security e2sgated: $(chroot "$root" systemd-analyze security --offline=true --no-pager e2sgated.service 2>/dev/null | tail -1)" >&2
# no package manager, no host keys, no machine id, no kernel in the root
rm -f "$root"/etc/ssh/ssh_host_* "$root"/usr/bin/apt* "$root"/usr/bin/dpkg* "$root"/usr/sbin/update-initramfs
rm -rf "$root"/var/lib/apt "$root"/var/cache/apt "$root"/usr/lib/apt "$root"/etc/apt "$root"/boot/* \
  "$root"/usr/lib/gcc "$root"/usr/share/initramfs-tools "$root"/etc/initramfs-tools
: >"$root/etc/machine-id"
# drivers an appliance VM never loads
m=$root/lib/modules/$kver/kernel
rm -rf "$m"/sound "$m"/drivers/{gpu,media,infiniband,staging,bluetooth,isdn,net/wireless,net/ethernet/mellanox,usb/gadget,iio,hid} \
  "$m"/net/{wireless,mac80211,bluetooth}
chroot "$root" depmod -a "$kver"
# /var is its own filesystem: the root keeps only the mount point
mkdir -p "$root/var/lib/e2sgate" "$root/var/lib/e2sgate-seed"
mkdir "$work/var"
mv "$root"/var/* "$work/var/"

# 3. verity ----------------------------------------------------------------
step "verity: squashfs of the root, hash tree, root hash"
mksquashfs "$root" "$work/root.sqfs" -comp zstd -noappend -no-xattrs -mkfs-time 0 -all-time 0 \
  -Xcompression-level 6 -processors "$(nproc)" -quiet -progress
veritysetup format "$work/root.sqfs" "$work/verity" >"$work/verity.txt"
roothash=$(awk '/^Root hash:/ {print $3}' "$work/verity.txt")
[ -n "$roothash" ] || die "no root hash from veritysetup: $(cat "$work/verity.txt")"
echo "root hash $roothash" >&2

# 4. uki -------------------------------------------------------------------
step "uki: kernel $kver + initramfs + command line"
lsm=landlock,lockdown,yama,apparmor,bpf
cmdline="root=/dev/mapper/root rootfstype=squashfs ro e2s.slot=a e2s.roothash=$roothash lsm=$lsm console=ttyS0,115200 panic=10 loglevel=4 systemd.show_status=auto"
echo "$cmdline" >"$work/cmdline"
objcopy \
  --add-section .osrel="$root/usr/lib/os-release" --change-section-vma .osrel=0x20000 \
  --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline=0x30000 \
  --add-section .linux="$work/vmlinuz" --change-section-vma .linux=0x2000000 \
  --add-section .initrd="$work/initrd" --change-section-vma .initrd=0x3000000 \
  "$stub" "$work/uki.efi"

# 5. disk ------------------------------------------------------------------
step "disk: GPT with ESP, root a, verity a, var"
mib() { echo $(( ($(stat -c %s "$1") + 1048575) / 1048576 )); }
esp_mib=64
mkfs.vfat -C -n E2SESP "$work/esp" $((esp_mib * 1024)) >/dev/null
mmd -i "$work/esp" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp" "$work/uki.efi" ::/EFI/BOOT/BOOTX64.EFI
mkfs.ext4 -q -F -L e2s-var -E root_owner=0:0 -d "$work/var" "$work/varfs" "${var_mib}M"
# fixed sizes, so that every image has the same layout and an update
# (update.sh) replaces ESP, root and verity in place and keeps e2s-var
root_mib=${ROOT_MIB:-256} verity_mib=${VERITY_MIB:-8}
[ "$(mib "$work/root.sqfs")" -le "$root_mib" ] || die "root is $(mib "$work/root.sqfs") MiB, the slot $root_mib MiB (ROOT_MIB)"
[ "$(mib "$work/verity")" -le "$verity_mib" ] || die "hash tree is $(mib "$work/verity") MiB, the slot $verity_mib MiB (VERITY_MIB)"
total=$(( 1 + esp_mib + root_mib + verity_mib + var_mib + 1 ))
rm -f "$out.tmp"
truncate -s "${total}M" "$out.tmp"
sfdisk -q "$out.tmp" <<SFDISK
label: gpt
start=1MiB, size=${esp_mib}MiB, type=uefi, name=esp
size=${root_mib}MiB, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709, name=e2s-root-a
size=${verity_mib}MiB, type=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5, name=e2s-verity-a
size=${var_mib}MiB, type=4d21b016-b534-45c2-a9fb-5c16e091fd2d, name=e2s-var
SFDISK
off=1
for part in esp:$esp_mib root.sqfs:$root_mib verity:$verity_mib varfs:$var_mib; do
  dd if="$work/${part%%:*}" of="$out.tmp" bs=1M seek=$off conv=notrunc,sparse status=none
  off=$(( off + ${part##*:} ))
done
mv "$out.tmp" "$out"
echo "$roothash" >"$out.roothash"
echo "$inputs" >"$out.inputs"
step "done: $out ($(du -h --apparent-size "$out" | cut -f1) apparent, $(du -h "$out" | cut -f1) on disk; root $(mib "$work/root.sqfs") MiB squashfs, kernel $kver)"
}
main "$@"
