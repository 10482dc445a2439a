#!/usr/bin/env bash
# Build small, sparse, realistic guest disk images with real tools and no loop devices:
# filesystems from folders (mkfs.ext4 -d, mkfs.xfs -p, mkfs.fat + mtools), tables with sfdisk/sgdisk, stitched
# with dd. Each IMAGE.raw gets IMAGE.env beside it: the facts it was built with (KEY=value), for the tests.
#
#   scripts/build-test-images.sh OUTDIR
#
# Images:
#   mbr-bios-ext4    Debian 12, MBR, active ext4 root, boot code in the MBR           -> BIOS
#   gpt-uefi-ext4    Ubuntu 22.04, GPT, ESP (FAT32, \EFI\BOOT\BOOTX64.EFI) + ext4 root -> UEFI
#   gpt-hybrid-ext4  Debian 12, GPT, BIOS boot partition with a core image, boot code in the protective MBR,
#                    ESP, separate ext4 /boot, ext4 root                                -> UEFI-Preferred
#   mbr-xfs5         Rocky 9, XFS v5 root, qemu-guest-agent present and cloud-init absent, SELinux enforcing
#   deb-xfs          Debian 12 on an XFS v5 root (MBR/BIOS)
#   mbr-xfs4         CentOS 7 (redhat-release only, no os-release), XFS v4 root, swap partition; ifcfg with a
#                    static address, HWADDR and a 70-persistent-net.rules MAC pin
#   deb-novirtio-{gzip,xz,zstd,lz4}
#                    Debian 12 as mbr-bios-ext4, but virtio is neither built in nor in the initramfs (an early
#                    microcode cpio, then the main archive compressed as named)
#   win-ntfs         Windows Server 2022 skeleton: GPT, ESP, NTFS with SOFTWARE and SYSTEM hives written by hivexsh
#                    (viostor and netkvm registered), PE stubs for cmd.exe and ntoskrnl.exe                     -> UEFI
#   win-novirtio     as win-ntfs, but without the virtio drivers (no services, no .sys files)
#   deb-nodrivers    Debian 12 as mbr-bios-ext4, but its initramfs lacks NVMe and the Hyper-V drivers
#   deb-bad-ext4     Debian 12 with problems (PROBLEMS in its .env): GRUB root=/dev/sda1, cloud-init 0.7.9,
#                    immutable /etc/shadow, absolute /lib symlink, sshd installed but not enabled, netplan static
#                    address matched by MAC, ext4 with the 64bit feature (a note for Alibaba)
# The good images (mbr-bios-ext4, gpt-uefi-ext4, gpt-hybrid-ext4, deb-xfs, win-ntfs) pass every check of every target
# (Azure: as a fixed VHD): ext4 without 64bit, virtio, NVMe and Hyper-V drivers at boot.
# The good images also carry GRUB configuration (grub.cfg; BLS entries and grubenv on Rocky), network
# configuration, package databases (dpkg status; on Rocky a real RPM SQLite database written by rpm --justdb) and
# sshd units, with the facts in their .env files.
set -euo pipefail

OUT=${1:?usage: build-test-images.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgport-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for tool in sfdisk sgdisk mkfs.ext4 mkfs.xfs mkfs.fat mkfs.btrfs mkswap mmd mcopy cpio gzip xz zstd lz4 dd truncate debugfs rpm rpmbuild hivexsh mkntfs wimlib-imagex cryptsetup python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "build-test-images: missing tool '$tool' (run scripts/install-peers.sh)" >&2; exit 1; }
done

KVER=6.1.0-18-amd64
# Debian's kernel builds NVMe and the Hyper-V drivers as modules; the good images' initramfs carries them.
KCONFIG_NVME_HV="CONFIG_BLK_DEV_NVME=m CONFIG_HYPERV=m CONFIG_HYPERV_STORAGE=m CONFIG_HYPERV_NET=m"
DRIVERS_NVME_HV=nvme,hv_vmbus,hv_storvsc,hv_netvsc
# Deterministic mtimes and hash seeds so the same script builds the same trees.
export E2FSPROGS_FAKE_TIME=1700000000 SOURCE_DATE_EPOCH=1700000000

# A Linux root tree: usrmerge layout, a real ELF /bin/sh from the host, release files, kernel, initramfs.
# make_tree DIR HOSTNAME FSTAB_TEXT
make_tree() {
    local t=$1 host=$2 fstab=$3
    mkdir -p "$t"/{etc,boot,root,tmp,var,home,proc,sys,dev,run} "$t"/usr/{bin,sbin,lib} \
        "$t/usr/lib/modules/$KVER/kernel/drivers/block" "$t/usr/lib/modules/$KVER/kernel/drivers/virtio"
    ln -s usr/bin "$t/bin"
    ln -s usr/sbin "$t/sbin"
    ln -s usr/lib "$t/lib"
    cp "$(readlink -f /bin/sh)" "$t/usr/bin/dash"
    ln -s dash "$t/usr/bin/sh"
    echo "$host" >"$t/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$host" >"$t/etc/hosts"
    printf '%s\n' "$fstab" >"$t/etc/fstab"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$t/etc/passwd"
    printf 'root:*:19000:0:99999:7:::\n' >"$t/etc/shadow"
    chmod 640 "$t/etc/shadow"
    # Kernel: a stub with the bzImage "HdrS" magic at 0x202; enough for the file-level checks.
    head -c 4096 /dev/zero >"$t/boot/vmlinuz-$KVER"
    printf 'HdrS' | dd of="$t/boot/vmlinuz-$KVER" bs=1 seek=514 conv=notrunc status=none
    printf '%s\n' CONFIG_VIRTIO_PCI=y CONFIG_VIRTIO_BLK=m CONFIG_VIRTIO_NET=m $KCONFIG_NVME_HV >"$t/boot/config-$KVER"
    printf 'ELF-module-stub\n' >"$t/usr/lib/modules/$KVER/kernel/drivers/block/virtio_blk.ko"
    printf 'ELF-module-stub\n' >"$t/usr/lib/modules/$KVER/kernel/drivers/virtio/virtio_pci.ko"
    mkdir -p "$t/usr/lib/modules/$KVER/kernel/drivers/nvme/host" "$t/usr/lib/modules/$KVER/kernel/drivers/hv" \
        "$t/usr/lib/modules/$KVER/kernel/drivers/scsi" "$t/usr/lib/modules/$KVER/kernel/drivers/net/hyperv"
    printf 'ELF-module-stub\n' | tee "$t/usr/lib/modules/$KVER/kernel/drivers/nvme/host/nvme.ko" \
        "$t/usr/lib/modules/$KVER/kernel/drivers/nvme/host/nvme-core.ko" "$t/usr/lib/modules/$KVER/kernel/drivers/hv/hv_vmbus.ko" \
        "$t/usr/lib/modules/$KVER/kernel/drivers/scsi/hv_storvsc.ko" \
        "$t/usr/lib/modules/$KVER/kernel/drivers/net/hyperv/hv_netvsc.ko" >/dev/null
    printf 'kernel/drivers/virtio/virtio.ko\n' >"$t/usr/lib/modules/$KVER/modules.builtin"
    make_initramfs "$t/boot/initrd.img-$KVER" 1 gzip
}

