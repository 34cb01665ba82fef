# syntax=docker/dockerfile:1
#
# The vouch image: a release build on Debian bookworm, run on distroless cc-debian12 (glibc
# and libgcc from the same Debian release; aws-lc is linked in statically) as the
# unprivileged "nonroot" user (uid 65532).
#
#   docker build -t vouch:0.1.0 .
#   docker run --rm -p 8443:8443 -p 9090:9090 vouch:0.1.0     # embedded development config
#
# Kubernetes: see charts/vouch (args `serve --config /etc/vouch/config.yaml`).

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
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

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/vouch /usr/local/bin/vouch
# distroless's "nonroot" user, numerically: Kubernetes can then check runAsNonRoot against
# the image itself (a user name it cannot).
USER 65532:65532
# 8443: provider (HTTPS, mTLS); 9090: ops (HTTP: /healthz, /readyz, /metrics).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/vouch"]
CMD ["serve"]
