#!/bin/sh
# Regenerates the trace-reader fixtures in this directory (src/replay/trace/tests.rs reads them).
# Needs root (loopback capture), sipp (sip-tester), dumpcap and tshark. Each capture is one SIPp UAC call
# (uac_dtmf.xml: INVITE, ACK, RFC 4733 key 1 via play_pcap_audio, BYE) against `sipp -sn uas`.
# The capture filter keeps other loopback traffic out of the fixtures.
set -eu
cd "$(dirname "$0")"
FILTER='port 25060 or port 25062 or portrange 26000-26009'

# call ADDR TRANSPORT: one UAS (background) and one UAC call; extra UAC args after.
call() {
    addr=$1; t=$2; shift 2
    uas=$(sipp -sn uas -i "$addr" -p 25060 -mp 26000 -t "$t" -m "${CALLS:-1}" -bg 2>&1 | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p')
    sleep 0.5
    case $addr in *:*) remote="[$addr]:25060" ;; *) remote="$addr:25060" ;; esac
    timeout 20 sipp "$remote" -sf uac_dtmf.xml -i "$addr" -p 25062 -mp 26004 -t "$t" -m "${CALLS:-1}" -l 1 -s 100 -nostdin "$@" >/dev/null 2>&1
    # The UAS lingers (timewait) after the call; the next call needs its port.
    while kill -0 "$uas" 2>/dev/null; do sleep 0.2; done
    sleep 0.5
}

# capture FILE CMD...: run the capture command in the background around one call.
capture() {
    out=$1; shift
    "$@" >/dev/null 2>&1 &
    pid=$!
    sleep 3  # tshark takes a while to start capturing
    call $CALL_ARGS
    kill "$pid"; wait "$pid" || true
    chmod 644 "$out"
}

CALL_ARGS="127.0.0.1 u1"
capture udp_lo.pcapng dumpcap -q -i lo -f "$FILTER" -w udp_lo.pcapng                 # (a) pcapng, Ethernet, ns
capture udp_lo.pcap tshark -q -i lo -f "$FILTER" -F pcap -w udp_lo.pcap               # (b) pcap, Ethernet, us
capture udp_any.pcapng tshark -q -i any -f "$FILTER" -w udp_any.pcapng                # (c) SLL (113): this tshark's default
capture udp_any_sll2.pcapng tshark -q -i any -y LINUX_SLL2 -f "$FILTER" -w udp_any_sll2.pcapng  # (c') SLL2 (276), newer tshark's default
CALL_ARGS="127.0.0.1 t1"
capture tcp_lo.pcapng dumpcap -q -i lo -f "$FILTER" -w tcp_lo.pcapng                 # (d) SIP over TCP
CALL_ARGS="::1 u1"
capture udp_v6.pcapng dumpcap -q -i lo -f "$FILTER" -w udp_v6.pcapng                 # (e) IPv6 on ::1
CALL_ARGS="127.0.0.1 u1"
CALLS=3 capture udp_3calls.pcapng dumpcap -q -i lo -f "$FILTER" -w udp_3calls.pcapng   # three calls in a row, same ports

# (f) SIPp message log of the UAC (and of the UAS: the other side's view).
rm -f uac_dtmf_*_messages.log uas_*_messages.log
sipp -sn uas -i 127.0.0.1 -p 25060 -mp 26000 -m 1 -bg -trace_msg -message_file uas_messages.log >/dev/null 2>&1 || true
sleep 0.5
timeout 20 sipp 127.0.0.1:25060 -sf uac_dtmf.xml -i 127.0.0.1 -p 25062 -mp 26004 -m 1 -s 100 -nostdin \
    -trace_msg -message_file uac_messages.log >/dev/null 2>&1
sleep 1
while pgrep -f "sipp -sn uas -i 127.0.0.1 -p 25060" >/dev/null; do sleep 0.2; done
chmod 644 uac_messages.log uas_messages.log
# Other processes on this host may hit the ports while capturing: check each capture holds one Call-ID
# (tshark -r F -Y sip -T fields -e sip.Call-ID | sort -u); rerun if not.

# (g) the same over TCP: the UAC's log.
sipp -sn uas -i 127.0.0.1 -p 25060 -mp 26000 -t t1 -m 1 -bg >/dev/null 2>&1 || true
sleep 0.5
timeout 20 sipp 127.0.0.1:25060 -sf uac_dtmf.xml -i 127.0.0.1 -p 25062 -mp 26004 -t t1 -m 1 -s 100 -nostdin \
    -trace_msg -message_file uac_tcp_messages.log >/dev/null 2>&1
while pgrep -f "sipp -sn uas -i 127.0.0.1 -p 25060" >/dev/null; do sleep 0.2; done
chmod 644 uac_tcp_messages.log
