#!/usr/bin/env bash
# Runs every test of qun: unit tests, the storage conformance suite, and the
# end-to-end suites that start real `qun serve` processes (QUN_E2E=1).
# Later suites that need PostgreSQL, NATS or a browser install them here.
set -euo pipefail
cd "$(dirname "$0")/.."

export QUN_E2E=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

cargo build --workspace --tests --bins
cargo test --workspace --no-fail-fast -- --test-threads="${QUN_TEST_THREADS:-4}"
