#!/bin/sh
# Regenerates sipp_gb_refunds.pcapng, the foreign trace tests/replay.rs replays: a SIPp UAC call
# (uac_gb_refunds.xml) to `sipp -sn uas` - not helpline - captured on loopback by dumpcap.
# Needs root (loopback capture), sipp (sip-tester) and dumpcap. Expected route: europe.refunds.
set -eu
cd "$(dirname "$0")"
FILTER='port 25160 or port 25162 or portrange 26100-26109'
rm -f sipp_gb_refunds.pcapng
dumpcap -q -i lo -f "$FILTER" -w sipp_gb_refunds.pcapng >/dev/null 2>&1 &
cap=$!
sleep 3  # dumpcap takes a moment to start capturing
uas=$(sipp -sn uas -i 127.0.0.1 -p 25160 -mp 26100 -m 1 -bg 2>&1 | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p')
sleep 0.5
timeout 30 sipp 127.0.0.1:25160 -sf uac_gb_refunds.xml -i 127.0.0.1 -p 25162 -mp 26104 -m 1 \
    -s 08000289999 -nostdin >/dev/null 2>&1
while kill -0 "$uas" 2>/dev/null; do sleep 0.2; done
sleep 1
kill "$cap"; wait "$cap" || true
chmod 644 sipp_gb_refunds.pcapng
tshark -r sipp_gb_refunds.pcapng -Y sip -T fields -e sip.Call-ID | sort -u
