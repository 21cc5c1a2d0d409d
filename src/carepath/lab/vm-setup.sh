# Turns a lab container root file system into a bootable qemu guest (run in the chroot).
# Run inside the chroot as: sh -s ADMIN_USER
# The guest boots with qemu's -kernel/-initrd (no boot loader) and takes its hostname, its
# own SSH host key and the lab's login key from qemu fw_cfg at every boot.
set -eu
admin=$1
export DEBIAN_FRONTEND=noninteractive

# systemd-networkd is its own package from Debian 13 on.
extra=""
if apt-cache show systemd-networkd >/dev/null 2>&1; then extra="systemd-networkd"; fi
apt-get -q update
apt-get -q install -y --no-install-recommends linux-image-amd64 initramfs-tools zstd kmod $extra

mkdir -p /etc/systemd/network
cat > /etc/systemd/network/20-lab.network <<'NETWORK'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NETWORK
ln -sf /lib/systemd/system/systemd-networkd.service \
  /etc/systemd/system/multi-user.target.wants/systemd-networkd.service
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' > /etc/hosts
# qemu's user-mode network answers DNS on 10.0.2.3.
rm -f /etc/resolv.conf
echo "nameserver 10.0.2.3" > /etc/resolv.conf

cat > /usr/local/sbin/carepath-vm-seed <<'SEED'
#!/bin/sh
# Hostname, SSH host key and the lab's login key, from qemu fw_cfg.
set -eu
modprobe qemu_fw_cfg 2>/dev/null || true
d=/sys/firmware/qemu_fw_cfg/by_name/opt/carepath
[ -d "$d" ] || exit 0
name=$(cat "$d/hostname/raw")
echo "$name" > /etc/hostname
hostname "$name"
grep -q "^127.0.1.1 $name\$" /etc/hosts || echo "127.0.1.1 $name" >> /etc/hosts
install -m 0600 "$d/ssh_host_ed25519_key/raw" /etc/ssh/ssh_host_ed25519_key
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key > /etc/ssh/ssh_host_ed25519_key.pub
ssh-keygen -A
home=$(getent passwd ADMIN | cut -d: -f6)
install -d -m 0700 -o ADMIN -g ADMIN "$home/.ssh"
install -m 0600 -o ADMIN -g ADMIN "$d/authorized_keys/raw" "$home/.ssh/authorized_keys"
SEED
sed -i "s/ADMIN/$admin/g" /usr/local/sbin/carepath-vm-seed
chmod 0755 /usr/local/sbin/carepath-vm-seed

cat > /etc/systemd/system/carepath-vm-seed.service <<'UNIT'
[Unit]
Description=carepath lab: hostname and SSH keys from qemu fw_cfg
ConditionVirtualization=vm
After=local-fs.target
Before=ssh.service carepath-ssh-hostkeys.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/carepath-vm-seed

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/carepath-vm-seed.service \
  /etc/systemd/system/multi-user.target.wants/carepath-vm-seed.service

apt-get clean
