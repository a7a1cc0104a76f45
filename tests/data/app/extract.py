#!/usr/bin/env python3
"""Extract TCP client/server streams and UDP payloads from a pcap/pcapng.

Used to produce the test vectors in tests/data/app/ (and the hex in the unit tests of
src/decode/{tls,http,socks,bittorrent}.rs) from the public captures. Standard library only.

usage: extract.py FILE.pcap[ng] summary
       extract.py FILE tcp N {c|s} [OUT]     # stream of the Nth TCP connection (c=client)
       extract.py FILE segs N                # client payload segment lengths, in seq order
       extract.py FILE udp N [OUT]           # Nth UDP payload
       extract.py FILE conv N OUT [MAX]      # both directions in capture order (see below)

conv writes the Nth TCP connection as it was seen: for each packet in capture order that
makes its direction's in-order stream longer, one chunk of 1 byte direction (c or s),
2 bytes big-endian length, then the new bytes. At most MAX bytes (default 16384) are kept
per direction; chunks past that are left out for that direction only.
"""
import struct
import sys


def frames(path):
    data = open(path, 'rb').read()
    magic = data[:4]
    if magic in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1'):
        e = '<'
    elif magic in (b'\xa1\xb2\xc3\xd4', b'\xa1\xb2\x3c\x4d'):
        e = '>'
    else:
        e = None
    if e:
        link = struct.unpack(e + 'I', data[20:24])[0] & 0xFFFF
        off = 24
        while off + 16 <= len(data):
            incl = struct.unpack(e + 'I', data[off + 8:off + 12])[0]
            yield link, data[off + 16:off + 16 + incl]
            off += 16 + incl
        return
    # pcapng: walk blocks
    off = 0
    e = '<'
    links = []
    while off + 12 <= len(data):
        btype = struct.unpack(e + 'I', data[off:off + 4])[0]
        if btype == 0x0A0D0D0A:
            bom = data[off + 8:off + 12]
            e = '<' if bom == b'\x4d\x3c\x2b\x1a' else '>'
            links = []
        blen = struct.unpack(e + 'I', data[off + 4:off + 8])[0]
        body = data[off + 8:off + blen - 4]
        if btype == 1:
            links.append(struct.unpack(e + 'H', body[:2])[0])
        elif btype == 6:
            iface, _, _, cap, _ = struct.unpack(e + 'IIIII', body[:20])
            yield links[iface], body[20:20 + cap]
        elif btype == 3:
            cap = struct.unpack(e + 'I', body[:4])[0]
            yield links[0], body[4:4 + cap]
        off += blen


def l3(link, f):
    if link == 1:
        et = struct.unpack('>H', f[12:14])[0]
        p = 14
        while et in (0x8100, 0x88A8, 0x9100):
            et = struct.unpack('>H', f[p + 2:p + 4])[0]
            p += 4
        return et, f[p:]
    if link == 0:
        fam = struct.unpack('<I', f[:4])[0]
        if fam > 0xFFFF:
            fam = struct.unpack('>I', f[:4])[0]
        return (0x0800 if fam == 2 else 0x86DD), f[4:]
    if link in (101, 228, 229, 12, 14):
        return (0x0800 if f[0] >> 4 == 4 else 0x86DD), f
    if link == 113:
        return struct.unpack('>H', f[14:16])[0], f[16:]
    if link == 276:
        return struct.unpack('>H', f[0:2])[0], f[20:]
    return None, None


def l4(et, p):
    if et == 0x0800:
        ihl = (p[0] & 15) * 4
        tot = struct.unpack('>H', p[2:4])[0]
        return p[9], p[12:16], p[16:20], p[ihl:tot]
    if et == 0x86DD:
        plen = struct.unpack('>H', p[4:6])[0]
        nh = p[6]
        q = p[40:40 + plen]
        while nh in (0, 43, 60):
            nh, q = q[0], q[(q[1] + 1) * 8:]
        return nh, p[8:24], p[24:40], q
    return None, None, None, None


