#!/usr/bin/env python3
"""Writes sflow_samples.tsv: every sFlow flow sample tshark decodes in the public sFlow
captures, with the sampled packet header tshark dissects inside it. Run from this directory
with tshark on PATH; tests/sflow_oracle.rs compares the sFlow decoder against the file (the
oracle JSON has sample counts only, and CI may lack tshark).

Per capture it runs `tshark -r FILE -T pdml` and, for each flow sample, takes the sampling
rate, the raw packet header record (protocol, frame length, stripped) and the first
IP/IPv6 and TCP/UDP layers dissected inside `sflow_245.header`.
"""
import subprocess
import xml.etree.ElementTree as ET

PUBLIC = '../../../../shared/captures/public'
CAPTURES = ['akvorado__sflow-data-1140.pcap', 'tcpdump__sflow_multiple_counter_30_pdus.pcap']
COLUMNS = ['capture', 'frame', 'agent', 'sample_seq', 'sampling_rate', 'header_protocol',
           'frame_length', 'stripped', 'src', 'dst', 'proto', 'sport', 'dport', 'ip_len',
           'tcp_flags']


def fields(elem, name):
    return [f.get('show') for f in elem.iter('field') if f.get('name') == name]


def first(elem, name):
    found = fields(elem, name)
    return found[0] if found else ''


def sampled_packet(header):
    row = {}
    for proto in header.iter('proto'):
        name = proto.get('name')
        if name == 'ip' and 'src' not in row:
            row.update(src=first(proto, 'ip.src'), dst=first(proto, 'ip.dst'),
                       proto=first(proto, 'ip.proto'), ip_len=first(proto, 'ip.len'))
        elif name == 'ipv6' and 'src' not in row:
            row.update(src=first(proto, 'ipv6.src'), dst=first(proto, 'ipv6.dst'),
                       proto=first(proto, 'ipv6.nxt'),
                       ip_len=str(int(first(proto, 'ipv6.plen')) + 40))
        elif name in ('tcp', 'udp') and 'sport' not in row:
            row.update(sport=first(proto, name + '.srcport'),
                       dport=first(proto, name + '.dstport'))
            if name == 'tcp':
                row['tcp_flags'] = str(int(first(proto, 'tcp.flags'), 16))
    return row


def main():
    rows = []
    for capture in CAPTURES:
        pdml = subprocess.run(['tshark', '-r', f'{PUBLIC}/{capture}', '-T', 'pdml'],
                              capture_output=True, check=True).stdout
        for packet in ET.fromstring(pdml).iter('packet'):
            frame = first(packet, 'frame.number')
            for sflow in (p for p in packet.iter('proto') if p.get('name') == 'sflow'):
                agent = first(sflow, 'sflow_245.agent') or first(sflow, 'sflow_245.agent.v6')
                for sample in sflow.iter('field'):
                    if not any(c.get('name') == 'sflow.flow_sample.sampling_rate'
                               for c in sample):
                        continue
                    row = {'capture': capture, 'frame': frame, 'agent': agent,
                           'sample_seq': first(sample, 'sflow.flow_sample.sequence_number'),
                           'sampling_rate': first(sample, 'sflow.flow_sample.sampling_rate')}
                    header = next((f for f in sample.iter('field')
                                   if f.get('name') == 'sflow_245.header'), None)
                    if header is not None:
                        row.update(header_protocol=first(sample, 'sflow_245.header_protocol'),
                                   frame_length=first(sample, 'sflow_245.header.frame_length'),
                                   stripped=first(sample, 'sflow_245.header.payload_stripped'))
                        row.update(sampled_packet(header))
                    rows.append(row)
    with open('sflow_samples.tsv', 'w') as out:
        out.write('\t'.join(COLUMNS) + '\n')
        for row in rows:
            out.write('\t'.join(row.get(c, '') for c in COLUMNS) + '\n')


if __name__ == '__main__':
    main()
