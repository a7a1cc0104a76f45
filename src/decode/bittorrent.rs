//! BitTorrent markers: peer-wire handshake (BEP 3), Mainline DHT KRPC (BEP 5) and the uTP
//! header (BEP 29). Pure, allocation-free, linear in the payload length.

/// Handshake prefix: pstrlen 19 then the protocol string.
const PEER_WIRE_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// DHT messages fit in one UDP datagram (typically < 1.5 KB). Larger payloads are not
/// KRPC; the cap keeps the bencode walk cheap.
pub const MAX_DHT_LEN: usize = 8 * 1024;
/// KRPC nests at most three levels (top dict, "a"/"r" dict, lists of values); 8 leaves
/// room for extensions while bounding the walk.
const MAX_BENCODE_DEPTH: usize = 8;
/// Length prefixes longer than this many digits cannot fit in a datagram anyway.
const MAX_LEN_DIGITS: usize = 5;

const UTP_HEADER_LEN: usize = 20;
const UTP_VERSION: u8 = 1;
const ST_DATA: u8 = 0;
const ST_FIN: u8 = 1;
const ST_STATE: u8 = 2;
const ST_RESET: u8 = 3;
const ST_SYN: u8 = 4;
/// Extensions seen in practice: 1 selective ACK (BEP 29), 2 extension bits (BEP 29),
/// 3 close reason (libtorrent). Real packets carry one or two; more is not uTP.
const MAX_UTP_EXTENSIONS: usize = 4;

/// True when a TCP payload starts with the peer-wire handshake.
pub fn is_peer_wire_handshake(payload: &[u8]) -> bool {
    payload.starts_with(PEER_WIRE_PREFIX)
}

/// True when a UDP payload is a Mainline DHT KRPC message: one bencoded dictionary filling
/// the payload, with a string transaction id "t" and a type "y" of "q" (query, needs a
/// string "q" and a dict "a"), "r" (response, needs a dict "r") or "e" (error, needs a
/// list "e"). Messages without "t" are rejected even though tshark still labels them.
pub fn is_dht_message(payload: &[u8]) -> bool {
    if payload.len() > MAX_DHT_LEN || payload.first() != Some(&b'd') {
        return false;
    }
    check_krpc(payload).unwrap_or(false)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    List,
    Dict,
}

fn check_krpc(p: &[u8]) -> Option<bool> {
    let mut pos = 1; // past the top-level 'd'
    let mut y: Option<u8> = None;
    let (mut has_t, mut q_str, mut a_dict, mut r_dict, mut e_list) =
        (false, false, false, false, false);
    loop {
        if *p.get(pos)? == b'e' {
            pos += 1;
            break;
        }
        let (key, after_key) = string_at(p, pos)?;
        let (kind, end) = skip_value(p, after_key)?;
        let value = p.get(after_key..end)?;
        match key {
            b"t" => has_t = kind == Kind::Str,
            b"y" if kind == Kind::Str => {
                y = value.strip_prefix(b"1:").and_then(|v| v.first().copied())
            }
            b"q" => q_str = kind == Kind::Str,
            b"a" => a_dict = kind == Kind::Dict,
            b"r" => r_dict = kind == Kind::Dict,
            b"e" => e_list = kind == Kind::List,
            _ => {}
        }
        pos = end;
    }
    Some(
        pos == p.len()
            && has_t
            && match y {
                Some(b'q') => q_str && a_dict,
                Some(b'r') => r_dict,
                Some(b'e') => e_list,
                _ => false,
            },
    )
}

/// Parses `<len>:<bytes>` at `pos`; returns the bytes and the offset after them.
fn string_at(p: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = p.get(pos..)?;
    let colon = rest
        .iter()
        .take(MAX_LEN_DIGITS + 1)
        .position(|&b| b == b':')?;
    let digits = rest.get(..colon)?;
    if digits.is_empty() || (digits.len() > 1 && digits.first() == Some(&b'0')) {
        return None;
    }
    let mut len = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        len = len * 10 + usize::from(d - b'0');
    }
    let start = pos + colon + 1;
    let bytes = p.get(start..start + len)?;
    Some((bytes, start + len))
}

