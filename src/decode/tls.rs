//! TLS ClientHello reader for the client-to-server byte stream.
//!
//! Pure and bounded: no I/O, no panics, at most one allocation for the handshake body (only
//! when the ClientHello spans several records) plus the small result vectors.

/// Record header: content type (1), legacy record version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// Handshake header: msg_type (1), length (3).
const HANDSHAKE_HEADER_LEN: usize = 4;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// RFC 8446 5.1: TLSPlaintext.length MUST NOT exceed 2^14.
const MAX_RECORD_LEN: usize = 1 << 14;
/// Largest ClientHello body we accept. Chrome's post-quantum hellos are ~1.8 KB and hellos
/// with big PSK/ECH/padding payloads reach a few KB; 64 KiB leaves ample room while bounding
/// what a hostile stream can make us buffer.
pub const MAX_CLIENT_HELLO_LEN: usize = 64 * 1024;
/// legacy_version (2) + random (32) + session_id length (1) + cipher_suites length (2) +
/// compression_methods length (1): anything shorter cannot be a ClientHello.
const MIN_CLIENT_HELLO_LEN: usize = 38;
/// Real clients offer at most a handful of ALPN ids; the cap bounds allocations on
/// hostile input (the extension could otherwise list ~20k one-byte ids).
pub const MAX_ALPN_PROTOCOLS: usize = 16;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
const SNI_HOST_NAME: u8 = 0;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHelloInfo {
    /// ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 clients).
    pub legacy_version: u16,
    /// First host_name entry of the server_name extension, when it is non-empty UTF-8
    /// without control characters (otherwise None, so a bogus name is never reported).
    pub sni: Option<String>,
    /// ALPN protocol ids in wire order (non-UTF-8 bytes replaced), at most
    /// [`MAX_ALPN_PROTOCOLS`].
    pub alpn: Vec<String>,
    /// supported_versions list exactly as on the wire, GREASE values (0x?a?a) included.
    pub supported_versions: Vec<u16>,
    /// The encrypted_client_hello extension (0xfe0d) is present. Chrome sends a GREASE ECH
    /// extension too, so this means "ECH offered or greased", not "ECH in use".
    pub ech: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsParse {
    ClientHello(ClientHelloInfo),
    /// Looks like TLS so far; at least this many bytes of stream are needed in total.
    Incomplete {
        needed: usize,
    },
    NotClientHello,
}

/// `stream` is the client-to-server byte stream from its first byte (records may be split
/// anywhere and a handshake message may span several records). Bytes after the ClientHello
/// are ignored. SSLv2-format hellos (no record layer, no extensions) are `NotClientHello`.
pub fn parse_client_hello(stream: &[u8]) -> TlsParse {
    match collect_handshake(stream) {
        Collected::Single(msg) => parse_body(msg),
        Collected::Joined(msg) => parse_body(&msg),
        Collected::Incomplete(needed) => TlsParse::Incomplete { needed },
        Collected::Not => TlsParse::NotClientHello,
    }
}

enum Collected<'a> {
    /// The whole ClientHello body lies in the first record.
    Single(&'a [u8]),
    /// The body was gathered from several records.
    Joined(Vec<u8>),
    Incomplete(usize),
    Not,
}

/// Walks records and gathers the ClientHello body (handshake header stripped).
fn collect_handshake(stream: &[u8]) -> Collected<'_> {
    let mut pos = 0usize;
    let mut header = [0u8; HANDSHAKE_HEADER_LEN];
    let mut header_have = 0usize;
    let mut body_len: Option<usize> = None;
    let mut joined: Vec<u8> = Vec::new();
    // Handshake bytes still missing (only the header's, until its length is known); used
    // for the `needed` lower bound.
    let missing = |body_len: Option<usize>, joined_len: usize, header_have: usize| match body_len {
        Some(len) => len - joined_len,
        None => HANDSHAKE_HEADER_LEN - header_have,
    };
    loop {
        let Some(rec) = stream.get(pos..pos + RECORD_HEADER_LEN) else {
            let partial = stream.get(pos..).unwrap_or(&[]);
            if !record_header_prefix_ok(partial) {
                return Collected::Not;
            }
            let missing = missing(body_len, joined.len(), header_have);
            return Collected::Incomplete(pos + RECORD_HEADER_LEN + missing);
        };
        if !record_header_prefix_ok(rec) {
            return Collected::Not;
        }
        let &[_, _, _, len_hi, len_lo] = rec else {
            return Collected::Not; // unreachable: `rec` has RECORD_HEADER_LEN bytes
        };
        let rec_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        let data_start = pos + RECORD_HEADER_LEN;
        let data_end = data_start + rec_len;
        let avail = stream
            .get(data_start..data_end.min(stream.len()))
            .unwrap_or(&[]);
        let mut frag = avail;

        if body_len.is_none() {
            let take = (HANDSHAKE_HEADER_LEN - header_have).min(frag.len());
            for (slot, b) in header
                .iter_mut()
                .skip(header_have)
                .zip(frag.iter().take(take))
            {
                *slot = *b;
            }
            header_have += take;
            frag = frag.get(take..).unwrap_or(&[]);
            if header_have >= 1 && header[0] != HANDSHAKE_CLIENT_HELLO {
                return Collected::Not;
            }
            // Reject an oversized length as soon as its top byte is known.
            if header_have >= 2 && usize::from(header[1]) << 16 > MAX_CLIENT_HELLO_LEN {
                return Collected::Not;
            }
            if header_have == HANDSHAKE_HEADER_LEN {
                let len = usize::from(header[1]) << 16
                    | usize::from(header[2]) << 8
                    | usize::from(header[3]);
                if !(MIN_CLIENT_HELLO_LEN..=MAX_CLIENT_HELLO_LEN).contains(&len) {
                    return Collected::Not;
                }
                body_len = Some(len);
                // Common case: the whole body is in this first record, no copy needed.
                if pos == 0 {
                    if let Some(body) = frag.get(..len) {
                        return Collected::Single(body);
                    }
                    if rec_len >= HANDSHAKE_HEADER_LEN + len {
                        return Collected::Incomplete(data_start + HANDSHAKE_HEADER_LEN + len);
                    }
                }
                // One allocation, bounded by MAX_CLIENT_HELLO_LEN.
                joined.reserve_exact(len);
            }
        }

        if let Some(len) = body_len {
            let want = len - joined.len();
            joined.extend_from_slice(frag.get(..want.min(frag.len())).unwrap_or(&[]));
            if joined.len() == len {
                return Collected::Joined(joined);
            }
        }

        if avail.len() < rec_len {
            // This record is still arriving. If the missing handshake bytes fit in its
            // remainder the target lies inside it, else at least one more record header
            // is needed too.
            let missing = missing(body_len, joined.len(), header_have);
            let room = rec_len - avail.len();
            let needed = if missing <= room {
                stream.len() + missing
            } else {
                data_end + RECORD_HEADER_LEN + (missing - room)
            };
            return Collected::Incomplete(needed);
        }
        pos = data_end;
    }
}

