# Builds both programs; the compose file runs each from this one image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p core-service -p http-gateway

FROM debian:bookworm-slim
RUN useradd --system --home /data licensing && mkdir -p /data && chown licensing /data
COPY --from=build /src/target/release/core-service /src/target/release/http-gateway /usr/local/bin/
USER licensing
WORKDIR /data
