# One image carries every Tessera binary; the operator runs it with a
# different command for the sidecar and the adapter containers.
#   docker build -t tessera:dev .
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir /out \
 && find target/release -maxdepth 1 -type f -executable -name 'tessera-*' -exec cp {} /out/ \;

# distroless: no shell, no package manager; runs as the nonroot user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tessera-operator"]
CMD ["run"]
