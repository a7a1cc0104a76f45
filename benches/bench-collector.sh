#!/usr/bin/env bash
# Flow-export (NetFlow v9 / IPFIX) throughput; issue 6 asks for >= 1 million records/s per core.
#
# Input: softflowd's real export of COPIES generated `flood` scenarios (seeds 1..COPIES, each
# shifted 200 s after the one before with editcap, concatenated with mergecap; about 90 k flows
# a copy, most of them one-packet spoofed SYNs). softflowd exports its whole cache at the end of
# the file, so a collector gets one burst: about 1.8 M records with the default 20 copies.
#  1. tcpdump records the export datagrams on loopback. `egresswatch replay` of that capture
#     decodes, reorders, stitches and runs every detector on one thread, RUNS times: records/s
#     per core from the median CPU time (user + sys; wall time is shown too, but is noisy on a
#     shared machine). CALLGRIND=1 also counts instructions per record (slow). BASELINE=path
#     replays the same capture with another build too: softflowd's export order varies from
#     run to run, and with it the work (evictions), so compare builds on one capture.
#  2. softflowd sends the same export live to `egresswatch collect`, then to nfcapd (nfdump,
#     the peer: it decodes and stores records, no stitching or detection). Each receiver runs
#     until it has been idle for 2 s after the burst; its whole CPU time (start-up and the end
#     of its flows included) and the records it got are reported.
# Usage: benches/bench-collector.sh [COPIES] [RUNS]   (defaults 20 and 3; installs softflowd,
# tcpdump, wireshark-common and nfdump when missing; files go to $TMPDIR; EGRESSWATCH=path
# measures that binary instead of building this tree; KEEP=dir keeps the export captures there,
# as export-v9.pcap and export-v10.pcap, for profiling)
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-20}
runs=${2:-3}
need=()
for tool in softflowd:softflowd tcpdump:tcpdump editcap:wireshark-common mergecap:wireshark-common \
    nfcapd:nfdump /usr/bin/time:time; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -n "${EGRESSWATCH:-}" ]; then
    BIN=$(realpath "$EGRESSWATCH")   # another build, e.g. to compare before and after
else
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/egresswatch
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/bench-collector.XXXXXX")
trap 'rm -rf "$T"' EXIT

parts=()
for seed in $(seq 1 "$copies"); do
    "$BIN" generate --scenario flood --seed "$seed" --out "$T/flood$seed.pcap" 2>/dev/null
    editcap -F pcap -t $(((seed - 1) * 200)) "$T/flood$seed.pcap" "$T/shifted$seed.pcap"
    rm "$T/flood$seed.pcap"
    parts+=("$T/shifted$seed.pcap")
done
mergecap -F pcap -a -w "$T/flood.pcap" "${parts[@]}"
rm "${parts[@]}"
echo "input: $copies flood scenarios back to back, $(stat -c %s "$T/flood.pcap") bytes"

# A burst of tens of MB: receivers need socket buffers that hold it (raised, never lowered).
if [ "$(sysctl -n net.core.rmem_max)" -lt 268435456 ]; then
    sysctl -q -w net.core.rmem_max=268435456 || echo "could not raise net.core.rmem_max: live figures may show drops"
fi

export_to() { # port version
    softflowd -r "$T/flood.pcap" -n "127.0.0.1:$1" -v "$2" -d -a -c none -m 4000000 \
        -p "$T/softflowd.pid" > "$T/softflowd.out" 2>&1
}