# An initramfs as the kernel loads it: an uncompressed early cpio with CPU microcode, then the main newc cpio
# compressed with COMPRESS (gzip, xz, zstd or lz4 in the legacy format the kernel reads). Module files are stubs.
# OTHERS (default "nvme,hyperv") names the other driver groups it carries, as initramfs-tools' MODULES=most
# does: nvme (nvme, nvme-core) and hyperv (hv_vmbus, hv_storvsc, hv_netvsc); empty for none.
# make_initramfs OUT VIRTIO(0|1) COMPRESS [OTHERS]
make_initramfs() {
    local out=$1 virtio=$2 comp=$3 others=${4-nvme,hyperv} ir="$WORK/initramfs" early="$WORK/early" m z
    rm -rf "$ir" "$early"
    mkdir -p "$early/kernel/x86/microcode"
    printf 'imgport-test-microcode' >"$early/kernel/x86/microcode/GenuineIntel.bin"
    m="$ir/usr/lib/modules/$KVER/kernel"
    mkdir -p "$ir/usr/bin" "$m/fs/ext4" "$m/drivers/ata" "$m/drivers/scsi" "$m/drivers/block" "$m/drivers/virtio" "$m/drivers/net"
    printf '#!/bin/sh\n' >"$ir/init"
    chmod 755 "$ir/init"
    printf 'ELF-module-stub\n' | tee "$m/fs/ext4/ext4.ko" "$m/drivers/ata/ahci.ko" "$m/drivers/scsi/sd_mod.ko" >/dev/null
    if [ "$virtio" = 1 ]; then
        printf 'ELF-module-stub\n' | tee "$m/drivers/block/virtio_blk.ko" "$m/drivers/virtio/virtio_pci.ko" \
            "$m/drivers/virtio/virtio.ko" "$m/drivers/virtio/virtio_ring.ko" "$m/drivers/scsi/virtio_scsi.ko" >/dev/null
        printf 'ELF-module-stub\n' | xz -c >"$m/drivers/net/virtio_net.ko.xz"
    fi
    case ,$others, in
        *,nvme,*)
            mkdir -p "$m/drivers/nvme/host"
            printf 'ELF-module-stub\n' | tee "$m/drivers/nvme/host/nvme.ko" "$m/drivers/nvme/host/nvme-core.ko" >/dev/null ;;
    esac
    case ,$others, in
        *,lvm,*)
            # What initramfs-tools' lvm2 hook and dracut's lvm module add: device mapper, the lvm tool, lvm.conf.
            mkdir -p "$m/drivers/md" "$ir/usr/sbin" "$ir/etc/lvm"
            printf 'ELF-module-stub\n' >"$m/drivers/md/dm-mod.ko"
            printf 'ELF-lvm-stub\n' >"$ir/usr/sbin/lvm"
            chmod 755 "$ir/usr/sbin/lvm"
            printf 'devices {\n}\n' >"$ir/etc/lvm/lvm.conf" ;;
    esac
    case ,$others, in
        *,btrfs,*)
            # What dracut's btrfs module adds: the driver and the btrfs tool.
            mkdir -p "$m/fs/btrfs" "$ir/usr/sbin"
            printf 'ELF-module-stub\n' >"$m/fs/btrfs/btrfs.ko"
            printf 'ELF-btrfs-stub\n' >"$ir/usr/sbin/btrfs"
            chmod 755 "$ir/usr/sbin/btrfs" ;;
    esac
    case ,$others, in
        *,hyperv,*)
            mkdir -p "$m/drivers/hv" "$m/drivers/net/hyperv"
            printf 'ELF-module-stub\n' | tee "$m/drivers/hv/hv_vmbus.ko" "$m/drivers/scsi/hv_storvsc.ko" >/dev/null
            printf 'ELF-module-stub\n' | zstd -q -c >"$m/drivers/net/hyperv/hv_netvsc.ko.zst" ;;
    esac
    case $comp in
        gzip) z="gzip -9n" ;;
        xz) z="xz -c --check=crc32 --lzma2=dict=1MiB" ;;
        zstd) z="zstd -q -c -19" ;;
        lz4) z="lz4 -q -l -c" ;;
        *) echo "make_initramfs: unknown compression $comp" >&2; return 1 ;;
    esac
    (cd "$early" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$out"
    (cd "$ir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | $z) >>"$out"
}

# GRUB files: grub.cfg in DIR (boot/grub or boot/grub2 of the tree) with one entry and a recovery entry in a
# submenu, and /etc/default/grub. KPATH is where GRUB finds the kernel ("/boot" on the root filesystem, "" when
# /boot is its own partition).
# grub_cfg TREE DIR ROOT_ARG SEARCH_UUID KPATH CONSOLE [INITRD_PREFIX (initrd.img-)]
grub_cfg() {
    local t=$1 dir=$2 root=$3 search=$4 kpath=$5 console=$6 initrd=${7:-initrd.img-}
    mkdir -p "$t/$dir" "$t/etc/default"
    cat >"$t/$dir/grub.cfg" <<GRUBEOF
# generated by grub-mkconfig (test stand-in)
set default="0"
if [ -s \$prefix/grubenv ]; then
  load_env
fi
function load_video {
  insmod all_video
}
menuentry 'Linux' --class gnu-linux \$menuentry_id_option 'gnulinux-simple-$search' {
	load_video
	insmod ext2
	search --no-floppy --fs-uuid --set=root $search
	echo	'Loading Linux $KVER ...'
	linux	$kpath/vmlinuz-$KVER root=$root ro $console quiet
	initrd	$kpath/$initrd$KVER
}
submenu 'Advanced options' \$menuentry_id_option 'gnulinux-advanced-$search' {
	menuentry 'Linux, with Linux $KVER (recovery mode)' \$menuentry_id_option 'gnulinux-$KVER-recovery-$search' {
		search --no-floppy --fs-uuid --set=root $search
		linux	$kpath/vmlinuz-$KVER root=$root ro single
		initrd	$kpath/$initrd$KVER
	}
}
GRUBEOF
    cat >"$t/etc/default/grub" <<GRUBEOF
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="$console"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
GRUBEOF
}

# A dpkg status database: base-files, openssh-server, cloud-init at CLOUD_INIT_VERSION (left out when empty), the
# kernel, and a removed package whose configuration files remain (not installed).
# dpkg_status TREE CLOUD_INIT_VERSION
dpkg_status() {
    local t=$1 ci=$2
    mkdir -p "$t/var/lib/dpkg"
    {
        printf 'Package: base-files\nEssential: yes\nStatus: install ok installed\nPriority: required\nArchitecture: amd64\nVersion: 12.4+deb12u5\nDescription: Debian base system miscellaneous files\n\n'
        printf 'Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2+deb12u2\nDescription: secure shell (SSH) server\n multi-line description\n .\n continued\n\n'
        printf 'Package: ifupdown\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 0.8.41\n\n'
        if [ -n "$ci" ]; then
            printf 'Package: cloud-init\nStatus: install ok installed\nArchitecture: all\nVersion: %s\nDescription: initialization for cloud instances\n\n' "$ci"
        fi
        # dpkg ends every stanza, the last one too, with a blank line.
        printf 'Package: linux-image-%s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 6.1.76-1\n\n' "$KVER"
    } >"$t/var/lib/dpkg/status"
}

# sshd with its systemd unit in UNIT_DIR; enabled (a multi-user.target.wants link) when ENABLED=1.
# sshd_unit TREE UNIT_DIR UNIT ENABLED
sshd_unit() {
    local t=$1 dir=$2 unit=$3 enabled=$4
    mkdir -p "$t/usr/sbin" "$t/$dir" "$t/etc/ssh" "$t/etc/systemd/system/multi-user.target.wants"
    printf 'ELF-sshd-stub\n' >"$t/usr/sbin/sshd"
    printf 'PermitRootLogin prohibit-password\n' >"$t/etc/ssh/sshd_config"
    printf '[Unit]\nDescription=OpenBSD Secure Shell server\n[Install]\nWantedBy=multi-user.target\n' >"$t/$dir/$unit"
    if [ "$enabled" = 1 ]; then
        ln -sf "/$dir/$unit" "$t/etc/systemd/system/multi-user.target.wants/$unit"
    fi
}

# A real RPM SQLite database made by rpm itself: rpmbuild makes empty noarch packages (one spec, a subpackage
# each; one with a long description so its header spills into SQLite overflow pages), rpm --justdb records them.
# rpm_db TREE NAME:EPOCH:VERSION:RELEASE...
rpm_db() {
    local t=$1 top="$WORK/rpmtop" db="$WORK/rpmdb" spec="$WORK/pkgs.spec" p n e v r
    shift
    rm -rf "$top" "$db"
    mkdir -p "$db" "$t/var/lib/rpm"
    printf 'Name: imgport-test\nVersion: 1\nRelease: 1\nSummary: test packages\nLicense: MIT\nBuildArch: noarch\n%%description\ntest\n' >"$spec"
    for p in "$@"; do
        IFS=: read -r n e v r <<<"$p"
        printf '%%package -n %s\nVersion: %s\nRelease: %s\nSummary: %s\n' "$n" "$v" "$r" "$n" >>"$spec"
        [ -n "$e" ] && printf 'Epoch: %s\n' "$e" >>"$spec"
        printf '%%description -n %s\n' "$n" >>"$spec"
        if [ "$n" = kernel-core ]; then
            for _ in $(seq 1 120); do printf 'A long description line that makes this header larger than one SQLite page.\n'; done >>"$spec"
        else
            printf '%s test package\n' "$n" >>"$spec"
        fi
        printf '%%files -n %s\n' "$n" >>"$spec"
    done
    rpmbuild --quiet --define "_topdir $top" --define "_build_id_links none" -bb "$spec" >/dev/null 2>&1
    rpm --dbpath "$db" --initdb
    rpm --dbpath "$db" -i --justdb --nodeps --noscripts --ignorearch --ignoreos "$top"/RPMS/noarch/*.rpm 2>/dev/null
    cp "$db/rpmdb.sqlite" "$t/var/lib/rpm/rpmdb.sqlite"
    # rpm leaves the database in WAL mode, which SQLite (so librpm, as virt-inspector uses it) cannot open on a
    # read-only filesystem without its -shm file: switch it to a rollback journal, as a checkpointed copy.
    python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("pragma journal_mode=delete"); c.close()' \
        "$t/var/lib/rpm/rpmdb.sqlite"
}

debian_release() {
    local t=$1
    cat >"$t/etc/os-release" <<'EOF'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
EOF
    echo "12.5" >"$t/etc/debian_version"
}

cloud_init() {
    local t=$1
    mkdir -p "$t/etc/cloud"
    printf 'datasource_list: [ NoCloud, None ]\n' >"$t/etc/cloud/cloud.cfg"
    printf '#!/bin/sh\n' >"$t/usr/bin/cloud-init"
    chmod 755 "$t/usr/bin/cloud-init"
}

# A sparse raw disk of SIZE MiB.
new_disk() { rm -f "$1"; truncate -s "$2M" "$1"; }

# stitch DISK FS_IMAGE START_SECTOR
stitch() { dd if="$2" of="$1" bs=512 seek="$3" conv=notrunc,sparse status=none; }

# Synthetic x86 boot code in MBR bytes 0..439 (real loaders are not needed to detect "has boot code").
mbr_boot_code() { printf '\xfa\x31\xc0\x8e\xd8\x8e\xd0\xbc\x00\x7c\xfb\xeb\xfeimgport-test-bootcode' | dd of="$1" bs=1 conv=notrunc status=none; }

# env NAME KEY=VALUE...
write_env() { local f="$OUT/$1.env"; shift; printf '%s\n' "$@" >"$f"; }

# ESP image: FAT32 with the given files. esp IMAGE LABEL VOLID FILE:DEST...
make_esp() {
    local img=$1 label=$2 id=$3
    shift 3
    rm -f "$img"
    mkfs.fat -F 32 -n "$label" -i "$id" -C "$img" 33792 >/dev/null
    mmd -i "$img" ::/EFI ::/EFI/BOOT ::/EFI/debian
    local spec
    for spec in "$@"; do mcopy -i "$img" "${spec%%:*}" "::${spec#*:}"; done
}

# A small PE32+ stub ("MZ", "PE\0\0", machine x86-64, an optional header with the PE32+ magic and a console
# subsystem) standing in for EFI loaders and Windows binaries; file(1), which virt-inspector asks for the
# architecture of cmd.exe, reads it as "PE32+ executable (console) x86-64".
pe_stub() {
    head -c 1024 /dev/zero >"$1"
    printf 'MZ' | dd of="$1" bs=1 conv=notrunc status=none
    printf '\x80' | dd of="$1" bs=1 seek=60 conv=notrunc status=none
    printf 'PE\0\0\x64\x86' | dd of="$1" bs=1 seek=128 conv=notrunc status=none
    printf '\xf0\x00\x22\x00\x0b\x02' | dd of="$1" bs=1 seek=148 conv=notrunc status=none
    printf '\x03\x00' | dd of="$1" bs=1 seek=220 conv=notrunc status=none
}

# ---- mbr-bios-ext4 ---------------------------------------------------------------------------------------------
build_mbr_bios_ext4() {
    local name=mbr-bios-ext4 uuid=3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d label=debroot
    local t="$WORK/$name"
    make_tree "$t" deb-bios "UUID=$uuid / ext4 errors=remount-ro 0 1"
    debian_release "$t"
    cloud_init "$t"
    debian_extras "$t" "$uuid" 22.4.2-1+deb12u1
    mkfs.ext4 -q -F -O ^64bit -L "$label" -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 120M
    local disk="$OUT/$name.raw"
    new_disk "$disk" 128
    printf 'label: dos\nlabel-id: 0x1a2b3c4d\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.fs" 2048
    write_env "$name" TABLE=mbr DISK_ID=1a2b3c4d ROOT_PART=1 ROOT_UUID=$uuid ROOT_LABEL=$label ROOT_TYPE=ext4 \
        DISTRO=debian VERSION=12 MAJOR=12 MINOR=5 HOSTNAME=deb-bios ARCH=x86_64 KERNEL=$KVER BOOT_MODE=BIOS \
        CLOUD_INIT=1 QEMU_GA=0 SELINUX= $(debian_env "$uuid" 1 gzip)
}

# Debian's usual extras: GRUB with root=UUID and a serial console, ifupdown DHCP, dpkg status, sshd enabled.
# debian_extras TREE ROOT_UUID CLOUD_INIT_VERSION
debian_extras() {
    local t=$1 uuid=$2 ci=$3
    grub_cfg "$t" boot/grub "UUID=$uuid" "$uuid" /boot "console=tty0 console=ttyS0,115200n8"
    mkdir -p "$t/etc/network/interfaces.d"
    printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' >"$t/etc/network/interfaces"
    printf 'allow-hotplug eth0\niface eth0 inet dhcp\n' >"$t/etc/network/interfaces.d/eth0"
    dpkg_status "$t" "$ci"
    sshd_unit "$t" lib/systemd/system ssh.service 1
    ln -s /lib/systemd/system/ssh.service "$t/etc/systemd/system/sshd.service"
}

# The .env facts debian_extras put there. debian_env ROOT_UUID VIRTIO(0|1) COMPRESSION
debian_env() {
    local drivers=virtio,virtio_ring,virtio_pci,virtio_blk,virtio_net,virtio_scsi,$DRIVERS_NVME_HV
    [ "$2" = 1 ] || drivers=$DRIVERS_NVME_HV
    echo INITRD_COMPRESSION=$3 MICROCODE=1 DRIVERS_AT_BOOT=$drivers \
        GRUB_CONFIG=/boot/grub/grub.cfg GRUB_ROOT=UUID=$1 GRUB_ROOT_DEVICE=/dev/sda1 GRUB_CONSOLE=tty0,ttyS0,115200n8 \
        GRUB_KERNEL=/boot/vmlinuz-$KVER NET=ifupdown:eth0:dhcp PINNED= PKG_FORMAT=dpkg \
        CLOUD_INIT_VERSION=22.4.2-1+deb12u1 SHADOW_IMMUTABLE=0 LIB_ABSOLUTE=0 SSHD_ENABLED=1
}

# ---- gpt-uefi-ext4 ---------------------------------------------------------------------------------------------
build_gpt_uefi_ext4() {
    local name=gpt-uefi-ext4 uuid=7c0a4e1b-2d3f-4a5b-9c6d-7e8f9a0b1c2d label=cloudimg-rootfs
    local t="$WORK/$name"
    make_tree "$t" ubu-uefi "LABEL=$label / ext4 defaults 0 1
UUID=4E1F-A001 /boot/efi vfat umask=0077 0 1"
    mkdir -p "$t/boot/efi"
    cat >"$t/etc/os-release" <<'EOF'
PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
EOF
    printf 'DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n' >"$t/etc/lsb-release"
    cloud_init "$t"
    # Ubuntu builds virtio into the kernel: no virtio modules in the (zstd) initramfs; modules.builtin lists them.
    printf 'CONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_BLK=y\nCONFIG_VIRTIO_NET=y\nCONFIG_SCSI_VIRTIO=y\nCONFIG_BLK_DEV_NVME=y\nCONFIG_HYPERV=m\nCONFIG_HYPERV_STORAGE=m\nCONFIG_HYPERV_NET=m\n' >"$t/boot/config-$KVER"
    printf 'kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/block/virtio_blk.ko\nkernel/drivers/net/virtio_net.ko\nkernel/drivers/scsi/virtio_scsi.ko\nkernel/drivers/nvme/host/nvme.ko\n' >"$t/usr/lib/modules/$KVER/modules.builtin"
    make_initramfs "$t/boot/initrd.img-$KVER" 0 zstd hyperv
    grub_cfg "$t" boot/grub "UUID=$uuid" "$uuid" /boot "console=ttyS0,115200"
    mkdir -p "$t/etc/netplan"
    printf '# written by cloud-init\nnetwork:\n    version: 2\n    ethernets:\n        ens3:\n            dhcp4: true\n            dhcp6: false\n' >"$t/etc/netplan/50-cloud-init.yaml"
    dpkg_status "$t" 22.4.2-0ubuntu0~22.04.1
    # sshd by socket activation (Ubuntu 22.10 and later).
    sshd_unit "$t" lib/systemd/system ssh.service 0
    mkdir -p "$t/etc/systemd/system/sockets.target.wants"
    printf '[Socket]\nListenStream=22\n' >"$t/lib/systemd/system/ssh.socket"
    ln -s /lib/systemd/system/ssh.socket "$t/etc/systemd/system/sockets.target.wants/ssh.socket"
    mkfs.ext4 -q -F -O ^64bit -L "$label" -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 100M
    pe_stub "$WORK/BOOTX64.EFI"
    make_esp "$WORK/$name.esp" ESP 4E1FA001 "$WORK/BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI"
    local disk="$OUT/$name.raw"
    new_disk "$disk" 160
    sgdisk -U 11111111-2222-3333-4444-555555555555 \
        -n1:2048:+33M -t1:EF00 -c1:EFI -u1:aaaaaaaa-0000-0000-0000-000000000001 \
        -n2:0:0 -t2:8300 -c2:root -u2:aaaaaaaa-0000-0000-0000-000000000002 "$disk" >/dev/null
    stitch "$disk" "$WORK/$name.esp" 2048
    stitch "$disk" "$WORK/$name.fs" $((2048 + 33 * 2048))
    write_env "$name" TABLE=gpt DISK_ID=11111111-2222-3333-4444-555555555555 ESP_PART=1 ESP_UUID=4E1F-A001 \
        ESP_LABEL=ESP ROOT_PART=2 ROOT_UUID=$uuid ROOT_LABEL=$label ROOT_TYPE=ext4 ROOT_PARTUUID=aaaaaaaa-0000-0000-0000-000000000002 \
        DISTRO=ubuntu VERSION=22.04 MAJOR=22 MINOR=4 HOSTNAME=ubu-uefi ARCH=x86_64 KERNEL=$KVER BOOT_MODE=UEFI \
        CLOUD_INIT=1 QEMU_GA=0 SELINUX= \
        INITRD_COMPRESSION=zstd MICROCODE=1 DRIVERS_AT_BOOT=virtio,virtio_ring,virtio_pci,virtio_blk,virtio_net,virtio_scsi,$DRIVERS_NVME_HV \
        GRUB_CONFIG=/boot/grub/grub.cfg GRUB_ROOT=UUID=$uuid GRUB_ROOT_DEVICE=/dev/sda2 GRUB_CONSOLE=ttyS0,115200 \
        GRUB_KERNEL=/boot/vmlinuz-$KVER NET=netplan:ens3:dhcp PINNED= PKG_FORMAT=dpkg \
        CLOUD_INIT_VERSION=22.4.2-0ubuntu0~22.04.1 SHADOW_IMMUTABLE=0 LIB_ABSOLUTE=0 SSHD_ENABLED=1
}

# ---- gpt-hybrid-ext4 -------------------------------------------------------------------------------------------
build_gpt_hybrid_ext4() {
    local name=gpt-hybrid-ext4 uuid=9d8c7b6a-5f4e-4d3c-8b2a-190807060504 boot_uuid=0b0b0b0b-1c1c-4d4d-8e8e-9f9f9f9f9f9f
    local t="$WORK/$name"
    make_tree "$t" deb-hybrid "PARTUUID=bbbbbbbb-0000-0000-0000-000000000004 / ext4 errors=remount-ro 0 1
UUID=$boot_uuid /boot ext4 defaults 0 2
UUID=4E1F-B002 /boot/efi vfat umask=0077 0 1"
    debian_release "$t"
    cloud_init "$t"
    debian_extras "$t" "$uuid" 22.4.2-1+deb12u1
    # GRUB reads the kernel from the /boot partition, so its paths have no /boot prefix.
    grub_cfg "$t" boot/grub "UUID=$uuid" "$boot_uuid" "" "console=tty0 console=ttyS0,115200n8"
    # /boot lives on its own partition: move the kernel files there, leave the mount point empty.
    local b="$WORK/$name-boot"
    rm -rf "$b" && mkdir -p "$b/efi" "$b/grub"
    mv "$t"/boot/* "$b/"
    mkfs.ext4 -q -F -O ^64bit -L boot -U "$boot_uuid" -E hash_seed=$boot_uuid -d "$b" "$WORK/$name.boot" 32M
    mkfs.ext4 -q -F -O ^64bit -L root -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 80M
    pe_stub "$WORK/BOOTX64.EFI"
    make_esp "$WORK/$name.esp" ESP 4E1FB002 "$WORK/BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI" "$WORK/BOOTX64.EFI:/EFI/debian/grubx64.efi"
    local disk="$OUT/$name.raw"
    new_disk "$disk" 160
    sgdisk -U 22222222-3333-4444-5555-666666666666 \
        -n1:2048:+1M -t1:EF02 -c1:bios -n2:0:+33M -t2:EF00 -c2:EFI \
        -n3:0:+32M -t3:8300 -c3:boot -n4:0:0 -t4:8300 -c4:root -u4:bbbbbbbb-0000-0000-0000-000000000004 "$disk" >/dev/null
    mbr_boot_code "$disk"
    # A stand-in GRUB core image at the start of the BIOS boot partition.
    printf 'imgport-test-core-image' | dd of="$disk" bs=512 seek=2048 conv=notrunc status=none
    stitch "$disk" "$WORK/$name.esp" 4096
    stitch "$disk" "$WORK/$name.boot" $((4096 + 33 * 2048))
    stitch "$disk" "$WORK/$name.fs" $((4096 + 65 * 2048))
    write_env "$name" TABLE=gpt DISK_ID=22222222-3333-4444-5555-666666666666 ESP_PART=2 ESP_UUID=4E1F-B002 ESP_LABEL=ESP \
        BOOT_PART=3 BOOT_UUID=$boot_uuid ROOT_PART=4 ROOT_UUID=$uuid ROOT_LABEL=root ROOT_TYPE=ext4 \
        DISTRO=debian VERSION=12 MAJOR=12 MINOR=5 HOSTNAME=deb-hybrid ARCH=x86_64 KERNEL=$KVER BOOT_MODE=UEFI-Preferred \
        CLOUD_INIT=1 QEMU_GA=0 SELINUX= $(debian_env "$uuid" 1 gzip | sed 's|GRUB_ROOT_DEVICE=/dev/sda1|GRUB_ROOT_DEVICE=/dev/sda4|; s|GRUB_CONFIG=/boot/grub/grub.cfg|GRUB_CONFIG=/boot/grub/grub.cfg GRUB_KERNEL_AS_WRITTEN=/vmlinuz-'$KVER'|')
}

# XFS protofile for a folder (mkfs.xfs -p): directories, regular files (by source path) and symlinks.
proto_dir() {
    local dir=$1 indent=$2 e name mode
    for e in "$dir"/* "$dir"/.[!.]*; do
        [ -e "$e" ] || [ -L "$e" ] || continue
        name=${e##*/}
        mode=$(stat -c '%a' "$e")
        if [ -L "$e" ]; then
            echo "$indent$name l--777 0 0 $(readlink "$e")"
        elif [ -d "$e" ]; then
            echo "$indent$name d--$mode 0 0"
            proto_dir "$e" "$indent "
            echo "$indent\$"
        else
            echo "$indent$name ---$mode 0 0 $e"
        fi
    done
}
make_proto() { { echo "/dev/null"; echo "0 0"; echo "d--755 0 0"; proto_dir "$1" " "; echo "\$"; } >"$2"; }

