//! sFlow version 5 (sflow.org, "sFlow Version 5", XDR big-endian).
//!
//! Each flow sample carries one sampled packet; it becomes one [`FlowRecord`] scaled by the
//! sampling rate. The packet comes from the raw packet header record (decoded with the
//! crate's own frame decoder), or, when the agent sends none that decodes, from a sampled
//! IPv4/IPv6 record. Counter samples are only counted. sFlow carries no absolute time, so a
//! record's start and end are the datagram's arrival time.
//!
//! The exporter of a record is the datagram's agent address: it names the device that
//! sampled, even when datagrams reach us through a relay or NAT (the sender's address is
//! used only when the agent reports an unspecified address).
use super::{ExportConfig, ExportError, Exporter, FlowRecord, RecordSource};
use crate::decode::packet::{Decoded, Layer, decode_frame, decode_transport, ip_proto, linktype};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SflowCounters {
    pub datagrams: u64,
    pub flow_samples: u64,
    pub counter_samples: u64,
    /// Raw packet headers that decoded to an IP packet.
    pub headers_decoded: u64,
    /// Raw packet headers that did not (not IP, unsupported header protocol, cut too short).
    pub headers_undecoded: u64,
    /// Datagrams with at least one error (the error returned by `decode`).
    pub malformed: u64,
    /// Samples skipped because their content did not fit their declared length.
    pub malformed_samples: u64,
    /// Samples of other enterprises or unknown formats, skipped by their length.
    pub other_samples: u64,
    /// Flow records other than raw headers and sampled IPv4/IPv6 (extended switch, router,
    /// gateway data, enterprise records), skipped by their length.
    pub other_flow_records: u64,
    /// Records built from a sampled IPv4/IPv6 record because no raw header decoded.
    pub sampled_ip_records: u64,
    /// Flow samples that yielded no packet at all (no usable record).
    pub samples_without_packet: u64,
}

pub struct SflowDecoder {
    pub counters: SflowCounters,
}

/// Bytes of one sample or record header: data format and length.
const SAMPLE_HEADER_LEN: usize = 8;
/// Datagram header after the agent address: sub-agent id, sequence, uptime, sample count.
const DATAGRAM_TAIL_LEN: usize = 16;

mod format {
    pub const FLOW_SAMPLE: u32 = 1;
    pub const COUNTER_SAMPLE: u32 = 2;
    pub const EXPANDED_FLOW_SAMPLE: u32 = 3;
    pub const EXPANDED_COUNTER_SAMPLE: u32 = 4;
    pub const RAW_PACKET_HEADER: u32 = 1;
    pub const SAMPLED_IPV4: u32 = 3;
    pub const SAMPLED_IPV6: u32 = 4;
}

/// header_protocol values of the raw packet header record.
mod header_protocol {
    pub const ETHERNET: u32 = 1;
    pub const IPV4: u32 = 11;
    pub const IPV6: u32 = 12;
}

