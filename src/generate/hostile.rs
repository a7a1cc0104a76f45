//! Hostile scenarios (issue 7): the office capture with an attack laid over its ten minutes.
//!
//! Each shows that memory stays inside the configured bounds, that whatever overflows a bound
//! is counted, and that the office's proxyware host is still found among the attack's packets.
//! `packets` sets the attack's size; the office traffic comes on top.
//!
//! * `syn-flood`: SYNs from spoofed sources to an inside web server, each a new flow.
//! * `dns-flood`: random names (water torture) asked by inside hosts and answered, half with an
//!   address (filling the per-client answer cache), the rest NXDOMAIN.
//! * `tiny-hello`: TLS connections whose ClientHello (padded to about 6 KB) travels in 1–3 byte
//!   segments: in order, with neighbouring segments swapped, or with one segment missing.
//! * `fragment-flood`: UDP datagrams in IPv4 and IPv6 fragments from spoofed sources; one in
//!   eight completes, the others miss a middle fragment or send only a far last fragment.
//! * `template-storm`: IPFIX from 16 exporters × 4 observation domains, each message defining
//!   templates, redefining known ids with another layout, withdrawing, and sending data for
//!   its templates and for ids never defined.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use serde::Serialize;

use super::blocks::{ALPN, RESOLVER_V4};
use super::conv::{ACK, FIN, PSH, SYN};
use super::proto::{self, QTYPE_A, RData, Rr};
use super::rng::Rng;
use super::wire::{Endpoint, GATEWAY_MAC, L4, PcapWriter, build_headers, mac_for, ones_sum};
use super::{GenerateError, ScenarioTruth, office};

const SEC: u64 = 1_000_000;
/// The office scenario's ten minutes (2024-03-04 09:00 UTC); attacks start 5 s in and end
/// 5 s before its end.
const OFFICE_START: u64 = 1_709_542_800 * SEC;
const ATTACK_START: u64 = OFFICE_START + 5 * SEC;
const ATTACK_SPAN: u64 = 590 * SEC;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    SynFlood,
    DnsFlood,
    TinyHello,
    FragmentFlood,
    TemplateStorm,
}

/// What the attack put in the capture, for tests to compare with the sensor's counters.
#[derive(Debug, Clone, Serialize)]
pub(super) struct AttackTruth {
    pub description: &'static str,
    /// Attack frames written (the office's come on top).
    pub packets: u64,
    /// Per attack: what a replay must count (see each generator).
    pub counts: BTreeMap<&'static str, u64>,
}

/// The office capture's frames, replayed in time order between the attack's.
struct Background {
    pcap: Vec<u8>,
    at: usize,
}

impl Background {
    fn office(seed: u64) -> Result<(Background, ScenarioTruth), GenerateError> {
        let mut w = PcapWriter::new(Vec::new(), Path::new("office (in memory)"), None)?;
        let truth = office::run(seed, &mut w)?;
        let pcap = w.finish()?;
        Ok((Background { pcap, at: 24 }, truth))
    }

    /// The next frame: (time in µs, captured bytes, length on the wire).
    fn peek(&self) -> Option<(u64, &[u8], usize)> {
        let rec = self.pcap.get(self.at..self.at + 16)?;
        let word = |i: usize| {
            rec.get(i..i + 4)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let ts = u64::from(word(0)) * SEC + u64::from(word(4));
        let data = self
            .pcap
            .get(self.at + 16..self.at + 16 + word(8) as usize)?;
        Some((ts, data, word(12) as usize))
    }

    fn advance(&mut self) {
        if let Some((_, data, _)) = self.peek() {
            self.at += 16 + data.len();
        }
    }

    /// Writes every office frame up to `ts`.
    fn write_until<W: Write>(
        &mut self,
        ts: u64,
        w: &mut PcapWriter<W>,
    ) -> Result<(), GenerateError> {
        while let Some((t, data, orig)) = self.peek() {
            if t > ts {
                break;
            }
            w.write_sliced(t, data, orig)?;
            self.advance();
        }
        Ok(())
    }
}

/// The attack's frames, interleaved with the office's in time order.
struct Out<'w, W: Write> {
    w: &'w mut PcapWriter<W>,
    background: Background,
    packets: u64,
    /// Headers of the packet being written, reused.
    hdr: Vec<u8>,
}