def parse(path):
    conns = {}  # key (a, ap, b, bp) of first packet -> dict
    order = []
    udp = []
    for link, f in frames(path):
        et, p = l3(link, f)
        if et is None:
            continue
        proto, src, dst, q = l4(et, p)
        if proto == 17:
            udp.append(q[8:struct.unpack('>H', q[4:6])[0]])
        elif proto == 6:
            sp, dp, seq = struct.unpack('>HHI', q[:8])
            flags = q[13]
            data = q[(q[12] >> 4) * 4:]
            k = (src, sp, dst, dp)
            rk = (dst, dp, src, sp)
            if k in conns:
                c, d = conns[k], 'c'
            elif rk in conns:
                c, d = conns[rk], 's'
            else:
                c = {'isn': {}, 'segs': {'c': [], 's': []}, 'order': []}
                conns[k] = c
                order.append(c)
                d = 'c'
                if flags & 0x12 == 0x12:  # first seen is SYN-ACK: swap roles
                    conns.pop(k)
                    conns[rk] = c
                    d = 's'
            if flags & 2:
                c['isn'][d] = seq + 1
            elif d not in c['isn']:
                c['isn'][d] = seq
            if data:
                c['segs'][d].append((seq, data))
                c['order'].append((d, seq, len(data)))
    return order, udp


def stream(c, d):
    isn = c['isn'].get(d, 0)
    buf = bytearray()
    for seq, data in sorted(c['segs'][d], key=lambda s: (s[0] - isn) & 0xFFFFFFFF):
        off = (seq - isn) & 0xFFFFFFFF
        if off <= len(buf):
            buf += data[len(buf) - off:]
    return bytes(buf)


def conversation(c, cap):
    full = {d: stream(c, d) for d in 'cs'}
    seen = {'c': [], 's': []}
    done = {'c': 0, 's': 0}
    out = bytearray()
    for d, seq, n in c['order']:
        off = (seq - c['isn'].get(d, 0)) & 0xFFFFFFFF
        seen[d].append((off, off + n))
        end = 0  # contiguous coverage from the stream start
        for a, b in sorted(seen[d]):
            if a > end:
                break
            end = max(end, b)
        end = min(end, len(full[d]), cap)
        if end > done[d]:
            new = full[d][done[d]:end]
            out += d.encode() + struct.pack('>H', len(new)) + new
            done[d] = end
    return bytes(out)


def main():
    path, cmd = sys.argv[1], sys.argv[2]
    conns, udp = parse(path)
    if cmd == 'summary':
        for i, c in enumerate(conns):
            cs, ss = stream(c, 'c'), stream(c, 's')
            print('tcp', i, len(cs), len(ss), cs[:24].hex(), ss[:12].hex())
        for i, u in enumerate(udp):
            print('udp', i, len(u), u[:24].hex())
        return
    n = int(sys.argv[3])
    if cmd == 'segs':
        c = conns[n]
        isn = c['isn'].get('c', 0)
        seen = set()
        for seq, data in sorted(c['segs']['c'], key=lambda s: (s[0] - isn) & 0xFFFFFFFF):
            if seq not in seen:
                seen.add(seq)
                print((seq - isn) & 0xFFFFFFFF, len(data))
        return
    if cmd == 'conv':
        open(sys.argv[4], 'wb').write(conversation(conns[n], int(sys.argv[5]) if len(sys.argv) > 5 else 16384))
        return
    out = stream(conns[n], sys.argv[4]) if cmd == 'tcp' else udp[n]
    dest = sys.argv[5] if cmd == 'tcp' and len(sys.argv) > 5 else (sys.argv[4] if cmd == 'udp' and len(sys.argv) > 4 else None)
    if dest:
        open(dest, 'wb').write(out)
    else:
        print(out.hex())


if __name__ == '__main__':
    main()
