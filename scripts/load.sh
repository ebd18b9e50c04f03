#!/usr/bin/env bash
# The load harness in one command (examples/load; BENCHMARKS.md): builds helpline and the harness in
# release, raises the descriptor limit (SIPp, the held calls and the RTP stage need thousands), runs.
#   scripts/load.sh                 # full run: helpline, Kamailio stateless and stateful, RTP sink
#   scripts/load.sh --smoke         # seconds; what tests/load_smoke.rs runs
#   scripts/load.sh --help          # every option (--only, --start, --max, --step-secs, --skip …)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin helpline --example load
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec target/release/examples/load "$@"
