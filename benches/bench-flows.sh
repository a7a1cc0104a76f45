#!/usr/bin/env bash
# Flow-table memory. For each N, the generated `concurrent` scenario opens N distinct live
# flows (70% TLS, 15% HTTP keep-alive, 15% UDP; one host in eleven on IPv6) within 50 s, none
# closing, and `egresswatch replay` holds all of them at once (`[flow] max_flows = N`). Prints:
#  - held: the RSS the replay reports at end of input (`memory at end of input`), holding N
#    flows, and per flow after taking away a tiny replay's: everything the process keeps
#    per live flow (flow table, names, detector state), the steady state's figure;
#  - peak: the peak RSS (/usr/bin/time %M), which comes after, when all N flows end at once
#    and every detector records them (the table frees its index and queues first).
# The table's own structures per flow are checked by the unit test
# `memory_per_flow_stays_in_budget` (src/flow/table.rs).
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

# Replays $1 with max_flows $2. Writes the peak RSS (KiB) to $T/peak, the RSS (KiB) the
# replay reports holding at end of input to $T/held, the flows line to $T/flows.
replay() {
    printf '[flow]\nmax_flows = %s\n' "$2" > "$T/flows.toml"
    /usr/bin/time -f "%M" -o "$T/peak" "$BIN" replay --threads 1 --config "$T/flows.toml" --format json \
        "$1" > /dev/null 2> "$T/replay.err"
    awk '/^memory at end of input:/ { printf "%d\n", $6 * 1024 }' "$T/replay.err" > "$T/held"
    grep '^flows:' "$T/replay.err" > "$T/flows" || true
}

"$GEN" generate --scenario concurrent --flows 100 --seed 1 --out "$T/tiny.pcap" 2> /dev/null
replay "$T/tiny.pcap" 1000
base=$(cat "$T/held")
echo "baseline: tiny replay (100 flows) holds $((base / 1024)) MiB at end of input"
printf '%10s %10s %12s %10s  %s\n' flows "held MiB" "held B/flow" "peak MiB" summary
[ $# -gt 0 ] || set -- 100000 1000000
for n in "$@"; do
    "$GEN" generate --scenario concurrent --flows "$n" --seed 1 --out "$T/c.pcap" 2> /dev/null
    replay "$T/c.pcap" "$n"
    rm -f "$T/c.pcap"
    awk -v n="$n" -v full="$(cat "$T/peak")" -v held="$(cat "$T/held")" -v base="$base" \
        -v s="$(cat "$T/flows")" 'BEGIN {
            printf "%10d %10.1f %12.0f %10.1f  %s\n", n, held / 1024, (held - base) * 1024 / n,
                full / 1024, s }'
done
