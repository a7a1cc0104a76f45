#!/usr/bin/env bash
# Installs the Debian packages egresswatch needs: to build (libpcap for live capture) and,
# with --test, the real peers the test suite starts. Installs only what is missing.
set -euo pipefail
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
fi
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
