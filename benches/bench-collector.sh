#!/usr/bin/env bash
# Flow-export throughput. softflowd exports the generated `flood` scenario (about 95 k flows,
# most of them one-packet spoofed SYNs) as NetFlow v9 and IPFIX:
#  1. tcpdump records the export datagrams on loopback; `egresswatch replay` of that capture
#     measures decoding, templates, stitching and every detector on one thread (records/s per
#     core, from the run's own summary and wall time);
#  2. the live collector receives the same export straight from softflowd; its summary shows
#     whether every record arrived (queue drops are counted per exporter).
# Usage: benches/bench-collector.sh   (needs softflowd, tcpdump; large files go to $TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in softflowd tcpdump; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y $tool)" >&2; exit 1; }
done
cargo build --release -q
BIN=$PWD/target/release/egresswatch
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$BIN" generate --scenario flood --seed 1 --out "$T/flood.pcap" --truth "$T/flood.truth.json" 2>/dev/null
ls -l "$T/flood.pcap" | awk '{print "capture: " $5 " bytes"}'

for version in 9 10; do
    port=$((39000 + version))
    tcpdump -i lo -U -w "$T/export.pcap" "udp dst port $port" 2>/dev/null &
    dump=$!
    sleep 1
    softflowd -r "$T/flood.pcap" -n "127.0.0.1:$port" -v "$version" -d -a -c none -m 2000000 \
        -p "$T/softflowd.pid" > "$T/softflowd.out" 2>&1
    sleep 1
    kill "$dump"; wait "$dump" || true
    /usr/bin/time -f "%e s wall, %M KiB max RSS" "$BIN" replay --format json "$T/export.pcap" \
        > /dev/null 2> "$T/replay.err"
    records=$(sed -n 's/.* VPC flow log lines; \([0-9]*\) records.*/\1/p' "$T/replay.err")
    wall=$(tail -1 "$T/replay.err" | awk '{print $1}')
    echo "v$version replay of the export capture: $records records, $(tail -1 "$T/replay.err"), $(awk -v r="$records" -v w="$wall" 'BEGIN { if (w > 0) printf "%.0f records/s", r / w; else print "too fast to time" }')"
    grep -E '^export' "$T/replay.err" | sed 's/^/    /'

    "$BIN" collect --listen "127.0.0.1:$port" --format json > /dev/null 2> "$T/collect.err" &
    collector=$!
    sleep 1
    softflowd -r "$T/flood.pcap" -n "127.0.0.1:$port" -v "$version" -d -a -c none -m 2000000 \
        -p "$T/softflowd.pid" > /dev/null 2>&1
    sleep 1
    kill -TERM "$collector"; wait "$collector"
    echo "v$version live collector (same export, straight from softflowd):"
    grep -E '^(export|collector)' "$T/collect.err" | sed 's/^/    /'
done