rhel_tree() {
    local t=$1 host=$2 fstab=$3
    make_tree "$t" "$host" "$fstab"
    # RHEL layout: initramfs-<ver>.img, not initrd.img-<ver>.
    mv "$t/boot/initrd.img-$KVER" "$t/boot/initramfs-$KVER.img"
}

# ---- mbr-xfs5 --------------------------------------------------------------------------------------------------
build_mbr_xfs5() {
    local name=mbr-xfs5 uuid=5a5a5a5a-6b6b-4c7c-8d8d-9e9e9e9e9e9e
    local t="$WORK/$name"
    rhel_tree "$t" rocky9 "UUID=$uuid / xfs defaults 0 0"
    cat >"$t/etc/os-release" <<'EOF'
NAME="Rocky Linux"
VERSION="9.3 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.3"
PRETTY_NAME="Rocky Linux 9.3 (Blue Onyx)"
EOF
    echo "Rocky Linux release 9.3 (Blue Onyx)" >"$t/etc/redhat-release"
    mkdir -p "$t/etc/selinux" "$t/usr/lib/systemd/system"
    printf 'SELINUX=enforcing\nSELINUXTYPE=targeted\n' >"$t/etc/selinux/config"
    printf '#!/bin/sh\n' >"$t/usr/bin/qemu-ga"
    chmod 755 "$t/usr/bin/qemu-ga"
    printf '[Unit]\nDescription=QEMU Guest Agent\n' >"$t/usr/lib/systemd/system/qemu-guest-agent.service"
    # GRUB 2 with BLS: grub.cfg calls blscfg, entries in /boot/loader/entries, kernelopts in grubenv.
    local mid=0123456789abcdef0123456789abcdef
    mkdir -p "$t/boot/grub2" "$t/boot/loader/entries" "$t/etc/default"
    printf 'set default="${saved_entry}"\nload_env -f ${config_directory}/grubenv\ninsmod blscfg\nblscfg\n' >"$t/boot/grub2/grub.cfg"
    printf '%s\n' "# GRUB Environment Block" "saved_entry=$mid-$KVER" "kernelopts=root=UUID=$uuid ro console=ttyS0,115200n8 crashkernel=1G-4G:192M" "boot_success=0" >"$t/boot/grub2/grubenv"
    head -c $((1024 - $(wc -c <"$t/boot/grub2/grubenv"))) /dev/zero | tr '\0' '#' >>"$t/boot/grub2/grubenv"
    printf 'title Rocky Linux (%s) 9.3 (Blue Onyx)\nversion %s\nlinux /boot/vmlinuz-%s\ninitrd /boot/initramfs-%s.img $tuned_initrd\noptions $kernelopts $tuned_params\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rocky\n' "$KVER" "$KVER" "$KVER" "$KVER" >"$t/boot/loader/entries/$mid-$KVER.conf"
    printf 'title Rocky Linux (0-rescue) 9.3\nversion 0-rescue-%s\nlinux /boot/vmlinuz-0-rescue-%s\ninitrd /boot/initramfs-0-rescue-%s.img\noptions $kernelopts\n' "$mid" "$mid" "$mid" >"$t/boot/loader/entries/$mid-0-rescue.conf"
    printf 'GRUB_TIMEOUT=5\nGRUB_DEFAULT=saved\nGRUB_CMDLINE_LINUX="crashkernel=1G-4G:192M console=ttyS0,115200n8"\nGRUB_ENABLE_BLSCFG=true\n' >"$t/etc/default/grub"
    rpm_db "$t" rocky-release::9.3:1.el9 openssh-server::8.7p1:34.el9 qemu-guest-agent:17:8.0.0:16.el9 \
        kernel-core::5.14.0:362.8.1.el9_3 bash::5.1.8:6.el9_1 NetworkManager:1:1.44.0:3.el9 $(seq -f 'filler%g::1.0:1.el9' 1 30)
    mkdir -p "$t/etc/sysconfig/network-scripts"
    printf 'DEVICE=eth0\nBOOTPROTO=dhcp\nONBOOT=yes\nTYPE=Ethernet\n' >"$t/etc/sysconfig/network-scripts/ifcfg-eth0"
    sshd_unit "$t" usr/lib/systemd/system sshd.service 1
    make_proto "$t" "$WORK/$name.proto"
    rm -f "$WORK/$name.fs"
    truncate -s 300M "$WORK/$name.fs"
    mkfs.xfs -q -f -L rocky-root -m uuid=$uuid -p "$WORK/$name.proto" "$WORK/$name.fs"
    local disk="$OUT/$name.raw"
    new_disk "$disk" 304
    printf 'label: dos\nlabel-id: 0x5a5a0001\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.fs" 2048
    write_env "$name" TABLE=mbr DISK_ID=5a5a0001 ROOT_PART=1 ROOT_UUID=$uuid ROOT_LABEL=rocky-root ROOT_TYPE=xfs XFS_VERSION=5 \
        DISTRO=rocky VERSION=9.3 MAJOR=9 MINOR=3 HOSTNAME=rocky9 ARCH=x86_64 KERNEL=$KVER BOOT_MODE=BIOS \
        CLOUD_INIT=0 QEMU_GA=1 SELINUX=enforcing \
        INITRD_COMPRESSION=gzip MICROCODE=1 DRIVERS_AT_BOOT=virtio,virtio_ring,virtio_pci,virtio_blk,virtio_net,virtio_scsi,$DRIVERS_NVME_HV \
        GRUB_CONFIG=/boot/grub2/grub.cfg GRUB_ROOT=UUID=$uuid GRUB_ROOT_DEVICE=/dev/sda1 GRUB_CONSOLE=ttyS0,115200n8 \
        GRUB_KERNEL=/boot/vmlinuz-$KVER GRUB_BLS=1 NET=ifcfg:eth0:dhcp PINNED= PKG_FORMAT=rpm_sqlite \
        CLOUD_INIT_VERSION= SHADOW_IMMUTABLE=0 LIB_ABSOLUTE=0 SSHD_ENABLED=1
}

