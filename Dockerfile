# syntax=docker/dockerfile:1
#
# The vouch image: a release build on Debian bookworm, run on distroless cc-debian12 (glibc
# and libgcc from the same Debian release; aws-lc is linked in statically) as the
# unprivileged "nonroot" user (uid 65532).
#
#   docker build -t vouch:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE_URL=https://… .
#   docker run --rm -p 8443:8443 -p 9090:9090 vouch:0.1.0     # embedded development config
#
# Kubernetes: see charts/vouch (args `serve --config /etc/vouch/config.yaml`).
#
# Base images are pinned by digest (tag@sha256:…): a rebuild uses exactly the same
# toolchain and runtime files, and a tag moved upstream changes nothing until the digest
# here is changed on purpose. The tag stays for the reader (and names what the digest was
# taken from); when both are given, the digest alone decides what is pulled. To update one,
# resolve the tag to the digest of its multi-platform index ("Digest:" in the output) and
# replace tag and digest together:
#
#   docker buildx imagetools inspect rust:1.95.0-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
#
# (or `crane digest IMAGE`). The Rust version must be at least the newest `rust-version`
# among the locked dependencies (`cargo metadata --locked --format-version 1`).
# tests/packaging.rs checks that every FROM is pinned.

# rust:1.95.0-bookworm (Rust 1.95.0 on Debian 12).
FROM rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
WORKDIR /src
# Only what the build reads. config/ and policies/ are compiled in with include_str!
# (config/default.yaml, policies/*.rego); benches/ because Cargo.toml declares a [[bench]]
# target, which cargo resolves on every build.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
COPY policies ./policies
COPY benches ./benches
# Fixtures the fuzz entry points compile in (include_bytes!).
COPY fuzz/fixtures ./fuzz/fixtures
# The registry and target caches survive between builds (BuildKit), so a source change
# recompiles vouch, not its dependencies. --locked: exactly the versions of Cargo.lock.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vouch \
    && install -D -m 0755 target/release/vouch /out/vouch

# gcr.io/distroless/cc-debian12:nonroot (Debian 12, glibc, libgcc, CA certificates, uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
# OCI image annotations (https://github.com/opencontainers/image-spec, annotations.md), read
# by registries, scanners and `docker inspect`. VERSION is the crate's version (Cargo.toml;
# tests/packaging.rs keeps them equal); REVISION is the commit built and SOURCE_URL the
# repository it comes from, both passed by whoever builds a published image.
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="vouch" \
      org.opencontainers.image.description="OPA Gatekeeper external data provider that verifies container image signatures at admission time" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/vouch /usr/local/bin/vouch
# distroless's "nonroot" user, numerically: Kubernetes can then check runAsNonRoot against
# the image itself (a user name it cannot).
USER 65532:65532
# 8443: provider (HTTPS, mTLS); 9090: ops (HTTP: /healthz, /readyz, /metrics).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/vouch"]
CMD ["serve"]
