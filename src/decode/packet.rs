//! Frame decoder: link layer, tunnels, IP and the transport header.
//!
//! Bytes in, borrowed views out; nothing is allocated. A frame may yield several transport
//! layers (an outer UDP tunnel and the packet inside it), each counted as tshark counts them.
//! IP fragments are handed out as `Layer::Fragment` for the caller's reassembler, which then
//! calls [`decode_transport`] on the whole datagram. Captured bytes may be fewer than the
//! packet had (snaplen, slicing): lengths come from the IP header, payloads are what was captured.
use arrayvec::ArrayVec;
use etherparse::{Ipv6ExtensionSlice, LaxIpSlice, LenSource};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    /// DLT_RAW as OpenBSD and some others number it.
    pub const RAW_12: u32 = 12;
    pub const RAW_14: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
    /// Every link type the decoder reads.
    pub const SUPPORTED: [u32; 10] = [
        ETHERNET, RAW, LINUX_SLL, LINUX_SLL2, NULL, LOOP, IPV4, IPV6, RAW_12, RAW_14,
    ];
}

pub fn link_type_supported(linktype: i32) -> bool {
    u32::try_from(linktype).is_ok_and(|lt| linktype::SUPPORTED.contains(&lt))
}

mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ tag still seen on older switches.
    pub const QINQ_OLD: u16 = 0x9100;
    pub const MPLS: u16 = 0x8847;
    pub const MPLS_MULTICAST: u16 = 0x8848;
    pub const PPPOE_SESSION: u16 = 0x8864;
    /// Transparent Ethernet bridging (Ethernet inside GRE, Geneve).
    pub const TEB: u16 = 0x6558;
    pub const ERSPAN_2: u16 = 0x88be;
    pub const ERSPAN_3: u16 = 0x22eb;
}

pub mod ip_proto {
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const GRE: u8 = 47;
    pub const ICMPV6: u8 = 58;
}

const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;

/// Outer packet plus up to three nested tunnels; deeper nesting is a counted drop
/// (legitimate traffic does not nest further, and the bound keeps the work per frame fixed).
pub const MAX_LAYERS: usize = 4;
/// VLAN tags and MPLS labels walked before giving up (QinQinQ is 3; a loop of tags is hostile).
const MAX_LINK_HEADERS: usize = 8;

/// One TCP, UDP, ICMP or other-protocol header with its addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TCP/UDP ports; for ICMP, Zeek's convention: type and code.
    pub sport: u16,
    pub dport: u16,
    /// IP total length from the header (the whole datagram when reassembled).
    pub ip_len: u32,
    pub tcp_flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// Captured transport payload.
    pub payload: &'a [u8],
    /// Transport payload length per the headers; larger than `payload.len()` when sliced.
    pub payload_len: u32,
}

/// A piece of a fragmented IP datagram, for the reassembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub id: u32,
    /// Byte offset of `payload` in the datagram's payload.
    pub offset: u32,
    pub more: bool,
    pub payload: &'a [u8],
    /// The captured payload is shorter than the fragment (sliced): it can never complete.
    pub cut: bool,
    pub ip_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer<'a> {
    Transport(Transport<'a>),
    Fragment(Fragment<'a>),
}

/// Why a frame (or the rest of it) was not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// ARP, LLDP, STP and the like: not an error, not IP.
    NotIp,
    TruncatedLink,
    BadIpHeader,
    TruncatedTransport,
    TooManyLayers,
    UnsupportedTunnel,
    FragmentTableFull,
    /// A pending datagram evicted (oldest first) to make room for a new one.
    FragmentEvicted,
    FragmentTimeout,
    FragmentOverlapOrTooLong,
    /// A fragment whose bytes were not all captured can never be reassembled.
    FragmentSliced,
    /// A tunnel layer with the same flow as a layer around it (crafted nesting): counting it
    /// again would count the frame twice in one flow.
    RepeatedTunnelLayer,
}

impl DropReason {
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotIp => "not_ip",
            DropReason::TruncatedLink => "truncated_link_header",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::TruncatedTransport => "truncated_transport_header",
            DropReason::TooManyLayers => "too_many_tunnel_layers",
            DropReason::UnsupportedTunnel => "unsupported_tunnel",
            DropReason::FragmentTableFull => "fragment_table_full",
            DropReason::FragmentEvicted => "fragment_evicted",
            DropReason::FragmentTimeout => "fragment_timeout",
            DropReason::FragmentOverlapOrTooLong => "fragment_invalid",
            DropReason::FragmentSliced => "fragment_sliced",
            DropReason::RepeatedTunnelLayer => "repeated_tunnel_layer",
        }
    }
}

