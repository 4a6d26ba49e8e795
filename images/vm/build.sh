#!/usr/bin/env bash
# Builds the appliance's VM disk image (`make image`), as root, from Debian
# packages only, with the apt sources this host's apt uses:
#
#   [IMAGE_VERSION=V] [SB_KEY=key.pem SB_CERT=cert.pem] images/vm/build.sh BIN_DIR OUT.img
#
#   1. base    mmdebstrap of ./packages (Debian kernel, systemd, systemd-boot,
#              sshd, nftables, veritysetup in the initramfs), cached as a
#              tarball named by the hash of the package list and initramfs/
#              (CACHE_DIR)
#   2. rootfs  the base + the appliance programs from BIN_DIR (e2sgated,
#              e2sctl, the declared compartments' programs, the simulators,
#              the pinned runc) + rootfs/ (units, sshd, nftables, sysctls) +
#              one account per role; package manager, host keys and /boot
#              removed; IMAGE_VERSION in os-release
#   3. verity  squashfs of the root, its dm-verity hash tree and root hash
#   4. uki     kernel + initramfs + command line (with the root hash) as one
#              UEFI executable, signed for Secure Boot (SB_KEY, SB_CERT)
#   5. disk    GPT: ESP (systemd-boot, signed, and the UKI as
#              EFI/Linux/e2sgate-VERSION.efi), e2s-root-a, e2s-verity-a,
#              e2s-root-b, e2s-verity-b (empty: update.sh fills the slot
#              not in use), e2s-var (ext4, writable). The root and verity
#              partitions' GPT UUIDs are the root hash's halves, which is how
#              the initramfs finds them.
#
# Without SB_KEY the image is signed with Debian's public snakeoil test key
# (package ovmf), which the test firmware trusts: fine for make vm-test,
# worthless for Secure Boot on a real machine.
#
# The seed (keys per role, e2sgate.yaml) is not in the image: it comes at
# first boot from a disk labelled E2SSEED (see rootfs/usr/lib/e2sgate/firstboot).
# A shell script rather than Go: every step is one Debian tool.
set -euo pipefail
# (in one function, so that bash has read all of it before it runs: editing
# the file during a build does not change the build)
main() {
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=$(cd "${1:?usage: build.sh BIN_DIR OUT.img}" && pwd)
out=${2:?usage: build.sh BIN_DIR OUT.img}
cache=${CACHE_DIR:-$(dirname "$out")/image-cache}
var_mib=${VAR_MIB:-256}
step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*" >&2; }
warn() { echo "build.sh: WARNING: $*" >&2; }
die() { echo "build.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap --mode=root, chroot)"
for t in mmdebstrap mksquashfs veritysetup objcopy mkfs.vfat mcopy mkfs.ext4 sfdisk sbsign openssl go; do
  command -v "$t" >/dev/null || die "$t is missing; 'make deps' installs it"
done
# The programs: the supervisor and e2sctl, every declared compartment's
# program (compartments/builtins, as `make build` builds them), the
# simulators the default config starts (internal/sim), and the pinned runc.
compartments=$(cd "$repo" && go run ./images/cmd/mkimage -programs) || die "cannot list the compartments' programs (go run ./images/cmd/mkimage -programs)"
simulators="acquirer backoffice"
progs="e2sgated $(echo $compartments) $simulators"
for p in $progs e2sctl runc; do
  [ -x "$bin/$p" ] || die "$bin/$p is missing; run 'make build'"
done
version=${IMAGE_VERSION:-$(cd "$repo" && TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d.%H%M%S 2>/dev/null || echo 0)}
case "$version" in *[!0-9.]* | "" | .* | *.) die "IMAGE_VERSION $version: digits and dots only (the boot loader boots the highest)" ;; esac
# Secure Boot: the UKI and systemd-boot are signed with SB_KEY/SB_CERT
sb_pass=${SB_KEY_PASS:-}
if [ -z "${SB_KEY:-}" ]; then
  SB_KEY=/usr/share/ovmf/PkKek-1-snakeoil.key SB_CERT=/usr/share/ovmf/PkKek-1-snakeoil.pem sb_pass=snakeoil
  warn "no SB_KEY: signing with Debian's public snakeoil test key ($SB_KEY). Secure Boot protects nothing until SB_KEY/SB_CERT name your own key, enrolled in the machine's db"
fi
[ -f "$SB_KEY" ] && [ -f "${SB_CERT:-}" ] || die "SB_KEY $SB_KEY or SB_CERT ${SB_CERT:-(unset)} is missing (the snakeoil key is in Debian package ovmf)"

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

[ -z "${BASE_ONLY:-}" ] || exit 0 # (make the base only)

# The image is a function of the base, the programs and this directory: when
# none changed since the last build, the last image stands.
inputs=$( { echo "$key $version"; sha256sum "$SB_CERT"; (cd "$bin" && sha256sum $progs e2sctl runc);
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
install -d -m 0755 "$root/usr/lib/e2sgate" "$root/efi"
for p in $progs; do
  install -m 0755 "$bin/$p" "$root/usr/lib/e2sgate/$p"
done
echo "programs: $progs" >&2
install -m 0755 "$bin/e2sctl" "$root/usr/bin/e2sctl"
# e2sgated runs the runc pinned in go.mod that `make build` put beside it,
# never one on PATH (the base has no runc package).
install -m 0755 "$bin/runc" "$root/usr/lib/e2sgate/runc"
echo "runc: $bin/runc ($("$bin/runc" --version | head -1))" >&2
for p in login unseeded bootcheck; do
  (cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$root/usr/lib/e2sgate/$p" "./images/vm/$p")
done
printf 'IMAGE_ID=e2sgate\nIMAGE_VERSION=%s\n' "$version" >>"$root/usr/lib/os-release"
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
  e2sgate-firstboot.service e2sgated.service e2sgate-unseeded.service e2sgate-bootcheck.service
# the ESP is the boot loader's: only update.sh and systemd-bless-boot write it
chroot "$root" systemctl mask -q apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer systemd-boot-update.service systemd-boot-system-token.service 2>/dev/null || true
for u in e2sgated e2sgate-unseeded e2sgate-bootcheck e2sgate-firstboot ssh; do
  echo "systemd-analyze security $u: $(chroot "$root" systemd-analyze security --offline=true --no-pager $u.service 2>/dev/null | tail -1)" >&2
done
# systemd-boot and its stub, from the base (the same systemd as the image)
efi=$root/usr/lib/systemd/boot/efi
for f in systemd-bootx64.efi linuxx64.efi.stub; do
  [ -f "$efi/$f" ] || die "$efi/$f is missing from the base (package systemd-boot-efi)"
  cp "$efi/$f" "$work/$f"
done
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
lsm=landlock,lockdown,yama,integrity,apparmor,bpf
cmdline="root=/dev/mapper/root rootfstype=squashfs ro e2s.roothash=$roothash lsm=$lsm console=ttyS0,115200 panic=10 loglevel=4 systemd.show_status=auto"
echo "$cmdline" >"$work/cmdline"
objcopy \
  --add-section .osrel="$root/usr/lib/os-release" --change-section-vma .osrel=0x20000 \
  --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline=0x30000 \
  --add-section .linux="$work/vmlinuz" --change-section-vma .linux=0x2000000 \
  --add-section .initrd="$work/initrd" --change-section-vma .initrd=0x3000000 \
  "$work/linuxx64.efi.stub" "$work/uki.efi"
# Secure Boot: the firmware runs only what a key in its db signed, so the
# command line, and with it the root hash, is the signer's.
openssl pkey -in "$SB_KEY" -passin "pass:$sb_pass" -out "$work/sb.key"
for f in uki.efi systemd-bootx64.efi; do
  sbsign --key "$work/sb.key" --cert "$SB_CERT" --output "$work/$f.signed" "$work/$f" 2>/dev/null
  sbverify --cert "$SB_CERT" "$work/$f.signed" >/dev/null || die "sbsign did not sign $f"
done
rm -f "$work/sb.key"
echo "signed for Secure Boot by: $(openssl x509 -in "$SB_CERT" -noout -subject)" >&2

# 5. disk ------------------------------------------------------------------
step "disk: GPT with ESP, slots a and b (root + verity), var"
mib() { echo $(( ($(stat -c %s "$1") + 1048575) / 1048576 )); }
# a 128-bit hex string as a GPT UUID (8-4-4-4-12)
guid() { echo "$1" | sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12})$/\1-\2-\3-\4-\5/'; }
esp_mib=64
mkfs.vfat -C -n E2SESP "$work/esp" $((esp_mib * 1024)) >/dev/null
mmd -i "$work/esp" ::/EFI ::/EFI/BOOT ::/EFI/Linux ::/loader
mcopy -i "$work/esp" "$work/systemd-bootx64.efi.signed" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp" "$work/uki.efi.signed" "::/EFI/Linux/e2sgate-$version.efi"
# no menu, no editor (a changed command line could drop the root hash)
printf 'timeout 0\neditor no\nauto-entries no\nauto-firmware no\nrandom-seed-mode off\n' >"$work/loader.conf"
mcopy -i "$work/esp" "$work/loader.conf" ::/loader/loader.conf
mkfs.ext4 -q -F -L e2s-var -E root_owner=0:0 -d "$work/var" "$work/varfs" "${var_mib}M"
# fixed sizes, so that every image has the same layout and an update
# (update.sh) writes the slot not in use and keeps e2s-var
root_mib=${ROOT_MIB:-256} verity_mib=${VERITY_MIB:-8}
[ "$(mib "$work/root.sqfs")" -le "$root_mib" ] || die "root is $(mib "$work/root.sqfs") MiB, the slot $root_mib MiB (ROOT_MIB)"
[ "$(mib "$work/verity")" -le "$verity_mib" ] || die "hash tree is $(mib "$work/verity") MiB, the slot $verity_mib MiB (VERITY_MIB)"
[ "$(mib "$work/uki.efi.signed")" -le $(( (esp_mib - 4) / 2 )) ] || die "the UKI is $(mib "$work/uki.efi.signed") MiB: two do not fit the ESP ($esp_mib MiB)"
total=$(( 1 + esp_mib + 2 * (root_mib + verity_mib) + var_mib + 1 ))
# slot b's UUIDs until an update fills it: fixed, so the image is reproducible
empty=$(echo "e2s-slot-b $roothash" | sha256sum | cut -c1-64)
rm -f "$out.tmp"
truncate -s "${total}M" "$out.tmp"
sfdisk -q "$out.tmp" <<SFDISK
label: gpt
label-id: $(guid "$(echo "e2s-disk $roothash" | sha256sum | cut -c1-32)")
start=1MiB, size=${esp_mib}MiB, type=uefi, name=esp, uuid=$(guid "$(echo "e2s-esp $roothash" | sha256sum | cut -c1-32)")
size=${root_mib}MiB, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709, name=e2s-root-a, uuid=$(guid "${roothash:0:32}")
size=${verity_mib}MiB, type=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5, name=e2s-verity-a, uuid=$(guid "${roothash:32:32}")
size=${root_mib}MiB, type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709, name=e2s-root-b, uuid=$(guid "${empty:0:32}")
size=${verity_mib}MiB, type=2c7357ed-ebd2-46d9-aec1-23d437ec2bf5, name=e2s-verity-b, uuid=$(guid "${empty:32:32}")
size=${var_mib}MiB, type=4d21b016-b534-45c2-a9fb-5c16e091fd2d, name=e2s-var, uuid=$(guid "$(echo "e2s-var $roothash" | sha256sum | cut -c1-32)")
SFDISK
off=1
for part in esp:$esp_mib root.sqfs:$root_mib verity:$verity_mib -:$root_mib -:$verity_mib varfs:$var_mib; do
  [ "${part%%:*}" = - ] || dd if="$work/${part%%:*}" of="$out.tmp" bs=1M seek=$off conv=notrunc,sparse status=none
  off=$(( off + ${part##*:} ))
done
mv "$out.tmp" "$out"
echo "$roothash" >"$out.roothash"
echo "$version" >"$out.version"
echo "$inputs" >"$out.inputs"
step "done: $out version $version ($(du -h --apparent-size "$out" | cut -f1) apparent, $(du -h "$out" | cut -f1) on disk; root $(mib "$work/root.sqfs") MiB squashfs, UKI $(mib "$work/uki.efi.signed") MiB, kernel $kver)"
}
main "$@"
