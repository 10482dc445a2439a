#!/usr/bin/env bash
# Rebuild examples/demo-debian12.qcow2, the image the README's main command imports: the mbr-bios-ext4 guest of
# scripts/build-test-images.sh (a Debian 12 skeleton on an MBR disk with an ext4 root: the files imgport's checks
# read, no real kernel, so it does not boot), as a compressed qcow2 of a few hundred KiB.
#
#   scripts/make-demo-image.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgport-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
bash "$ROOT/scripts/build-test-images.sh" "$WORK" >/dev/null
cargo run --quiet --release --manifest-path "$ROOT/Cargo.toml" -- \
    convert -O qcow2 --compress zlib --force "$WORK/mbr-bios-ext4.raw" "$ROOT/examples/demo-debian12.qcow2"
qemu-img check "$ROOT/examples/demo-debian12.qcow2"
