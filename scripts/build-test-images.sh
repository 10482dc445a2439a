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
#   mbr-xfs4         CentOS 7 (redhat-release only, no os-release), XFS v4 root, swap partition
set -euo pipefail

OUT=${1:?usage: build-test-images.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgport-images.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for tool in sfdisk sgdisk mkfs.ext4 mkfs.xfs mkfs.fat mkswap mmd mcopy cpio gzip dd truncate; do
    command -v "$tool" >/dev/null 2>&1 || { echo "build-test-images: missing tool '$tool' (run scripts/install-peers.sh)" >&2; exit 1; }
done

KVER=6.1.0-18-amd64
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
    printf 'CONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_BLK=m\nCONFIG_VIRTIO_NET=m\n' >"$t/boot/config-$KVER"
    printf 'ELF-module-stub\n' >"$t/usr/lib/modules/$KVER/kernel/drivers/block/virtio_blk.ko"
    printf 'ELF-module-stub\n' >"$t/usr/lib/modules/$KVER/kernel/drivers/virtio/virtio_pci.ko"
    printf 'kernel/drivers/virtio/virtio.ko\n' >"$t/usr/lib/modules/$KVER/modules.builtin"
    # initramfs: newc cpio, gzip-compressed, holding the virtio modules.
    local ir="$WORK/initramfs"
    rm -rf "$ir" && mkdir -p "$ir/usr/lib/modules/$KVER/kernel/drivers/block"
    cp "$t/usr/lib/modules/$KVER/kernel/drivers/block/virtio_blk.ko" "$ir/usr/lib/modules/$KVER/kernel/drivers/block/"
    (cd "$ir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9n) >"$t/boot/initrd.img-$KVER"
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

# A small PE stub ("MZ", "PE\0\0", machine x86-64) standing in for an EFI loader.
pe_stub() {
    head -c 1024 /dev/zero >"$1"
    printf 'MZ' | dd of="$1" bs=1 conv=notrunc status=none
    printf '\x80' | dd of="$1" bs=1 seek=60 conv=notrunc status=none
    printf 'PE\0\0\x64\x86' | dd of="$1" bs=1 seek=128 conv=notrunc status=none
}

# ---- mbr-bios-ext4 ---------------------------------------------------------------------------------------------
build_mbr_bios_ext4() {
    local name=mbr-bios-ext4 uuid=3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d label=debroot
    local t="$WORK/$name"
    make_tree "$t" deb-bios "UUID=$uuid / ext4 errors=remount-ro 0 1"
    debian_release "$t"
    cloud_init "$t"
    mkfs.ext4 -q -F -L "$label" -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 120M
    local disk="$OUT/$name.raw"
    new_disk "$disk" 128
    printf 'label: dos\nlabel-id: 0x1a2b3c4d\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.fs" 2048
    write_env "$name" TABLE=mbr DISK_ID=1a2b3c4d ROOT_PART=1 ROOT_UUID=$uuid ROOT_LABEL=$label ROOT_TYPE=ext4 \
        DISTRO=debian VERSION=12 MAJOR=12 MINOR=5 HOSTNAME=deb-bios ARCH=x86_64 KERNEL=$KVER BOOT_MODE=BIOS \
        CLOUD_INIT=1 QEMU_GA=0 SELINUX=
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
    mkfs.ext4 -q -F -L "$label" -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 100M
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
        CLOUD_INIT=1 QEMU_GA=0 SELINUX=
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
    # /boot lives on its own partition: move the kernel files there, leave the mount point empty.
    local b="$WORK/$name-boot"
    rm -rf "$b" && mkdir -p "$b/efi" "$b/grub"
    mv "$t"/boot/* "$b/"
    mkfs.ext4 -q -F -L boot -U "$boot_uuid" -E hash_seed=$boot_uuid -d "$b" "$WORK/$name.boot" 32M
    mkfs.ext4 -q -F -L root -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 80M
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
        CLOUD_INIT=1 QEMU_GA=0 SELINUX=
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
        CLOUD_INIT=0 QEMU_GA=1 SELINUX=enforcing
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
        CLOUD_INIT=0 QEMU_GA=0 SELINUX=
}

build_mbr_bios_ext4
build_gpt_uefi_ext4
build_gpt_hybrid_ext4
build_mbr_xfs5
build_mbr_xfs4
echo "build-test-images: images in $OUT" >&2

# ==== images for imgport validate ================================================================================
#   mbr-bad-fstab      Debian 12 (ext4 without 64bit): fstab names /dev/sdb1 and a UUID that does not exist
#   mbr-lvm-root       Debian 12, /boot on ext4, root on LVM (vg0/root), PV label and metadata written by hand
#   mbr-lvm-spanning   as mbr-lvm-root, but vg0 also needs a PV on another disk
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

# lvm_pv OUT SIZE_MIB LV_FS [MISSING_PV]: an LVM2 physical volume holding volume group vg0 with logical volume
# root (LV_FS placed at the first extent), laid out as pvcreate/vgcreate/lvcreate do: label in sector 1, metadata
# area at 4 KiB, extents (4 MiB) from 1 MiB. pvcreate needs a block device, so the structures are written here
# from lvm2's on-disk format (lib/format_text/layout.h, lib/label/label.h); blkid verifies the label checksum.
lvm_pv() {
    python3 - "$@" <<'PY'
import os, struct, sys
out, size_mib, lv_fs = sys.argv[1], int(sys.argv[2]), sys.argv[3]
missing = sys.argv[4] if len(sys.argv) > 4 else None

def crc(data, c=0xF597A6CF):
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
    return c

def dashed(u):
    return "-".join([u[0:6], u[6:10], u[10:14], u[14:18], u[18:22], u[22:26], u[26:32]])

MIB, EXTENT = 1 << 20, 4 << 20
size = size_mib * MIB
pv_uuid, vg_uuid, lv_uuid = "Pv0Pv0Pv0Pv0Pv0Pv0Pv0Pv0Pv0Pv0Pv", "Vg0Vg0Vg0Vg0Vg0Vg0Vg0Vg0Vg0Vg0Vg", "Lv0Lv0Lv0Lv0Lv0Lv0Lv0Lv0Lv0Lv0Lv"
pe_start, mda_start = MIB, 4096
pe_count = (size - pe_start) // EXTENT
lv_extents = -(-os.path.getsize(lv_fs) // EXTENT)
pvs = f'pv0 {{\nid = "{dashed(pv_uuid)}"\ndevice = "/dev/sda2"\nstatus = ["ALLOCATABLE"]\nflags = []\ndev_size = {size // 512}\npe_start = {pe_start // 512}\npe_count = {pe_count}\n}}\n'
if missing:
    pvs += f'pv1 {{\nid = "{dashed(missing)}"\ndevice = "/dev/sdb"\nstatus = ["ALLOCATABLE"]\nflags = []\ndev_size = 2097152\npe_start = 2048\npe_count = 255\n}}\n'
text = (f'vg0 {{\nid = "{dashed(vg_uuid)}"\nseqno = 2\nformat = "lvm2"\nstatus = ["RESIZEABLE", "READ", "WRITE"]\n'
        f'flags = []\nextent_size = {EXTENT // 512}\nmax_lv = 0\nmax_pv = 0\nmetadata_copies = 0\n\n'
        f'physical_volumes {{\n\n{pvs}}}\n\nlogical_volumes {{\n\nroot {{\nid = "{dashed(lv_uuid)}"\n'
        f'status = ["READ", "WRITE", "VISIBLE"]\nflags = []\ncreation_time = 1700000000\nsegment_count = 1\n\n'
        f'segment1 {{\nstart_extent = 0\nextent_count = {lv_extents}\n\ntype = "striped"\nstripe_count = 1\n\n'
        f'stripes = [\n"pv0", 0\n]\n}}\n}}\n}}\n\n}}\n'
        '# Generated by LVM2 version 2.03.16(2) (2022-05-18): Tue Nov 14 22:13:20 2023\n\n'
        'contents = "Text Format Volume Group"\nversion = 1\n\ndescription = ""\n\n'
        'creation_host = "imgport-test"\ncreation_time = 1700000000\n\n').encode() + b"\0"

with open(out, "wb") as f:
    f.truncate(size)
    # label_header + pv_header: uuid, device size, data areas (pe_start, 0), end, metadata areas, end,
    # then the v2 extension (version, flags PV_EXT_USED) with an empty bootloader area list.
    pvh = pv_uuid.encode() + struct.pack("<Q", size)
    pvh += struct.pack("<QQQQ", pe_start, 0, 0, 0) + struct.pack("<QQQQ", mda_start, pe_start - mda_start, 0, 0)
    pvh += struct.pack("<II", 2, 1) + struct.pack("<QQ", 0, 0)
    label = bytearray(512)
    label[0:8] = b"LABELONE"
    label[8:16] = struct.pack("<Q", 1)
    label[20:24] = struct.pack("<I", 32)
    label[24:32] = b"LVM2 001"
    label[32:32 + len(pvh)] = pvh
    label[16:20] = struct.pack("<I", crc(label[20:]))
    f.seek(512)
    f.write(label)
    # mda_header: checksum, magic, version, start, size, then raw_locn (offset from the area start, size,
    # checksum of the text, flags) and a zero terminator.
    mda = bytearray(512)
    mda[4:20] = b" LVM2 x[5A%r0N*>"
    mda[20:40] = struct.pack("<IQQ", 1, mda_start, pe_start - mda_start)
    mda[40:64] = struct.pack("<QQII", 512, len(text), crc(text), 0)
    mda[0:4] = struct.pack("<I", crc(mda[4:]))
    f.seek(mda_start)
    f.write(mda)
    f.seek(mda_start + 512)
    f.write(text)
    with open(lv_fs, "rb") as lv:
        f.seek(pe_start)
        while True:
            chunk = lv.read(MIB)
            if not chunk:
                break
            if chunk.count(0) == len(chunk):
                f.seek(len(chunk), 1)
            else:
                f.write(chunk)
PY
}

# build_lvm NAME [MISSING_PV_UUID]
build_lvm() {
    local name=$1 missing=${2:-} uuid=7a7a7a7a-2222-4333-8444-555555555555 boot_uuid=7b7b7b7b-2222-4333-8444-555555555555
    debian_tree "$name" deb-lvm "/dev/mapper/vg0-root / ext4 errors=remount-ro 0 1
UUID=$boot_uuid /boot ext4 defaults 0 2"
    local t="$WORK/$name" b="$WORK/$name-boot"
    rm -rf "$b" && mkdir -p "$b"
    mv "$t"/boot/* "$b/"
    mkfs.ext4 -q -F -L boot -U "$boot_uuid" -E hash_seed=$boot_uuid -d "$b" "$WORK/$name.boot" 32M
    mkfs.ext4 -q -F -L root -U "$uuid" -E hash_seed=$uuid -d "$t" "$WORK/$name.fs" 64M
    lvm_pv "$WORK/$name.pv" 72 "$WORK/$name.fs" $missing
    local disk="$OUT/$name.raw"
    new_disk "$disk" 106
    printf 'label: dos\nlabel-id: 0x7a7a0001\nstart=2048, size=65536, type=83, bootable\nstart=67584, type=8e\n' | sfdisk -q "$disk"
    mbr_boot_code "$disk"
    stitch "$disk" "$WORK/$name.boot" 2048
    stitch "$disk" "$WORK/$name.pv" 67584
    write_env "$name" TABLE=mbr BOOT_PART=1 PV_PART=2 VG=vg0 LV=root ROOT_UUID=$uuid BOOT_MODE=BIOS
}

build_mbr_inodes_full() {
    local name=mbr-inodes-full uuid=8c8c8c8c-3333-4444-8555-666666666666
    debian_tree "$name" deb-inodes "UUID=$uuid / ext4 errors=remount-ro 0 1"
    local t="$WORK/$name" i
    mkdir -p "$t/var/spool/many"
    for i in $(seq 1 200); do : >"$t/var/spool/many/f$i"; done
    # Inodes for exactly what the tree needs (plus the 11 reserved ones and a few spare): under 10% stay free.
    local n=$(( $(find "$t" | wc -l) + 12 ))
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
build_lvm mbr-lvm-spanning Pv1Pv1Pv1Pv1Pv1Pv1Pv1Pv1Pv1Pv1Pv
build_mbr_inodes_full
build_gpt_uefi_arm64
build_mbr_arm64_bios
build_mbr_exotic_riscv
build_mbr_vmware_unclean
build_mbr_ext4_recovery
echo "build-test-images: validate images in $OUT" >&2