# ---- deb-xfs ----------------------------------------------------------------------------------------------------
# Debian 12 with an XFS v5 root. Its dpkg database lets virt-inspector, which cannot list RPM SQLite databases
# here (its appliance's librpm fails in rpmtsInitIterator on mbr-xfs5), report packages on XFS too.
build_deb_xfs() {
    local name=deb-xfs uuid=6f6f6f6f-7a7a-4b8b-8c9c-0d0d0d0d0d0d label=debxfs
    local t="$WORK/$name"
    rm -rf "$t"
    make_tree "$t" deb-xfs "UUID=$uuid / xfs defaults 0 0"
    debian_release "$t"
    cloud_init "$t"
    debian_extras "$t" "$uuid" 22.4.2-1+deb12u1
    make_proto "$t" "$WORK/$name.proto"
    rm -f "$WORK/$name.fs"
    truncate -s 300M "$WORK/$name.fs"
    mkfs.xfs -q -f -L "$label" -m uuid=$uuid -p "$WORK/$name.proto" "$WORK/$name.fs"
    local disk="$OUT/$name.raw"
    new_disk "$disk" 304
    printf 'label: dos\nlabel-id: 0x6f6f0001\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.fs" 2048
    write_env "$name" TABLE=mbr DISK_ID=6f6f0001 ROOT_PART=1 ROOT_UUID=$uuid ROOT_LABEL=$label ROOT_TYPE=xfs XFS_VERSION=5 \
        DISTRO=debian VERSION=12 MAJOR=12 MINOR=5 HOSTNAME=deb-xfs ARCH=x86_64 KERNEL=$KVER BOOT_MODE=BIOS \
        CLOUD_INIT=1 QEMU_GA=0 SELINUX= $(debian_env "$uuid" 1 gzip)
}

# ---- mbr-xfs4 --------------------------------------------------------------------------------------------------
build_mbr_xfs4() {
    local name=mbr-xfs4 uuid=4b4b4b4b-3c3c-4d2d-8e1e-0f0f0f0f0f0f swap_uuid=5c5c5c5c-0000-4000-8000-000000000001
    local t="$WORK/$name"
    rhel_tree "$t" centos7 "UUID=$uuid / xfs defaults 0 0
UUID=$swap_uuid swap swap defaults 0 0"
    echo "CentOS Linux release 7.9.2009 (Core)" >"$t/etc/redhat-release"
    rm -f "$t/etc/hostname"
    printf 'NETWORKING=yes\nHOSTNAME=centos7\n' >"$t/etc/sysconfig-network"
    mkdir -p "$t/etc/sysconfig" && mv "$t/etc/sysconfig-network" "$t/etc/sysconfig/network"
    mkdir -p "$t/etc/sysconfig/network-scripts" "$t/etc/udev/rules.d"
    printf 'DEVICE=eth0\nBOOTPROTO=static\nIPADDR=192.168.122.50\nPREFIX=24\nGATEWAY=192.168.122.1\nHWADDR=52:54:00:12:34:56\nONBOOT=yes\n' >"$t/etc/sysconfig/network-scripts/ifcfg-eth0"
    printf 'DEVICE=lo\nIPADDR=127.0.0.1\nONBOOT=yes\n' >"$t/etc/sysconfig/network-scripts/ifcfg-lo"
    printf '# This file was automatically generated by the /lib/udev/write_net_rules\n# PCI device 0x1af4:0x1000 (virtio-pci)\nSUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="52:54:00:12:34:56", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"\n' >"$t/etc/udev/rules.d/70-persistent-net.rules"
    make_proto "$t" "$WORK/$name.proto"
    rm -f "$WORK/$name.fs"
    truncate -s 300M "$WORK/$name.fs"
    mkfs.xfs -q -f -L c7root -m crc=0,uuid=$uuid -p "$WORK/$name.proto" "$WORK/$name.fs" 2>/dev/null
    rm -f "$WORK/$name.swap"
    truncate -s 16M "$WORK/$name.swap"
    mkswap -q -L c7swap -U "$swap_uuid" "$WORK/$name.swap"
    local disk="$OUT/$name.raw"
    new_disk "$disk" 320
    printf 'label: dos\nlabel-id: 0x4b4b0002\nstart=2048, size=614400, type=83, bootable\nstart=616448, type=82\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.fs" 2048
    stitch "$disk" "$WORK/$name.swap" 616448
    write_env "$name" TABLE=mbr DISK_ID=4b4b0002 ROOT_PART=1 ROOT_UUID=$uuid ROOT_LABEL=c7root ROOT_TYPE=xfs XFS_VERSION=4 \
        SWAP_PART=2 SWAP_UUID=$swap_uuid SWAP_LABEL=c7swap \
        DISTRO=centos VERSION=7.9.2009 MAJOR=7 MINOR=9 HOSTNAME=centos7 ARCH=x86_64 KERNEL=$KVER BOOT_MODE=BIOS \
        CLOUD_INIT=0 QEMU_GA=0 SELINUX= \
        NET=ifcfg:eth0:static:52:54:00:12:34:56 PINNED=eth0=52:54:00:12:34:56 SHADOW_IMMUTABLE=0 LIB_ABSOLUTE=0 SSHD_ENABLED=0
}

# ---- deb-novirtio-* ----------------------------------------------------------------------------------------------
# build_deb_novirtio COMPRESSION: Debian 12 like mbr-bios-ext4 whose kernel has virtio neither built in nor in the
# initramfs (the modules are only in /lib/modules).
build_deb_novirtio() {
    local comp=$1 name=deb-novirtio-$1 label=debroot uuid
    uuid=$(printf '6e0a%04x-1b2c-4d3e-8f40-5a6b7c8d9e0f' "$(printf '%s' "$comp" | cksum | cut -c1-4)")
    local t="$WORK/$name"
    rm -rf "$t"
    make_tree "$t" "deb-$comp" "UUID=$uuid / ext4 errors=remount-ro 0 1"
    debian_release "$t"
    cloud_init "$t"
    debian_extras "$t" "$uuid" 22.4.2-1+deb12u1
    printf '%s\n' CONFIG_VIRTIO=m CONFIG_VIRTIO_PCI=m CONFIG_VIRTIO_BLK=m CONFIG_VIRTIO_NET=m $KCONFIG_NVME_HV >"$t/boot/config-$KVER"
    : >"$t/usr/lib/modules/$KVER/modules.builtin"
    make_initramfs "$t/boot/initrd.img-$KVER" 0 "$comp"
    mkfs.ext4 -q -F -O ^64bit -L "$label" -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 48M
    local disk="$OUT/$name.raw"
    new_disk "$disk" 50
    printf 'label: dos\nlabel-id: 0x6e0a0001\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.fs" 2048
    write_env "$name" TABLE=mbr DISK_ID=6e0a0001 ROOT_PART=1 ROOT_UUID=$uuid ROOT_LABEL=$label ROOT_TYPE=ext4 \
        DISTRO=debian VERSION=12 MAJOR=12 MINOR=5 HOSTNAME=deb-$comp ARCH=x86_64 KERNEL=$KVER BOOT_MODE=BIOS \
        CLOUD_INIT=1 QEMU_GA=0 SELINUX= $(debian_env "$uuid" 0 "$comp") PROBLEMS=virtio
}

# ---- deb-nodrivers -----------------------------------------------------------------------------------------------
# Debian 12 like mbr-bios-ext4 (virtio in the initramfs) whose initramfs lacks NVMe and the Hyper-V drivers: they
# are modules in /lib/modules only, as with initramfs-tools' MODULES=dep built on a KVM host.
build_deb_nodrivers() {
    local name=deb-nodrivers label=debroot uuid=6e0b0b0b-1b2c-4d3e-8f40-5a6b7c8d9e0f
    local t="$WORK/$name"
    rm -rf "$t"
    make_tree "$t" deb-nodrivers "UUID=$uuid / ext4 errors=remount-ro 0 1"
    debian_release "$t"
    cloud_init "$t"
    debian_extras "$t" "$uuid" 22.4.2-1+deb12u1
    make_initramfs "$t/boot/initrd.img-$KVER" 1 gzip ""
    mkfs.ext4 -q -F -O ^64bit -L "$label" -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 48M
    local disk="$OUT/$name.raw"
    new_disk "$disk" 50
    printf 'label: dos\nlabel-id: 0x6e0b0001\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.fs" 2048
    write_env "$name" TABLE=mbr DISK_ID=6e0b0001 ROOT_PART=1 ROOT_UUID=$uuid ROOT_LABEL=$label ROOT_TYPE=ext4 \
        DISTRO=debian VERSION=12 MAJOR=12 MINOR=5 HOSTNAME=deb-nodrivers ARCH=x86_64 KERNEL=$KVER BOOT_MODE=BIOS \
        CLOUD_INIT=1 QEMU_GA=0 SELINUX= $(debian_env "$uuid" 1 gzip | sed "s/,$DRIVERS_NVME_HV//") PROBLEMS=nvme,hyperv
}

