#!/usr/bin/env bash
# Regenerates the sample traces in examples/traces/ and their expected routes (expected.toml), for
# `helpline replay` and its tests. Two parts:
#   foreign   SIPp callers (examples/sipp/caller_*.xml, dialing the shipped UK number) talking to a SIPp
#             UAS (examples/sipp/uas_answer.xml) — NOT helpline — captured on loopback by dumpcap, over
#             UDP and TCP, plus the SIPp message log (-trace_msg) of a call whose keys are SIP INFO.
#             Needs root (or capture rights on lo), sipp and dumpcap.
#   helpline  The same callers against `helpline serve --trace-dir` on the shipped ivr-menus/, at a
#             pretend open-hours (or night) time: each call's own pcap, as helpline wrote it. Needs sipp
#             and the helpline binary (cargo build; HELPLINE=path to use another).
# Usage: scripts/gen-traces.sh [foreign|helpline|all]   (default all). CI does not run it: the outputs
# are committed. Every wait is bounded; it fails loudly rather than writing a doubtful trace.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/examples/traces
PART=${1:-all}
HELPLINE=${HELPLINE:-$ROOT/target/debug/helpline}
UK=08000289999
OPEN=2026-11-27T19:00:00+01:00  # a Friday, 19:00 in Paris: the UK line (Mon-Sat 08:00-22:00) is open
NIGHT=2026-11-27T23:30:00+01:00 # the same Friday, 23:30: closed
WORK=$(mktemp -d /tmp/gen-traces.XXXXXX)
PIDS=()

cleanup() {
    # Only the processes this script started, by PID.
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "gen-traces: $*" >&2; exit 1; }

# A free port: an even one whose next three are free too (SIPp's media port, RTCP, and its +2 echo).
free_port() {
    python3 - <<'EOF'
import socket
for _ in range(200):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1] & ~1
    s.close()
    try:
        socks = []
        for q in range(p, p + 4):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                t = socket.socket(socket.AF_INET, kind)
                t.bind(("127.0.0.1", q))
                socks.append(t)
        for t in socks:
            t.close()
        if p > 1024:
            print(p)
            break
    except OSError:
        pass
EOF
}

# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_for() {
    local limit=$(( $1 * 10 )); shift
    for _ in $(seq "$limit"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

listening() { ss -Hln "sport = :$1" | grep -q .; }

# start_capture FILE FILTER: dumpcap on lo into FILE (pcapng), returns once it is capturing.
start_capture() {
    dumpcap -i lo -f "$2" -w "$1" 2>"$WORK/dumpcap.err" &
    CAPTURE=$!
    PIDS+=("$CAPTURE")
    wait_for 10 grep -q "Capturing on" "$WORK/dumpcap.err" || die "dumpcap did not start: $(cat "$WORK/dumpcap.err")"
}

stop_capture() {
    # dumpcap reads the kernel's buffer in batches: give the last packets (200 to BYE) time to land.
    sleep 1
    kill -INT "$CAPTURE"
    wait "$CAPTURE" || true
}

# foreign_call NAME TRANSPORT(u1|t1) CALLER [extra caller args]: one SIPp caller -> SIPp UAS call,
# captured into examples/traces/NAME.pcapng.
foreign_call() {
    local name=$1 transport=$2 caller=$3; shift 3
    local uas sip media uas_media
    uas=$(free_port); sip=$(free_port); media=$(free_port); uas_media=$(free_port)
    local filter="host 127.0.0.1 and (port $uas or port $sip or portrange $media-$((media + 3)) or portrange $uas_media-$((uas_media + 3)))"
    mkdir -p "$WORK/$name" && cd "$WORK/$name"
    start_capture "$OUT/$name.pcapng" "$filter"
    sipp -sf "$ROOT/examples/sipp/uas_answer.xml" -t "$transport" -i 127.0.0.1 -p "$uas" -mp "$uas_media" \
        -m 1 -nostdin -timeout 90s -timeout_error -trace_err -reconnect_close false >uas.out 2>&1 &
    # (-reconnect_close false: else SIPp 3.6.1 fails the finished call when the caller closes its TCP
    # connection.)
    local uas_pid=$!
    PIDS+=("$uas_pid")
    wait_for 10 listening "$uas" || die "$name: the UAS did not start: $(cat uas.out)"
    sipp -sf "$ROOT/examples/sipp/$caller" -t "$transport" -i 127.0.0.1 -p "$sip" -mp "$media" \
        -m 1 -nostdin -timeout 90s -timeout_error -trace_err "$@" "127.0.0.1:$uas" -s "$UK" \
        >caller.out 2>&1 || die "$name: the caller failed: $(cat caller.out ./*errors.log 2>/dev/null)"
    wait "$uas_pid" || die "$name: the UAS failed: $(cat uas.out ./*errors.log 2>/dev/null)"
    stop_capture
    cd "$ROOT"
    chmod 644 "$OUT/$name.pcapng"
    check_sip "$OUT/$name.pcapng"
    echo "wrote $OUT/$name.pcapng ($(stat -c %s "$OUT/$name.pcapng") bytes)"
}

# check_sip FILE: tshark finds the whole dialog in FILE: INVITE, its 200, ACK, BYE and its 200.
check_sip() {
    local seen
    seen=$(tshark -r "$1" -Y sip -T fields -e sip.Method -e sip.Status-Code -e sip.CSeq.method 2>/dev/null \
        | tr '\t' ' ' | sed 's/  */ /g' | sort -u | tr '\n' ';')
    for want in "INVITE INVITE" "ACK ACK" "BYE BYE" " 200 INVITE" " 200 BYE"; do
        case ";$seen" in *";$want;"*|*";${want# };"*) ;; *) die "$1: no '$want' (tshark saw: $seen)" ;; esac
    done
}

