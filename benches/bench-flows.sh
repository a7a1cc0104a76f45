#!/usr/bin/env bash
# Flow-table memory. For each N, the generated `concurrent` scenario opens N distinct live
# flows (70% TLS, 15% HTTP keep-alive, 15% UDP; 10% IPv6) within 50 s, none closing, and
# `egresswatch replay` holds all of them at once (`[flow] max_flows = N`). Prints:
#  - peak RSS of the whole process (/usr/bin/time %M) and, minus the RSS of a tiny replay,
#    the whole process's bytes per flow (flow table plus everything downstream that grows
#    with flows, e.g. detector state created when the N flows end at end of input);
#  - the flow table's own bytes per flow: the same capture replayed with max_flows = N/20
#    (the oldest, already complete flows are evicted, so downstream sees the same flows end),
#    and the RSS difference divided by the flows no longer held.
# Usage: benches/bench-flows.sh [N...]   (default: 100000 1000000; captures go to $TMPDIR,
#        about 2.4 KB per flow, deleted after each N)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=$PWD/target/release/egresswatch
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# Peak RSS in KiB of a replay of $1 with max_flows $2; the flows summary line goes to $T/flows.
replay_rss() {
    printf '[flow]\nmax_flows = %s\n' "$2" > "$T/flows.toml"
    /usr/bin/time -f "%M" -o "$T/rss" "$BIN" replay --threads 1 --config "$T/flows.toml" --format json "$1" \
        > /dev/null 2> "$T/replay.err"
    grep '^flows:' "$T/replay.err" > "$T/flows" || true
    cat "$T/rss"
}

"$BIN" generate --scenario concurrent --flows 100 --seed 1 --out "$T/tiny.pcap" 2> /dev/null
base=$(replay_rss "$T/tiny.pcap" 1000)
echo "baseline: tiny replay (100 flows) peak RSS $((base / 1024)) MiB"
printf '%10s %14s %18s %18s  %s\n' flows "peak RSS MiB" "process B/flow" "flow table B/flow" summary
for n in "${@:-100000 1000000}"; do
    "$BIN" generate --scenario concurrent --flows "$n" --seed 1 --out "$T/c.pcap" 2> /dev/null
    full=$(replay_rss "$T/c.pcap" "$n")
    summary=$(cat "$T/flows")
    bound=$((n / 20))
    bounded=$(replay_rss "$T/c.pcap" "$bound")
    rm -f "$T/c.pcap"
    awk -v n="$n" -v b="$bound" -v full="$full" -v base="$base" -v bounded="$bounded" -v s="$summary" \
        'BEGIN { printf "%10d %14.1f %18.0f %18.0f  %s\n", n, full / 1024,
                 (full - base) * 1024 / n, (full - bounded) * 1024 / (n - b), s }'
done