# ---- deb-bad-ext4 ------------------------------------------------------------------------------------------------
build_deb_bad_ext4() {
    local name=deb-bad-ext4 uuid=bad0bad0-1111-4222-8333-444455556666 label=badroot
    local t="$WORK/$name"
    rm -rf "$t"
    make_tree "$t" deb-bad "UUID=$uuid / ext4 errors=remount-ro 0 1"
    debian_release "$t"
    cloud_init "$t"
    # GRUB names the root by kernel device name, which changes with the disk controller.
    grub_cfg "$t" boot/grub /dev/sda1 "$uuid" /boot "console=tty0"
    dpkg_status "$t" 0.7.9-1
    sshd_unit "$t" lib/systemd/system ssh.service 0
    mkdir -p "$t/etc/netplan"
    printf 'network:\n  version: 2\n  ethernets:\n    lan0:\n      match:\n        macaddress: "52:54:00:aa:bb:cc"\n      set-name: lan0\n      dhcp4: false\n      addresses: [10.1.2.3/24]\n' >"$t/etc/netplan/01-static.yaml"
    # Not usrmerge the relative way: /lib is an absolute symlink.
    rm "$t/lib"
    ln -s /usr/lib "$t/lib"
    mkfs.ext4 -q -F -L "$label" -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 48M
    # chattr +i without mounting: set EXT4_IMMUTABLE_FL (0x10) next to EXTENTS_FL (0x80000).
    debugfs -w -R "set_inode_field /etc/shadow flags 0x80010" "$WORK/$name.fs" >/dev/null 2>&1
    local disk="$OUT/$name.raw"
    new_disk "$disk" 50
    printf 'label: dos\nlabel-id: 0xbad00001\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.fs" 2048
    write_env "$name" TABLE=mbr DISK_ID=bad00001 ROOT_PART=1 ROOT_UUID=$uuid ROOT_LABEL=$label ROOT_TYPE=ext4 \
        DISTRO=debian VERSION=12 MAJOR=12 MINOR=5 HOSTNAME=deb-bad ARCH=x86_64 KERNEL=$KVER BOOT_MODE=BIOS \
        CLOUD_INIT=1 QEMU_GA=0 SELINUX= \
        INITRD_COMPRESSION=gzip MICROCODE=1 DRIVERS_AT_BOOT=virtio,virtio_ring,virtio_pci,virtio_blk,virtio_net,virtio_scsi,$DRIVERS_NVME_HV \
        GRUB_CONFIG=/boot/grub/grub.cfg GRUB_ROOT=/dev/sda1 GRUB_ROOT_DEVICE=/dev/sda1 GRUB_CONSOLE=tty0 \
        GRUB_KERNEL=/boot/vmlinuz-$KVER NET=netplan:lan0:static:52:54:00:aa:bb:cc PINNED= PKG_FORMAT=dpkg \
        CLOUD_INIT_VERSION=0.7.9-1 SHADOW_IMMUTABLE=1 LIB_ABSOLUTE=1 SSHD_ENABLED=0 \
        PROBLEMS=grub-device-name,cloud-init-old,shadow-immutable,lib-absolute,sshd-disabled,network-static,ext4-64bit
}

