# The trainer's container for AWS Batch: functions/trainer built with candle's CUDA backend.
#
#   docker build -f infra/trainer.Dockerfile -t cvops-trainer:v0.1.0 .     # from the repository root
#
# CUDA_COMPUTE_CAP picks the GPU architecture the kernels are compiled for: 86 (A10G, g5) also
# runs on 89 (L4, g6). The build has no GPU to ask, so it must be given.
ARG CUDA_VERSION=13.0.0
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
ARG RUST_VERSION=1.95.0
ENV CUDA_COMPUTE_CAP=86 \
    RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/* \
    && curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cvops-trainer --features cuda --bin trainer \
    && cp target/release/trainer /trainer

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 trainer
COPY --from=build /trainer /usr/local/bin/trainer
USER trainer
# Batch passes the run's environment (CVOPS_RUN_ID, CVOPS_SNAPSHOT_DESCRIPTOR, ...) and the
# array index; the job role gives S3 access.
ENTRYPOINT ["/usr/local/bin/trainer"]
