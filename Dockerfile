# syntax=docker/dockerfile:1
# Builds both programs once; the compose file runs each from this one image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and compiled dependencies between builds, so an edit
# recompiles only the project's own crates. Binaries ship stripped, without debug info.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=true
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p core-service -p http-gateway \
    && install -m 0755 target/release/core-service target/release/http-gateway /usr/local/bin/

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /data licensing && mkdir -p /data && chown licensing /data
COPY --from=build /usr/local/bin/core-service /usr/local/bin/http-gateway /usr/local/bin/
USER licensing
WORKDIR /data
EXPOSE 50051 8080