# ---- win-ntfs ----------------------------------------------------------------------------------------------------
# An empty registry hive (base block with its checksum, one hive bin with the root key and its security record),
# which hivexsh then fills: the keys, values and subkey lists in the test hives are written by hivex itself.
# empty_hive FILE ROOT_NAME
empty_hive() {
    python3 - "$1" "$2" <<'PYHIVE'
import struct, sys
# An empty registry hive: base block (with its XOR checksum), one 4 KiB hive bin holding the root key node.
root_name = sys.argv[2].encode()
nk = bytearray(76)
nk[0:2] = b"nk"
struct.pack_into("<H", nk, 2, 0x2c)          # KEY_HIVE_ENTRY | KEY_NO_DELETE | KEY_COMP_NAME
struct.pack_into("<I", nk, 16, 0xffffffff)   # parent
struct.pack_into("<I", nk, 28, 0xffffffff)   # subkey list
struct.pack_into("<I", nk, 32, 0xffffffff)
struct.pack_into("<I", nk, 40, 0xffffffff)   # value list
struct.pack_into("<I", nk, 44, 0)            # security: set below
struct.pack_into("<I", nk, 48, 0xffffffff)   # class
struct.pack_into("<H", nk, 72, len(root_name))
nk += root_name
def mkcell(payload):
    c = struct.pack("<i", -((len(payload) + 4 + 7) // 8 * 8)) + payload
    return c + b"\0" * ((-len(c)) % 8)
# A security record (sk) for the root, in a list with itself: hivex copies it to every key it adds.
desc = struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 0)
nk_cell_len = len(mkcell(bytes(nk)))
sk_off = 32 + nk_cell_len
struct.pack_into("<I", nk, 44, sk_off)
sk = b"sk" + struct.pack("<HIIII", 0, sk_off, sk_off, 1, len(desc)) + desc
cell = mkcell(bytes(nk)) + mkcell(sk)
hbin = bytearray(4096)
hbin[0:4] = b"hbin"
struct.pack_into("<I", hbin, 4, 0)
struct.pack_into("<I", hbin, 8, 4096)
hbin[32:32 + len(cell)] = cell
free = 4096 - 32 - len(cell)
struct.pack_into("<i", hbin, 32 + len(cell), free)
base = bytearray(4096)
base[0:4] = b"regf"
struct.pack_into("<IIQIIIII", base, 4, 1, 1, 0, 1, 3, 0, 1, 32)
struct.pack_into("<I", base, 40, 4096)
struct.pack_into("<I", base, 44, 1)
x = 0
for i in range(0, 508, 4):
    x ^= struct.unpack_from("<I", base, i)[0]
struct.pack_into("<I", base, 508, x)
open(sys.argv[1], "wb").write(bytes(base + hbin))
PYHIVE
}

# Windows Server 2022 skeleton: GPT, ESP with the Windows boot manager, NTFS (mkntfs, filled by wimlib) holding
# Windows/System32 with SOFTWARE and SYSTEM hives (virtio storage and network drivers registered), and PE stubs.
# With VIRTIO=1 the virtio-win storage and network drivers are installed as virt-v2v leaves them: services viostor
# (boot start) and netkvm (on demand) with their ImagePath, and the .sys files in System32\drivers; with 0 neither.
# build_win_ntfs NAME VIRTIO(0|1) COMPUTER_NAME DISK_GUID
build_win_ntfs() {
    local name=$1 virtio=$2 host=$3 guid=$4 t="$WORK/$1" c svc k
    rm -rf "$t"
    c="$t/Windows/System32/config"
    mkdir -p "$c" "$t/Windows/System32/drivers" "$t/Program Files" "$t/Users"
    pe_stub "$t/Windows/System32/cmd.exe"
    pe_stub "$t/Windows/System32/ntoskrnl.exe"
    pe_stub "$t/Windows/System32/drivers/disk.sys"
    if [ "$virtio" = 1 ]; then
        pe_stub "$t/Windows/System32/drivers/viostor.sys"
        pe_stub "$t/Windows/System32/drivers/netkvm.sys"
    fi
    empty_hive "$c/SOFTWARE" ROOT
    {
        echo "add Microsoft"
        echo "cd Microsoft"
        # Enough sibling keys that the subkey lists are large.
        for i in $(seq -w 1 300); do echo "add Product$i"; done
        printf '%s\n' "add Windows NT" "cd Windows NT" "add CurrentVersion" "cd CurrentVersion" "setval 9" \
            ProductName "string:Windows Server 2022 Datacenter" EditionID string:ServerDatacenter \
            InstallationType string:Server CurrentVersion string:6.3 CurrentBuild string:20348 \
            CurrentBuildNumber string:20348 DisplayVersion string:21H2 \
            CurrentMajorVersionNumber dword:0x0000000a CurrentMinorVersionNumber dword:0x00000000 commit
    } >"$WORK/software.hsh"
    hivexsh -w -f "$WORK/software.hsh" "$c/SOFTWARE"
    empty_hive "$c/SYSTEM" ROOT
    {
        printf '%s\n' "add Select" "cd Select" "setval 2" Current dword:0x00000001 Default dword:0x00000001 "cd \\"
        printf '%s\n' "add ControlSet001" "cd ControlSet001" "add Control" "cd Control" "add ComputerName" "cd ComputerName" \
            "add ComputerName" "cd ComputerName" "setval 1" ComputerName "string:$host" "cd \\" "cd ControlSet001" \
            "add Services" "cd Services"
        svc="Tcpip disk"
        [ "$virtio" = 1 ] && svc="$svc viostor netkvm"
        for k in $svc; do echo "add $k"; done
        # The TCP/IP host name (what virt-inspector reports as the hostname) next to the ComputerName.
        printf '%s\n' "cd Tcpip" "add Parameters" "cd Parameters" "setval 2" Hostname "string:$host" \
            Domain string: "cd \\" "cd ControlSet001" "cd Services"
        printf '%s\n' "cd disk" "setval 3" Start dword:0x00000000 Type dword:0x00000001 \
            ImagePath 'expandstring:System32\drivers\disk.sys' "cd .."
        if [ "$virtio" = 1 ]; then
            printf '%s\n' "cd viostor" "setval 3" Start dword:0x00000000 Type dword:0x00000001 \
                ImagePath 'expandstring:System32\drivers\viostor.sys' "cd .." \
                "cd netkvm" "setval 3" Start dword:0x00000003 Type dword:0x00000001 \
                ImagePath 'expandstring:\SystemRoot\System32\drivers\netkvm.sys' "cd .."
        fi
        echo commit
    } >"$WORK/system.hsh"
    hivexsh -w -f "$WORK/system.hsh" "$c/SYSTEM"
    rm -f "$WORK/$name.ntfs" "$WORK/$name.wim"
    truncate -s 40M "$WORK/$name.ntfs"
    mkntfs -q -F -Q -L Windows "$WORK/$name.ntfs" >/dev/null 2>&1
    wimlib-imagex capture "$t" "$WORK/$name.wim" --no-acls >/dev/null
    wimlib-imagex apply "$WORK/$name.wim" 1 "$WORK/$name.ntfs" >/dev/null
    pe_stub "$WORK/BOOTX64.EFI"
    make_esp "$WORK/$name.esp" SYSTEM 5A5A0003 "$WORK/BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI"
    local disk="$OUT/$name.raw"
    new_disk "$disk" 80
    sgdisk -U "$guid" -n1:2048:+33M -t1:EF00 -c1:"EFI system partition" \
        -n2:0:+40M -t2:0700 -c2:"Basic data partition" "$disk" >/dev/null
    stitch "$disk" "$WORK/$name.esp" 2048
    stitch "$disk" "$WORK/$name.ntfs" $((2048 + 33 * 2048))
    write_env "$name" TABLE=gpt OS_TYPE=windows ROOT_PART=2 DISTRO=windows \
        PRODUCT="Windows Server 2022 Datacenter" EDITION=ServerDatacenter INSTALLATION_TYPE=Server \
        MAJOR=10 MINOR=0 BUILD=20348 DISPLAY_VERSION=21H2 HOSTNAME=$host ARCH=x86_64 BOOT_MODE=UEFI \
        $([ "$virtio" = 1 ] && echo WIN_DRIVERS=viostor,netkvm || echo WIN_DRIVERS= PROBLEMS=windows-drivers)
}

build_mbr_bios_ext4
build_gpt_uefi_ext4
build_gpt_hybrid_ext4
build_mbr_xfs5
build_mbr_xfs4
build_deb_xfs
for comp in gzip xz zstd lz4; do build_deb_novirtio "$comp"; done
build_deb_nodrivers
build_deb_bad_ext4
build_win_ntfs win-ntfs 1 WIN-IMGPORT 33333333-4444-5555-6666-777777777777
build_win_ntfs win-novirtio 0 WIN-NOVIRTIO 33333333-4444-5555-6666-888888888888
echo "build-test-images: images in $OUT" >&2

# ==== images for imgport validate ================================================================================
#   mbr-bad-fstab      Debian 12 (ext4 without 64bit): fstab names /dev/sdb1 and a UUID that does not exist
#   mbr-lvm-root       Debian 12, /boot on ext4, root on LVM (vg0/root), PV label and metadata written by hand
#   mbr-lvm-spanning   as mbr-lvm-root, but vg0 also has a PV on a second disk (mbr-lvm-spanning-data.raw, a
#                      whole-disk PV) and root continues there
#   mbr-lvm-striped    Debian 12, root on vg0/root striped over two PVs (partitions 2 and 3)
#   gpt-ubuntu-lvm     Ubuntu 24.04 guided layout: ESP, ext4 /boot, ubuntu-vg/ubuntu-lv (fstab by dm-uuid)
#   mbr-rhel-lvm       Rocky 9 default layout: XFS /boot, rl/root (XFS) and rl/swap, BLS with rd.lvm.lv
#   mbr-luks-root      Debian 12 with /boot on ext4 and the root in a LUKS2 container
#   gpt-fedora-btrfs   Fedora 40 layout: ESP, ext4 /boot, btrfs subvolumes root and home, zstd-compressed files
#   gpt-ubuntu-btrfs   Ubuntu 24.04 on btrfs: ESP, subvolumes @ (root with /boot) and @home, GRUB at /@/boot
#   gpt-opensuse-btrfs openSUSE Leap 15.6 layout: ESP, btrfs with @, @/home, @/.snapshots and the root as the default
#                      subvolume @/.snapshots/1/snapshot
#   mbr-inodes-full    Debian 12, root ext4 with fewer than 10% free inodes
#   gpt-uefi-arm64     Debian 12 arm64 (aarch64 ELF), GPT, ESP with \EFI\BOOT\BOOTAA64.EFI    -> UEFI
#   mbr-arm64-bios     Debian 12 arm64 on MBR with BIOS boot code only (arm64 cannot boot that)
#   mbr-exotic-riscv   an unknown distribution, riscv64 binaries, no kernel in /boot
#   mbr-vmware-unclean Debian 12, ext4 not cleanly unmounted, VMware Tools installed
#   mbr-ext4-recovery  Debian 12, ext4 whose journal needs recovery (its files are then not read)

# fake_elf FILE MACHINE: a 64-byte ELF64 little-endian header for the machine (e_machine, one byte).
fake_elf() {
    rm -f "$1"
    head -c 64 /dev/zero >"$1"
    printf '\177ELF\002\001\001' | dd of="$1" bs=1 conv=notrunc status=none
    printf "\\002\\000\\$(printf '%03o' "$2")\\000" | dd of="$1" bs=1 seek=16 conv=notrunc status=none
}

# debian_ext4 NAME HOSTNAME FSTAB [MKFS_OPTIONS...]: a Debian tree in $WORK/NAME, its ext4 in $WORK/NAME.fs.
debian_tree() {
    local name=$1 host=$2 fstab=$3
    local t="$WORK/$name"
    rm -rf "$t"
    make_tree "$t" "$host" "$fstab"
    debian_release "$t"
    cloud_init "$t"
    # An SSH server, enabled, and a package database: these images are built each with one problem, and neither
    # a missing sshd nor a missing dpkg status (which virt-inspector needs) is it.
    sshd_unit "$t" lib/systemd/system ssh.service 1
    dpkg_status "$t" 22.4.2-1+deb12u1
}

# mbr_disk NAME SIZE_MIB FS_IMAGE UUID: an MBR disk with one bootable Linux partition at 1 MiB holding FS_IMAGE.
mbr_disk() {
    local name=$1 size=$2 fs=$3 id=$4
    local disk="$OUT/$name.raw"
    new_disk "$disk" "$size"
    printf 'label: dos\nlabel-id: 0x%s\nstart=2048, type=83, bootable\n' "$id" | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$fs" 2048
}

build_mbr_bad_fstab() {
    local name=mbr-bad-fstab uuid=6e6e6e6e-1111-4222-8333-444444444444
    debian_tree "$name" deb-fstab "UUID=$uuid / ext4 errors=remount-ro 0 1
/dev/sdb1 /data ext4 defaults 0 2
UUID=0badc0de-0000-4000-8000-000000000000 /srv ext4 defaults 0 2
UUID=0badc0de-0000-4000-8000-000000000001 /mnt/optional ext4 defaults,nofail 0 2"
    mkdir -p "$WORK/$name/data" "$WORK/$name/srv" "$WORK/$name/mnt/optional"
    mkfs.ext4 -q -F -O ^64bit -L root -U "$uuid" -E hash_seed=$uuid -d "$WORK/$name" "$WORK/$name.fs" 100M
    mbr_disk "$name" 104 "$WORK/$name.fs" 6e6e0001
    write_env "$name" TABLE=mbr ROOT_PART=1 ROOT_UUID=$uuid ROOT_TYPE=ext4 DISTRO=debian ARCH=x86_64 BOOT_MODE=BIOS
}

# lvm_vg ARGS...: an LVM2 volume group written into plain files (scripts/lvm-vg.py: labels, metadata and the
# logical volumes' contents placed extent by extent, linear, spanning or striped), since pvcreate needs a block
# device. lvm2 itself (in virt-inspector's appliance) activates the groups written so.
lvm_vg() { python3 "$SCRIPTS/lvm-vg.py" "$@"; }

# debian_lvm_tree NAME HOSTNAME FSTAB: a Debian tree whose initramfs carries LVM (dm-mod, lvm), with an empty
# $WORK/NAME-boot beside it for a separate /boot filesystem.
debian_lvm_tree() {
    local name=$1
    debian_tree "$@"
    make_initramfs "$WORK/$name/boot/initrd.img-$KVER" 1 gzip nvme,hyperv,lvm
    rm -rf "${WORK:?}/$name-boot" && mkdir -p "$WORK/$name-boot"
}

# build_lvm NAME [spanning]: Debian 12, /boot on ext4 (partition 1), root ext4 on vg0/root in a PV on partition 2.
# With "spanning", vg0 also has a PV on a second disk, NAME-data.raw (a whole-disk PV), and root continues there.
build_lvm() {
    local name=$1 span=${2:-} uuid=7a7a7a7a-2222-4333-8444-555555555555 boot_uuid=7b7b7b7b-2222-4333-8444-555555555555
    debian_lvm_tree "$name" deb-lvm "/dev/mapper/vg0-root / ext4 errors=remount-ro 0 1
UUID=$boot_uuid /boot ext4 defaults 0 2"
    local t="$WORK/$name" b="$WORK/$name-boot"
    mv "$t"/boot/* "$b/"
    mkfs.ext4 -q -F -L boot -U "$boot_uuid" -E hash_seed=$boot_uuid -d "$b" "$WORK/$name.boot" 32M
    mkfs.ext4 -q -F -L root -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 64M
    local disk="$OUT/$name.raw" pv_mib=72 data=
    if [ -n "$span" ]; then
        # 9 extents here, the other 7 of root's 16 on the data disk.
        pv_mib=40 data="$name-data.raw"
        lvm_vg --vg vg0 --pv "$WORK/$name.pv:$pv_mib:/dev/sda2" --pv "$OUT/$data:40:/dev/sdb" \
            --lv "root:$WORK/$name.fs"
    else
        lvm_vg --vg vg0 --pv "$WORK/$name.pv:$pv_mib:/dev/sda2" --lv "root:$WORK/$name.fs"
    fi
    new_disk "$disk" $((33 + pv_mib + 1))
    printf 'label: dos\nlabel-id: 0x7a7a0001\nstart=2048, size=65536, type=83, bootable\nstart=67584, type=8e\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.boot" 2048
    stitch "$disk" "$WORK/$name.pv" 67584
    write_env "$name" TABLE=mbr BOOT_PART=1 PV_PART=2 VG=vg0 LV=root ROOT_UUID=$uuid DISTRO=debian BOOT_MODE=BIOS \
        DATA_DISKS=$data
}

# mbr-lvm-striped: Debian 12, /boot on partition 1, vg0/root striped over PVs on partitions 2 and 3 (64 KiB).
build_lvm_striped() {
    local name=mbr-lvm-striped uuid=7c7c7c7c-2222-4333-8444-555555555555 boot_uuid=7d7d7d7d-2222-4333-8444-555555555555
    debian_lvm_tree "$name" deb-striped "/dev/vg0/root / ext4 errors=remount-ro 0 1
UUID=$boot_uuid /boot ext4 defaults 0 2"
    local t="$WORK/$name" b="$WORK/$name-boot"
    mv "$t"/boot/* "$b/"
    mkfs.ext4 -q -F -L boot -U "$boot_uuid" -E hash_seed=$boot_uuid -d "$b" "$WORK/$name.boot" 32M
    mkfs.ext4 -q -F -L root -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 64M
    lvm_vg --vg vg0 --pv "$WORK/$name.pv0:40:/dev/sda2" --pv "$WORK/$name.pv1:40:/dev/sda3" \
        --lv "root:$WORK/$name.fs:striped:2:64"
    local disk="$OUT/$name.raw"
    new_disk "$disk" $((1 + 32 + 40 + 40 + 1))
    printf 'label: dos\nlabel-id: 0x7c7c0001\nstart=2048, size=65536, type=83, bootable\nstart=67584, size=81920, type=8e\nstart=149504, size=81920, type=8e\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.boot" 2048
    stitch "$disk" "$WORK/$name.pv0" 67584
    stitch "$disk" "$WORK/$name.pv1" 149504
    write_env "$name" TABLE=mbr VG=vg0 LV=root ROOT_UUID=$uuid DISTRO=debian BOOT_MODE=BIOS DATA_DISKS=
}

# gpt-ubuntu-lvm: Ubuntu Server 24.04's guided layout: GPT, ESP, ext4 /boot, PV with ubuntu-vg/ubuntu-lv (ext4);
# fstab names the root by /dev/disk/by-id/dm-uuid-LVM-..., as subiquity writes it, and the rest by-uuid.
build_ubuntu_lvm() {
    local name=gpt-ubuntu-lvm uuid=8a8a8a8a-2222-4333-8444-555555555555 boot_uuid=8b8b8b8b-2222-4333-8444-555555555555
    local dm_uuid
    dm_uuid=$(python3 "$SCRIPTS/lvm-vg.py" --print-dm-uuid ubuntu-vg/ubuntu-lv)
    debian_lvm_tree "$name" ubuntu-lvm "/dev/disk/by-id/dm-uuid-$dm_uuid / ext4 defaults 0 1
/dev/disk/by-uuid/$boot_uuid /boot ext4 defaults 0 1
/dev/disk/by-uuid/4E1F-C0D4 /boot/efi vfat defaults 0 1"
    local t="$WORK/$name" b="$WORK/$name-boot"
    printf '%s\n' 'PRETTY_NAME="Ubuntu 24.04.1 LTS"' 'NAME="Ubuntu"' 'VERSION_ID="24.04"' \
        'VERSION="24.04.1 LTS (Noble Numbat)"' 'VERSION_CODENAME=noble' 'ID=ubuntu' 'ID_LIKE=debian' \
        'UBUNTU_CODENAME=noble' >"$t/etc/os-release"
    printf '%s\n' 'DISTRIB_ID=Ubuntu' 'DISTRIB_RELEASE=24.04' 'DISTRIB_CODENAME=noble' \
        'DISTRIB_DESCRIPTION="Ubuntu 24.04.1 LTS"' >"$t/etc/lsb-release"
    echo "trixie/sid" >"$t/etc/debian_version"
    grub_cfg "$t" boot/grub "/dev/mapper/ubuntu--vg-ubuntu--lv" "$boot_uuid" "" "console=tty1 console=ttyS0"
    mv "$t"/boot/* "$b/"
    # /boot/efi is a mount point on the /boot filesystem, which is mounted over the root's /boot.
    mkdir -p "$b/efi"
    mkfs.ext4 -q -F -L boot -U "$boot_uuid" -E hash_seed=$boot_uuid -d "$b" "$WORK/$name.boot" 32M
    mkfs.ext4 -q -F -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 64M
    lvm_vg --vg ubuntu-vg --pv "$WORK/$name.pv:72:/dev/sda3" --lv "ubuntu-lv:$WORK/$name.fs"
    pe_stub "$WORK/$name-BOOTX64.EFI"
    make_esp "$WORK/$name.esp" ESP 4E1FC0D4 "$WORK/$name-BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI" \
        "$WORK/$name-BOOTX64.EFI:/EFI/debian/shimx64.efi"
    local disk="$OUT/$name.raw"
    new_disk "$disk" $((1 + 33 + 32 + 72 + 1))
    sgdisk -U 8a8a0000-1111-4222-8333-444444444444 -n1:2048:+33M -t1:EF00 -n2:0:+32M -t2:8300 -n3:0:+72M -t3:8E00 \
        "$disk" >/dev/null
    stitch "$disk" "$WORK/$name.esp" 2048
    stitch "$disk" "$WORK/$name.boot" $((2048 + 33 * 2048))
    stitch "$disk" "$WORK/$name.pv" $((2048 + 65 * 2048))
    write_env "$name" TABLE=gpt VG=ubuntu-vg LV=ubuntu-lv ROOT_UUID=$uuid DISTRO=ubuntu BOOT_MODE=UEFI DATA_DISKS=
}

# mbr-rhel-lvm: Rocky 9's default layout: MBR, XFS /boot on partition 1, PV on partition 2 with rl/root (XFS) and
# rl/swap; GRUB with BLS entries on /boot naming root=/dev/mapper/rl-root and rd.lvm.lv for both.
build_rhel_lvm() {
    local name=mbr-rhel-lvm uuid=9c9c9c9c-2222-4333-8444-555555555555 boot_uuid=9d9d9d9d-2222-4333-8444-555555555555
    local t="$WORK/$name" b="$WORK/$name-boot" mid=fedcba9876543210fedcba9876543210
    rhel_tree "$t" rocky-lvm "/dev/mapper/rl-root / xfs defaults 0 0
UUID=$boot_uuid /boot xfs defaults 0 0
/dev/mapper/rl-swap none swap defaults 0 0"
    make_initramfs "$t/boot/initramfs-$KVER.img" 1 gzip nvme,hyperv,lvm
    printf '%s\n' 'NAME="Rocky Linux"' 'VERSION="9.4 (Blue Onyx)"' 'ID="rocky"' 'ID_LIKE="rhel centos fedora"' \
        'VERSION_ID="9.4"' 'PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"' >"$t/etc/os-release"
    echo "Rocky Linux release 9.4 (Blue Onyx)" >"$t/etc/redhat-release"
    mkdir -p "$t/boot/grub2" "$t/boot/loader/entries" "$t/etc/default"
    printf 'set default="${saved_entry}"\nload_env -f ${config_directory}/grubenv\ninsmod blscfg\nblscfg\n' >"$t/boot/grub2/grub.cfg"
    printf '%s\n' "# GRUB Environment Block" "saved_entry=$mid-$KVER" \
        "kernelopts=root=/dev/mapper/rl-root ro resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root rd.lvm.lv=rl/swap console=ttyS0,115200n8" \
        >"$t/boot/grub2/grubenv"
    head -c $((1024 - $(wc -c <"$t/boot/grub2/grubenv"))) /dev/zero | tr '\0' '#' >>"$t/boot/grub2/grubenv"
    printf 'title Rocky Linux (%s) 9.4 (Blue Onyx)\nversion %s\nlinux /vmlinuz-%s\ninitrd /initramfs-%s.img\noptions $kernelopts\ngrub_class rocky\n' \
        "$KVER" "$KVER" "$KVER" "$KVER" >"$t/boot/loader/entries/$mid-$KVER.conf"
    printf 'GRUB_TIMEOUT=5\nGRUB_DEFAULT=saved\nGRUB_CMDLINE_LINUX="resume=/dev/mapper/rl-swap rd.lvm.lv=rl/root rd.lvm.lv=rl/swap console=ttyS0,115200n8"\nGRUB_ENABLE_BLSCFG=true\n' \
        >"$t/etc/default/grub"
    rpm_db "$t" rocky-release::9.4:1.7.el9 openssh-server::8.7p1:38.el9 kernel-core::5.14.0:427.13.1.el9_4 \
        bash::5.1.8:9.el9 lvm2:9:2.03.23:2.el9 $(seq -f 'filler%g::1.0:1.el9' 1 10)
    cloud_init "$t"
    sshd_unit "$t" usr/lib/systemd/system sshd.service 1
    rm -rf "${WORK:?}/$name-boot" && mkdir -p "$b"
    mv "$t"/boot/* "$b/"
    make_proto "$t" "$WORK/$name.proto"
    make_proto "$b" "$WORK/$name.bproto"
    rm -f "$WORK/$name.fs" "$WORK/$name.bootfs" "$WORK/$name.swap"
    truncate -s 300M "$WORK/$name.fs" "$WORK/$name.bootfs"
    mkfs.xfs -q -f -L boot -m uuid=$boot_uuid -p "$WORK/$name.bproto" "$WORK/$name.bootfs"
    mkfs.xfs -q -f -m uuid=$uuid -p "$WORK/$name.proto" "$WORK/$name.fs"
    truncate -s 8M "$WORK/$name.swap"
    mkswap -q -U 9e9e9e9e-2222-4333-8444-555555555555 "$WORK/$name.swap" >/dev/null
    lvm_vg --vg rl --pv "$WORK/$name.pv:320:/dev/sda2" --lv "swap:$WORK/$name.swap" --lv "root:$WORK/$name.fs"
    local disk="$OUT/$name.raw"
    new_disk "$disk" $((1 + 300 + 320 + 1))
    printf 'label: dos\nlabel-id: 0x9c9c0001\nstart=2048, size=614400, type=83, bootable\nstart=616448, type=8e\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.bootfs" 2048
    stitch "$disk" "$WORK/$name.pv" 616448
    write_env "$name" TABLE=mbr VG=rl LV=root ROOT_UUID=$uuid DISTRO=rocky BOOT_MODE=BIOS DATA_DISKS=
}

# compressible FILE KIB: text that compresses well, so mkfs.btrfs --compress stores it in compressed extents.
compressible() {
    local i
    for i in $(seq 1 $(($2 * 1024 / 64))); do printf 'imgport btrfs test line %08d: the quick brown fox.\n' "$i"; done >"$1"
}

# gpt-fedora-btrfs: Fedora 40's default layout: GPT, ESP, ext4 /boot, one btrfs with subvolumes root and home (the
# top level stays the default subvolume), files compressed with zstd; GRUB with BLS entries naming
# rootflags=subvol=root. No RPM database: virt-inspector's librpm cannot open an RPM SQLite one here, and this
# image is for comparing btrfs, not packages.
build_fedora_btrfs() {
    local name=gpt-fedora-btrfs uuid=5f5f5f5f-2222-4333-8444-555555555555 boot_uuid=5e5e5e5e-2222-4333-8444-555555555555
    local src="$WORK/$name-src" b="$WORK/$name-boot" mid=0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f
    local t="$src/root"
    rm -rf "$src" "$b" && mkdir -p "$src/home/fedora" "$b"
    rhel_tree "$t" fedora-btrfs "UUID=$uuid / btrfs subvol=root,compress=zstd:1 0 0
UUID=$boot_uuid /boot ext4 defaults 1 2
UUID=4E1F-C0F4 /boot/efi vfat umask=0077,shortname=winnt 0 2
UUID=$uuid /home btrfs subvol=home,compress=zstd:1 0 0"
    make_initramfs "$t/boot/initramfs-$KVER.img" 1 zstd nvme,hyperv,btrfs
    printf '%s\n' 'NAME="Fedora Linux"' 'VERSION="40 (Cloud Edition)"' 'ID=fedora' 'VERSION_ID=40' \
        'PRETTY_NAME="Fedora Linux 40 (Cloud Edition)"' 'VARIANT_ID=cloud' >"$t/etc/os-release"
    echo "Fedora release 40 (Forty)" | tee "$t/etc/fedora-release" >"$t/etc/redhat-release"
    mkdir -p "$t/boot/grub2" "$t/boot/loader/entries" "$t/etc/default" "$t/usr/share/doc/imgport"
    printf 'set default="${saved_entry}"\nload_env -f ${config_directory}/grubenv\ninsmod blscfg\nblscfg\n' >"$t/boot/grub2/grub.cfg"
    printf '%s\n' "# GRUB Environment Block" "saved_entry=$mid-$KVER" >"$t/boot/grub2/grubenv"
    head -c $((1024 - $(wc -c <"$t/boot/grub2/grubenv"))) /dev/zero | tr '\0' '#' >>"$t/boot/grub2/grubenv"
    printf 'title Fedora Linux (%s) 40 (Cloud Edition)\nversion %s\nlinux /vmlinuz-%s\ninitrd /initramfs-%s.img\noptions root=UUID=%s ro rootflags=subvol=root console=ttyS0,115200n8\ngrub_class fedora\n' \
        "$KVER" "$KVER" "$KVER" "$KVER" "$uuid" >"$t/boot/loader/entries/$mid-$KVER.conf"
    printf 'GRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX="rootflags=subvol=root console=ttyS0,115200n8"\nGRUB_ENABLE_BLSCFG=true\n' >"$t/etc/default/grub"
    cloud_init "$t"
    sshd_unit "$t" usr/lib/systemd/system sshd.service 1
    compressible "$t/usr/share/doc/imgport/compressible.txt" 512
    printf '# .bashrc\n' >"$src/home/fedora/.bashrc"
    mv "$t"/boot/* "$b/"
    mkdir -p "$b/efi"
    mkfs.ext4 -q -F -L boot -U "$boot_uuid" -E hash_seed=$boot_uuid -d "$b" "$WORK/$name.boot" 32M
    rm -f "$WORK/$name.btrfs"
    truncate -s 200M "$WORK/$name.btrfs"
    mkfs.btrfs -q -f -U "$uuid" -L fedora --rootdir "$src" --subvol rw:root --subvol rw:home --compress zstd:1 \
        "$WORK/$name.btrfs" >/dev/null
    pe_stub "$WORK/$name-BOOTX64.EFI"
    make_esp "$WORK/$name.esp" ESP 4E1FC0F4 "$WORK/$name-BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI"
    local disk="$OUT/$name.raw"
    new_disk "$disk" $((1 + 33 + 32 + 200 + 1))
    sgdisk -U 5f5f0000-1111-4222-8333-444444444444 -n1:2048:+33M -t1:EF00 -n2:0:+32M -t2:8300 -n3:0:+200M -t3:8300 \
        "$disk" >/dev/null
    stitch "$disk" "$WORK/$name.esp" 2048
    stitch "$disk" "$WORK/$name.boot" $((2048 + 33 * 2048))
    stitch "$disk" "$WORK/$name.btrfs" $((2048 + 65 * 2048))
    write_env "$name" TABLE=gpt ROOT_UUID=$uuid ROOT_SUBVOL=root DISTRO=fedora BOOT_MODE=UEFI DATA_DISKS= PACKAGES=0
}

# gpt-opensuse-btrfs: openSUSE Leap 15.6's layout: GPT, ESP, one btrfs holding everything, /boot included:
# subvolume @ with @/home and @/.snapshots, the root being snapshot 1 (@/.snapshots/1/snapshot, the default
# subvolume, so fstab's / names no subvol=); zstd-compressed files. No RPM database, as for the Fedora image.
build_opensuse_btrfs() {
    local name=gpt-opensuse-btrfs uuid=5d5d5d5d-2222-4333-8444-555555555555
    local src="$WORK/$name-src"
    local t="$src/@/.snapshots/1/snapshot"
    rm -rf "$src" && mkdir -p "$src/@/home/geeko" "$(dirname "$t")"
    make_tree "$t" opensuse-btrfs "UUID=$uuid / btrfs defaults 0 0
UUID=$uuid /.snapshots btrfs subvol=/@/.snapshots 0 0
UUID=$uuid /home btrfs subvol=/@/home 0 0
UUID=4E1F-C05E /boot/efi vfat utf8 0 2"
    # SUSE names the initramfs initrd-<version>.
    make_initramfs "$t/boot/initrd-$KVER" 1 xz nvme,hyperv,btrfs
    rm -f "$t/boot/initrd.img-$KVER"
    printf '%s\n' 'NAME="openSUSE Leap"' 'VERSION="15.6"' 'ID="opensuse-leap"' 'ID_LIKE="suse opensuse"' \
        'VERSION_ID="15.6"' 'PRETTY_NAME="openSUSE Leap 15.6"' >"$t/etc/os-release"
    mkdir -p "$t/.snapshots" "$t/home" "$t/boot/efi" "$t/usr/share/doc/imgport"
    grub_cfg "$t" boot/grub2 "UUID=$uuid" "$uuid" /boot "console=ttyS0,115200" initrd-
    cloud_init "$t"
    sshd_unit "$t" usr/lib/systemd/system sshd.service 1
    compressible "$t/usr/share/doc/imgport/compressible.txt" 512
    printf '<?xml version="1.0"?>\n<snapshot><type>single</type><num>1</num><description>first root filesystem</description></snapshot>\n' \
        >"$src/@/.snapshots/1/info.xml"
    printf '# .profile\n' >"$src/@/home/geeko/.profile"
    rm -f "$WORK/$name.btrfs"
    truncate -s 200M "$WORK/$name.btrfs"
    mkfs.btrfs -q -f -U "$uuid" --rootdir "$src" --subvol rw:@ --subvol rw:@/home --subvol rw:@/.snapshots \
        --subvol default:@/.snapshots/1/snapshot --compress zstd "$WORK/$name.btrfs" >/dev/null
    pe_stub "$WORK/$name-BOOTX64.EFI"
    make_esp "$WORK/$name.esp" ESP 4E1FC05E "$WORK/$name-BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI"
    local disk="$OUT/$name.raw"
    new_disk "$disk" $((1 + 33 + 200 + 1))
    sgdisk -U 5d5d0000-1111-4222-8333-444444444444 -n1:2048:+33M -t1:EF00 -n2:0:+200M -t2:8300 "$disk" >/dev/null
    stitch "$disk" "$WORK/$name.esp" 2048
    stitch "$disk" "$WORK/$name.btrfs" $((2048 + 33 * 2048))
    write_env "$name" TABLE=gpt ROOT_UUID=$uuid ROOT_SUBVOL=@/.snapshots/1/snapshot DISTRO=opensuse-leap BOOT_MODE=UEFI \
        DATA_DISKS= PACKAGES=0
}

# gpt-ubuntu-btrfs: Ubuntu 24.04 installed on btrfs: GPT, ESP, one btrfs with subvolumes @ (the root, /boot
# included) and @home, the top level the default; fstab and GRUB name subvol=@, and GRUB, reading the top level,
# finds the kernel at /@/boot/...; zstd-compressed files. Debian-family, so virt-inspector reads it whole here.
build_ubuntu_btrfs() {
    local name=gpt-ubuntu-btrfs uuid=5c5c5c5c-2222-4333-8444-555555555555
    local src="$WORK/$name-src"
    local t="$src/@"
    rm -rf "$src" && mkdir -p "$src/@home/ubuntu"
    debian_tree "$name" ubuntu-btrfs "UUID=$uuid / btrfs defaults,subvol=@ 0 1
UUID=$uuid /home btrfs defaults,subvol=@home 0 2
UUID=4E1F-C0B7 /boot/efi vfat umask=0077 0 1"
    mv "$WORK/$name" "$t"
    make_initramfs "$t/boot/initrd.img-$KVER" 1 zstd nvme,hyperv,btrfs
    printf '%s\n' 'PRETTY_NAME="Ubuntu 24.04.1 LTS"' 'NAME="Ubuntu"' 'VERSION_ID="24.04"' \
        'VERSION="24.04.1 LTS (Noble Numbat)"' 'VERSION_CODENAME=noble' 'ID=ubuntu' 'ID_LIKE=debian' \
        'UBUNTU_CODENAME=noble' >"$t/etc/os-release"
    echo "trixie/sid" >"$t/etc/debian_version"
    mkdir -p "$t/boot/efi" "$t/usr/share/doc/imgport"
    grub_cfg "$t" boot/grub "UUID=$uuid rootflags=subvol=@" "$uuid" /@/boot "console=tty1 console=ttyS0"
    compressible "$t/usr/share/doc/imgport/compressible.txt" 512
    printf '# ~/.profile\n' >"$src/@home/ubuntu/.profile"
    rm -f "$WORK/$name.btrfs"
    truncate -s 200M "$WORK/$name.btrfs"
    mkfs.btrfs -q -f -U "$uuid" --rootdir "$src" --subvol rw:@ --subvol rw:@home --compress zstd:3 \
        "$WORK/$name.btrfs" >/dev/null
    pe_stub "$WORK/$name-BOOTX64.EFI"
    make_esp "$WORK/$name.esp" ESP 4E1FC0B7 "$WORK/$name-BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI" \
        "$WORK/$name-BOOTX64.EFI:/EFI/debian/shimx64.efi"
    local disk="$OUT/$name.raw"
    new_disk "$disk" $((1 + 33 + 200 + 1))
    sgdisk -U 5c5c0000-1111-4222-8333-444444444444 -n1:2048:+33M -t1:EF00 -n2:0:+200M -t2:8300 "$disk" >/dev/null
    stitch "$disk" "$WORK/$name.esp" 2048
    stitch "$disk" "$WORK/$name.btrfs" $((2048 + 33 * 2048))
    write_env "$name" TABLE=gpt ROOT_UUID=$uuid ROOT_SUBVOL=@ DISTRO=ubuntu BOOT_MODE=UEFI DATA_DISKS=
}

# mbr-luks-root: /boot on ext4, the root in a LUKS2 container (cryptsetup luksFormat on a file: no device needed).
build_luks_root() {
    local name=mbr-luks-root boot_uuid=6c6c6c6c-2222-4333-8444-555555555555
    local b="$WORK/$name-boot"
    debian_tree "$name" deb-luks "/dev/mapper/root_crypt / ext4 errors=remount-ro 0 1"
    rm -rf "${WORK:?}/$name-boot" && mkdir -p "$b"
    mv "$WORK/$name"/boot/* "$b/"
    mkfs.ext4 -q -F -L boot -U "$boot_uuid" -E hash_seed=$boot_uuid -d "$b" "$WORK/$name.boot" 32M
    rm -f "$WORK/$name.luks"
    truncate -s 40M "$WORK/$name.luks"
    printf 'imgport-test-passphrase' | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
        --uuid 6d6d6d6d-2222-4333-8444-555555555555 --key-file - "$WORK/$name.luks"
    local disk="$OUT/$name.raw"
    new_disk "$disk" $((1 + 32 + 40 + 1))
    printf 'label: dos\nlabel-id: 0x6c6c0001\nstart=2048, size=65536, type=83, bootable\nstart=67584, type=83\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.boot" 2048
    stitch "$disk" "$WORK/$name.luks" 67584
    write_env "$name" TABLE=mbr LUKS_PART=2 BOOT_MODE=BIOS DATA_DISKS=
}

build_mbr_inodes_full() {
    local name=mbr-inodes-full uuid=8c8c8c8c-3333-4444-8555-666666666666
    debian_tree "$name" deb-inodes "UUID=$uuid / ext4 errors=remount-ro 0 1"
    local t="$WORK/$name" i base n
    mkdir -p "$t/var/spool/many"
    # mkfs.ext4 rounds -N to a multiple of 64 here: pick that multiple, then fill it with the tree, the 11 reserved
    # inodes, lost+found, at least 200 spool files and 4 spare, so that under 10% stay free.
    base=$(find "$t" | wc -l)
    n=$(( (base + 200 + 16 + 63) / 64 * 64 ))
    for i in $(seq 1 $((n - base - 16))); do : >"$t/var/spool/many/f$i"; done
    mkfs.ext4 -q -F -O ^64bit -N "$n" -L root -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 64M
    mbr_disk "$name" 68 "$WORK/$name.fs" 8c8c0001
    write_env "$name" TABLE=mbr ROOT_PART=1 ROOT_UUID=$uuid ROOT_TYPE=ext4 DISTRO=debian BOOT_MODE=BIOS
}

# An arm64 Debian tree: the host's /bin/sh replaced by an aarch64 ELF header.
arm64_tree() {
    debian_tree "$@"
    fake_elf "$WORK/$1/usr/bin/dash" 183
}

build_gpt_uefi_arm64() {
    local name=gpt-uefi-arm64 uuid=9a9a9a9a-4444-4555-8666-777777777777
    arm64_tree "$name" deb-arm "UUID=$uuid / ext4 errors=remount-ro 0 1
UUID=4E1F-C003 /boot/efi vfat umask=0077 0 1"
    mkdir -p "$WORK/$name/boot/efi"
    mkfs.ext4 -q -F -O ^64bit -L root -U "$uuid" -E hash_seed=$uuid -d "$WORK/$name" "$WORK/$name.fs" 100M
    pe_stub "$WORK/BOOTAA64.EFI"
    make_esp "$WORK/$name.esp" ESP 4E1FC003 "$WORK/BOOTAA64.EFI:/EFI/BOOT/BOOTAA64.EFI"
    local disk="$OUT/$name.raw"
    new_disk "$disk" 140
    sgdisk -U 33333333-4444-5555-6666-777777777777 -n1:2048:+33M -t1:EF00 -c1:EFI -n2:0:0 -t2:8300 -c2:root \
        "$disk" >/dev/null
    stitch "$disk" "$WORK/$name.esp" 2048
    stitch "$disk" "$WORK/$name.fs" $((2048 + 33 * 2048))
    write_env "$name" TABLE=gpt ROOT_PART=2 ROOT_UUID=$uuid DISTRO=debian ARCH=aarch64 BOOT_MODE=UEFI
}

build_mbr_arm64_bios() {
    local name=mbr-arm64-bios uuid=9b9b9b9b-4444-4555-8666-777777777777
    arm64_tree "$name" deb-arm-bios "UUID=$uuid / ext4 errors=remount-ro 0 1"
    mkfs.ext4 -q -F -O ^64bit -L root -U "$uuid" -E hash_seed=$uuid -d "$WORK/$name" "$WORK/$name.fs" 100M
    mbr_disk "$name" 104 "$WORK/$name.fs" 9b9b0001
    write_env "$name" TABLE=mbr ROOT_PART=1 ROOT_UUID=$uuid DISTRO=debian ARCH=aarch64 BOOT_MODE=BIOS
}

build_mbr_exotic_riscv() {
    local name=mbr-exotic-riscv uuid=5e5e5e5e-5555-4666-8777-888888888888
    debian_tree "$name" exotic "UUID=$uuid / ext4 defaults 0 1"
    local t="$WORK/$name"
    rm -f "$t/etc/debian_version" "$t"/boot/vmlinuz-* "$t"/boot/initrd.img-*
    printf 'NAME="Exotic OS"\nID=exoticos\nVERSION_ID=1.0\nPRETTY_NAME="Exotic OS 1.0"\n' >"$t/etc/os-release"
    fake_elf "$t/usr/bin/dash" 243
    mkfs.ext4 -q -F -O ^64bit -L root -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 100M
    mbr_disk "$name" 104 "$WORK/$name.fs" 5e5e0001
    write_env "$name" TABLE=mbr ROOT_PART=1 ROOT_UUID=$uuid DISTRO=exoticos ARCH=riscv64 BOOT_MODE=BIOS
}

build_mbr_vmware_unclean() {
    local name=mbr-vmware-unclean uuid=4d4d4d4d-6666-4777-8888-999999999999
    debian_tree "$name" deb-vmware "UUID=$uuid / ext4 errors=remount-ro 0 1"
    local t="$WORK/$name"
    mkdir -p "$t/etc/vmware-tools"
    printf '#!/bin/sh\n' >"$t/usr/bin/vmtoolsd"
    chmod 755 "$t/usr/bin/vmtoolsd"
    mkfs.ext4 -q -F -O ^64bit -L root -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 100M
    # As if the disk was copied while mounted: the superblock state is "not clean".
    debugfs -w -R "ssv state 0" "$WORK/$name.fs" >/dev/null 2>&1
    mbr_disk "$name" 104 "$WORK/$name.fs" 4d4d0001
    write_env "$name" TABLE=mbr ROOT_PART=1 ROOT_UUID=$uuid DISTRO=debian BOOT_MODE=BIOS
}

build_mbr_ext4_recovery() {
    local name=mbr-ext4-recovery uuid=4e4e4e4e-6666-4777-8888-999999999999
    debian_tree "$name" deb-recovery "UUID=$uuid / ext4 errors=remount-ro 0 1"
    mkfs.ext4 -q -F -O ^64bit -L root -U "$uuid" -E hash_seed=$uuid -d "$WORK/$name" "$WORK/$name.fs" 100M
    # As if the VM was exported while running: the journal still needs replaying.
    debugfs -w -R "feature needs_recovery" "$WORK/$name.fs" >/dev/null 2>&1
    mbr_disk "$name" 104 "$WORK/$name.fs" 4e4e0001
    write_env "$name" TABLE=mbr ROOT_PART=1 ROOT_UUID=$uuid DISTRO=debian BOOT_MODE=BIOS
}

command -v python3 >/dev/null 2>&1 || { echo "build-test-images: missing tool 'python3'" >&2; exit 1; }
build_mbr_bad_fstab
build_lvm mbr-lvm-root
build_lvm mbr-lvm-spanning spanning
build_lvm_striped
build_ubuntu_lvm
build_rhel_lvm
build_luks_root
build_fedora_btrfs
build_opensuse_btrfs
build_ubuntu_btrfs
build_mbr_inodes_full
build_gpt_uefi_arm64
build_mbr_arm64_bios
build_mbr_exotic_riscv
build_mbr_vmware_unclean
build_mbr_ext4_recovery
echo "build-test-images: validate images in $OUT" >&2
