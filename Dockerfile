# Build: docker build -t regent .
# Run:   docker run -p 8181:8181 regent run --server --addr :8181
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/regent /usr/local/bin/regent
EXPOSE 8181
ENTRYPOINT ["/usr/local/bin/regent"]
CMD ["run", "--server", "--addr", ":8181"]