foreign() {
    command -v dumpcap >/dev/null || die "dumpcap is not installed (apt-get install tshark)"
    foreign_call sipp-uas-refunds-udp u1 caller_uk_refunds.xml
    foreign_call sipp-uas-orders-tcp t1 caller_orders.xml
    foreign_call sipp-uas-info-refunds-udp u1 caller_info_refunds.xml \
        -trace_msg -message_file "$OUT/sipp-uas-info-refunds.msg.log"
    echo "wrote $OUT/sipp-uas-info-refunds.msg.log"
}

# helpline_calls AT SCENARIO:NAME...: one helpline serve (pretend time AT, --trace-dir) and one SIPp call
# per SCENARIO; each call's pcap becomes examples/traces/NAME.pcap after its CDR is checked.
helpline_calls() {
    local at=$1; shift
    [ -x "$HELPLINE" ] || die "no helpline binary at $HELPLINE (cargo build)"
    local dir=$WORK/helpline-$RANDOM
    mkdir -p "$dir/trace"
    "$HELPLINE" serve --config "$ROOT/ivr-menus" --prompts "$ROOT/prompts" --listen 127.0.0.1:0 \
        --rtp-ports 30000-39999 --cdr "$dir/cdr.jsonl" --pretend-time "$at" --trace-dir "$dir/trace" \
        2>"$dir/server.log" &
    local server=$!
    PIDS+=("$server")
    wait_for 20 grep -aq "listening on udp:" "$dir/server.log" || die "helpline did not start: $(cat "$dir/server.log")"
    local port
    port=$(grep -ao "listening on udp:127.0.0.1:[0-9]*" "$dir/server.log" | head -1 | sed 's/.*://')
    local job name scenario route
    for job in "$@"; do
        scenario=${job%%:*}; name=${job##*:}
        (cd "$dir" && sipp -sf "$ROOT/examples/sipp/$scenario.xml" -i 127.0.0.1 -p "$(free_port)" \
            -mp "$(free_port)" -m 1 -nostdin -timeout 120s -timeout_error -trace_err \
            -cid_str "$name-%u-%p@%s" "127.0.0.1:$port" -s "$UK" >"$name.out" 2>&1) \
            || die "$name: the caller failed: $(cat "$dir/$name.out")"
        wait_for 10 grep -q "\"call_id\":\"$name-" "$dir/cdr.jsonl" || die "$name: no CDR"
        route=$(grep "\"call_id\":\"$name-" "$dir/cdr.jsonl" | jq -r '.route // ""')
        [ "$route" = "$(expected_route "$name")" ] || die "$name: reached '$route', expected '$(expected_route "$name")'"
    done
    # helpline writes pcaps off the call path: they are complete once it has shut down (SIGTERM drains).
    kill -TERM "$server"
    wait "$server" || true
    local pcap
    for job in "$@"; do
        name=${job##*:}
        pcap=$(compgen -G "$dir/trace/*-$name-*.pcap" | head -1 || true)
        [ -n "$pcap" ] || die "$name: no pcap in $dir/trace"
        cp "$pcap" "$OUT/$name.pcap"
        echo "wrote $OUT/$name.pcap ($(stat -c %s "$OUT/$name.pcap") bytes; from $(basename "$pcap"))"
    done
}

helpline_part() {
    helpline_calls "$OPEN" caller_uk_refunds:helpline-refunds dtmf_2833_8888:helpline-8888 \
        caller_invalid_retry:helpline-invalid-retry
    helpline_calls "$NIGHT" caller_after_hours:helpline-after-hours
}

# Every trace: file, route ("" = the call ends without one), the time at which it holds, how it was made.
TRACES=(
    "sipp-uas-refunds-udp.pcapng|europe.refunds|$OPEN|SIPp caller examples/sipp/caller_uk_refunds.xml -> SIPp UAS examples/sipp/uas_answer.xml over UDP, RFC 4733 keys; dumpcap -i lo (not helpline)"
    "sipp-uas-orders-tcp.pcapng|europe.orders|$OPEN|SIPp caller examples/sipp/caller_orders.xml -> SIPp UAS examples/sipp/uas_answer.xml over TCP, RFC 4733 keys; dumpcap -i lo (not helpline)"
    "sipp-uas-info-refunds-udp.pcapng|europe.refunds|$OPEN|SIPp caller examples/sipp/caller_info_refunds.xml -> SIPp UAS examples/sipp/uas_answer.xml over UDP, keys as SIP INFO; dumpcap -i lo (not helpline)"
    "sipp-uas-info-refunds.msg.log|europe.refunds|$OPEN|the same call's SIPp message log (caller side, sipp -trace_msg): SIP only, keys as SIP INFO"
    "helpline-refunds.pcap|europe.refunds|$OPEN|helpline serve --trace-dir --pretend-time $OPEN, caller examples/sipp/caller_uk_refunds.xml"
    "helpline-8888.pcap|europe.english|$OPEN|helpline serve --trace-dir --pretend-time $OPEN, caller examples/sipp/dtmf_2833_8888.xml"
    "helpline-invalid-retry.pcap|europe.seller-disputes|$OPEN|helpline serve --trace-dir --pretend-time $OPEN, caller examples/sipp/caller_invalid_retry.xml (7 invalid, then 3)"
    "helpline-after-hours.pcap||$NIGHT|helpline serve --trace-dir --pretend-time $NIGHT, caller examples/sipp/caller_after_hours.xml (closed: no route)"
)

expected_route() {
    local t
    for t in "${TRACES[@]}"; do
        IFS='|' read -r file route _ _ <<<"$t"
        if [ "${file%.*}" = "$1" ]; then echo "$route"; return; fi
    done
    die "no expected route for $1"
}

write_expected() {
    {
        echo "# The sample traces in this directory and where a replay of each must end, for helpline replay"
        echo "# and its tests. Each [[trace]]: file (beside this one), route (the queue reached; \"\" = the call"
        echo "# ends without a route) and at (a wall-clock time, RFC 3339, at which that route holds: the UK line"
        echo "# is open Monday to Saturday 08:00-22:00 Paris time). Every call dials the shipped UK number"
        echo "# $UK. Written by scripts/gen-traces.sh; the comment above each entry says how it was made."
        local t
        for t in "${TRACES[@]}"; do
            IFS='|' read -r file route at how <<<"$t"
            [ -e "$OUT/$file" ] || continue
            echo
            echo "# $how"
            echo "[[trace]]"
            echo "file = \"$file\""
            echo "route = \"$route\""
            echo "at = \"$at\""
        done
    } >"$OUT/expected.toml"
    echo "wrote $OUT/expected.toml"
}

mkdir -p "$OUT"
case $PART in
    foreign) foreign ;;
    helpline) helpline_part ;;
    all) foreign; helpline_part ;;
    *) die "usage: $0 [foreign|helpline|all]" ;;
esac
write_expected
