#!/usr/bin/env bash
# Makes vagrant/seed.img, the appliance's seed disk (vfat, label E2SSEED):
# the public key for every role account and the config.
#
#   vagrant/seed.sh KEY.pub [e2sgate.yaml]
#
# Without a config, the appliance listens on its interface (0.0.0.0:8443).
# Give each person their own key in real use (keys/ROLE.pub, see
# docs/OPERATIONS.md "The VM image").
set -euo pipefail
pub=${1:?usage: seed.sh KEY.pub [e2sgate.yaml]} cfg=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
seed=$here/seed.img
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
[ -n "$cfg" ] || { cfg=$work/e2sgate.yaml; printf 'version: 1\nlisten: 0.0.0.0:8443\n' >"$cfg"; }
rm -f "$seed"
mkfs.vfat -C -n E2SSEED "$seed" 4096 >/dev/null
mcopy -i "$seed" "$cfg" ::/e2sgate.yaml
mmd -i "$seed" ::/keys
for role in secadmin keyadmin auditor operator contentmgr; do
  mcopy -i "$seed" "$pub" "::/keys/$role.pub"
done
chmod 0644 "$seed"
echo "seed.sh: $seed (keys for every role from $pub, config $(basename "$cfg"))" >&2