impl<W: Write> Out<'_, W> {
    fn frame(&mut self, ts: u64, head: &[u8], tail: &[u8]) -> Result<(), GenerateError> {
        self.background.write_until(ts, self.w)?;
        self.w.write(ts, head, tail)?;
        self.packets += 1;
        Ok(())
    }

    /// One packet from `src` to `dst` carrying `payload`, with a random IP id.
    fn packet(
        &mut self,
        ts: u64,
        src: &Endpoint,
        dst: &Endpoint,
        l4: &L4<'_>,
        payload: &[u8],
        rng: &mut Rng,
    ) -> Result<(), GenerateError> {
        let mut hdr = std::mem::take(&mut self.hdr);
        let ip_id = rng.next_u16();
        build_headers(
            &mut hdr,
            src,
            dst,
            ip_id,
            l4,
            payload.len(),
            ones_sum(payload),
        )?;
        let result = self.frame(ts, &hdr, payload);
        self.hdr = hdr;
        result
    }
}

pub(super) fn run<W: Write>(
    attack: Attack,
    seed: u64,
    packets: u64,
    w: &mut PcapWriter<W>,
) -> Result<(ScenarioTruth, AttackTruth), GenerateError> {
    let (background, office) = Background::office(seed)?;
    let mut rng = Rng::new(seed).fork(0x0405_711e);
    let mut out = Out {
        w,
        background,
        packets: 0,
        hdr: Vec::with_capacity(128),
    };
    let (description, counts) = match attack {
        Attack::SynFlood => syn_flood(&mut rng, packets, &mut out)?,
        Attack::DnsFlood => dns_flood(&mut rng, packets, &mut out)?,
        Attack::TinyHello => tiny_hello(&mut rng, packets, &mut out)?,
        Attack::FragmentFlood => fragment_flood(&mut rng, packets, &mut out)?,
        Attack::TemplateStorm => template_storm(&mut rng, packets, &mut out)?,
    };
    out.background.write_until(u64::MAX, out.w)?;
    let truth = AttackTruth {
        description,
        packets: out.packets,
        counts,
    };
    Ok((office, truth))
}

/// Time of the `k`-th of `n` evenly spread attack units.
fn slot(k: u64, n: u64) -> u64 {
    ATTACK_START + (u128::from(k) * u128::from(ATTACK_SPAN) / u128::from(n.max(1))) as u64
}

/// A public IPv4 address (outside the default home_nets), distinct for each `k` below 2^32
/// but for a few collisions: a bijective mix whose first octet is moved into 11..=99 when it
/// falls on 0/8, 10/8, 127/8, 169/8, 172/8, 192/8 or 224/3.
fn spoofed_v4(k: u64) -> Ipv4Addr {
    let mut x = (k as u32).wrapping_mul(0x9E37_79B1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x85EB_CA77);
    x ^= x >> 13;
    let mut o = x.to_be_bytes();
    if matches!(o[0], 0 | 10 | 127 | 169 | 172 | 192) || o[0] >= 224 {
        o[0] = 11 + o[0] % 89;
    }
    Ipv4Addr::from(o)
}

fn outside(ip: IpAddr, port: u16) -> Endpoint {
    Endpoint {
        mac: GATEWAY_MAC,
        ip,
        port,
        ttl: 51,
    }
}

fn inside(ip: IpAddr, port: u16) -> Endpoint {
    Endpoint {
        mac: mac_for(ip),
        ip,
        port,
        ttl: 64,
    }
}

/// MSS 1460, NOP, window scale 7, NOP, NOP, SACK permitted: what a SYN carries.
const SYN_OPTIONS: [u8; 12] = [2, 4, 0x05, 0xb4, 1, 3, 3, 7, 1, 1, 4, 2];

fn tcp(seq: u32, ack: u32, flags: u8) -> L4<'static> {
    L4::Tcp {
        seq,
        ack,
        flags,
        window: if flags & SYN != 0 { 64240 } else { 502 },
        options: if flags & SYN != 0 { &SYN_OPTIONS } else { &[] },
    }
}

type Generated = (&'static str, BTreeMap<&'static str, u64>);