/// What one frame decoded to. Reused across frames by the caller.
#[derive(Debug, Default)]
pub struct Decoded<'a> {
    pub layers: ArrayVec<Layer<'a>, MAX_LAYERS>,
    /// The transport header quoted inside an ICMP error (not a flow of its own; its DNS
    /// question is still a name the host asked for).
    pub icmp_quote: Option<Transport<'a>>,
    pub drop: Option<DropReason>,
}

impl<'a> Decoded<'a> {
    pub fn clear(&mut self) {
        self.layers.clear();
        self.icmp_quote = None;
        self.drop = None;
    }

    fn push(&mut self, layer: Layer<'a>) -> bool {
        if self.layers.try_push(layer).is_err() {
            self.drop = Some(DropReason::TooManyLayers);
            return false;
        }
        true
    }
}

/// The IP header of a plain frame, found at fixed offsets without validation: Ethernet with
/// up to two VLAN tags, or raw IP. A cheap guess for the shard choice and the flow
/// look-ahead; `decode_frame` is the decode.
#[inline]
pub(crate) fn plain_ip_header(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    let mut at = match linktype {
        linktype::ETHERNET => 12,
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => return Some(frame),
        _ => return None,
    };
    let mut ether = be16(frame, at)?;
    for _ in 0..2 {
        if !matches!(
            ether,
            ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD
        ) {
            break;
        }
        at += 4;
        ether = be16(frame, at)?;
    }
    matches!(ether, ethertype::IPV4 | ethertype::IPV6)
        .then(|| frame.get(at + 2..))
        .flatten()
}

#[inline]
pub(crate) fn be16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

#[inline]
pub(crate) fn be32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *data.get(at)?,
        *data.get(at + 1)?,
        *data.get(at + 2)?,
        *data.get(at + 3)?,
    ]))
}

/// Decodes one frame of the given link type into `out` (cleared first).
pub fn decode_frame<'a>(linktype: u32, data: &'a [u8], out: &mut Decoded<'a>) {
    out.clear();
    match linktype {
        linktype::ETHERNET => ethernet(data, 0, out),
        linktype::NULL | linktype::LOOP => {
            let Some(&family) = data.first_chunk::<4>() else {
                out.drop = Some(DropReason::TruncatedLink);
                return;
            };
            // NULL is host byte order of the capturing machine, LOOP is network order: accept both.
            let le = u32::from_le_bytes(family);
            let be = u32::from_be_bytes(family);
            let is_af = |f: &[u32]| f.contains(&le) || f.contains(&be);
            let rest = data.get(4..).unwrap_or(&[]);
            if is_af(&[2]) {
                ip(rest, 0, out)
            } else if is_af(&[10, 24, 28, 30]) {
                // AF_INET6 differs per OS: Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, macOS 30.
                ip(rest, 0, out)
            } else {
                out.drop = Some(DropReason::NotIp)
            }
        }
        linktype::RAW | linktype::RAW_12 | linktype::RAW_14 | linktype::IPV4 | linktype::IPV6 => {
            ip(data, 0, out)
        }
        linktype::LINUX_SLL => match (be16(data, 14), data.get(16..)) {
            (Some(proto), Some(rest)) => ether_payload(proto, rest, 0, 0, out),
            _ => out.drop = Some(DropReason::TruncatedLink),
        },
        linktype::LINUX_SLL2 => match (be16(data, 0), data.get(20..)) {
            (Some(proto), Some(rest)) => ether_payload(proto, rest, 0, 0, out),
            _ => out.drop = Some(DropReason::TruncatedLink),
        },
        _ => out.drop = Some(DropReason::NotIp),
    }
}

fn ethernet<'a>(data: &'a [u8], depth: usize, out: &mut Decoded<'a>) {
    match (be16(data, 12), data.get(14..)) {
        (Some(ethertype), Some(rest)) => ether_payload(ethertype, rest, depth, 0, out),
        _ => out.drop = Some(DropReason::TruncatedLink),
    }
}