cpu_ticks() { # pid: user + sys clock ticks so far, all threads
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

wait_idle() { # pid: returns once the process used no CPU for 2 s
    local before after
    after=$(cpu_ticks "$1")
    while :; do
        before=$after
        sleep 2
        after=$(cpu_ticks "$1")
        [ "$after" -gt "$before" ] || break
    done
}

# Runs a receiver (command...) while softflowd sends to port (with version); once it has been
# idle for 2 s it is stopped (it ends its flows then) and its whole CPU time is in $T/cpu.
receive() { # port version command...
    local port=$1 version=$2
    shift 2
    /usr/bin/time -f "%U %S" -o "$T/cpu" "$@" > /dev/null 2> "$T/receiver.err" &
    local timer=$! pid
    sleep 1
    pid=$(pgrep -P "$timer")
    export_to "$port" "$version"
    wait_idle "$pid"
    kill -TERM "$pid"
    wait "$timer" || true
}

per_core() { # records: "N s CPU, M records/s per core" from $T/cpu
    awk -v r="$1" '{ s = $1 + $2; printf "%.2f s CPU, %.0f records/s per core", s, (s > 0 ? r / s : 0) }' "$T/cpu"
}

# Replays the export capture RUNS times with a binary (label, binary): median CPU and wall
# time, records/s per core; with CALLGRIND=1 also instructions per record.
replay_figures() {
    local label=$1 bin=$2 records cpu wall rss instructions
    : > "$T/times"
    for _ in $(seq 1 "$runs"); do
        /usr/bin/time -f "%U %S %e %M" -o "$T/time" "$bin" replay --threads 1 --format json "$T/export.pcap" \
            > /dev/null 2> "$T/replay.err"
        cat "$T/time" >> "$T/times"
    done
    records=$(sed -n 's/.* VPC flow log lines; \([0-9]*\) records.*/\1/p' "$T/replay.err")
    cpu=$(awk '{ print $1 + $2 }' "$T/times" | median)
    wall=$(awk '{ print $3 }' "$T/times" | median)
    rss=$(awk '{ print $4 }' "$T/times" | median)
    echo "  $label ($runs runs, medians): $records records, $cpu s CPU, $wall s wall," \
        "$((rss / 1024)) MiB max RSS:" \
        "$(awk -v r="$records" -v c="$cpu" -v w="$wall" 'BEGIN { printf "%.0f records/s per core (CPU), %.0f records/s (wall)", r / c, r / w }')"
    grep -E '^export' "$T/replay.err" | sed 's/^/    /'
    if [ "${CALLGRIND:-0}" = 1 ] && command -v valgrind >/dev/null; then
        valgrind --tool=callgrind --callgrind-out-file="$T/callgrind.out" \
            "$bin" replay --threads 1 --format json "$T/export.pcap" > /dev/null 2> "$T/callgrind.err"
        instructions=$(sed -n 's/.*Collected : \([0-9]*\)/\1/p' "$T/callgrind.err")
        echo "    callgrind: $instructions instructions, $((instructions / records)) per record"
    fi
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for version in 9 10; do
    port=$((39000 + version))
    tcpdump -i lo -U -B 65536 -w "$T/export.pcap" "udp dst port $port" 2> "$T/tcpdump.err" &
    dump=$!
    sleep 1
    export_to "$port" "$version"
    sleep 1
    kill "$dump"; wait "$dump" || true
    grep -q "^0 packets dropped by kernel" "$T/tcpdump.err" || echo "tcpdump dropped export datagrams: $(grep dropped "$T/tcpdump.err")"
    sent=$(sed -n 's/.*Flows exported: [0-9]* (\([0-9]*\) records).*/\1/p' "$T/softflowd.out")
    datagrams=$(sed -n 's/.* in \([0-9]*\) packets.*/\1/p' "$T/softflowd.out")
    echo "v$version: softflowd sent $sent records in $datagrams datagrams"
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$T/export.pcap" "$KEEP/export-v$version.pcap"; fi

    replay_figures "egresswatch replay of the export capture" "$BIN"
    if [ -n "${BASELINE:-}" ]; then
        replay_figures "baseline $(basename "$BASELINE"), same capture" "$(realpath "$BASELINE")"
    fi

    receive "$port" "$version" "$BIN" collect --listen "127.0.0.1:$port" --format json
    got=$(sed -n 's/.* VPC flow log lines; \([0-9]*\) records.*/\1/p' "$T/receiver.err")
    echo "  egresswatch collect, live from softflowd: $got of $sent records, $(per_core "$got")"
    grep -E '^(export|collector)' "$T/receiver.err" | sed 's/^/    /'

    rm -rf "$T/nfcapd"; mkdir "$T/nfcapd"
    receive "$port" "$version" nfcapd -w "$T/nfcapd" -p "$port" -b 127.0.0.1 -B 268435456
    got=$(nfdump -R "$T/nfcapd" -I | sed -n 's/^Flows: //p')
    echo "  nfcapd (nfdump $(nfcapd -V 2>&1 | grep -o '[0-9][0-9.]*' | head -1)), live from softflowd:" \
        "$got of $sent records, $(per_core "$got")"
done