/// `packets` SYNs, each from its own spoofed (address, port) to 10.20.1.200:443; none answered.
fn syn_flood<W: Write>(
    rng: &mut Rng,
    packets: u64,
    out: &mut Out<'_, W>,
) -> Result<Generated, GenerateError> {
    let server = inside(IpAddr::V4(Ipv4Addr::new(10, 20, 1, 200)), 443);
    for k in 0..packets {
        let src = outside(IpAddr::V4(spoofed_v4(k)), rng.range(1024, 65_535) as u16);
        let l4 = tcp(rng.next_u32(), 0, SYN);
        out.packet(slot(k, packets), &src, &server, &l4, &[], rng)?;
    }
    let counts = BTreeMap::from([("flows", packets), ("syns", packets)]);
    Ok((
        "SYNs from spoofed sources to 10.20.1.200:443, each a distinct flow, none answered",
        counts,
    ))
}

fn random_label(rng: &mut Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(*rng.pick(ALPHABET).unwrap_or(&b'x')))
        .collect()
}

/// `packets / 2` queries for random names under 256 random zones, from 64 inside hosts to the
/// office resolver, each answered 1 ms later: half with one address, half NXDOMAIN.
fn dns_flood<W: Write>(
    rng: &mut Rng,
    packets: u64,
    out: &mut Out<'_, W>,
) -> Result<Generated, GenerateError> {
    let zones: Vec<String> = (0..256)
        .map(|_| format!("{}.com", random_label(rng, 8)))
        .collect();
    let resolver = inside(IpAddr::V4(RESOLVER_V4), 53);
    let queries = packets / 2;
    let mut answered = 0;
    for k in 0..queries {
        let client = inside(
            IpAddr::V4(Ipv4Addr::new(10, 20, 4, 1 + (k % 64) as u8)),
            rng.range(1024, 65_535) as u16,
        );
        let zone = rng.pick(&zones).map_or("example.com", String::as_str);
        let len = rng.range(10, 30) as usize;
        let name = format!("{}.{zone}", random_label(rng, len));
        let id = rng.next_u16();
        let query = proto::dns_query(id, &name, QTYPE_A)?;
        let response = if rng.chance(50) {
            answered += 1;
            let rr = Rr {
                owner: name.clone(),
                ttl: 300,
                data: RData::A(spoofed_v4(rng.next_u64())),
            };
            proto::dns_response(id, &name, QTYPE_A, 0, &[rr], None)?
        } else {
            proto::dns_response(id, &name, QTYPE_A, proto::RCODE_NXDOMAIN, &[], Some(zone))?
        };
        let ts = slot(k, queries);
        for (src, dst, payload, at) in [
            (&client, &resolver, &query, ts),
            (&resolver, &client, &response, ts + 1000),
        ] {
            out.packet(at, src, dst, &L4::Udp, payload, rng)?;
        }
    }
    let counts = BTreeMap::from([
        ("dns_messages", 2 * queries),
        ("queries", queries),
        ("answered_with_address", answered),
    ]);
    Ok((
        "random-name DNS queries (water torture) from 64 inside hosts, each answered",
        counts,
    ))
}

/// How one tiny-segment connection sends its ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    InOrder,
    /// Each pair of neighbouring segments arrives swapped.
    Swapped,
    /// One segment in the middle never arrives: the hello cannot complete.
    Hole,
}

