#!/usr/bin/env bash
# A real Kafka-protocol broker for the Kafka export's tests (tests/kafka.rs): Tansu, an Apache
# Kafka compatible broker written in Rust, built from its crates.io source (Apache's Kafka
# downloads are not reachable here, and Kafka is not in Debian). It keeps everything in memory.
#
#   scripts/kafka-peer.sh install             build it once (cargo install, a few minutes)
#   scripts/kafka-peer.sh path                print the broker's path (fails if not installed)
#   scripts/kafka-peer.sh start HOST:PORT [ADVERTISED]   run a broker there, in the foreground
#                                             (exec); ADVERTISED: the address clients are told
#   scripts/kafka-peer.sh topic HOST:PORT NAME PARTITIONS   create a topic
#
# Installed under $KAFKA_PEER_ROOT, by default the target directory's tools/ (the tests find
# it there from their own path).
set -euo pipefail
VERSION=0.6.0
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${KAFKA_PEER_ROOT:-${CARGO_TARGET_DIR:-$repo/target}/tools}
bin=$root/bin/tansu

# Written after a complete install with the features below (a plain `tansu` is not enough).
stamp=$root/.tansu-$VERSION-dynostore
installed() { [ -x "$bin" ] && [ -e "$stamp" ]; }

case "${1:-}" in
install)
    if ! installed; then
        # Its own target dir, so it neither shares nor blocks the project's build lock.
        # dynostore: the in-memory storage engine (memory://) the tests use.
        CARGO_TARGET_DIR="$root/build" cargo install tansu --version "$VERSION" --locked \
            --features dynostore \
            --root "$root" --quiet
        rm -rf "$root/build"
        touch "$stamp"
    fi
    echo "$bin"
    ;;
path)
    installed || { echo "tansu $VERSION is not installed: run $0 install" >&2; exit 1; }
    echo "$bin"
    ;;
start)
    installed || { echo "tansu $VERSION is not installed: run $0 install" >&2; exit 1; }
    addr=${2:?usage: $0 start HOST:PORT [ADVERTISED]}
    advertised=${3:-$addr}
    exec "$bin" broker --listener-url "tcp://$addr" --advertised-listener-url "tcp://$advertised" \
        --storage-engine memory://tansu/
    ;;
topic)
    installed || { echo "tansu $VERSION is not installed: run $0 install" >&2; exit 1; }
    exec "$bin" topic create --broker "tcp://${2:?HOST:PORT}" --partitions "${4:?PARTITIONS}" \
        "${3:?NAME}"
    ;;
*)
    sed -n '2,13p' "$0" >&2
    exit 2
    ;;
esac