/// Checks the bytes of a (possibly partial) record header: handshake content type,
/// record version 0x0300..=0x0304, length 1..=2^14. Zero-length handshake fragments are
/// forbidden (RFC 5246 6.2.1, RFC 8446 5.1), and rejecting them bounds the record walk.
fn record_header_prefix_ok(h: &[u8]) -> bool {
    if h.first().is_some_and(|&b| b != CONTENT_TYPE_HANDSHAKE) {
        return false;
    }
    if h.get(1).is_some_and(|&b| b != 3) {
        return false;
    }
    if h.get(2).is_some_and(|&b| b > 4) {
        return false;
    }
    if let (Some(&hi), Some(&lo)) = (h.get(3), h.get(4)) {
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        return (1..=MAX_RECORD_LEN).contains(&len);
    }
    true
}

/// Bounds-checked big-endian reader; every accessor returns None past the end.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).and_then(|b| b.first().copied())
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    /// A vector with a u8 length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.bytes(usize::from(n))
    }

    /// A vector with a u16 length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.bytes(usize::from(n))
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }
}

fn parse_body(body: &[u8]) -> TlsParse {
    match parse_body_inner(body) {
        Some(info) => TlsParse::ClientHello(info),
        None => TlsParse::NotClientHello,
    }
}

fn parse_body_inner(body: &[u8]) -> Option<ClientHelloInfo> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16()?;
    if legacy_version >> 8 != 3 {
        return None;
    }
    r.bytes(32)?; // random
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return None;
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return None;
    }
    if r.vec8()?.is_empty() {
        return None; // compression_methods must list at least "null"
    }
    let mut info = ClientHelloInfo {
        legacy_version,
        ..ClientHelloInfo::default()
    };
    if r.is_empty() {
        return Some(info); // pre-TLS-1.2 hellos may omit extensions entirely
    }
    let mut exts = Reader::new(r.vec16()?);
    let mut seen_sni = false;
    let mut seen_alpn = false;
    let mut seen_versions = false;
    while !exts.is_empty() {
        let ext_type = exts.u16()?;
        let data = exts.vec16()?;
        // Duplicates are illegal (RFC 8446 4.2); keep the first occurrence of each.
        match ext_type {
            EXT_SERVER_NAME if !seen_sni => {
                seen_sni = true;
                info.sni = parse_sni(data)?;
            }
            EXT_ALPN if !seen_alpn => {
                seen_alpn = true;
                info.alpn = parse_alpn(data)?;
            }
            EXT_SUPPORTED_VERSIONS if !seen_versions => {
                seen_versions = true;
                info.supported_versions = parse_supported_versions(data)?;
            }
            EXT_ENCRYPTED_CLIENT_HELLO => info.ech = true,
            _ => {}
        }
    }
    Some(info)
}

