# Build: docker build -t regent .
# Run:   docker run -p 8181:8181 regent run --server --addr :8181
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
# The system CA roots, for bundle services over https (`tls.ca_cert` adds others).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/regent /usr/local/bin/regent
EXPOSE 8181
ENTRYPOINT ["/usr/local/bin/regent"]
CMD ["run", "--server", "--addr", ":8181"]