/// Connections from 10.20.4.90 whose ~6 KB ClientHello travels in 1–3 byte segments; the rest
/// of the `packets` budget decides how many. Each ends with FIN from both sides.
fn tiny_hello<W: Write>(
    rng: &mut Rng,
    packets: u64,
    out: &mut Out<'_, W>,
) -> Result<Generated, GenerateError> {
    const HELLO_PADDING: usize = 5600;
    // Handshake, about 3000 segments, FIN exchange.
    const PACKETS_PER_CONNECTION: u64 = 3000;
    let connections = (packets / PACKETS_PER_CONNECTION).max(1);
    let client_ip = IpAddr::V4(Ipv4Addr::new(10, 20, 4, 90));
    let mut counts = BTreeMap::from([
        ("connections", connections),
        ("hellos_complete", 0),
        ("hellos_with_hole", 0),
        ("segments", 0),
    ]);
    for k in 0..connections {
        let delivery = match k % 3 {
            0 => Delivery::InOrder,
            1 => Delivery::Swapped,
            _ => Delivery::Hole,
        };
        let c = inside(client_ip, 20_000 + (k % 40_000) as u16);
        let server_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1 + (k % 250) as u8));
        let s = outside(server_ip, 443);
        let mut sid = [0u8; 32];
        rng.fill(&mut sid);
        let name = format!("t{k}.tiny-hello.example");
        let hello = proto::client_hello_padded(rng, &sid, Some(&name), &ALPN, HELLO_PADDING)?;
        let mut cuts = Vec::new();
        let mut at = 0;
        while at < hello.len() {
            let len = (rng.range(1, 3) as usize).min(hello.len() - at);
            cuts.push((at, len));
            at += len;
        }
        match delivery {
            Delivery::InOrder => {}
            Delivery::Swapped => {
                for pair in cuts.chunks_exact_mut(2) {
                    pair.swap(0, 1);
                }
            }
            Delivery::Hole => {
                cuts.remove(cuts.len() / 2);
            }
        }
        let key = match delivery {
            Delivery::Hole => "hellos_with_hole",
            _ => "hellos_complete",
        };
        *counts.entry(key).or_default() += 1;
        *counts.entry("segments").or_default() += cuts.len() as u64;

        let (isn_c, isn_s) = (rng.next_u32(), rng.next_u32());
        let data_seq = isn_c.wrapping_add(1);
        let end_seq = data_seq.wrapping_add(hello.len() as u32);
        let mut ts = slot(k, connections);
        let mut send = |ts: u64, from_client: bool, l4: L4<'_>, payload: &[u8]| {
            let (src, dst) = if from_client { (&c, &s) } else { (&s, &c) };
            out.packet(ts, src, dst, &l4, payload, rng)
        };
        send(ts, true, tcp(isn_c, 0, SYN), &[])?;
        ts += 20_000;
        let server_next = isn_s.wrapping_add(1);
        send(ts, false, tcp(isn_s, data_seq, SYN | ACK), &[])?;
        ts += 20_000;
        send(ts, true, tcp(data_seq, server_next, ACK), &[])?;
        for &(offset, len) in &cuts {
            ts += 10;
            let seq = data_seq.wrapping_add(offset as u32);
            let bytes = hello.get(offset..offset + len).unwrap_or(&[]);
            send(ts, true, tcp(seq, server_next, PSH | ACK), bytes)?;
        }
        ts += 20_000;
        send(ts, true, tcp(end_seq, server_next, FIN | ACK), &[])?;
        ts += 20_000;
        let acked = end_seq.wrapping_add(1);
        send(ts, false, tcp(server_next, acked, FIN | ACK), &[])?;
        ts += 20_000;
        send(ts, true, tcp(acked, server_next.wrapping_add(1), ACK), &[])?;
    }
    Ok((
        "TLS ClientHellos (~6 KB) in 1-3 byte segments from 10.20.4.90: in order, neighbours swapped, or one segment missing",
        counts,
    ))
}