fn ether_payload<'a>(
    ethertype: u16,
    data: &'a [u8],
    depth: usize,
    headers: usize,
    out: &mut Decoded<'a>,
) {
    if headers > MAX_LINK_HEADERS {
        out.drop = Some(DropReason::TooManyLayers);
        return;
    }
    let truncated = |out: &mut Decoded<'a>| out.drop = Some(DropReason::TruncatedLink);
    match ethertype {
        ethertype::IPV4 | ethertype::IPV6 => ip(data, depth, out),
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD => {
            match (be16(data, 2), data.get(4..)) {
                (Some(next), Some(rest)) => ether_payload(next, rest, depth, headers + 1, out),
                _ => truncated(out),
            }
        }
        ethertype::MPLS | ethertype::MPLS_MULTICAST => {
            let mut at = 0;
            for _ in 0..MAX_LINK_HEADERS {
                let Some(label) = be32(data, at) else {
                    return truncated(out);
                };
                at += 4;
                if label & 0x100 != 0 {
                    // Bottom of stack: no protocol field follows, so look at the first nibble.
                    let rest = data.get(at..).unwrap_or(&[]);
                    return match rest.first().map(|b| b >> 4) {
                        Some(4) | Some(6) => ip(rest, depth, out),
                        // Pseudowire control word, then Ethernet.
                        Some(0) => ethernet(rest.get(4..).unwrap_or(&[]), depth, out),
                        Some(_) => out.drop = Some(DropReason::UnsupportedTunnel),
                        None => truncated(out),
                    };
                }
            }
            out.drop = Some(DropReason::TooManyLayers);
        }
        ethertype::PPPOE_SESSION => match (be16(data, 6), data.get(8..)) {
            (Some(0x0021), Some(rest)) | (Some(0x0057), Some(rest)) => ip(rest, depth, out),
            (Some(_), Some(_)) => out.drop = Some(DropReason::NotIp),
            _ => truncated(out),
        },
        _ => out.drop = Some(DropReason::NotIp),
    }
}

/// Decodes an IPv4 or IPv6 packet and what it carries.
fn ip<'a>(data: &'a [u8], depth: usize, out: &mut Decoded<'a>) {
    let Ok((slice, _ext_err)) = LaxIpSlice::from_slice(data) else {
        out.drop = Some(DropReason::BadIpHeader);
        return;
    };
    let payload = slice.payload();
    let src = slice.source_addr();
    let dst = slice.destination_addr();
    let proto = payload.ip_number.0;
    let (ip_len, header_len) = match &slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            (u32::from(h.total_len()), u32::from(h.ihl()) * 4)
        }
        LaxIpSlice::Ipv6(v6) => {
            let declared = u32::from(v6.header().payload_length());
            let ext_len = v6.extensions().slice().len() as u32;
            (declared + 40, 40 + ext_len)
        }
    };
    // The header's length is the truth even when the frame was sliced; only a zero or
    // too-short field (TSO captures, jumbograms) falls back to what was captured.
    let declared_ok = match &slice {
        LaxIpSlice::Ipv4(_) => ip_len >= header_len,
        LaxIpSlice::Ipv6(_) => ip_len > 40,
    };
    let ip_len = if declared_ok || payload.len_source != LenSource::Slice {
        ip_len
    } else {
        (header_len as usize + payload.payload.len()) as u32
    };
    let payload_len = ip_len.saturating_sub(header_len);

    if payload.fragmented {
        let (id, offset, more) = match &slice {
            LaxIpSlice::Ipv4(v4) => {
                let h = v4.header();
                (
                    u32::from(h.identification()),
                    u32::from(h.fragments_offset().value()) * 8,
                    h.more_fragments(),
                )
            }
            LaxIpSlice::Ipv6(v6) => {
                let frag = v6
                    .extensions()
                    .clone()
                    .into_iter()
                    .find_map(|ext| match ext {
                        Ipv6ExtensionSlice::Fragment(f) => Some((
                            f.identification(),
                            u32::from(f.fragment_offset().value()) * 8,
                            f.more_fragments(),
                        )),
                        _ => None,
                    });
                match frag {
                    Some(f) => f,
                    None => {
                        out.drop = Some(DropReason::BadIpHeader);
                        return;
                    }
                }
            }
        };
        out.push(Layer::Fragment(Fragment {
            src,
            dst,
            proto,
            id,
            offset,
            more,
            payload: payload.payload,
            cut: payload.incomplete,
            ip_len,
        }));
        return;
    }
    decode_transport(
        src,
        dst,
        proto,
        ip_len,
        payload.payload,
        payload_len,
        depth,
        out,
    );
}