/// `i<digits>e`, optional minus, no leading zeros; returns the offset after the 'e'.
fn int_at(p: &[u8], pos: usize) -> Option<usize> {
    let rest = p.get(pos + 1..)?; // past 'i'
    let end = rest.iter().position(|&b| b == b'e')?;
    let body = rest.get(..end)?;
    let digits = body.strip_prefix(b"-").unwrap_or(body);
    let ok = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits.first() != Some(&b'0'))
        && body != b"-0";
    ok.then_some(pos + 1 + end + 1)
}

/// Skips one bencoded value at `pos` without recursion; returns its kind and end offset.
fn skip_value(p: &[u8], pos: usize) -> Option<(Kind, usize)> {
    let kind = match *p.get(pos)? {
        b'd' => Kind::Dict,
        b'l' => Kind::List,
        b'i' => return Some((Kind::Int, int_at(p, pos)?)),
        b'0'..=b'9' => return Some((Kind::Str, string_at(p, pos)?.1)),
        _ => return None,
    };
    // Container: walk items with an explicit stack of "is this level a dict" flags, so a
    // dict key can be required to be a string.
    let mut stack = [false; MAX_BENCODE_DEPTH];
    let mut depth = 1;
    *stack.first_mut()? = kind == Kind::Dict;
    let mut expect_key = kind == Kind::Dict;
    let mut i = pos + 1;
    loop {
        let b = *p.get(i)?;
        let in_dict = *stack.get(depth - 1)?;
        if b == b'e' {
            if in_dict && !expect_key {
                return None; // a key without a value
            }
            depth -= 1;
            i += 1;
            if depth == 0 {
                return Some((kind, i));
            }
            expect_key = *stack.get(depth - 1)?; // the container we closed was a value
            continue;
        }
        if in_dict && expect_key {
            i = string_at(p, i)?.1;
            expect_key = false;
            continue;
        }
        match b {
            b'd' | b'l' => {
                *stack.get_mut(depth)? = b == b'd'; // None past MAX_BENCODE_DEPTH
                depth += 1;
                expect_key = b == b'd';
                i += 1;
                continue;
            }
            b'i' => i = int_at(p, i)?,
            b'0'..=b'9' => i = string_at(p, i)?.1,
            _ => return None,
        }
        expect_key = in_dict;
    }
}