/// Cuts a UDP datagram (headers from `build_headers`, then `payload`) into IP fragments.
/// `pieces` are (offset, length) into the IP payload (UDP header included); offsets are
/// multiples of 8 and every piece but the last is too.
fn fragments(hdr: &[u8], payload: &[u8], ident: u32, pieces: &[(usize, usize)]) -> Vec<Vec<u8>> {
    let v6 = hdr.get(12..14) == Some(&[0x86, 0xdd]);
    let ip_len = if v6 { 40 } else { 20 };
    let l3 = 14 + ip_len;
    let mut ip_payload = hdr.get(l3..).unwrap_or(&[]).to_vec();
    ip_payload.extend_from_slice(payload);
    let total = ip_payload.len();
    let mut frames = Vec::with_capacity(pieces.len());
    for &(offset, len) in pieces {
        let piece = ip_payload.get(offset..offset + len).unwrap_or(&[]);
        let more = offset + len < total;
        let mut f = hdr.get(..l3).unwrap_or(&[]).to_vec();
        if v6 {
            // Payload length covers the fragment header; next header becomes Fragment (44).
            let plen = (8 + piece.len()) as u16;
            f[18..20].copy_from_slice(&plen.to_be_bytes());
            f[20] = 44;
            f.extend_from_slice(&[17, 0]);
            let off = ((offset / 8) as u16) << 3 | u16::from(more);
            f.extend_from_slice(&off.to_be_bytes());
            f.extend_from_slice(&ident.to_be_bytes());
        } else {
            let total_len = (20 + piece.len()) as u16;
            f[16..18].copy_from_slice(&total_len.to_be_bytes());
            f[18..20].copy_from_slice(&(ident as u16).to_be_bytes());
            let off = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
            f[20..22].copy_from_slice(&off.to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let csum = !super::wire::fold(ones_sum(&f[14..34]));
            f[24..26].copy_from_slice(&csum.to_be_bytes());
        }
        f.extend_from_slice(piece);
        frames.push(f);
    }
    frames
}

/// Fragmented UDP datagrams from spoofed sources to 10.20.1.201 (IPv4) and fd00:20::201
/// (IPv6), one unit per slot: one in eight complete (its fragments back to back, last first
/// every other time), one half missing the middle fragment, the rest only a far last fragment
/// (an offset near 64 KB, which makes a naive reassembler reserve the whole datagram).
fn fragment_flood<W: Write>(
    rng: &mut Rng,
    packets: u64,
    out: &mut Out<'_, W>,
) -> Result<Generated, GenerateError> {
    let target_v4 = inside(IpAddr::V4(Ipv4Addr::new(10, 20, 1, 201)), 9000);
    let target_v6 = inside(
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x201)),
        9000,
    );
    // Frames per 8 units: one complete (3), four with a hole (2 each), three far (1 each).
    let units = (packets * 8 / 14).max(1);
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut hdr = Vec::with_capacity(80);
    for k in 0..units {
        let v6 = k % 2 == 1;
        let src = if v6 {
            let mut o = [0u8; 16];
            o[0] = 0x20;
            o[1] = 0x01;
            o[2] = 0x0d;
            o[3] = 0xb8;
            o[8..16].copy_from_slice(&rng.next_u64().to_be_bytes());
            outside(
                IpAddr::V6(Ipv6Addr::from(o)),
                rng.range(1024, 65_535) as u16,
            )
        } else {
            outside(IpAddr::V4(spoofed_v4(k)), rng.range(1024, 65_535) as u16)
        };
        let dst = if v6 { &target_v6 } else { &target_v4 };
        let kind = match k % 8 {
            0 => "complete",
            1..=4 => "with_hole",
            _ => "far_fragment_only",
        };
        let payload = if kind == "far_fragment_only" {
            vec![0u8; 64_000]
        } else {
            rng.bytes(2900)
        };
        build_headers(
            &mut hdr,
            &src,
            dst,
            0,
            &L4::Udp,
            payload.len(),
            ones_sum(&payload),
        )?;
        let ip_payload = payload.len() + 8;
        // 1448 fits an Ethernet MTU under IPv6 with its fragment header.
        let mut pieces: Vec<(usize, usize)> = (0..ip_payload)
            .step_by(1448)
            .map(|o| (o, 1448.min(ip_payload - o)))
            .collect();
        match kind {
            "complete" if k % 16 == 0 => pieces.reverse(),
            "complete" => {}
            "with_hole" => {
                pieces.remove(pieces.len() / 2);
            }
            _ => pieces = pieces.split_off(pieces.len() - 1),
        }
        let ident = rng.next_u32();
        let mut ts = slot(k, units);
        for f in fragments(&hdr, &payload, ident, &pieces) {
            out.frame(ts, &f, &[])?;
            ts += 5;
        }
        *counts.entry(kind).or_default() += 1;
    }
    counts.insert("datagrams", units);
    Ok((
        "fragmented UDP datagrams from spoofed IPv4 and IPv6 sources: 1 in 8 complete, the rest missing a fragment or only a far last fragment",
        counts,
    ))
}

