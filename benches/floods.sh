#!/usr/bin/env bash
# Floods at full size (issue 7): each hostile scenario of the generator (the office capture with
# an attack laid over it) is generated to a file, then replayed with the shipped config
# (config/egresswatch.toml: max_flows 1 M, 4096 fragmented datagrams / 32 MiB, DNS cache 200 k,
# 65536 templates) and once more with the bounds tests/floods.rs uses. For each run: frames,
# wall and CPU time, frames/s (CPU), peak RSS, what was evicted or dropped, and whether the
# office's proxyware host raised its 5 alerts. The `bench` scenario (ordinary traffic) at the
# same size is the throughput reference.
# Usage: benches/floods.sh [DIVISOR]   (sizes: 10 M SYNs, 4 M DNS frames, 3 M tiny segments,
# 4 M fragments, 200 k IPFIX messages, 4 M bench frames, each divided by DIVISOR (default 1);
# files go to $TMPDIR and are removed; EGRESSWATCH=path measures that binary instead)
set -euo pipefail
cd "$(dirname "$0")/.."
divisor=${1:-1}
if [ -n "${EGRESSWATCH:-}" ]; then
    BIN=$(realpath "$EGRESSWATCH")
else
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/egresswatch
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-floods.XXXXXX")
trap 'rm -rf "$T"' EXIT
printf '[flow]\nmax_flows = 100000\n[detectors.flood]\nmax_sources = 100000\nmax_tracked_flows = 100000\n' > "$T/syn-flood.toml"
printf '[dns]\ncache_max_entries = 5000\n' > "$T/dns-flood.toml"
printf '' > "$T/tiny-hello.toml"
printf '[reassembly]\nmax_fragmented_datagrams = 512\nmax_fragment_bytes = 1048576\n' > "$T/fragment-flood.toml"
printf '[export]\nmax_templates = 1000\nmax_pending_sets = 16\n' > "$T/template-storm.toml"
printf '' > "$T/bench.toml"

# Replays $1 with config $2; prints one Markdown row labelled $3.
run() {
    local pcap=$1 config=$2 label=$3 frames wall cpu rss alerts office evicted
    /usr/bin/time -f '%e %U %S %M' -o "$T/time" \
        "$BIN" replay --format json --config "$config" "$pcap" > "$T/alerts" 2> "$T/summary"
    read -r wall user sys rss < "$T/time"
    cpu=$(echo "$user + $sys" | bc)
    frames=$(sed -n 's/^egresswatch: 1 file(s), \([0-9]*\) frames.*/\1/p' "$T/summary")
    alerts=$(wc -l < "$T/alerts")
    office=$(grep -c '"host":"10.20.1.66".*"DetectionBranch":"ProxywareDomain"' "$T/alerts" || true)
    evicted=$(grep -oE '[0-9]+ evicted at the max_flows bound|[0-9]+ answer cache entries evicted|[0-9]+ evicted at max_templates|[0-9]+ withdrawn|[0-9]+ dropped\)|fragment_[a-z_]+=[0-9]+|[0-9]+ datagrams reassembled|[0-9]+ TLS ClientHellos' "$T/summary" \
        | grep -vE '^0 ' | paste -sd ';' - | sed 's/;/; /g')
    case $label in
        bench*) office="n/a (no office)" ;;
        *) office="$office/5 ($alerts alerts in all)" ;;
    esac
    printf '| %s | %s | %.2f | %.2f | %.0f k | %d MiB | %s | %s |\n' \
        "$label" "$frames" "$wall" "$cpu" "$(echo "$frames / $cpu / 1000" | bc -l)" \
        $((rss / 1024)) "${evicted:-none}" "$office"
}

echo "| scenario (config) | frames | wall s | CPU s | frames/s (CPU) | peak RSS | evicted, dropped, decoded | office proxyware alerts |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"
for spec in syn-flood:10000000 dns-flood:4000000 tiny-hello:3000000 fragment-flood:4000000 \
    template-storm:200000 bench:4000000; do
    scenario=${spec%%:*}
    packets=$(( ${spec#*:} / divisor ))
    "$BIN" generate --scenario "$scenario" --seed 1 --packets "$packets" --out "$T/$scenario.pcap" \
        > /dev/null 2>&1
    cat "$T/$scenario.pcap" > /dev/null   # into the page cache before timing
    run "$T/$scenario.pcap" config/egresswatch.toml "$scenario ($packets, shipped)"
    if [ -s "$T/$scenario.toml" ]; then
        run "$T/$scenario.pcap" "$T/$scenario.toml" "$scenario ($packets, test bounds)"
    fi
    rm "$T/$scenario.pcap"
done