/// Decodes a transport header and its payload; also the entry point for reassembled datagrams.
#[allow(clippy::too_many_arguments)]
pub fn decode_transport<'a>(
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ip_len: u32,
    data: &'a [u8],
    declared_len: u32,
    depth: usize,
    out: &mut Decoded<'a>,
) {
    let mut t = Transport {
        src,
        dst,
        proto,
        sport: 0,
        dport: 0,
        ip_len,
        tcp_flags: 0,
        seq: 0,
        ack: 0,
        window: 0,
        payload: &[],
        payload_len: 0,
    };
    match proto {
        ip_proto::TCP => {
            let (Some(sport), Some(dport), Some(seq), Some(ack), Some(off_flags), Some(window)) = (
                be16(data, 0),
                be16(data, 2),
                be32(data, 4),
                be32(data, 8),
                be16(data, 12),
                be16(data, 14),
            ) else {
                out.drop = Some(DropReason::TruncatedTransport);
                return;
            };
            let header_len = usize::from(off_flags >> 12) * 4;
            if header_len < 20 {
                out.drop = Some(DropReason::TruncatedTransport);
                return;
            }
            t.sport = sport;
            t.dport = dport;
            t.seq = seq;
            t.ack = ack;
            t.window = window;
            t.tcp_flags = (off_flags & 0xff) as u8;
            // Options may be cut off in a sliced frame; the payload is then simply empty.
            t.payload = data.get(header_len..).unwrap_or(&[]);
            t.payload_len = declared_len.saturating_sub(header_len as u32);
            out.push(Layer::Transport(t));
        }
        ip_proto::UDP => {
            let (Some(sport), Some(dport)) = (be16(data, 0), be16(data, 2)) else {
                out.drop = Some(DropReason::TruncatedTransport);
                return;
            };
            t.sport = sport;
            t.dport = dport;
            let udp_len = be16(data, 4)
                .map(u32::from)
                .filter(|&l| l >= 8)
                .unwrap_or(declared_len);
            t.payload_len = udp_len.min(declared_len).saturating_sub(8);
            let end = 8 + t.payload_len as usize;
            t.payload = data.get(8..end.min(data.len())).unwrap_or(&[]);
            let payload = t.payload;
            if !out.push(Layer::Transport(t)) {
                return;
            }
            if sport == VXLAN_PORT || dport == VXLAN_PORT {
                vxlan(payload, depth + 1, out);
            } else if sport == GENEVE_PORT || dport == GENEVE_PORT {
                geneve(payload, depth + 1, out);
            }
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let (Some(&icmp_type), Some(&code)) = (data.first(), data.get(1)) else {
                out.drop = Some(DropReason::TruncatedTransport);
                return;
            };
            t.sport = u16::from(icmp_type);
            t.dport = u16::from(code);
            t.payload = data.get(8..).unwrap_or(&[]);
            t.payload_len = declared_len.saturating_sub(8);
            let quoted = t.payload;
            if !out.push(Layer::Transport(t)) {
                return;
            }
            let is_error = if proto == ip_proto::ICMP {
                matches!(icmp_type, 3 | 4 | 5 | 11 | 12)
            } else {
                matches!(icmp_type, 1..=4)
            };
            if is_error {
                icmp_quote(quoted, out);
            }
        }
        ip_proto::GRE => gre(data, depth + 1, out),
        ip_proto::IPIP | ip_proto::IPV6 => {
            if depth + 1 >= MAX_LAYERS {
                out.drop = Some(DropReason::TooManyLayers);
            } else {
                ip(data, depth + 1, out)
            }
        }
        _ => {
            t.payload = data;
            t.payload_len = declared_len;
            out.push(Layer::Transport(t));
        }
    }
}

/// The packet quoted in an ICMP error: decoded into a scratch set of layers, only the first
/// transport is kept, and it never becomes a flow.
fn icmp_quote<'a>(data: &'a [u8], out: &mut Decoded<'a>) {
    let mut inner = Decoded::default();
    ip(data, MAX_LAYERS - 1, &mut inner);
    out.icmp_quote = inner.layers.iter().find_map(|l| match l {
        Layer::Transport(t) => Some(*t),
        Layer::Fragment(_) => None,
    });
}

fn vxlan<'a>(data: &'a [u8], depth: usize, out: &mut Decoded<'a>) {
    // 8-byte header; the I flag says the VNI is valid (RFC 7348).
    match (data.first(), data.get(8..)) {
        (Some(flags), Some(inner)) if flags & 0x08 != 0 && depth < MAX_LAYERS => {
            ethernet(inner, depth, out)
        }
        _ => {}
    }
}

fn geneve<'a>(data: &'a [u8], depth: usize, out: &mut Decoded<'a>) {
    let (Some(&first), Some(protocol)) = (data.first(), be16(data, 2)) else {
        return;
    };
    if first >> 6 != 0 || depth >= MAX_LAYERS {
        return;
    }
    let header_len = 8 + usize::from(first & 0x3f) * 4;
    let Some(inner) = data.get(header_len..) else {
        return;
    };
    match protocol {
        ethertype::TEB => ethernet(inner, depth, out),
        other => ether_payload(other, inner, depth, 0, out),
    }
}

