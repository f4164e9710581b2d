#!/usr/bin/env bash
# Builds every function as an AWS Lambda bootstrap (provided.al2023, arm64), zipped, and prints
# each zip's size. Needs cargo-lambda and zig, both from PyPI, and the arm64 standard library:
#
#   pip install cargo-lambda ziglang
#   rustup target add aarch64-unknown-linux-gnu
#
# Output: target/lambda/<function>/bootstrap.zip, ready for `sam deploy` or the console.
set -euo pipefail
cd "$(dirname "$0")/.."

functions=(ingest dispatch-training register-model infer monitor)
packages=()
for f in "${functions[@]}"; do packages+=(-p "cvops-$f"); done

# Symbols stripped for the upload; the release profile keeps line tables for local profiling.
CARGO_PROFILE_RELEASE_STRIP=symbols cargo lambda build --release --arm64 --output-format zip "${packages[@]}"

for f in "${functions[@]}"; do
    zip="target/lambda/$f/bootstrap.zip"
    printf '%-20s %6.1f MB zipped\n' "$f" "$(echo "$(stat -c %s "$zip") / 1000000" | bc -l)"
done