/// IPFIX information elements and lengths of a flow record; two layouts for the same data,
/// so that redefining a template id with the other one changes the record length.
const LAYOUT_A: [(u16, u16); 9] = [
    (8, 4),   // sourceIPv4Address
    (12, 4),  // destinationIPv4Address
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (4, 1),   // protocolIdentifier
    (1, 8),   // octetDeltaCount
    (2, 8),   // packetDeltaCount
    (152, 8), // flowStartMilliseconds
    (153, 8), // flowEndMilliseconds
];
const LAYOUT_B: [(u16, u16); 9] = [
    (1, 4),   // octetDeltaCount
    (2, 4),   // packetDeltaCount
    (4, 1),   // protocolIdentifier
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (8, 4),   // sourceIPv4Address
    (12, 4),  // destinationIPv4Address
    (150, 4), // flowStartSeconds
    (151, 4), // flowEndSeconds
];

fn layout(b: bool) -> &'static [(u16, u16); 9] {
    if b { &LAYOUT_B } else { &LAYOUT_A }
}

/// Appends one flow record in `layout`.
#[allow(clippy::too_many_arguments)]
fn flow_record(
    out: &mut Vec<u8>,
    layout: &[(u16, u16)],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    bytes: u64,
    packets: u64,
    ms: u64,
) {
    for &(ie, len) in layout {
        match (ie, len) {
            (8, _) => out.extend_from_slice(&src.octets()),
            (12, _) => out.extend_from_slice(&dst.octets()),
            (7, _) => out.extend_from_slice(&ports.0.to_be_bytes()),
            (11, _) => out.extend_from_slice(&ports.1.to_be_bytes()),
            (4, _) => out.push(6),
            (1, 8) => out.extend_from_slice(&bytes.to_be_bytes()),
            (2, 8) => out.extend_from_slice(&packets.to_be_bytes()),
            (1, _) => out.extend_from_slice(&(bytes as u32).to_be_bytes()),
            (2, _) => out.extend_from_slice(&(packets as u32).to_be_bytes()),
            (152 | 153, _) => out.extend_from_slice(&ms.to_be_bytes()),
            _ => out.extend_from_slice(&((ms / 1000) as u32).to_be_bytes()),
        }
    }
}

