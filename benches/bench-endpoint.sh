#!/usr/bin/env bash
# Endpoint evidence throughput: the criterion bench `endpoint` (reader per format, detection),
# then the release binary beside the EVTX readers a user has at hand, on the same bytes: the
# generator's Sysmon files repeated 100 times (the bench writes them; see benches/endpoint.rs).
#   egresswatch replay --endpoint-events FILE: read, detect, alerts (JSON lines), per format
#   evtxexport -f xml FILE (libevtx-utils): EVTX to XML text, nothing else
#   evtx_dump.py FILE (python3-evtx): EVTX to XML text, nothing else; one run (over a minute)
# Prints a Markdown table: median wall time of R runs, events/s, MB/s, peak RSS.
# Usage: benches/bench-endpoint.sh [--runs R] [--no-criterion]   (default R = 5)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5
criterion=true
while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    --no-criterion) criterion=false; shift ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
bash scripts/setup.sh --test
[ -x /usr/bin/time ] || bash scripts/setup.sh --bench
cargo build --release -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/egresswatch
dir=$(mktemp -d "${TMPDIR:-/tmp}/egresswatch-endpoint.XXXXXX")
trap 'rm -rf "$dir"' EXIT

# The bench writes its inputs before timing; without criterion it is stopped right after.
if $criterion; then
    EGRESSWATCH_ENDPOINT_BENCH_OUT=$dir cargo bench -q --bench endpoint -- \
        --warm-up-time 1 --measurement-time 3
else
    EGRESSWATCH_ENDPOINT_BENCH_OUT=$dir cargo bench -q --bench endpoint -- --list > /dev/null
fi

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# Events in a file, as our reader counts them (the summary's `endpoint:` line).
events_in() {
    "$bin" replay --endpoint-events "$1" --format json 2>&1 > /dev/null |
        grep -oE 'endpoint: [0-9]+ Sysmon events' | grep -oE '[0-9]+'
}

echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| input | tool | events | MB | wall s | events/s | MB/s | peak RSS MiB |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for input in sysmon.evtx winlogbeat.ndjson elastic-agent.ndjson splunk.json sysmon-linux.log; do
    f=$dir/$input
    size=$(stat -c %s "$f")
    n=$(events_in "$f")
    tools=(egresswatch)
    if [ "$input" = sysmon.evtx ]; then tools+=(evtxexport evtx_dump.py); fi
    cat "$f" > /dev/null
    for tool in "${tools[@]}"; do
        case $tool in
        egresswatch) cmd=("$bin" replay --endpoint-events "$f" --format json) ;;
        evtxexport) cmd=(evtxexport -f xml "$f") ;;
        evtx_dump.py) cmd=(evtx_dump.py "$f") ;;
        esac
        : > "$dir/times"
        : > "$dir/rss"
        tool_runs=$runs
        [ "$tool" = evtx_dump.py ] && tool_runs=1
        for ((run = 1; run <= tool_runs; run++)); do
            start=$(date +%s%N)
            /usr/bin/time -f %M -o "$dir/time" "${cmd[@]}" > "$dir/out" 2> "$dir/err"
            end=$(date +%s%N)
            [ -s "$dir/out" ] || { echo "FAILED: $tool on $input printed nothing" >&2; exit 1; }
            echo "$(((end - start) / 1000))" >> "$dir/times"
            tail -1 "$dir/time" >> "$dir/rss"
        done
        us=$(median < "$dir/times")
        rss=$(sort -g "$dir/rss" | tail -1)
        awk -v input="$input" -v tool="$tool" -v n="$n" -v b="$size" -v us="$us" -v rss="$rss" 'BEGIN {
            s = us / 1e6
            printf "| %s | %s | %d | %.1f | %.3f | %.0f | %.1f | %.0f |\n", input, tool, n, b / 1e6, s, n / s, b / s / 1e6, rss / 1024
        }'
    done
done
