#!/usr/bin/env bash
# Writes the seeds of the guest parsers' fuzz targets into fuzz/seeds/<target>/: small, real structures made by
# the tools that make them for real (sfdisk, mkfs, cpio and the compressors, SQLite, hivexsh) or, for LVM, the
# physical volume of the test images. Each seed is at most 64 KiB (the fuzz runs' -max_len).
# Needs: sfdisk mkfs.ext4 mkfs.fat cpio gzip xz zstd lz4 python3 hivexsh (scripts/install-peers.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seeds=$here/seeds
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$seeds"/{gpt,mbr,filesystem,lvm,regf,sqlite,initramfs}

# Partition tables on a 64 KiB disk: a GPT with two entries, an MBR with an extended partition holding two logical ones.
rm -f "$seeds/gpt/disk.img" "$seeds/mbr/disk.img"
truncate -s 64K "$seeds/gpt/disk.img" "$seeds/mbr/disk.img"
printf 'label: gpt\nstart=40, size=24, type=linux\nstart=64, size=24, type=uefi\n' | sfdisk -q "$seeds/gpt/disk.img"
printf 'label: dos\nstart=8, size=16, type=83, bootable\nstart=24, size=80, type=5\nstart=32, size=16, type=83\nstart=56, size=16, type=82\n' |
    sfdisk -q "$seeds/mbr/disk.img"

# Filesystems with a directory, a file and a symlink (ext4) or a directory and a file (FAT).
mkdir -p "$work/tree/etc"
echo 'ID=debian' >"$work/tree/etc/os-release"
ln -s etc/os-release "$work/tree/os-release"
rm -f "$seeds/filesystem/"*
truncate -s 64K "$seeds/filesystem/ext4.img"
mkfs.ext4 -q -F -b 1024 -N 16 -O ^has_journal,^resize_inode -d "$work/tree" "$seeds/filesystem/ext4.img"
truncate -s 64K "$seeds/filesystem/fat.img"
mkfs.fat -S 512 -s 1 -f 1 -r 16 "$seeds/filesystem/fat.img" >/dev/null

# initramfs: newc cpio, alone, compressed each way, and after an uncompressed early (microcode) archive.
ir=$work/initramfs early=$work/early
mkdir -p "$ir/usr/lib/modules/6.1.0/kernel/drivers/block" "$early/kernel/x86/microcode"
printf '#!/bin/sh\n' >"$ir/init"
printf 'kernel/fs/ext4/ext4.ko\n' >"$ir/usr/lib/modules/6.1.0/modules.builtin"
printf 'ELF-module-stub\n' >"$ir/usr/lib/modules/6.1.0/kernel/drivers/block/virtio_blk.ko"
printf 'microcode\n' >"$early/kernel/x86/microcode/GenuineIntel.bin"
(cd "$ir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$work/main.cpio"
(cd "$early" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$work/early.cpio"
cp "$work/main.cpio" "$seeds/initramfs/plain.cpio"
gzip -9n -c "$work/main.cpio" >"$seeds/initramfs/main.cpio.gz"
xz -c --check=crc32 --lzma2=dict=1MiB "$work/main.cpio" >"$seeds/initramfs/main.cpio.xz"
zstd -q -c -19 "$work/main.cpio" >"$seeds/initramfs/main.cpio.zst"
lz4 -q -l -c "$work/main.cpio" >"$seeds/initramfs/main.cpio.lz4"
{ cat "$work/early.cpio"; gzip -9n -c "$work/main.cpio"; } >"$seeds/initramfs/early-then-gzip"

# An RPM database in SQLite's format: the Packages table with a few rows, small pages so it spans several.
rm -f "$seeds/sqlite/rpmdb.sqlite"
python3 - "$seeds/sqlite/rpmdb.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA page_size = 512")
db.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)")
db.execute("CREATE TABLE Name (key TEXT NOT NULL, hnum INTEGER NOT NULL, idx INTEGER NOT NULL)")
for i in range(12):
    db.execute("INSERT INTO Packages (blob) VALUES (?)", (bytes([i]) * (40 + 30 * i),))
    db.execute("INSERT INTO Name VALUES (?, ?, 0)", (f"package-{i}", i + 1))
db.commit()
db.execute("VACUUM")
db.close()
PY

# A registry hive: the empty hive of scripts/build-test-images.sh, filled by hivexsh with keys and values.
source <(sed -n '/^empty_hive() {/,/^}/p' "$here/../scripts/build-test-images.sh")
empty_hive "$seeds/regf/SOFTWARE" ROOT
printf '%s\n' "add Microsoft" "cd Microsoft" "add Windows NT" "cd Windows NT" "add CurrentVersion" "cd CurrentVersion" \
    "setval 3" ProductName "string:Windows Server 2022 Datacenter" CurrentBuild string:20348 \
    CurrentMajorVersionNumber dword:0x0000000a commit >"$work/software.hsh"
hivexsh -w -f "$work/software.hsh" "$seeds/regf/SOFTWARE"

# An LVM physical volume's first 8 KiB (label in sector 1, metadata area header at 4 KiB, volume group text after
# it), from the test image mbr-lvm-root (scripts/build-test-images.sh) when it has been built.
images=${IMGPORT_GUEST_IMAGES:-$here/../target/tmp/guest-images}
if [ -f "$images/mbr-lvm-root.raw" ]; then
    start=$(sfdisk --json "$images/mbr-lvm-root.raw" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][1]["start"])')
    dd if="$images/mbr-lvm-root.raw" of="$seeds/lvm/pv-head" bs=512 skip="$start" count=16 status=none
else
    echo "no $images/mbr-lvm-root.raw: the lvm seed is left as it is" >&2
fi
ls -l "$seeds"/{gpt,mbr,filesystem,lvm,regf,sqlite,initramfs}