/// RFC 6066 3: ServerNameList of (name_type, HostName<1..2^16-1>). Outer None means the
/// extension is malformed; inner None means no usable host_name.
fn parse_sni(data: &[u8]) -> Option<Option<String>> {
    let mut r = Reader::new(data);
    let mut list = Reader::new(r.vec16()?);
    let mut found = None;
    while !list.is_empty() {
        let name_type = list.u8()?;
        let name = list.vec16()?;
        if name_type == SNI_HOST_NAME && found.is_none() {
            found = Some(name);
        }
    }
    Some(found.and_then(clean_host_name))
}

fn clean_host_name(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    if s.is_empty() || s.chars().any(char::is_control) {
        return None;
    }
    Some(s.to_owned())
}

/// RFC 7301 3.1: ProtocolNameList of ProtocolName<1..2^8-1>.
fn parse_alpn(data: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader::new(data);
    let mut list = Reader::new(r.vec16()?);
    let mut out = Vec::new();
    while !list.is_empty() {
        let id = list.vec8()?;
        if id.is_empty() {
            return None;
        }
        if out.len() < MAX_ALPN_PROTOCOLS {
            out.push(String::from_utf8_lossy(id).into_owned());
        }
    }
    Some(out)
}

/// RFC 8446 4.2.1: ClientHello form is ProtocolVersion versions<2..254>.
fn parse_supported_versions(data: &[u8]) -> Option<Vec<u16>> {
    let mut r = Reader::new(data);
    let list = r.vec8()?;
    if list.is_empty() || list.len() % 2 != 0 {
        return None;
    }
    Some(
        list.chunks_exact(2)
            .filter_map(|c| Some(u16::from_be_bytes([*c.first()?, *c.get(1)?])))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    //! Vectors are ClientHello records cut from the public captures in
    //! /work/shared/captures/public with tests/data/app/extract.py; expectations come from
    //! the tshark oracles (X.oracle.json, tls_sni.entries) and from the tls-parser crate.
    use super::*;

    /// zeek chrome-1250-tls-x25519-kyber.pcap: the whole client stream (1830 bytes): a
    /// 1756-byte ClientHello record (16 03 01 06 d7 01 00 06 d3 03 03 ...) then CCS and data.
    const CHROME_KYBER: &[u8] = include_bytes!("../../tests/data/app/tls_chrome_kyber_client.bin");
    /// suricata tls-client-hello-frag-mtu300: one 517-byte record (16 03 01 02 00 01 00 01
    /// fc 03 03 ...) that arrived as TCP segments of 248, 248 and 21 bytes.
    const MTU300: &[u8] = include_bytes!("../../tests/data/app/tls_frag_mtu300_hello.bin");
    /// nDPI tls_2_reasms.pcapng: TLS 1.3 hello with PSK, SNI i.instagram.com (404 bytes).
    const REASMS: &[u8] = include_bytes!("../../tests/data/app/tls_2_reasms_hello.bin");
    /// zeek tls13-ech.pcap, connections from ports 51066 and 51071 (517 bytes each).
    const ECH_1: &[u8] = include_bytes!("../../tests/data/app/tls_ech_hello_1.bin");
    const ECH_2: &[u8] = include_bytes!("../../tests/data/app/tls_ech_hello_2.bin");
    /// nDPI tls_esni_sni_both.pcap: hellos with both ESNI (0xffce) and a plaintext SNI.
    const ESNI_0: &[u8] = include_bytes!("../../tests/data/app/tls_esni_sni_both_hello_0.bin");
    const ESNI_1: &[u8] = include_bytes!("../../tests/data/app/tls_esni_sni_both_hello_1.bin");
    /// nDPI http_ipv6.pcap (TLS over IPv6): hellos to www.ntop.org and s-static.ak.facebook.com.
    const NTOP_V6: &[u8] = include_bytes!("../../tests/data/app/tls_ntop_ipv6_hello.bin");
    const FB_V6: &[u8] = include_bytes!("../../tests/data/app/tls_fb_ipv6_hello.bin");

    const ALL_REAL: [&[u8]; 9] = [
        CHROME_KYBER,
        MTU300,
        REASMS,
        ECH_1,
        ECH_2,
        ESNI_0,
        ESNI_1,
        NTOP_V6,
        FB_V6,
    ];

    use crate::decode::hex;

    fn hello(stream: &[u8]) -> ClientHelloInfo {
        match parse_client_hello(stream) {
            TlsParse::ClientHello(info) => info,
            other => panic!("expected ClientHello, got {other:?}"),
        }
    }

    /// Length of the first record, which holds the whole hello in every real capture here.
    fn first_record_len(s: &[u8]) -> usize {
        5 + usize::from(u16::from_be_bytes([s[3], s[4]]))
    }

    /// Re-frames the handshake message of a one-record hello into records of `chunk` bytes.
    fn refragment(s: &[u8], chunk: usize) -> Vec<u8> {
        let msg = &s[5..first_record_len(s)];
        let mut out = Vec::new();
        for part in msg.chunks(chunk) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn chrome_post_quantum_hello_matches_oracle() {
        let info = hello(CHROME_KYBER);
        assert_eq!(first_record_len(CHROME_KYBER), 1756);
        assert_eq!(info.legacy_version, 0x0303);
        assert_eq!(info.sni.as_deref(), Some("lh3.google.com"));
        assert_eq!(info.supported_versions, vec![0x8a8a, 0x0304, 0x0303]);
        assert_eq!(info.alpn, vec!["h2", "http/1.1"]);
        assert!(info.ech, "Chrome sends a GREASE ECH extension");
    }

    /// (hello bytes, SNI, supported_versions, ALPN, ECH extension present)
    type Expect = (
        &'static [u8],
        &'static str,
        &'static [u16],
        &'static [&'static str],
        bool,
    );

    #[test]
    fn other_real_hellos_match_oracle() {
        let cases: [Expect; 8] = [
            (MTU300, "www.google.com", &[], &["h2", "http/1.1"], false),
            (
                REASMS,
                "i.instagram.com",
                &[0x0304, 0xfb1a],
                &["h2", "h2-fb", "http/1.1"],
                false,
            ),
            (
                ECH_1,
                "cloudflare-ech.com",
                &[0x8a8a, 0x0304, 0x0303],
                &["h2", "http/1.1"],
                true,
            ),
            (
                ECH_2,
                "cloudflare-ech.com",
                &[0x3a3a, 0x0304, 0x0303],
                &["h2", "http/1.1"],
                true,
            ),
            (
                ESNI_0,
                "these-are-not-the-droids-youre-looking-for.com",
                &[0x0304],
                &[],
                false,
            ),
            (
                ESNI_1,
                "you-think-thats-normal-tls-traffic-youre-seeing.com",
                &[0x0304],
                &[],
                false,
            ),
            (
                NTOP_V6,
                "www.ntop.org",
                &[],
                &["http/1.1", "spdy/3.1", "h2-14", "h2"],
                false,
            ),
            (
                FB_V6,
                "s-static.ak.facebook.com",
                &[],
                &["http/1.1", "spdy/3.1", "h2-14", "h2"],
                false,
            ),
        ];
        for (bytes, sni, versions, alpn, ech) in cases {
            let info = hello(bytes);
            assert_eq!(info.legacy_version, 0x0303, "{sni}");
            assert_eq!(info.sni.as_deref(), Some(sni));
            assert_eq!(info.supported_versions, versions, "{sni}");
            assert_eq!(info.alpn, alpn, "{sni}");
            assert_eq!(info.ech, ech, "{sni}");
        }
    }

    /// Independent decode with the tls-parser crate, from the joined handshake message.
    fn tls_parser_view(msg: &[u8]) -> ClientHelloInfo {
        use tls_parser::{
            SNIType, TlsExtension, TlsMessage, TlsMessageHandshake,
            parse_tls_client_hello_extensions, parse_tls_message_handshake,
        };
        let (_, parsed) = parse_tls_message_handshake(msg).expect("tls-parser handshake");
        let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) = parsed else {
            panic!("tls-parser: not a ClientHello");
        };
        let mut info = ClientHelloInfo {
            legacy_version: ch.version.0,
            ..ClientHelloInfo::default()
        };
        let (_, exts) = parse_tls_client_hello_extensions(ch.ext.unwrap_or(&[])).unwrap();
        for ext in exts {
            match ext {
                TlsExtension::SNI(names) => {
                    info.sni = names
                        .iter()
                        .find(|(t, _)| *t == SNIType::HostName)
                        .map(|(_, n)| String::from_utf8(n.to_vec()).unwrap());
                }
                TlsExtension::ALPN(ids) => {
                    info.alpn = ids
                        .iter()
                        .map(|i| String::from_utf8_lossy(i).into_owned())
                        .collect();
                }
                TlsExtension::SupportedVersions(v) => {
                    info.supported_versions = v.iter().map(|v| v.0).collect();
                }
                TlsExtension::Unknown(t, _) if t.0 == EXT_ENCRYPTED_CLIENT_HELLO => info.ech = true,
                _ => {}
            }
        }
        info
    }

    #[test]
    fn agrees_with_tls_parser_on_every_real_hello() {
        for bytes in ALL_REAL {
            let msg = &bytes[5..first_record_len(bytes)];
            assert_eq!(hello(bytes), tls_parser_view(msg));
        }
    }

    #[test]
    fn mtu300_hello_fed_segment_by_segment() {
        // Real TCP segment boundaries of the capture: 248, 248, 21 bytes.
        assert_eq!(MTU300.len(), 517);
        assert_eq!(
            parse_client_hello(&MTU300[..248]),
            TlsParse::Incomplete { needed: 517 }
        );
        assert_eq!(
            parse_client_hello(&MTU300[..496]),
            TlsParse::Incomplete { needed: 517 }
        );
        assert_eq!(hello(&MTU300[..517]).sni.as_deref(), Some("www.google.com"));
    }

    /// Every prefix is either Incomplete with a correct lower bound, or the final answer.
    fn check_every_prefix(stream: &[u8], complete_at: usize) {
        let full = parse_client_hello(stream);
        assert!(matches!(full, TlsParse::ClientHello(_)));
        let mut last_needed = 0;
        for n in 0..=stream.len() {
            let r = parse_client_hello(&stream[..n]);
            if n >= complete_at {
                assert_eq!(r, full, "prefix {n}");
            } else {
                let TlsParse::Incomplete { needed } = r else {
                    panic!("prefix {n}: {r:?}");
                };
                assert!(
                    needed > n && needed <= complete_at,
                    "prefix {n}: needed {needed}"
                );
                assert!(needed >= last_needed, "needed went backwards at {n}");
                last_needed = needed;
            }
        }
    }

    #[test]
    fn every_split_offset_single_record() {
        check_every_prefix(CHROME_KYBER, 1756);
        check_every_prefix(MTU300, 517);
        check_every_prefix(ECH_1, 517);
    }

    #[test]
    fn hello_spanning_several_records() {
        let expect = hello(CHROME_KYBER);
        for chunk in [1, 2, 3, 4, 5, 97, 1000, 1750] {
            let s = refragment(CHROME_KYBER, chunk);
            assert_eq!(hello(&s), expect, "chunk {chunk}");
        }
        let s = refragment(MTU300, 97);
        check_every_prefix(&s, s.len());
        let s = refragment(REASMS, 3);
        check_every_prefix(&s, s.len());
    }

    #[test]
    fn sslv2_hello_is_not_a_client_hello() {
        // zeek ssl-v2.pcap: SSLv2-format CLIENT-HELLO, 2-byte header 80 2e, msg type 01,
        // version 0002, cipher specs 0x15 bytes, session id 0, challenge 0x10 bytes.
        let v2 = hex(
            "802e0100020015000000100700c00500800300800100800600400400800200801c30e2b12f4c04525476f280c07abee5",
        );
        assert_eq!(v2.len(), 48);
        for n in 0..=v2.len() {
            assert_eq!(
                parse_client_hello(&v2[..n]).clone(),
                if n == 0 {
                    TlsParse::Incomplete { needed: 9 }
                } else {
                    TlsParse::NotClientHello
                }
            );
        }
    }

    #[test]
    fn rejects_non_hello_streams() {
        // Server side of the chrome capture: ServerHello (16 03 03 04 ba 02 ...).
        let server_hello = hex("16030304ba020004b603039b");
        assert_eq!(parse_client_hello(&server_hello), TlsParse::NotClientHello);
        // Application data record (tls13-ech.pcap first connection).
        assert_eq!(
            parse_client_hello(&hex("1703030022d5b5a2")),
            TlsParse::NotClientHello
        );
        assert_eq!(
            parse_client_hello(b"GET / HTTP/1.1\r\n"),
            TlsParse::NotClientHello
        );
        assert_eq!(parse_client_hello(&[0x16, 0x02]), TlsParse::NotClientHello);
        assert_eq!(
            parse_client_hello(&[0x16, 0x03, 0x05]),
            TlsParse::NotClientHello
        );
        // Zero-length and over-2^14 records.
        assert_eq!(
            parse_client_hello(&hex("1603010000")),
            TlsParse::NotClientHello
        );
        assert_eq!(
            parse_client_hello(&hex("1603014001")),
            TlsParse::NotClientHello
        );
        // Hello length above MAX_CLIENT_HELLO_LEN, rejected from the header alone.
        assert_eq!(
            parse_client_hello(&hex("160301400001020000")),
            TlsParse::NotClientHello
        );
        // Handshake length shorter than any ClientHello.
        assert_eq!(
            parse_client_hello(&hex("16030100080100000403030000")),
            TlsParse::NotClientHello
        );
        // A non-handshake record in the middle of a fragmented hello.
        let mut s = refragment(MTU300, 100);
        s[105] = 23;
        assert_eq!(parse_client_hello(&s), TlsParse::NotClientHello);
    }

    #[test]
    fn incomplete_prefixes_report_lower_bounds() {
        assert_eq!(parse_client_hello(&[]), TlsParse::Incomplete { needed: 9 });
        assert_eq!(
            parse_client_hello(&[0x16]),
            TlsParse::Incomplete { needed: 9 }
        );
        assert_eq!(
            parse_client_hello(&hex("160301")),
            TlsParse::Incomplete { needed: 9 }
        );
        // Header says 0x200-byte record holding a 0x1fc-byte hello.
        assert_eq!(
            parse_client_hello(&hex("1603010200")),
            TlsParse::Incomplete { needed: 9 }
        );
        assert_eq!(
            parse_client_hello(&hex("160301020001")),
            TlsParse::Incomplete { needed: 9 }
        );
        assert_eq!(
            parse_client_hello(&hex("16030102000100")),
            TlsParse::Incomplete { needed: 9 }
        );
        assert_eq!(
            parse_client_hello(&hex("160301020001000100")),
            TlsParse::Incomplete { needed: 9 + 0x100 }
        );
    }

    /// Patches the SNI host_name bytes of the mtu300 hello (www.google.com, 14 bytes).
    fn with_sni_bytes(name: &[u8; 14]) -> Vec<u8> {
        let mut s = MTU300.to_vec();
        let at = s.windows(14).position(|w| w == b"www.google.com").unwrap();
        s[at..at + 14].copy_from_slice(name);
        s
    }

    #[test]
    fn unusable_sni_is_dropped_not_reported() {
        assert_eq!(hello(&with_sni_bytes(b"www.google\0com")).sni, None);
        assert_eq!(hello(&with_sni_bytes(b"www.g\xffogle.com")).sni, None);
        assert_eq!(
            hello(&with_sni_bytes(b"WWW.EXAMPLE.NL")).sni.as_deref(),
            Some("WWW.EXAMPLE.NL")
        );
    }

    #[test]
    fn malformed_extension_block_is_rejected() {
        // Corrupt the SNI list length so it overruns its extension.
        let mut s = MTU300.to_vec();
        let at = s
            .windows(5)
            .position(|w| w == hex("001100000e").as_slice())
            .unwrap();
        s[at + 1] = 0x40;
        assert_eq!(parse_client_hello(&s), TlsParse::NotClientHello);
    }

    /// xorshift64: deterministic pseudo-random bytes without an extra crate.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn no_panic_on_truncations_and_mutations() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for base in ALL_REAL
            .iter()
            .copied()
            .chain([refragment(ECH_2, 50).as_slice()])
        {
            for n in (0..base.len()).step_by(7) {
                let _ = parse_client_hello(&base[..n]);
            }
            for _ in 0..300 {
                let mut m = base.to_vec();
                for _ in 0..1 + rng(&mut seed) % 4 {
                    let i = (rng(&mut seed) as usize) % m.len();
                    m[i] = rng(&mut seed) as u8;
                }
                let cut = (rng(&mut seed) as usize) % (m.len() + 1);
                for s in [&m[..], &m[..cut]] {
                    if let TlsParse::Incomplete { needed } = parse_client_hello(s) {
                        assert!(needed > s.len());
                    }
                }
            }
        }
        for _ in 0..2000 {
            let len = (rng(&mut seed) % 600) as usize;
            let mut m: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            if let Some(first) = m.first_mut() {
                *first = 22; // make the record walk go deeper than the first byte
            }
            if let TlsParse::Incomplete { needed } = parse_client_hello(&m) {
                assert!(needed > m.len());
            }
        }
    }
}
