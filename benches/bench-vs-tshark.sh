#!/usr/bin/env bash
# Speed and memory of the release binary beside tshark on the same generated capture.
# Usage: benches/bench-vs-tshark.sh [PACKETS]   (default 2500000; the capture goes to $TMPDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${1:-2500000}
dir=${TMPDIR:-/tmp}/egresswatch-bench
mkdir -p "$dir"
capture="$dir/bench-$packets.pcap"

if ! command -v tshark >/dev/null || ! [ -x /usr/bin/time ]; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark time >/dev/null
fi
cargo build --release -q
bin=${CARGO_TARGET_DIR:-target}/release/egresswatch
[ -f "$capture" ] || "$bin" generate --scenario bench --seed 7 --packets "$packets" --out "$capture"
size=$(stat -c %s "$capture")
cat "$capture" > /dev/null   # page cache hot for both tools

measure() { # label, command...
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$dir/time" "$@" > "$dir/$label.out" 2> "$dir/$label.err"
    read -r secs rss_kb < "$dir/time"
    awk -v l="$label" -v s="$secs" -v r="$rss_kb" -v p="$packets" -v b="$size" \
        'BEGIN { printf "%-12s %8.2f s %10.0f packets/s %8.1f MB/s %8.0f MiB max RSS\n", l, s, p/s, b/s/1e6, r/1024 }'
}

echo "capture: $capture ($packets packets, $size bytes)"
measure egresswatch "$bin" replay --threads 1 --format json "$capture"
measure tshark tshark -n -r "$capture" -T fields -e dns.qry.name -e tls.handshake.extensions_server_name
echo "egresswatch names: $(grep -c . "$dir/egresswatch.out" || true) alert lines; summary:"
sed 's/^/  /' "$dir/egresswatch.err"
echo "tshark distinct names: $(tr '\t,' '\n\n' < "$dir/tshark.out" | grep -v '^$' | sort -u | wc -l)"
