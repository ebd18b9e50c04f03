#!/usr/bin/env bash
# What `serve --trace-dir` costs: SIPp places CALLS calls at RATE calls/s (built-in `uac` scenario,
# each call held HOLD_MS while helpline plays its welcome), once without and once with --trace-dir, and
# the server's CPU (utime + stime of every thread, from /proc/PID/stat) over the run is divided by the
# calls that completed. Prints one line per mode. Loopback only; ports picked by the OS.
#
#   cargo build --release --bin helpline && scripts/capture-cost.sh
#   CALLS=5000 RATE=500 HOLD_MS=1000 BIN=target/release/helpline scripts/capture-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/helpline}
CALLS=${CALLS:-5000}
RATE=${RATE:-500}
HOLD_MS=${HOLD_MS:-1000}
MENUS=${MENUS:-tests/data/menus/first-flow}
NUMBER=${NUMBER:-08000000001}
TICK=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || true

free_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# utime + stime of process $1 in clock ticks (fields 14 and 15; the command name may hold spaces).
cpu_ticks() {
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

run() {
    local mode=$1 tmp pid port before after done_calls bytes files
    tmp=$(mktemp -d /tmp/capture-cost.XXXXXX)
    local extra=()
    if [ "$mode" = trace ]; then
        extra=(--trace-dir "$tmp/traces")
    fi
    RUST_LOG=warn "$BIN" serve --config "$MENUS" --prompts prompts --listen 127.0.0.1:0 --allow 127.0.0.1/32 \
        --rtp-ports 30000-39999 --cdr "$tmp/cdr.jsonl" --pretend-time 2026-12-01T10:00:00Z \
        --no-watch "${extra[@]}" 2>"$tmp/server.log" &
    pid=$!
    for _ in $(seq 100); do
        port=$(sed 's/\x1b\[[0-9;]*m//g' "$tmp/server.log" | grep -o 'listening on udp:[^ ]*' | sed 's/.*://' || true)
        [ -n "$port" ] && break
        sleep 0.1
    done
    if [ -z "$port" ]; then
        echo "server did not start:" >&2
        cat "$tmp/server.log" >&2
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    before=$(cpu_ticks "$pid")
    (cd "$tmp" && sipp "127.0.0.1:$port" -sn uac -s "$NUMBER" -m "$CALLS" -r "$RATE" -d "$HOLD_MS" \
        -l $((RATE * (HOLD_MS / 1000 + 2))) -i 127.0.0.1 -p "$(free_port)" -buff_size 4194304 \
        -max_socket 4096 -nostdin -timeout 300s -timeout_error >"$tmp/sipp.out" 2>&1) || true
    # Every call's CDR (the last ones follow SIPp's last 200 to BYE by a few milliseconds).
    for _ in $(seq 200); do
        [ "$(wc -l <"$tmp/cdr.jsonl" 2>/dev/null || echo 0)" -ge "$CALLS" ] && break
        sleep 0.05
    done
    after=$(cpu_ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" || true
    done_calls=$(grep -c '"final_status":200' "$tmp/cdr.jsonl" || true)
    bytes=0
    files=0
    if [ -d "$tmp/traces" ]; then
        files=$(find "$tmp/traces" -name '*.pcap' | wc -l)
        bytes=$(du -sb "$tmp/traces" | cut -f1)
    fi
    awk -v m="$mode" -v t=$((after - before)) -v hz="$TICK" -v n="$done_calls" -v c="$CALLS" \
        -v f="$files" -v b="$bytes" 'BEGIN {
            printf "%-8s calls %d/%d  server cpu %.2f s  %.0f us/call  pcaps %d  %.1f KB/call\n",
                m, n, c, t / hz, (n ? t / hz / n * 1e6 : 0), f, (n ? b / n / 1024 : 0) }'
    grep -h 'capture' "$tmp/server.log" | sed 's/\x1b\[[0-9;]*m//g' | head -3 || true
    rm -rf "$tmp"
}

echo "$(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$CALLS calls at $RATE/s, each held ${HOLD_MS} ms (helpline answers and plays its welcome)"
run plain
run trace
