#!/usr/bin/env bash
# Flow-table memory. For each N, the generated `concurrent` scenario opens N distinct live
# flows (70% TLS, 15% HTTP keep-alive, 15% UDP; one host in eleven on IPv6) within 50 s, none
# closing, and `egresswatch replay` holds all of them at once (`[flow] max_flows = N`). Prints:
#  - held: the replay's RSS once the whole capture is read (sampled from /proc as the reader's
#    byte count reaches the file size), i.e. holding N flows, and per flow minus the RSS of a
#    tiny replay;
#  - peak: the peak RSS (/usr/bin/time %M), which comes after, at end of input, when all N
#    flows end at once and every detector records them;
#  - table: the flow table's own bytes per flow: the same capture replayed with
#    max_flows = N/20 (the oldest, already complete flows are evicted, so downstream sees the
#    same flows end), and the peak RSS difference divided by the flows no longer held.
# Usage: benches/bench-flows.sh [N...]   (default: 100000 1000000; captures go to $TMPDIR,
#        about 2 KB per flow, deleted after each N). EGRESSWATCH=/path/to/binary replays
#        with another build (e.g. an older one, to compare); this tree's generates.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
GEN=${CARGO_TARGET_DIR:-$PWD/target}/release/egresswatch
BIN=${EGRESSWATCH:-$GEN}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# Replays $1 with max_flows $2. Writes the peak RSS (KiB) to $T/peak, the RSS once the input
# is read to $T/held (empty if the reader does not use read(2)), the flows line to $T/flows.
replay() {
    printf '[flow]\nmax_flows = %s\n' "$2" > "$T/flows.toml"
    local size held="" timer child read rss
    size=$(stat -c %s "$1")
    /usr/bin/time -f "%M" -o "$T/peak" "$BIN" replay --threads 1 --config "$T/flows.toml" --format json \
        "$1" > /dev/null 2> "$T/replay.err" &
    timer=$!
    while kill -0 "$timer" 2> /dev/null; do
        child=$(pgrep -P "$timer" || true)
        if [ -z "$held" ] && [ -n "$child" ]; then
            read=$(awk '/^rchar/ { print $2 }' "/proc/$child/io" 2> /dev/null || true)
            rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$child/status" 2> /dev/null || true)
            if [ -n "$rss" ] && [ "${read:-0}" -ge "$size" ]; then held=$rss; fi
        fi
        sleep 0.05
    done
    wait "$timer"
    echo "$held" > "$T/held"
    grep '^flows:' "$T/replay.err" > "$T/flows" || true
}

"$GEN" generate --scenario concurrent --flows 100 --seed 1 --out "$T/tiny.pcap" 2> /dev/null
replay "$T/tiny.pcap" 1000
base=$(cat "$T/peak")
echo "baseline: tiny replay (100 flows) peak RSS $((base / 1024)) MiB"
printf '%10s %10s %12s %10s %12s  %s\n' flows "held MiB" "held B/flow" "peak MiB" \
    "table B/flow" summary
[ $# -gt 0 ] || set -- 100000 1000000
for n in "$@"; do
    "$GEN" generate --scenario concurrent --flows "$n" --seed 1 --out "$T/c.pcap" 2> /dev/null
    replay "$T/c.pcap" "$n"
    full=$(cat "$T/peak")
    held=$(cat "$T/held")
    summary=$(cat "$T/flows")
    bound=$((n / 20))
    replay "$T/c.pcap" "$bound"
    bounded=$(cat "$T/peak")
    rm -f "$T/c.pcap"
    awk -v n="$n" -v b="$bound" -v full="$full" -v held="$held" -v base="$base" \
        -v bounded="$bounded" -v s="$summary" 'BEGIN {
            if (held == "") { hm = "n/a"; hb = "n/a" }
            else { hm = sprintf("%.1f", held / 1024); hb = sprintf("%.0f", (held - base) * 1024 / n) }
            printf "%10d %10s %12s %10.1f %12.0f  %s\n", n, hm, hb, full / 1024,
                (full - bounded) * 1024 / (n - b), s }'
done
