#!/usr/bin/env bash
# Runs every test of cvops: the README's test command, and what CI runs.
#
# Plain `cargo test` is hermetic and runs everything that needs no service. This script also
# installs and starts what the remaining suites need (from the next step on: moto_server for the
# AWS conformance tests), runs the whole workspace, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test (workspace)"
cargo test --workspace --locked "$@"