fn gre<'a>(data: &'a [u8], depth: usize, out: &mut Decoded<'a>) {
    let (Some(flags), Some(protocol)) = (be16(data, 0), be16(data, 2)) else {
        out.drop = Some(DropReason::TruncatedTransport);
        return;
    };
    if depth >= MAX_LAYERS {
        out.drop = Some(DropReason::TooManyLayers);
        return;
    }
    let version = flags & 0x7;
    if version != 0 {
        // Version 1 is PPTP's enhanced GRE carrying PPP.
        out.drop = Some(DropReason::UnsupportedTunnel);
        return;
    }
    // Checksum (C) and Routing (R) share one 4-byte field; Key (K) and Sequence (S) add 4 each.
    let mut len = 4;
    if flags & 0xC000 != 0 {
        len += 4;
    }
    if flags & 0x2000 != 0 {
        len += 4;
    }
    if flags & 0x1000 != 0 {
        len += 4;
    }
    let Some(inner) = data.get(len..) else {
        out.drop = Some(DropReason::TruncatedTransport);
        return;
    };
    match protocol {
        ethertype::TEB => ethernet(inner, depth, out),
        // ERSPAN type II: 8-byte header; type III: 12 bytes plus an optional 8-byte subheader.
        ethertype::ERSPAN_2 => ethernet(inner.get(8..).unwrap_or(&[]), depth, out),
        ethertype::ERSPAN_3 => {
            let o_flag = inner.get(11).is_some_and(|b| b & 0x01 != 0);
            let skip = if o_flag { 20 } else { 12 };
            ethernet(inner.get(skip..).unwrap_or(&[]), depth, out)
        }
        other => ether_payload(other, inner, depth, 0, out),
    }
}

/// Unspecified address used where a layer has none (never produced for real packets).
pub const UNSPECIFIED: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// True for addresses no host ever sends from (used to discard junk in decoded tunnels).
pub fn is_unspecified(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a == Ipv4Addr::UNSPECIFIED,
        IpAddr::V6(a) => a == Ipv6Addr::UNSPECIFIED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transports<'a>(d: &Decoded<'a>) -> Vec<Transport<'a>> {
        d.layers
            .iter()
            .filter_map(|l| match l {
                Layer::Transport(t) => Some(*t),
                _ => None,
            })
            .collect()
    }

    // Ethernet / 802.1Q / IPv4 / UDP 10.0.0.1:1234 -> 192.0.2.1:53, 4 payload bytes.
    const VLAN_UDP: &str = "ffffffffffff 020000000001 8100 0064 0800 \
        4500 0020 0001 0000 4011 0000 0a000001 c0000201 \
        04d2 0035 000c 0000 deadbeef";

    use crate::decode::hex;

    #[test]
    fn vlan_udp() {
        let bytes = hex(VLAN_UDP);
        let mut d = Decoded::default();
        decode_frame(linktype::ETHERNET, &bytes, &mut d);
        let t = transports(&d);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].dport, 53);
        assert_eq!(t[0].payload, &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(t[0].ip_len, 32);
    }

    #[test]
    fn sliced_frame_keeps_header_lengths() {
        let mut bytes = hex(VLAN_UDP);
        bytes.truncate(bytes.len() - 3);
        let mut d = Decoded::default();
        decode_frame(linktype::ETHERNET, &bytes, &mut d);
        let t = transports(&d);
        assert_eq!(
            t[0].ip_len, 32,
            "length comes from the IP header, not the capture"
        );
        assert_eq!(t[0].payload_len, 4);
        assert_eq!(t[0].payload, &[0xde]);
    }

    #[test]
    fn every_truncation_and_mutation_is_safe() {
        let bytes = hex(VLAN_UDP);
        for lt in [
            linktype::ETHERNET,
            linktype::NULL,
            linktype::RAW,
            linktype::LINUX_SLL,
            linktype::LINUX_SLL2,
        ] {
            for cut in 0..=bytes.len() {
                let mut d = Decoded::default();
                decode_frame(lt, &bytes[..cut], &mut d);
            }
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..2000 {
                let mut m = bytes.clone();
                for _ in 0..4 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let at = (state as usize) % m.len();
                    m[at] = (state >> 32) as u8;
                }
                let mut d = Decoded::default();
                decode_frame(lt, &m, &mut d);
                assert!(d.layers.len() <= MAX_LAYERS);
            }
        }
    }
}
