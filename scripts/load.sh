#!/usr/bin/env bash
# The load harness in one command (examples/load; BENCHMARKS.md): builds helpline and the harness in
# release, raises the descriptor limit (SIPp, the held calls and the RTP stage need thousands), runs.
#   scripts/load.sh                 # full run: helpline, Kamailio stateless and stateful, RTP sink
#   scripts/load.sh --smoke         # seconds; what tests/load_smoke.rs runs
#   scripts/load.sh --help          # every option (--only, --start, --max, --step-secs, --skip …)
#   LOAD_FEATURES=mimalloc scripts/load.sh   # the allocator trial: helpline and the harness on mimalloc
#   LOAD_FEATURES=system scripts/load.sh     # ... on the system's malloc (default: jemalloc)
# Both builds share target/release (the dependencies are built once): each run rebuilds the helpline
# crate with its own features first, so the binary run is always the one the features name.
set -euo pipefail
cd "$(dirname "$0")/.."
features="${LOAD_FEATURES:-}"
case "$features" in
    system) cargo build --release --bin helpline --example load --no-default-features ;;
    *) cargo build --release --bin helpline --example load ${features:+--features "$features"} ;;
esac
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec target/release/examples/load "$@"
