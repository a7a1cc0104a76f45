#!/usr/bin/env bash
# Fuzzes the decoders: seeds every target from real bytes (the public captures, captures/,
# config/), then runs each with libFuzzer and prints a Markdown table of executions, crashes
# and the corpus size. A crash leaves its input in fuzz/artifacts/<target>/ and makes the
# script fail after the other targets ran.
#
# Usage: fuzz/run.sh [--runs N | --seconds S] [TARGET...]
#   --runs N      executions per target (default 1000000)
#   --seconds S   run each target for S seconds instead (the CI smoke uses 5)
#   TARGET...     some targets only (default: all, see fuzz/Cargo.toml)
# Needs the nightly toolchain; installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-runs=1000000)
targets=()
while [ $# -gt 0 ]; do
    case $1 in
    --runs) limit=(-runs="$2"); shift 2 ;;
    --seconds) limit=(-max_total_time="$2"); shift 2 ;;
    -*) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | grep -v egresswatch-fuzz)
fi

command -v cargo-fuzz > /dev/null || cargo install cargo-fuzz --locked
cargo build --release -q
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/egresswatch
seeds=$(mktemp -d "${TMPDIR:-/tmp}/egresswatch-seeds.XXXXXX")
trap 'rm -rf "$seeds"' EXIT
captures=()
for f in ../shared/captures/public/* captures/*; do
    case $f in *.pcap | *.pcapng | *.cap) captures+=("$f") ;; esac
done
configs=(config/*.toml captures/*.toml)
"$bin" fuzz-seeds --out "$seeds" "${configs[@]/#/--config-file=}" "${captures[@]}" >&2
cargo +nightly fuzz build -O 2>&1 | grep -v '^\s*Compiling' >&2 || true

echo "| target | executions | crashes | corpus |"
echo "| --- | ---: | ---: | ---: |"
failed=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    log=$seeds/$t.log
    status=0
    cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" "$seeds/$t" -- "${limit[@]}" \
        -print_final_stats=1 -rss_limit_mb=2048 -max_len=65536 > "$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    # crash-, leak-, oom- and timeout- inputs fail the run; slow-unit- ones are only shown.
    crashes=$(find "fuzz/artifacts/$t" -type f ! -name 'slow-unit-*' | wc -l)
    find "fuzz/artifacts/$t" -type f -name 'slow-unit-*' | sed 's/^/slow unit: /' >&2
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    echo "| $t | ${runs:-?} | $crashes | $corpus |"
    if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        failed=1
        grep -m1 -A12 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" >&2 || tail -20 "$log" >&2
    fi
done
exit $failed
