# One image carries every Tessera binary (tessera-operator, tessera-sidecar,
# tessera-adapter, tessera-ambassador) in /usr/local/bin; the operator runs
# it with a different command for the sidecar and the adapter containers.
#
#   docker build -t ghcr.io/tessera-dev/tessera:0.1.0 --build-arg VERSION=0.1.0 .
#
# builds the binaries in the `build` stage on the public Rust image and puts
# them on distroless. hack/images.sh builds the same image without a registry
# (see docs/images.md): binaries built on the host, a base made from Debian
# packages:
#
#   buildah bud --build-arg BINARIES=prebuilt \
#     --build-arg RUNTIME_IMAGE=tessera.local/base:bookworm -f Dockerfile <context>
#
# where <context>/bin/ holds the binaries. Every base is a build argument.
# BuildKit and buildah (1.28+) skip the stage that BINARIES does not name, so
# the Rust image is not pulled when the binaries come from the host.

# The toolchain of the in-image build.
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
# The runtime base: glibc, libgcc, CA certificates and a nonroot user 65532.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# Where the binaries come from: `build` (cargo inside the image) or
# `prebuilt` (the folder PREBUILT_DIR of the build context).
ARG BINARIES=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP=symbols cargo build --release --locked --bins \
 && mkdir /out \
 && find target/release -maxdepth 1 -type f -executable -name 'tessera-*' -exec cp {} /out/ \;

FROM scratch AS prebuilt
# A folder of the build context holding the tessera-* binaries, built for
# the runtime base's glibc (Debian 12 or older).
ARG PREBUILT_DIR=bin
COPY ${PREBUILT_DIR}/ /out/

FROM ${BINARIES} AS binaries

# distroless: no shell, no package manager; runs as the nonroot user.
FROM ${RUNTIME_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="tessera" \
      org.opencontainers.image.description="Tessera: Kubernetes operator for ZooKeeper, etcd, Redis, memcached and Kafka, with its sidecar, metrics adapter and shard-routing ambassador" \
      org.opencontainers.image.source="https://github.com/tessera-dev/tessera" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=binaries /out/ /usr/local/bin/
# tessera-operator: /healthz, /readyz and /metrics (--metrics-addr).
EXPOSE 8080
# tessera-sidecar: /readyz and /livez, the engine container's probes.
EXPOSE 8095
# tessera-adapter: /metrics of the engine. Also the usual --admin address of
# tessera-ambassador (/metrics, /healthz), which has no default.
EXPOSE 9121
# tessera-ambassador --store: the proxied Redis or memcached port (it listens
# on 127.0.0.1 unless --listen says otherwise).
EXPOSE 6379 11211
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tessera-operator"]
CMD ["run"]
