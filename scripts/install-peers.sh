#!/usr/bin/env bash
# Install the real peers the tests run against, where a fresh machine lacks them.
# qemu-img 10.x (qemu-utils from bookworm-backports) is the oracle for every disk format.
set -euo pipefail

need_root() { if [ "$(id -u)" -ne 0 ]; then echo "sudo"; fi; }
SUDO=$(need_root)

have_qemu_img() {
    command -v qemu-img >/dev/null 2>&1 && command -v qemu-io >/dev/null 2>&1
}

if ! have_qemu_img; then
    echo "install-peers: installing qemu-utils (qemu-img, qemu-io)" >&2
    . /etc/os-release 2>/dev/null || true
    if [ "${VERSION_CODENAME:-}" = "bookworm" ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
    fi
    $SUDO apt-get update -qq
    if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports qemu-utils
    else
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-utils
    fi
fi

if ! have_qemu_img; then
    echo "install-peers: qemu-img is still missing" >&2
    exit 1
fi
echo "install-peers: $(qemu-img --version | head -1)" >&2

# Alibaba's official Python SDKs: real clients whose signed requests imgport's signature verifiers must accept;
# and jsonschema, the validator the tests check imgport's JSON documents with against docs/schemas/.
PY_SDKS="oss2 alibabacloud-oss-v2 alibabacloud-ecs20140526 alibabacloud-ram20150501 alibabacloud-sts20150401 jsonschema"
if ! python3 -c "import oss2, alibabacloud_oss_v2, alibabacloud_ecs20140526, alibabacloud_ram20150501, alibabacloud_sts20150401, jsonschema" >/dev/null 2>&1; then
    echo "install-peers: installing $PY_SDKS (PyPI)" >&2
    python3 -m pip install -q $PY_SDKS 2>/dev/null || python3 -m pip install -q --break-system-packages $PY_SDKS
fi
python3 -c "import oss2, alibabacloud_oss_v2, alibabacloud_ecs20140526, alibabacloud_ram20150501, alibabacloud_sts20150401, jsonschema" || {
    echo "install-peers: the Alibaba Cloud Python SDKs or jsonschema are still missing" >&2
    exit 1
}
# Guest inspection tests build realistic disk images from folders, without loop devices:
# partition tools (sfdisk, sgdisk), mkfs for ext4/XFS/FAT, mtools, cpio and xz/zstd/lz4 for initramfs archives;
# NTFS, btrfs, ISO9660 and LUKS makers so the signature probes are checked against blkid on the real thing; rpm
# and rpmbuild to write a real RPM SQLite database (rpm --justdb) for the package reader; hivexsh/hivexget to
# write and read back the Windows registry hives, wimlib to fill an NTFS image without mounting it.
guest_tools_missing() {
    local t
    for t in sfdisk sgdisk mkfs.ext4 mkfs.xfs mkfs.fat mkswap mmd mcopy cpio blkid mkntfs mkfs.btrfs genisoimage cryptsetup \
        debugfs xz zstd lz4 rpm rpmbuild hivexsh hivexget wimlib-imagex; do
        command -v "$t" >/dev/null 2>&1 || return 0
    done
    return 1
}
if guest_tools_missing; then
    echo "install-peers: installing image building tools (gdisk dosfstools mtools xfsprogs e2fsprogs fdisk cpio ...)" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gdisk dosfstools mtools xfsprogs e2fsprogs fdisk cpio util-linux \
        ntfs-3g btrfs-progs genisoimage cryptsetup-bin \
        xz-utils zstd lz4 rpm libhivex-bin wimtools
fi
if guest_tools_missing; then
    echo "install-peers: image building tools are still missing" >&2
    exit 1
fi

# btrfs test images are made with `mkfs.btrfs --rootdir --subvol --compress` (no loop device, no mount), which
# needs btrfs-progs 6.13 or later: bookworm has 6.2, bookworm-backports 6.14.
btrfs_progs_new_enough() {
    local help
    help=$(mkfs.btrfs --help 2>&1 || true)
    grep -q -- '--compress' <<<"$help" && grep -q -- '--subvol' <<<"$help"
}
if ! btrfs_progs_new_enough; then
    echo "install-peers: installing btrfs-progs from bookworm-backports (mkfs.btrfs --subvol --compress)" >&2
    . /etc/os-release 2>/dev/null || true
    if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
        if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
            echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
        fi
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports btrfs-progs
    else
        $SUDO apt-get update -qq
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends btrfs-progs
    fi
fi
btrfs_progs_new_enough || { echo "install-peers: mkfs.btrfs lacks --subvol/--compress (need btrfs-progs 6.13+)" >&2; exit 1; }

# GNU time measures a command's own peak RSS (the upload memory test).
if [ ! -x /usr/bin/time ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time
fi
[ -x /usr/bin/time ] || { echo "install-peers: /usr/bin/time is still missing" >&2; exit 1; }

# The hostile-network tests (tests/network.rs) and the WAN benchmark build a network namespace behind a veth pair
# shaped by tbf: `ip` and `tc` from iproute2.
if ! command -v ip >/dev/null 2>&1 || ! command -v tc >/dev/null 2>&1; then
    echo "install-peers: installing iproute2 (ip, tc)" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2
fi
command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || { echo "install-peers: ip and tc are still missing" >&2; exit 1; }

# Upload-speed peers for scripts/bench-upload.sh: awscli (`aws s3 cp`) and rclone (`rclone copyto`).
if ! command -v aws >/dev/null 2>&1; then
    echo "install-peers: installing awscli (PyPI)" >&2
    python3 -m pip install -q awscli 2>/dev/null || python3 -m pip install -q --break-system-packages awscli
fi
aws --version >/dev/null 2>&1 || { echo "install-peers: aws (awscli) is still missing" >&2; exit 1; }
if ! command -v rclone >/dev/null 2>&1; then
    echo "install-peers: installing rclone" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends rclone
fi
rclone version >/dev/null 2>&1 || { echo "install-peers: rclone is still missing" >&2; exit 1; }
echo "install-peers: $(aws --version 2>&1 | cut -d' ' -f1), $(rclone version | head -1)" >&2

# s3s-fs: a real S3 server (SigV4, Content-MD5) for the upload tests. Building it takes minutes: cache the binary.
S3S_ROOT="${IMGPORT_PEERS_DIR:-$HOME/.cache/imgport-peers}"
if [ ! -x "$S3S_ROOT/bin/s3s-fs" ]; then
    echo "install-peers: building s3s-fs 0.14.1 into $S3S_ROOT (a few minutes)" >&2
    cargo install s3s-fs@0.14.1 --locked --features binary --root "$S3S_ROOT"
fi
echo "install-peers: $("$S3S_ROOT/bin/s3s-fs" --version 2>/dev/null || echo s3s-fs) at $S3S_ROOT/bin/s3s-fs" >&2

# virt-inspector (libguestfs-tools, with a host kernel for its appliance): the reference for offline guest facts.
# libguestfs depends on qemu-system-x86, and plain bookworm's 7.2 would break qemu-utils 10.x (the qemu-img
# oracle): install qemu-system-x86 first from bookworm-backports at exactly qemu-utils' version, then libguestfs.
QEMU_IMG_BEFORE=$(qemu-img --version | head -1)
if ! command -v virt-inspector >/dev/null 2>&1 || ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
    echo "install-peers: installing libguestfs-tools (virt-inspector) and linux-image-amd64" >&2
    QEMU_VER=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    . /etc/os-release 2>/dev/null || true
    if [ "${VERSION_CODENAME:-}" = "bookworm" ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
    fi
    $SUDO apt-get update -qq
    case $QEMU_VER in
        *bpo*)
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                -t bookworm-backports "qemu-system-x86=$QEMU_VER" ;;
    esac
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libguestfs-tools linux-image-amd64
fi
command -v virt-inspector >/dev/null 2>&1 || { echo "install-peers: virt-inspector is still missing" >&2; exit 1; }
if [ "$(qemu-img --version | head -1)" != "$QEMU_IMG_BEFORE" ]; then
    echo "install-peers: the libguestfs install changed qemu-img ($QEMU_IMG_BEFORE -> $(qemu-img --version | head -1))" >&2
    exit 1
fi

# Packer (Debian's packer 1.6.6): real Packer for the post-processor test (tests/packer.rs). Its `file` and `null`
# builders and `manifest` and `shell-local` post-processors are built in (in newer releases too): nothing is
# downloaded at build time, no `packer init`.
# The test runs it under `unshare --net` (util-linux) with only a loopback, and `ip` (iproute2) brings that up.
if ! command -v packer >/dev/null 2>&1; then
    echo "install-peers: installing packer" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends packer
fi
command -v packer >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1 || {
    echo "install-peers: packer or unshare is still missing" >&2
    exit 1
}
echo "install-peers: $(CHECKPOINT_DISABLE=1 packer version | head -1)" >&2

# The container image (scripts/build-container.sh, tests/container.rs): buildah assembles it from scratch without a
# daemon, podman runs it (with runc: crun refuses hybrid cgroup layouts), readelf (binutils) checks that the binary
# asks for no dynamic loader. systemd-analyze (systemd) verifies the example units (tests/scheduling.rs). None of
# them pulls in qemu: qemu-img stays at its version.
container_tools_missing() {
    local t
    for t in buildah podman runc readelf systemd-analyze; do
        command -v "$t" >/dev/null 2>&1 || return 0
    done
    return 1
}
if container_tools_missing; then
    echo "install-peers: installing buildah, podman, runc, binutils, systemd" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
        buildah podman runc binutils systemd
fi
if container_tools_missing; then
    echo "install-peers: buildah, podman, runc, readelf or systemd-analyze is still missing" >&2
    exit 1
fi
echo "install-peers: $(buildah --version), $(podman --version)" >&2
