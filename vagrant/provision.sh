#!/usr/bin/env bash
# Provisions the e2sgate appliance VM (run once, as root, by Vagrant).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq nftables iproute2 openssl ca-certificates >/dev/null

install -d -m 0755 /opt/e2sgate/bin /etc/e2sgate
install -m 0755 /vagrant/bin/* /opt/e2sgate/bin/
[ -f /etc/e2sgate/e2sgate.yaml ] || printf 'version: 1\nlisten: 0.0.0.0:8443\nbin_dir: /opt/e2sgate/bin\n' >/etc/e2sgate/e2sgate.yaml

# One account per role; roles are mapped to uids in the policy data.
for role in secadmin keyadmin auditor operator contentmgr; do
  id "$role" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$role"
done

# Kernel hardening for a single-purpose appliance.
cat >/etc/sysctl.d/90-e2sgate.conf <<'SYSCTL'
kernel.kptr_restrict = 2
kernel.dmesg_restrict = 1
kernel.unprivileged_bpf_disabled = 1
kernel.yama.ptrace_scope = 2
net.core.bpf_jit_harden = 2
fs.protected_symlinks = 1
fs.protected_hardlinks = 1
fs.suid_dumpable = 0
net.ipv4.conf.all.rp_filter = 1
net.ipv4.conf.all.accept_redirects = 0
net.ipv4.conf.all.send_redirects = 0
SYSCTL
sysctl --system >/dev/null

cat >/etc/systemd/system/e2sgated.service <<'UNIT'
[Unit]
Description=e2sgate secure-commerce gateway (supervisor)
After=network-online.target

[Service]
ExecStart=/opt/e2sgate/bin/e2sgated -config /etc/e2sgate/e2sgate.yaml
Restart=on-failure
KillSignal=SIGTERM
TimeoutStopSec=30
ProtectHome=yes
ProtectSystem=full
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now e2sgated