/// True when a UDP payload carries a uTP (BEP 29) header: version 1, a known type, a
/// well-formed extension chain of known extensions, and a payload only where the type
/// allows one (DATA must carry data; STATE, SYN and RESET carry none). Conservative: an
/// odd but legal packet may be missed, random data should not pass.
pub fn is_utp_packet(payload: &[u8]) -> bool {
    let (Some(&type_ver), Some(&first_ext)) = (payload.first(), payload.get(1)) else {
        return false;
    };
    if payload.len() < UTP_HEADER_LEN || type_ver & 0x0f != UTP_VERSION {
        return false;
    }
    let kind = type_ver >> 4;
    if kind > ST_SYN {
        return false;
    }
    // Extension chain: each link is (next extension type, length, data).
    let mut ext = first_ext;
    let mut pos = UTP_HEADER_LEN;
    let mut count = 0;
    while ext != 0 {
        count += 1;
        let (Some(&next), Some(&len)) = (payload.get(pos), payload.get(pos + 1)) else {
            return false;
        };
        let len = usize::from(len);
        let len_ok = match ext {
            1 => len >= 4 && len % 4 == 0, // selective ACK bitmask, multiple of 32 bits
            2 => len == 8,                 // extension bits
            3 => len == 4,                 // close reason
            _ => false,
        };
        if !len_ok || count > MAX_UTP_EXTENSIONS || payload.len() < pos + 2 + len {
            return false;
        }
        ext = next;
        pos += 2 + len;
    }
    let data_len = payload.len() - pos;
    match kind {
        ST_DATA => data_len > 0,
        ST_FIN => true,
        ST_STATE | ST_RESET | ST_SYN => data_len == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    //! Payloads from ndpi__bittorrent.pcap, ndpi__bittorrent_utp.pcap and
    //! suricata__bittorrent-dht.pcap (/work/shared/captures/public), extracted with
    //! tests/data/app/extract.py.
    use super::*;

    use crate::decode::hex;

    /// ndpi bittorrent.pcap, first connection, client side (68 bytes): 13 "BitTorrent
    /// protocol", 8 reserved bytes (00 00 00 00 00 10 00 05: extension protocol, DHT, fast),
    /// info_hash dcfcdccf..., peer_id "-UM1860-...".
    const PEER_WIRE: &str = "13426974546f7272656e742070726f746f636f6c0000000000100005\
        dcfcdccfb9e670ccc3dd40c78c161f2bea243126 2d554d313836302d418e181ac9ba17987152663e";

    /// suricata bittorrent-dht input.pcap: all 16 UDP payloads, in order.
    const SURICATA_DHT: [&[u8]; 16] = [
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
        b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
        b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:v4:UT011:y1:qe",
        b"d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:v4:UT011:y1:re",
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:v4:UT021:y1:qe",
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:v4:UT121:y1:re",
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
        b"d1:rd2:id20:abcdefghij01234567895:nodes9:def456...5:token8:aoeusnthe1:t2:aa1:y1:re",
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
        b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
        b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
        // The capture's deliberately malformed ping: no transaction id.
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:y1:qe",
        b"d1:eli203e16:Malformed Packete1:t2:aa1:y1:ee",
    ];

    /// ndpi bittorrent_utp.pcap packet 0: binary get_peers query from libtorrent
    /// ("1:v4:LT\x01\x01"), 104 bytes.
    const UTP_CAP_DHT: &str = "64313a6164323a696432303af7f6007cea13506e514de7ecbc94f2ae517115f8\
        393a696e666f5f6861736832303af7f601d8a6276f762c2c3df274af2827f8d1f1de65313a71393a67\
        65745f7065657273313a74323a0e61313a76343a4c540101313a79313a7165";

    /// Every UDP payload of ndpi bittorrent_utp.pcap, in order, as (u16 original length,
    /// u8 stored length, first <=128 bytes).
    const UTP_CAPTURE: &[u8] = include_bytes!("../../tests/data/app/bittorrent_utp_udp128.bin");

    fn utp_capture_payloads() -> Vec<(usize, &'static [u8])> {
        let mut out = Vec::new();
        let mut rest = UTP_CAPTURE;
        while let [h, l, n, tail @ ..] = rest {
            let n = usize::from(*n);
            out.push((usize::from(*h) << 8 | usize::from(*l), &tail[..n]));
            rest = &tail[n..];
        }
        out
    }

    #[test]
    fn peer_wire_handshake() {
        let hs = hex(PEER_WIRE);
        assert_eq!(hs.len(), 68);
        assert!(is_peer_wire_handshake(&hs));
        assert!(is_peer_wire_handshake(&hs[..20]));
        assert!(!is_peer_wire_handshake(&hs[..19]));
        // Server side of the same connection, later in the stream: a bencoded extension
        // message body ("4:ipv44:R:\xd8s12:complete_"), not a handshake.
        assert!(!is_peer_wire_handshake(&hex(
            "343a69707634343a523ad87331323a636f6d706c6574655f"
        )));
        let mut wrong_len = hs.clone();
        wrong_len[0] = 0x14;
        assert!(!is_peer_wire_handshake(&wrong_len));
    }

    #[test]
    fn dht_messages_from_suricata_capture() {
        for (i, p) in SURICATA_DHT.iter().enumerate() {
            assert_eq!(is_dht_message(p), i != 14, "packet {i}");
        }
        assert!(is_dht_message(&hex(UTP_CAP_DHT)));
    }

    #[test]
    fn dht_rejects_near_misses() {
        for bad in [
            &b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe\0"[..], // trailing byte
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q",         // truncated
            b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:xe",        // unknown type
            b"d1:ad2:id20:abcdefghij0123456789e1:t2:aa1:y1:qe",                 // query without "q"
            b"d1:q4:ping1:t2:aa1:y1:qe",                                        // query without "a"
            b"d1:t2:aa1:y1:re",         // response without "r"
            b"d1:ei201e1:t2:aa1:y1:ee", // error that is not a list
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:ti1e1:y1:re", // integer transaction id
            b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y2:rre", // two-byte type
            b"d1:rd2:id20:mnopqrstuvwxyz123456ee1:t2:aa1:y1:re", // "r" dict key without value
            b"d1:rd2:id03:abce1:t2:aa1:y1:re", // leading zero in a length
            b"d1:rd1:xi01ee1:t2:aa1:y1:re", // leading zero in an integer
            b"l1:t2:aa1:y1:re",         // not a dict
            b"",
        ] {
            assert!(!is_dht_message(bad), "{}", String::from_utf8_lossy(bad));
        }
        // Nesting deeper than MAX_BENCODE_DEPTH inside "r" is refused; shallower is fine.
        let nested = |n: usize| {
            let mut m = b"d1:rd1:x".to_vec();
            m.extend(std::iter::repeat_n(b'l', n));
            m.extend(std::iter::repeat_n(b'e', n));
            m.extend_from_slice(b"e1:t2:aa1:y1:re");
            m
        };
        assert!(is_dht_message(&nested(MAX_BENCODE_DEPTH - 2)));
        assert!(!is_dht_message(&nested(MAX_BENCODE_DEPTH)));
        // Oversized payloads are not looked at.
        let mut big = b"d1:rd1:x".to_vec();
        let filler = MAX_DHT_LEN;
        big.extend_from_slice(format!("{filler}:").as_bytes());
        big.extend(std::iter::repeat_n(b'a', filler));
        big.extend_from_slice(b"e1:t2:aa1:y1:re");
        assert!(!is_dht_message(&big));
    }

    #[test]
    fn utp_packets_from_capture() {
        let pkts = utp_capture_payloads();
        assert_eq!(pkts.len(), 92);
        // SYN (41 00, exactly 20 bytes).
        assert!(is_utp_packet(&hex(
            "4100530210eeb2f00000000000000000e7f50000"
        )));
        // STATE with extension bits (ext 2, len 8).
        assert!(is_utp_packet(&hex(
            "2102530206ff3f5f7fffffff0000f00049c7e7f5 0008 0000000000000000"
        )));
        // STATE with a selective ACK (ext 1, len 4).
        assert!(is_utp_packet(&hex(
            "21015302070760ecf61114480000f00049c9e7f7 0004 01000000"
        )));
        // FIN with libtorrent's close reason (ext 3, len 4).
        assert!(is_utp_packet(&hex(
            "11035303112bbcd409f1155300100000e81b49cb 0004 00000002"
        )));
        // DATA whose payload is the peer-wire handshake (packet 4, first 88 of 210 bytes).
        let data = hex("0100530310f0687609f1291700100000e7f649c6\
             13426974546f7272656e742070726f746f636f6c00000000001800050ca4c8e7fb26a354b1\
             a7aa15baeaf26067c668112d4c54313130302d31466135333152744c757677");
        assert!(is_utp_packet(&data));
        assert!(is_peer_wire_handshake(&data[UTP_HEADER_LEN..]));
        // Packet 79: FIN whose extension chain claims 0xcb bytes of a 3-byte tail.
        let broken = hex("110353030000000000000000000000000000039a3ecb00");
        assert_eq!(pkts[79].1, &broken[..]);
        assert!(!is_utp_packet(&broken));

        // Whole capture: 89 frames are uTP (all but the broken FIN), 3 are DHT, none both.
        let mut utp = 0;
        let mut dht = 0;
        for (i, (orig_len, p)) in pkts.iter().enumerate() {
            // Stored payloads are cut at 128 bytes; a cut DATA packet still carries data.
            let (u, d) = (is_utp_packet(p), *orig_len == p.len() && is_dht_message(p));
            assert!(!(u && d), "packet {i}");
            utp += usize::from(u);
            dht += usize::from(d);
            assert_eq!(
                u || d,
                i != 79,
                "packet {i}: {:02x?}",
                &p[..p.len().min(24)]
            );
        }
        assert_eq!((utp, dht), (88, 3));
    }

    #[test]
    fn utp_rejects_near_misses() {
        let syn = hex("4100530210eeb2f00000000000000000e7f50000");
        let mut m = syn.clone();
        m[0] = 0x42; // version 2
        assert!(!is_utp_packet(&m));
        m[0] = 0x51; // type 5
        assert!(!is_utp_packet(&m));
        let mut m = syn.clone();
        m.push(0); // SYN with a payload
        assert!(!is_utp_packet(&m));
        assert!(!is_utp_packet(&syn[..19]));
        let mut m = syn.clone();
        m[0] = 0x01; // DATA without data
        assert!(!is_utp_packet(&m));
        // Unknown extension 7, and a selective ACK of 3 bytes.
        let mut m = syn.clone();
        m[1] = 7;
        m.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
        assert!(!is_utp_packet(&m));
        let mut m = syn.clone();
        m[1] = 1;
        m.extend_from_slice(&[0, 3, 0, 0, 0]);
        assert!(!is_utp_packet(&m));
        // An extension chain longer than MAX_UTP_EXTENSIONS.
        let mut m = syn.clone();
        m[1] = 3;
        for _ in 0..MAX_UTP_EXTENSIONS {
            m.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
        }
        m.extend_from_slice(&[0, 4, 0, 0, 0, 0]);
        assert!(!is_utp_packet(&m));
    }

    #[test]
    fn other_protocols_are_not_bittorrent() {
        // tcpdump dns_udp_2.pcap: query for www.tcpdump.org with EDNS.
        let dns = hex(
            "593401200001000000000001037777770774637064756d70036f72670000010001\
                       000029100000000000000c000a000842f5d00996f90b13",
        );
        // nDPI quic-v2.pcapng: first bytes of a QUIC v2 Initial.
        let quic = hex("d66b3343cf080726272642fc2eb20811fffdea452422b832a196c2fa15ec4a99");
        // A TLS ClientHello record start (nDPI tls_2_reasms).
        let tls = hex("160301018f0100018b030300957252c8b6d358dac5d363528f6f211da9a4cb42");
        for p in [&dns[..], &quic, &tls, b"GET /announce HTTP/1.1\r\n"] {
            assert!(!is_peer_wire_handshake(p));
            assert!(!is_dht_message(p));
            assert!(!is_utp_packet(p));
        }
    }

    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn no_panic_and_rare_false_positives() {
        let mut seed = 0xda94_2042_e4dd_58b5u64;
        let mut bases: Vec<Vec<u8>> = SURICATA_DHT.iter().map(|p| p.to_vec()).collect();
        bases.push(hex(UTP_CAP_DHT));
        bases.extend(
            utp_capture_payloads()
                .iter()
                .take(20)
                .map(|(_, p)| p.to_vec()),
        );
        for base in &bases {
            for n in 0..=base.len() {
                let _ = (is_dht_message(&base[..n]), is_utp_packet(&base[..n]));
            }
            for _ in 0..200 {
                let mut m = base.clone();
                for _ in 0..1 + rng(&mut seed) % 3 {
                    let i = (rng(&mut seed) as usize) % m.len();
                    const PICK: &[u8] = b"deil0123456789:";
                    m[i] = PICK[(rng(&mut seed) as usize) % PICK.len()];
                }
                let _ = (
                    is_dht_message(&m),
                    is_utp_packet(&m),
                    is_peer_wire_handshake(&m),
                );
            }
        }
        // Random datagrams: never DHT; uTP only by rare chance (a DATA/FIN type-version
        // byte and a zero extension byte: 2 in 65536).
        let mut utp_hits = 0;
        for _ in 0..40_000 {
            let len = (rng(&mut seed) % 120) as usize;
            let mut m: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            assert!(!is_peer_wire_handshake(&m));
            utp_hits += usize::from(is_utp_packet(&m));
            if let Some(first) = m.first_mut() {
                *first = b'd';
            }
            assert!(!is_dht_message(&m));
        }
        assert!(utp_hits <= 5, "{utp_hits} random datagrams taken for uTP");
    }
}
