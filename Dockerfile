# syntax=docker/dockerfile:1
# imgport's container image: one static binary on an empty base (the binary, CA certificates, /etc/passwd with a
# non-root user, /tmp). Build: `docker build -t imgport .` or `podman build -t imgport .`.
# Offline, without a daemon, scripts/build-container.sh assembles the same image with buildah.
#
# Run a pipeline (credentials from the environment, the pipeline and its source mounted):
#   docker run --rm -e ALIBABA_CLOUD_ACCESS_KEY_ID -e ALIBABA_CLOUD_ACCESS_KEY_SECRET \
#     -v "$PWD/pipelines:/pipelines:ro" imgport pipeline run /pipelines/golden.toml --json

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# glibc, statically linked (rustls and ring need no system library): the binary runs on an empty base.
# The git revision for `--version` comes from the build context's .git when it is there.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --profile container --target x86_64-unknown-linux-gnu --bin imgport \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/container/imgport /out/imgport \
 && /out/imgport --version
COPY container/rootfs/etc/ /out/etc/
RUN install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt \
 && install -d -m 1777 /out/tmp \
 && install -d -m 0755 -o 65532 -g 65532 /out/home/nonroot

FROM scratch
COPY --from=build /out/ /
USER 65532:65532
ENV HOME=/home/nonroot \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /home/nonroot
ENTRYPOINT ["/imgport"]
CMD ["--help"]