fn set(out: &mut Vec<u8>, id: u16, body: &[u8]) {
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// Template ids the storm defines; ids above are only ever referenced, never defined.
const DEFINED_IDS: std::ops::Range<u16> = 256..60_000;

/// One IPFIX message per slot from exporter `k % 16` (10.20.0.100 + e), observation domain
/// `k / 16 % 4`. Each holds 24 new template definitions (random ids, random layout), one
/// redefinition of an id defined earlier in this (exporter, domain) with the other layout,
/// one withdrawal of an id defined in the message, and data sets: 3 records for the
/// redefined id (in its new layout), 2 for a new id, and 1 for an id never defined.
fn template_storm<W: Write>(
    rng: &mut Rng,
    packets: u64,
    out: &mut Out<'_, W>,
) -> Result<Generated, GenerateError> {
    const EXPORTERS: u64 = 16;
    const DOMAINS: u64 = 4;
    const NEW_PER_MESSAGE: usize = 24;
    let collector = inside(IpAddr::V4(Ipv4Addr::new(10, 20, 0, 9)), 4739);
    // Per (exporter, domain): the ids defined and their layout (true: B), the newest last.
    let mut known: Vec<Vec<(u16, bool)>> = vec![Vec::new(); (EXPORTERS * DOMAINS) as usize];
    let mut sequence = vec![0u32; known.len()];
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut msg = Vec::with_capacity(1500);
    let mut body = Vec::with_capacity(1200);
    for k in 0..packets {
        let e = k % EXPORTERS;
        let d = k / EXPORTERS % DOMAINS;
        let slot_index = (e * DOMAINS + d) as usize;
        let ts = slot(k, packets);
        let ms = ts / 1000;
        let Some(ids) = known.get_mut(slot_index) else {
            continue;
        };
        // Templates: new ones, then the redefinition and the withdrawal.
        body.clear();
        let mut new_ids = Vec::with_capacity(NEW_PER_MESSAGE);
        for _ in 0..NEW_PER_MESSAGE {
            let id = rng.range(u64::from(DEFINED_IDS.start), u64::from(DEFINED_IDS.end - 1)) as u16;
            let b = rng.chance(50);
            template_record(&mut body, id, layout(b));
            new_ids.push((id, b));
        }
        let redefined = rng.pick(ids).copied().map(|(id, b)| (id, !b));
        if let Some((id, b)) = redefined {
            template_record(&mut body, id, layout(b));
            *counts.entry("redefinitions").or_default() += 1;
        }
        let withdrawn = new_ids.last().map(|&(id, _)| id);
        if let Some(id) = withdrawn {
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&0u16.to_be_bytes());
            *counts.entry("withdrawals").or_default() += 1;
        }
        *counts.entry("template_records").or_default() +=
            (new_ids.len() + usize::from(redefined.is_some())) as u64;
        msg.clear();
        msg.extend_from_slice(&[0; 16]);
        set(&mut msg, 2, &body);
        // Later definitions of an id win within the message too.
        for &(id, b) in &new_ids {
            ids.retain(|&(i, _)| i != id);
            if Some(id) != withdrawn {
                ids.push((id, b));
            }
        }
        if let Some((id, b)) = redefined {
            ids.retain(|&(i, _)| i != id);
            if Some(id) != withdrawn {
                ids.push((id, b));
            }
        }
        // At most 512 remembered per (exporter, domain): ids to redefine, not the sensor's state.
        if ids.len() > 512 {
            ids.drain(..ids.len() - 512);
        }
        // Data: the redefined template, a new one, and one never defined.
        let mut data =
            |id: u16, layout: &[(u16, u16)], n: u64, rng: &mut Rng, msg: &mut Vec<u8>| {
                body.clear();
                for _ in 0..n {
                    let src = Ipv4Addr::new(10, 20, 5, 1 + rng.below(200) as u8);
                    let dst = spoofed_v4(rng.next_u64());
                    let ports = (rng.range(1024, 65_535) as u16, 443);
                    flow_record(
                        &mut body,
                        layout,
                        src,
                        dst,
                        ports,
                        rng.range(100, 10_000),
                        rng.range(1, 20),
                        ms,
                    );
                }
                set(msg, id, &body);
            };
        let mut records = 0;
        // Data for the redefined id and for the first new one, in the layout their last
        // definition gave them (ids drawn twice in one message take the later one).
        let first_new = new_ids.first().map(|&(id, _)| id);
        let redefined_id = redefined.map(|(id, _)| id);
        for (id, n) in [
            (redefined_id, 3),
            (first_new.filter(|&id| Some(id) != redefined_id), 2),
        ] {
            let Some(&(id, b)) = id.and_then(|id| ids.iter().find(|&&(i, _)| i == id)) else {
                continue;
            };
            data(id, layout(b), n, rng, &mut msg);
            records += n;
        }
        let undefined = rng.range(u64::from(DEFINED_IDS.end), 65_535) as u16;
        data(undefined, layout(false), 1, rng, &mut msg);
        *counts.entry("records").or_default() += records;
        *counts.entry("sets_for_undefined_templates").or_default() += 1;

        let seq = sequence.get_mut(slot_index).map_or(0, |s| {
            let now = *s;
            *s = s.wrapping_add(records as u32);
            now
        });
        let len = msg.len() as u16;
        msg[0..2].copy_from_slice(&10u16.to_be_bytes());
        msg[2..4].copy_from_slice(&len.to_be_bytes());
        msg[4..8].copy_from_slice(&((ts / SEC) as u32).to_be_bytes());
        msg[8..12].copy_from_slice(&seq.to_be_bytes());
        msg[12..16].copy_from_slice(&(d as u32 + 1).to_be_bytes());
        let exporter = inside(IpAddr::V4(Ipv4Addr::new(10, 20, 0, 100 + e as u8)), 4739);
        out.packet(ts, &exporter, &collector, &L4::Udp, &msg, rng)?;
    }
    counts.insert("messages", packets);
    Ok((
        "IPFIX from 16 exporters x 4 observation domains: per message 24 new templates, a redefinition with another layout, a withdrawal, and data for defined and never-defined ids",
        counts,
    ))
}

fn template_record(out: &mut Vec<u8>, id: u16, layout: &[(u16, u16)]) {
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(layout.len() as u16).to_be_bytes());
    for &(ie, len) in layout {
        out.extend_from_slice(&ie.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
    }
}