/// Bounds-checked XDR cursor over `data[pos..end]`; offsets are those of the datagram.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Cursor<'a> {
        Cursor {
            data,
            pos: 0,
            end: data.len(),
        }
    }

    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn bytes(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], ExportError> {
        let truncated = ExportError::Truncated {
            what,
            offset: self.pos,
        };
        let stop = self.pos.checked_add(len).ok_or(truncated.clone())?;
        if stop > self.end {
            return Err(truncated);
        }
        let out = self.data.get(self.pos..stop).ok_or(truncated)?;
        self.pos = stop;
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ExportError> {
        let b = self.bytes(4, what)?;
        Ok(b.first_chunk::<4>().map_or(0, |b| u32::from_be_bytes(*b)))
    }

    fn skip_words(&mut self, words: usize, what: &'static str) -> Result<(), ExportError> {
        self.bytes(words * 4, what).map(|_| ())
    }

    /// A nested structure of `len` bytes; the cursor moves past it.
    fn sub(&mut self, len: usize, what: &'static str) -> Result<Cursor<'a>, ExportError> {
        let start = self.pos;
        self.bytes(len, what)?;
        Ok(Cursor {
            data: self.data,
            pos: start,
            end: self.pos,
        })
    }

    fn address(&mut self, kind: u32, what: &'static str) -> Result<IpAddr, ExportError> {
        match kind {
            1 => {
                let b = self.bytes(4, what)?;
                Ok(IpAddr::V4(
                    b.first_chunk::<4>()
                        .map_or(Ipv4Addr::UNSPECIFIED, |b| Ipv4Addr::from(*b)),
                ))
            }
            2 => {
                let b = self.bytes(16, what)?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(b);
                Ok(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            other => Err(ExportError::Invalid {
                what,
                offset: self.pos.saturating_sub(4),
                detail: format!("address type {other}"),
            }),
        }
    }

    /// A count of items of at least `min_item` bytes each that must fit in what is left.
    fn count(&mut self, min_item: usize, what: &'static str) -> Result<u32, ExportError> {
        let offset = self.pos;
        let n = self.u32(what)?;
        if (n as usize).saturating_mul(min_item) > self.remaining() {
            return Err(ExportError::Invalid {
                what,
                offset,
                detail: format!("{n} items do not fit in {} bytes", self.remaining()),
            });
        }
        Ok(n)
    }
}

/// What one flow sample says about its packet.
struct SampledPacket {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    sport: u16,
    dport: u16,
    ip_len: u64,
    tcp_flags: Option<u8>,
}

impl SflowDecoder {
    pub fn new(config: &ExportConfig) -> SflowDecoder {
        // sFlow states its sampling rate in every sample, so nothing in the config applies.
        let _ = config;
        SflowDecoder {
            counters: SflowCounters::default(),
        }
    }

    /// Decodes one datagram. Samples are independent: a sample whose content is broken is
    /// skipped and the rest still decode; the first error is returned after the walk, and
    /// records from intact samples are already in `out`.
    pub fn decode(
        &mut self,
        exporter: Exporter,
        recv_ns: u64,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        self.counters.datagrams += 1;
        let result = self.decode_datagram(exporter, recv_ns, datagram, out);
        if result.is_err() {
            self.counters.malformed += 1;
        }
        result
    }

    fn decode_datagram(
        &mut self,
        exporter: Exporter,
        recv_ns: u64,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        let mut cur = Cursor::new(datagram);
        let version = cur.u32("sflow header")?;
        if version != 5 {
            return Err(ExportError::Unsupported {
                what: "sflow version",
                detail: version.to_string(),
            });
        }
        let address_type = cur.u32("sflow header")?;
        let agent = cur.address(address_type, "sflow agent address")?;
        cur.skip_words(3, "sflow header")?; // sub-agent id, sequence, uptime
        let samples = cur.count(SAMPLE_HEADER_LEN, "sflow sample count")?;
        let agent = if agent.is_unspecified() {
            exporter.ip()
        } else {
            agent
        };

        let mut first_error = None;
        for _ in 0..samples {
            let data_format = cur.u32("sflow sample header")?;
            let len = cur.u32("sflow sample header")? as usize;
            let body = cur.sub(len, "sflow sample")?;
            let (enterprise, fmt) = (data_format >> 12, data_format & 0xfff);
            let decoded = match (enterprise, fmt) {
                (0, format::FLOW_SAMPLE | format::EXPANDED_FLOW_SAMPLE) => {
                    self.counters.flow_samples += 1;
                    let expanded = fmt == format::EXPANDED_FLOW_SAMPLE;
                    self.flow_sample(body, expanded, agent, recv_ns, out)
                }
                (0, format::COUNTER_SAMPLE | format::EXPANDED_COUNTER_SAMPLE) => {
                    self.counters.counter_samples += 1;
                    Ok(())
                }
                _ => {
                    self.counters.other_samples += 1;
                    Ok(())
                }
            };
            if let Err(e) = decoded {
                self.counters.malformed_samples += 1;
                first_error.get_or_insert(e);
            }
        }
        // Bytes after the last sample are ignored: the sample count is authoritative.
        first_error.map_or(Ok(()), Err)
    }

    fn flow_sample(
        &mut self,
        mut cur: Cursor<'_>,
        expanded: bool,
        agent: IpAddr,
        recv_ns: u64,
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        // Expanded samples split the source id and the interfaces into format + value words.
        let id_words = if expanded { 2 } else { 1 };
        cur.skip_words(1 + id_words, "sflow flow sample")?; // sequence, source id
        let sampling_rate = cur.u32("sflow flow sample")?;
        cur.skip_words(2 + 2 * id_words, "sflow flow sample")?; // pool, drops, input, output
        let records = cur.count(SAMPLE_HEADER_LEN, "sflow flow record count")?;

        let mut from_header = None;
        let mut from_sampled_ip = None;
        for _ in 0..records {
            let data_format = cur.u32("sflow flow record header")?;
            let len = cur.u32("sflow flow record header")? as usize;
            let body = cur.sub(len, "sflow flow record")?;
            match data_format {
                format::RAW_PACKET_HEADER => {
                    // One packet per sample; a second header record would count it twice.
                    if from_header.is_none() {
                        from_header = self.raw_header(body)?;
                    }
                }
                format::SAMPLED_IPV4 | format::SAMPLED_IPV6 => {
                    let packet = sampled_ip(body, data_format == format::SAMPLED_IPV6)?;
                    from_sampled_ip.get_or_insert(packet);
                }
                _ => self.counters.other_flow_records += 1,
            }
        }

        let packet = match (from_header, from_sampled_ip) {
            (Some(p), _) => p,
            (None, Some(p)) => {
                self.counters.sampled_ip_records += 1;
                p
            }
            (None, None) => {
                self.counters.samples_without_packet += 1;
                return Ok(());
            }
        };
        // A rate of 0 is not a valid "1 in N"; the packet itself was still seen.
        let rate = sampling_rate.max(1);
        out.push(FlowRecord {
            source: RecordSource::Sflow,
            exporter: agent,
            src: packet.src,
            dst: packet.dst,
            src_port: packet.sport,
            dst_port: packet.dport,
            proto: packet.proto,
            octets: packet.ip_len.saturating_mul(u64::from(rate)),
            packets: u64::from(rate),
            rev_octets: 0,
            rev_packets: 0,
            start_ns: recv_ns,
            end_ns: recv_ns,
            tcp_flags: packet.tcp_flags,
            rev_tcp_flags: None,
            sampling: rate,
            end_reason: None,
        });
        Ok(())
    }

    /// Raw packet header record: `Ok(None)` when it is well-formed but not an IP packet.
    fn raw_header(&mut self, mut cur: Cursor<'_>) -> Result<Option<SampledPacket>, ExportError> {
        let protocol = cur.u32("sflow raw packet header")?;
        let frame_length = cur.u32("sflow raw packet header")?;
        let stripped = cur.u32("sflow raw packet header")?;
        let header_len = cur.u32("sflow raw packet header")? as usize;
        let header = cur.bytes(header_len, "sflow sampled header bytes")?;
        // The XDR padding after the bytes may be absent in the last record: not checked.

        let (link, link_header_len) = match protocol {
            header_protocol::ETHERNET => (linktype::ETHERNET, 14),
            header_protocol::IPV4 => (linktype::IPV4, 0),
            header_protocol::IPV6 => (linktype::IPV6, 0),
            _ => {
                self.counters.headers_undecoded += 1;
                return Ok(None);
            }
        };
        let mut decoded = Decoded::default();
        decode_frame(link, header, &mut decoded);
        // The outermost IP packet is what crossed the sampled interface.
        let packet = match decoded.layers.first() {
            Some(Layer::Transport(t)) => Some(SampledPacket {
                src: t.src,
                dst: t.dst,
                proto: t.proto,
                sport: t.sport,
                dport: t.dport,
                ip_len: u64::from(t.ip_len),
                tcp_flags: (t.proto == ip_proto::TCP).then_some(t.tcp_flags),
            }),
            Some(Layer::Fragment(f)) => {
                // A first fragment still carries the transport header; later ones have no ports.
                let mut inner = Decoded::default();
                if f.offset == 0 {
                    let captured = u32::try_from(f.payload.len()).unwrap_or(u32::MAX);
                    decode_transport(
                        f.src, f.dst, f.proto, f.ip_len, f.payload, captured, 0, &mut inner,
                    );
                }
                let t = inner.layers.first().and_then(|l| match l {
                    Layer::Transport(t) => Some(*t),
                    Layer::Fragment(_) => None,
                });
                Some(SampledPacket {
                    src: f.src,
                    dst: f.dst,
                    proto: f.proto,
                    sport: t.map_or(0, |t| t.sport),
                    dport: t.map_or(0, |t| t.dport),
                    ip_len: u64::from(f.ip_len),
                    tcp_flags: t.filter(|t| t.proto == ip_proto::TCP).map(|t| t.tcp_flags),
                })
            }
            None => None,
        };
        let Some(mut packet) = packet else {
            self.counters.headers_undecoded += 1;
            return Ok(None);
        };
        if packet.ip_len == 0 {
            // No usable IP length (jumbogram): the frame minus FCS and link header.
            packet.ip_len = u64::from(
                frame_length
                    .saturating_sub(stripped)
                    .saturating_sub(link_header_len),
            );
        }
        self.counters.headers_decoded += 1;
        Ok(Some(packet))
    }
}

/// Sampled IPv4 / IPv6 record: length, protocol, addresses, ports, TCP flags, ToS/priority.
fn sampled_ip(mut cur: Cursor<'_>, v6: bool) -> Result<SampledPacket, ExportError> {
    let what = "sflow sampled ip record";
    let ip_len = cur.u32(what)?;
    let proto = cur.u32(what)?;
    let kind = if v6 { 2 } else { 1 };
    let src = cur.address(kind, what)?;
    let dst = cur.address(kind, what)?;
    let sport = cur.u32(what)?;
    let dport = cur.u32(what)?;
    let tcp_flags = cur.u32(what)?;
    let proto = u8::try_from(proto).map_err(|_| ExportError::Invalid {
        what,
        offset: cur.pos,
        detail: format!("protocol {proto}"),
    })?;
    Ok(SampledPacket {
        src,
        dst,
        proto,
        // Ports are 16-bit on the wire; anything above is a broken agent, kept truncated.
        sport: sport as u16,
        dport: dport as u16,
        ip_len: u64::from(ip_len),
        tcp_flags: (proto == ip_proto::TCP).then_some(tcp_flags as u8),
    })
}

/// Structural check: version 5, an IPv4/IPv6 agent address, and a sample count whose samples'
/// lengths chain exactly to the end of the datagram. NetFlow v5 (00 05 00 NN) never has
/// version word 5, and random payloads rarely chain.
pub fn looks_like_sflow(datagram: &[u8]) -> bool {
    let mut cur = Cursor::new(datagram);
    let header_ok = (|| {
        if cur.u32("")? != 5 {
            return Ok::<bool, ExportError>(false);
        }
        let kind = cur.u32("")?;
        if kind != 1 && kind != 2 {
            return Ok(false);
        }
        cur.address(kind, "")?;
        cur.bytes(DATAGRAM_TAIL_LEN - 4, "")?;
        let samples = cur.count(SAMPLE_HEADER_LEN, "")?;
        for _ in 0..samples {
            cur.u32("")?;
            let len = cur.u32("")? as usize;
            cur.bytes(len, "")?;
        }
        Ok(cur.remaining() == 0)
    })();
    header_ok.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_be_bytes());
    }

    fn with_len(out: &mut Vec<u8>, format: u32, body: &[u8]) {
        word(out, format);
        word(out, body.len() as u32);
        out.extend_from_slice(body);
    }

    fn datagram(agent: IpAddr, samples: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut d = Vec::new();
        word(&mut d, 5);
        match agent {
            IpAddr::V4(a) => {
                word(&mut d, 1);
                d.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                word(&mut d, 2);
                d.extend_from_slice(&a.octets());
            }
        }
        for v in [7, 42, 1000, samples.len() as u32] {
            word(&mut d, v);
        }
        for (format, body) in samples {
            with_len(&mut d, *format, body);
        }
        d
    }

    /// An expanded flow sample holding the given flow records.
    fn expanded_flow_sample(rate: u32, records: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut s = Vec::new();
        for v in [1, 0, 3, rate, 5000, 0, 0, 3, 0, 4, records.len() as u32] {
            word(&mut s, v);
        }
        for (format, body) in records {
            with_len(&mut s, *format, body);
        }
        s
    }

    fn raw_header(protocol: u32, frame_length: u32, header: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        for v in [protocol, frame_length, 4, header.len() as u32] {
            word(&mut r, v);
        }
        r.extend_from_slice(header);
        r.resize(r.len().div_ceil(4) * 4, 0);
        r
    }

    /// IPv4 + TCP SYN, 10.0.0.1:40000 -> 203.0.113.9:443, total length 60.
    fn ipv4_tcp_syn() -> Vec<u8> {
        let mut p = vec![
            0x45, 0, 0, 60, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 203, 0, 113, 9,
        ];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&443u16.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        p
    }

    fn sender() -> Exporter {
        "192.0.2.1:6343".parse().unwrap()
    }

    #[test]
    fn ipv6_agent_ipv4_header_and_unknown_records_skipped() {
        let agent: IpAddr = "2001:db8::5".parse().unwrap();
        let switch_record = vec![0u8; 16];
        let enterprise_record = vec![0xaa; 12];
        let sample = expanded_flow_sample(
            512,
            &[
                (1001, switch_record),
                ((9 << 12) | 7, enterprise_record),
                (1, raw_header(11, 64, &ipv4_tcp_syn())),
            ],
        );
        let d = datagram(
            agent,
            &[(3, sample), (4, vec![0; 12]), ((5 << 12) | 1, vec![1; 8])],
        );
        assert!(looks_like_sflow(&d));
        let mut decoder = SflowDecoder::new(&ExportConfig::default());
        let mut out = Vec::new();
        decoder.decode(sender(), 77, &d, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(r.exporter, agent);
        assert_eq!(r.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.dst, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!((r.src_port, r.dst_port, r.proto), (40000, 443, 6));
        assert_eq!((r.octets, r.packets, r.sampling), (60 * 512, 512, 512));
        assert_eq!((r.start_ns, r.end_ns, r.tcp_flags), (77, 77, Some(0x02)));
        let c = &decoder.counters;
        assert_eq!(
            (c.flow_samples, c.counter_samples, c.other_samples),
            (1, 1, 1)
        );
        assert_eq!((c.headers_decoded, c.other_flow_records), (1, 2));
    }

    #[test]
    fn sampled_ipv4_record_used_when_header_is_not_ip() {
        let arp = [0xffu8; 12]
            .into_iter()
            .chain([0x08, 0x06])
            .chain([0; 28])
            .collect::<Vec<_>>();
        let mut sampled = Vec::new();
        for v in [1500, 17] {
            word(&mut sampled, v);
        }
        sampled.extend_from_slice(&[198, 51, 100, 7, 10, 1, 2, 3]);
        for v in [53, 5353, 0, 0] {
            word(&mut sampled, v);
        }
        let mut sample = Vec::new();
        for v in [9, 3, 100, 0, 0, 1, 2, 2] {
            word(&mut sample, v);
        }
        with_len(&mut sample, 1, &raw_header(1, 64, &arp));
        with_len(&mut sample, 3, &sampled);
        let d = datagram("0.0.0.0".parse().unwrap(), &[(1, sample)]);
        let mut decoder = SflowDecoder::new(&ExportConfig::default());
        let mut out = Vec::new();
        decoder.decode(sender(), 5, &d, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let r = &out[0];
        // Unspecified agent: the sender's address names the exporter.
        assert_eq!(r.exporter, sender().ip());
        assert_eq!((r.src_port, r.dst_port, r.proto), (53, 5353, 17));
        assert_eq!((r.octets, r.packets, r.tcp_flags), (150_000, 100, None));
        assert_eq!(decoder.counters.headers_undecoded, 1);
        assert_eq!(decoder.counters.sampled_ip_records, 1);
    }

    #[test]
    fn truncation_at_every_offset_never_panics() {
        let sample = expanded_flow_sample(64, &[(1, raw_header(11, 64, &ipv4_tcp_syn()))]);
        let d = datagram(
            "192.0.2.9".parse().unwrap(),
            &[(3, sample), (2, vec![0; 12])],
        );
        let mut decoder = SflowDecoder::new(&ExportConfig::default());
        for cut in 0..d.len() {
            let mut out = Vec::new();
            let result = decoder.decode(sender(), 0, &d[..cut], &mut out);
            assert!(result.is_err(), "cut at {cut} decoded");
            assert!(!looks_like_sflow(&d[..cut]));
        }
        assert_eq!(decoder.counters.malformed, d.len() as u64);
        // Corrupting any single byte never panics either.
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0xff;
            let _ = decoder.decode(sender(), 0, &bad, &mut Vec::new());
            let _ = looks_like_sflow(&bad);
        }
    }

    #[test]
    fn broken_sample_is_skipped_and_reported_with_offset() {
        // A flow sample whose record count claims more than it holds, then a good one.
        let mut broken = Vec::new();
        for v in [1, 3, 10, 0, 0, 1, 2, 50] {
            word(&mut broken, v);
        }
        let good = expanded_flow_sample(10, &[(1, raw_header(11, 64, &ipv4_tcp_syn()))]);
        let d = datagram("192.0.2.9".parse().unwrap(), &[(1, broken), (3, good)]);
        let mut decoder = SflowDecoder::new(&ExportConfig::default());
        let mut out = Vec::new();
        let err = decoder.decode(sender(), 0, &d, &mut out).unwrap_err();
        // Header 28 bytes, sample header 8, then seven words before the record count.
        assert!(matches!(
            err,
            ExportError::Invalid {
                offset: 64,
                what: "sflow flow record count",
                ..
            }
        ));
        assert_eq!(out.len(), 1);
        assert_eq!(decoder.counters.malformed_samples, 1);
        assert_eq!(decoder.counters.malformed, 1);
    }

    #[test]
    fn netflow_v5_is_not_sflow() {
        // NetFlow v5 header: version 5 (u16), count 1, then 20 more header bytes and a record.
        let mut nf = vec![0, 5, 0, 1];
        nf.resize(24 + 48, 0);
        assert!(!looks_like_sflow(&nf));
        let mut decoder = SflowDecoder::new(&ExportConfig::default());
        assert!(matches!(
            decoder.decode(sender(), 0, &nf, &mut Vec::new()),
            Err(ExportError::Unsupported { .. })
        ));
        // An empty but well-formed datagram is sFlow; trailing junk is not.
        let empty = datagram("192.0.2.9".parse().unwrap(), &[]);
        assert!(looks_like_sflow(&empty));
        let mut junk = empty.clone();
        junk.push(0);
        assert!(!looks_like_sflow(&junk));
    }
}
