#!/usr/bin/env python3
"""Writes ssl_server_hello.tsv: what tshark shows of each TCP ServerHello in the public
captures, as the ssl.log fields Zeek would write. Run from this directory with tshark on
PATH; tests/cli.rs compares egresswatch's ssl.log against the file (CI may lack tshark).

Per capture it runs
  tshark -r FILE -Y 'tcp && tls.handshake.type==2' -T fields -e tcp.dstport -e tcp.srcport
         -e tls.handshake.version -e tls.handshake.extensions.supported_version
         -e tls.handshake.extensions_alpn_str -e tls.handshake.ciphersuite
  tshark -r FILE -Y 'tcp && tls.handshake.type==2' -O tls -V       (cipher suite names)
  tshark -r FILE -Y 'tcp && tls' -T fields -e tcp.stream -e tcp.srcport -e tcp.dstport
         -e tls.record.content_type -e tls.record.opaque_type -e tls.record.length
and derives `established` from the record types with Zeek's rule: below TLS 1.3 a side is
encrypted after its ChangeCipherSpec; for TLS 1.3 CCS is ignored and a side is encrypted after
a non-empty application_data record sent once the ServerHello said TLS 1.3; established when
both sides are. `version` uses Zeek's names (SSL::version_strings).
"""
import glob
import os
import re
import subprocess

PUBLIC = '../../../shared/captures/public'
NAMES = {0x0300: 'SSLv3', 0x0301: 'TLSv10', 0x0302: 'TLSv11', 0x0303: 'TLSv12',
         0x0304: 'TLSv13'}


def zeek_version(v):
    if v in NAMES:
        return NAMES[v]
    if v // 0xFF == 0x7F:
        return 'TLSv13-draft%d' % (v % 0x7F)
    return 'unknown-%d' % v


def run(path, *args):
    decode = []
    if 'tls_port_80' in path:
        decode = ['-d', 'tcp.port==80,tls']  # as in the capture's oracle (decode_as)
    return subprocess.run(['tshark', '-r', path, *decode, *args], capture_output=True,
                          text=True, check=True).stdout


def tshark(path, *args):
    return [line.split('\t') for line in run(path, *args).splitlines()]


def established(path):
    """(client port, server port) -> established, by Zeek's rule."""
    state = {}
    rows = tshark(path, '-Y', 'tcp && tls', '-T', 'fields', '-e', 'tcp.stream', '-e',
                  'tcp.srcport', '-e', 'tcp.dstport', '-e', 'tls.record.content_type', '-e',
                  'tls.record.opaque_type', '-e', 'tls.record.length', '-e',
                  'tls.handshake.type', '-e', 'tls.handshake.version', '-e',
                  'tls.handshake.extensions.supported_version')
    for stream, sport, dport, ctypes, otypes, lens, hs, hver, sver in rows:
        s = state.setdefault(stream,
                             {'ports': None, 'tls13': False, 'enc': set(), 'est': False})
        # Plaintext record types first, then TLS 1.3's opaque ones: their order in a frame.
        types = [int(t) for t in (ctypes + ',' + otypes).split(',') if t]
        lengths = [int(n) for n in lens.split(',') if n]
        is_server = s['ports'] is not None and sport == s['ports'][1]
        if '2' in hs.split(','):
            s['ports'] = (dport, sport)
            is_server = True
        elif '1' in hs.split(',') and s['ports'] is None:
            s['ports'] = (sport, dport)
        side = 's' if is_server else 'c'
        for i, t in enumerate(types):
            if t == 22 and is_server and '2' in hs.split(','):
                vers = [int(v, 16) for v in (sver + ',' + hver).split(',') if v]
                if any(v == 0x0304 or v // 0xFF == 0x7F for v in vers):
                    s['tls13'] = True
            if t == 20 and not s['tls13']:
                s['enc'].add(side)
            if t == 23 and s['tls13'] and (lengths[i] if i < len(lengths) else 1) > 0:
                s['enc'].add(side)
            if s['enc'] == {'c', 's'}:
                s['est'] = True
    return {s['ports']: s['est'] for s in state.values() if s['ports']}


def main():
    lines = ['# file\torig_p\tresp_p\tversion\tcipher\tnext_protocol\testablished'
             '\t(tshark: legacy_version, supported_version, cipher number)']
    for path in sorted(glob.glob(os.path.join(PUBLIC, '*.pcap*'))):
        if path.endswith('.json'):
            continue
        rows = tshark(path, '-Y', 'tcp && tls.handshake.type==2', '-T', 'fields', '-e',
                      'tcp.dstport', '-e', 'tcp.srcport', '-e', 'tls.handshake.version', '-e',
                      'tls.handshake.extensions.supported_version', '-e',
                      'tls.handshake.extensions_alpn_str', '-e', 'tls.handshake.ciphersuite')
        if not rows:
            continue
        verbose = run(path, '-Y', 'tcp && tls.handshake.type==2', '-O', 'tls', '-V')
        names = re.findall(r'Cipher Suite: (\S+) \((0x[0-9a-f]{4})\)', verbose)
        est = established(path)
        for (orig_p, resp_p, legacy, sv, alpn, suite), (name, num) in zip(rows, names):
            if not legacy:
                continue  # SSLv2 ServerHello: no TLS record layer
            assert int(num, 16) == int(suite, 16)
            version = int(sv.split(',')[-1] if sv else legacy, 16)
            lines.append('\t'.join([
                os.path.basename(path), orig_p, resp_p, zeek_version(version), name,
                alpn or '-', 'T' if est.get((orig_p, resp_p)) else 'F',
                '%s,%s,%s' % (legacy, sv or '-', suite)]))
    open('ssl_server_hello.tsv', 'w').write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
