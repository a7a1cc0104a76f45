#!/usr/bin/env bash
# Installs the Debian packages egresswatch needs: to build (libpcap for live capture) and,
# with --test, the real peers the test suite starts, and with --bench, the peers
# benches/compare.sh runs beside it (Suricata 7 from bookworm-backports). Installs only what
# is missing.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=()
[ -e /usr/include/pcap/pcap.h ] || missing+=(libpcap-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
if [ "${1:-}" = "--test" ]; then
    # softflowd exports NetFlow/IPFIX to `collect`; tcpdump splits captures; tcpreplay sends
    # captures into veth pairs (ip from iproute2 makes the namespaces) for `live`.
    command -v softflowd >/dev/null || missing+=(softflowd)
    command -v tcpdump >/dev/null || missing+=(tcpdump)
    command -v tcpreplay >/dev/null || missing+=(tcpreplay)
    command -v ip >/dev/null || missing+=(iproute2)
    # rsyslogd receives syslog export over UDP, TCP and TLS (GnuTLS driver).
    command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
    dpkg -s rsyslog-gnutls >/dev/null 2>&1 || missing+=(rsyslog-gnutls)
    # groff renders the generated man pages; script (bsdutils, essential) gives tests a pty.
    command -v groff >/dev/null || missing+=(groff-base)
    # nats-server (JetStream) is the bus of the fleet tests (tests/fleet.rs, tests/aggregate.rs).
    command -v nats-server >/dev/null || missing+=(nats-server)
    # python-evtx reads the generator's EVTX files as an independent reader (src/generate/evtx.rs);
    # python3 also runs the seed search's oracle (tests/data/seed_search.py).
    dpkg -s python3-evtx >/dev/null 2>&1 || missing+=(python3-evtx)
    # libevtx (evtxinfo, evtxexport) is the third independent EVTX reader of those tests.
    command -v evtxexport >/dev/null || missing+=(libevtx-utils)
    # Headless Chromium opens the HTML report (tests/report.rs).
    command -v chromium >/dev/null || missing+=(chromium)
fi
suricata=false
if [ "${1:-}" = "--bench" ]; then
    [ -x /usr/bin/time ] || missing+=(time)
    if ! command -v tshark >/dev/null; then
        # No setuid dumpcap (and no debconf question): benches only read files.
        echo "wireshark-common wireshark-common/install-setuid boolean false" |
            $SUDO debconf-set-selections
        missing+=(tshark)
    fi
    command -v softflowd >/dev/null || missing+=(softflowd)
    command -v argus >/dev/null || [ -x /usr/sbin/argus ] || missing+=(argus-server)
    command -v ndpiReader >/dev/null || missing+=(libndpi-bin)
    command -v suricata >/dev/null || suricata=true
fi
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
if $suricata; then
    # Suricata 7 is in bookworm-backports only (bookworm has 6). apt sees the machine's own
    # sources plus backports through a throwaway config, so the machine's sources stay as
    # they are; the backports suite is on the machine's own Debian mirror.
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    mirror=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list | grep -v security | grep -oE 'https?://[^ ]+' | head -1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    apt_dir=$(mktemp -d)
    trap 'rm -rf "$apt_dir"' EXIT
    cp /etc/apt/sources.list.d/* "$apt_dir/" 2>/dev/null || true
    echo "deb $mirror $codename-backports main" > "$apt_dir/backports.list"
    chmod -R a+rX "$apt_dir"
    apt_opts=(-o "Dir::Etc::SourceParts=$apt_dir")
    $SUDO apt-get "${apt_opts[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${apt_opts[@]}" install -y -qq \
        -t "$codename-backports" suricata
fi
