# Configures a fresh Debian root file system for a carepath lab host.
# Run inside the chroot as: sh -s SUITE MIRROR SECURITY_MIRROR ADMIN_USER
set -eu
suite=$1 mirror=$2 security=$3 admin=$4

cat > /etc/apt/sources.list <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
SOURCES
rm -f /etc/apt/sources.list.d/debian.sources

# Every host generates its own SSH host keys on first boot.
rm -f /etc/ssh/ssh_host_*
cat > /etc/systemd/system/carepath-ssh-hostkeys.service <<'UNIT'
[Unit]
Description=Generate this host's own SSH host keys
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/carepath-ssh-hostkeys.service \
  /etc/systemd/system/multi-user.target.wants/carepath-ssh-hostkeys.service

# Each container gets its own machine id at boot.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id

# The automation account: key-only (no usable password), passwordless sudo.
useradd --create-home --shell /bin/bash --groups sudo "$admin"
usermod --password '*' "$admin"
echo "$admin ALL=(ALL) NOPASSWD: ALL" > "/etc/sudoers.d/carepath-lab"
chmod 0440 /etc/sudoers.d/carepath-lab

# A warm package index, so the first apt task on a lab host is quick.
apt-get -q update
apt-get clean
