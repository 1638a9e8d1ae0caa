#!/usr/bin/env bash
# Runs the workspace's tests with cargo-nextest where it is installed, else cargo test.
# The caller (make test) provides the moto endpoint and test credentials.
set -euo pipefail

cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --no-fail-fast
else
    exec cargo test --workspace --no-fail-fast
fi
