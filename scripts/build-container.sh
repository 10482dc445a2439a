#!/usr/bin/env bash
# Builds imgport's container image without a daemon and without network: the image the Dockerfile describes
# (a static binary on an empty base), assembled with buildah from the local toolchain's build.
#
#   scripts/build-container.sh [OUT]          OUT defaults to target/container-image
#
# Writes OUT/oci, an OCI image layout holding the image tagged `imgport` (`podman run oci:OUT/oci:imgport`,
# `skopeo copy oci:OUT/oci:imgport docker://REGISTRY/imgport:TAG`), and OUT/imgport.oci.tar, the same as an
# OCI archive (`podman load -i`). buildah keeps its storage in OUT/storage only while it works.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-target/container-image}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TARGET=x86_64-unknown-linux-gnu
CARGO=${CARGO:-cargo}

for tool in buildah readelf; do
    command -v "$tool" >/dev/null 2>&1 || { echo "build-container: $tool is missing: run scripts/install-peers.sh" >&2; exit 1; }
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || { echo "build-container: /etc/ssl/certs/ca-certificates.crt is missing (ca-certificates)" >&2; exit 1; }

# 1. The binary: glibc linked statically (rustls and ring need no system library), the container profile
#    (release without debug info). RUSTFLAGS for the target only: build scripts stay ordinary host binaries.
start=$(date +%s)
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    "$CARGO" build --locked --profile container --target "$TARGET" --bin imgport
BIN=$ROOT/target/$TARGET/container/imgport
echo "build-container: binary built in $(( $(date +%s) - start )) s" >&2
if readelf -lW "$BIN" | grep -q 'program interpreter'; then
    echo "build-container: $BIN asks for a dynamic loader: it is not static" >&2
    exit 1
fi
VERSION=$("$BIN" --version)
VERSION=${VERSION#imgport }

# 2. The root filesystem: the binary, the CA bundle, users, /tmp, the non-root user's home.
STAGE=$OUT/stage
rm -rf "$STAGE"
install -D -m 0755 "$BIN" "$STAGE/imgport"
cp -r container/rootfs/etc "$STAGE/etc"
chmod 0644 "$STAGE"/etc/*
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$STAGE/etc/ssl/certs/ca-certificates.crt"
install -d -m 1777 "$STAGE/tmp"
install -d -m 0755 "$STAGE/home"
mkdir -p "$OUT/empty"

# 3. The image: buildah from scratch, in storage of its own (vfs: no overlay mounts needed), committed as an OCI
#    image layout and archive with a fixed timestamp so the same binary gives the same image.
export STORAGE_DRIVER=vfs
B=(buildah --root "$OUT/storage" --runroot "$OUT/run" --storage-driver vfs)
cleanup() {
    "${B[@]}" rm --all >/dev/null 2>&1 || true
    "${B[@]}" rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$OUT/storage" "$OUT/run" "$OUT/empty" "$STAGE"
}
trap cleanup EXIT
ctr=$("${B[@]}" from --quiet scratch)
"${B[@]}" copy --quiet "$ctr" "$STAGE/" /
"${B[@]}" copy --quiet --chown 65532:65532 --chmod 0755 "$ctr" "$OUT/empty/" /home/nonroot/
"${B[@]}" config \
    --os linux --arch amd64 \
    --user 65532:65532 \
    --env HOME=/home/nonroot \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --workingdir /home/nonroot \
    --entrypoint '["/imgport"]' \
    --cmd '--help' \
    --label org.opencontainers.image.title=imgport \
    --label "org.opencontainers.image.version=$VERSION" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    "$ctr"
rm -rf "$OUT/oci" "$OUT/imgport.oci.tar"
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
"${B[@]}" commit --quiet --format oci --timestamp "$EPOCH" --rm "$ctr" "oci:$OUT/oci:imgport" >/dev/null
# An OCI archive is the layout in one tar file.
tar -C "$OUT/oci" --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner -cf "$OUT/imgport.oci.tar" .
echo "build-container: imgport $VERSION as $OUT/oci (tag imgport) and $OUT/imgport.oci.tar" >&2
