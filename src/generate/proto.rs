//! Application payloads in real wire format: DNS messages (with name compression), TLS
//! handshake records and HTTP/1.1 heads.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::GenerateError;
use super::rng::Rng;

pub(crate) const QTYPE_A: u16 = 1;
pub(crate) const QTYPE_CNAME: u16 = 5;
pub(crate) const QTYPE_SOA: u16 = 6;
pub(crate) const QTYPE_AAAA: u16 = 28;
pub(crate) const QTYPE_OPT: u16 = 41;
pub(crate) const QTYPE_HTTPS: u16 = 65;
pub(crate) const RCODE_NXDOMAIN: u8 = 3;

fn too_long(what: &str) -> GenerateError {
    GenerateError::Internal(format!("{what} does not fit its length field"))
}

/// Reserves a big-endian length field of `width` bytes; `close_len` fills it in.
fn open_len(buf: &mut Vec<u8>, width: usize) -> usize {
    let at = buf.len();
    buf.resize(at + width, 0);
    at
}

fn close_len(buf: &mut [u8], at: usize, width: usize, what: &str) -> Result<(), GenerateError> {
    let len = buf.len() - at - width;
    let max = (1usize << (8 * width)) - 1;
    if len > max {
        return Err(too_long(what));
    }
    let be = (len as u32).to_be_bytes();
    if let Some(dst) = buf.get_mut(at..at + width) {
        dst.copy_from_slice(&be[4 - width..]);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// DNS

#[derive(Debug, Clone)]
pub(crate) enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// Service binding (RFC 9460) in ServiceMode with target ".".
    Https {
        alpn: Vec<&'static str>,
        v4hint: Vec<Ipv4Addr>,
        v6hint: Vec<Ipv6Addr>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Rr {
    pub owner: String,
    pub ttl: u32,
    pub data: RData,
}

/// DNS message writer that compresses names against every suffix already written.
struct DnsWriter {
    buf: Vec<u8>,
    dict: Vec<(String, u16)>,
}

impl DnsWriter {
    fn new(id: u16, flags: u16, counts: [u16; 4]) -> DnsWriter {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            buf.extend_from_slice(&c.to_be_bytes());
        }
        DnsWriter {
            buf,
            dict: Vec::new(),
        }
    }

    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn name(&mut self, name: &str, compress: bool) -> Result<(), GenerateError> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            self.buf.push(0);
            return Ok(());
        }
        if name.len() > 253 {
            return Err(GenerateError::Internal(format!(
                "DNS name too long: {name}"
            )));
        }
        let labels: Vec<&str> = name.split('.').collect();
        for i in 0..labels.len() {
            let rest = &labels[i..];
            let suffix = rest.join(".");
            if compress && let Some((_, off)) = self.dict.iter().find(|(s, _)| *s == suffix) {
                let ptr = 0xC000 | *off;
                self.u16(ptr);
                return Ok(());
            }
            let here = self.buf.len();
            if here < 0x3FFF {
                self.dict.push((suffix, here as u16));
            }
            let label = rest.first().copied().unwrap_or_default();
            if label.is_empty() || label.len() > 63 {
                return Err(GenerateError::Internal(format!("bad DNS label in {name}")));
            }
            self.buf.push(label.len() as u8);
            self.buf.extend_from_slice(label.as_bytes());
        }
        self.buf.push(0);
        Ok(())
    }

    fn question(&mut self, qname: &str, qtype: u16) -> Result<(), GenerateError> {
        self.name(qname, true)?;
        self.u16(qtype);
        self.u16(1);
        Ok(())
    }

    /// EDNS(0) OPT pseudo-record advertising a 1232-byte UDP payload, as current resolvers do.
    fn opt(&mut self) {
        self.buf.push(0);
        self.u16(QTYPE_OPT);
        self.u16(1232);
        self.u32(0);
        self.u16(0);
    }

    fn rr(&mut self, rr: &Rr) -> Result<(), GenerateError> {
        self.name(&rr.owner, true)?;
        let rtype = match rr.data {
            RData::A(_) => QTYPE_A,
            RData::Aaaa(_) => QTYPE_AAAA,
            RData::Cname(_) => QTYPE_CNAME,
            RData::Https { .. } => QTYPE_HTTPS,
        };
        self.u16(rtype);
        self.u16(1);
        self.u32(rr.ttl);
        let at = open_len(&mut self.buf, 2);
        match &rr.data {
            RData::A(a) => self.buf.extend_from_slice(&a.octets()),
            RData::Aaaa(a) => self.buf.extend_from_slice(&a.octets()),
            RData::Cname(target) => self.name(target, true)?,
            RData::Https {
                alpn,
                v4hint,
                v6hint,
            } => {
                self.u16(1);
                // RFC 9460 forbids compressing the target name.
                self.name("", false)?;
                if !alpn.is_empty() {
                    self.u16(1);
                    let p = open_len(&mut self.buf, 2);
                    for id in alpn {
                        self.buf.push(id.len() as u8);
                        self.buf.extend_from_slice(id.as_bytes());
                    }
                    close_len(&mut self.buf, p, 2, "alpn")?;
                }
                if !v4hint.is_empty() {
                    self.u16(4);
                    self.u16((v4hint.len() * 4) as u16);
                    for a in v4hint {
                        self.buf.extend_from_slice(&a.octets());
                    }
                }
                if !v6hint.is_empty() {
                    self.u16(6);
                    self.u16((v6hint.len() * 16) as u16);
                    for a in v6hint {
                        self.buf.extend_from_slice(&a.octets());
                    }
                }
            }
        }
        close_len(&mut self.buf, at, 2, "rdata")
    }

    fn soa(&mut self, zone: &str) -> Result<(), GenerateError> {
        self.name(zone, true)?;
        self.u16(QTYPE_SOA);
        self.u16(1);
        self.u32(900);
        let at = open_len(&mut self.buf, 2);
        self.name(&format!("ns1.{zone}"), true)?;
        self.name(&format!("hostmaster.{zone}"), true)?;
        for v in [2024030401, 7200, 3600, 1209600, 900] {
            self.u32(v);
        }
        close_len(&mut self.buf, at, 2, "soa rdata")
    }
}

pub(crate) fn dns_query(id: u16, qname: &str, qtype: u16) -> Result<Vec<u8>, GenerateError> {
    // RD set; one question and an EDNS OPT record.
    let mut w = DnsWriter::new(id, 0x0100, [1, 0, 0, 1]);
    w.question(qname, qtype)?;
    w.opt();
    Ok(w.buf)
}

/// A recursive resolver's answer. With `soa_zone` the zone's SOA goes into the authority
/// section, as for NXDOMAIN and NODATA answers.
pub(crate) fn dns_response(
    id: u16,
    qname: &str,
    qtype: u16,
    rcode: u8,
    answers: &[Rr],
    soa_zone: Option<&str>,
) -> Result<Vec<u8>, GenerateError> {
    let an = u16::try_from(answers.len()).map_err(|_| too_long("answer count"))?;
    let ns = u16::from(soa_zone.is_some());
    let flags = 0x8180 | u16::from(rcode & 0x0f);
    let mut w = DnsWriter::new(id, flags, [1, an, ns, 1]);
    w.question(qname, qtype)?;
    for rr in answers {
        w.rr(rr)?;
    }
    if let Some(zone) = soa_zone {
        w.soa(zone)?;
    }
    w.opt();
    Ok(w.buf)
}

// ---------------------------------------------------------------------------------------
// TLS

const TLS_HANDSHAKE: u8 = 0x16;
const TLS_CCS: u8 = 0x14;
const TLS_APP_DATA: u8 = 0x17;
/// Largest TLS 1.3 ciphertext fragment: 2^14 plaintext + content type + 16-byte tag.
pub(crate) const TLS_MAX_RECORD: usize = 16384 + 17;

fn ext(buf: &mut Vec<u8>, kind: u16, body: &[u8]) -> Result<(), GenerateError> {
    buf.extend_from_slice(&kind.to_be_bytes());
    let at = open_len(buf, 2);
    buf.extend_from_slice(body);
    close_len(buf, at, 2, "tls extension")
}

/// A browser-like TLS 1.3 ClientHello in one handshake record.
pub(crate) fn client_hello(
    rng: &mut Rng,
    session_id: &[u8; 32],
    sni: Option<&str>,
    alpn: &[&str],
) -> Result<Vec<u8>, GenerateError> {
    client_hello_padded(rng, session_id, sni, alpn, 0)
}

/// `client_hello` with a padding extension (RFC 7685) of `padding` zero bytes when non-zero.
pub(crate) fn client_hello_padded(
    rng: &mut Rng,
    session_id: &[u8; 32],
    sni: Option<&str>,
    alpn: &[&str],
    padding: usize,
) -> Result<Vec<u8>, GenerateError> {
    hello_with(rng, session_id, sni, alpn, padding, false)
}

/// `client_hello` as an ECH client sends it: `outer_sni` is the public name and an outer
/// encrypted_client_hello extension (draft-ietf-tls-esni-22 section 5) carries the real
/// hello, here random bytes of a typical size.
pub(crate) fn client_hello_ech(
    rng: &mut Rng,
    session_id: &[u8; 32],
    outer_sni: &str,
    alpn: &[&str],
) -> Result<Vec<u8>, GenerateError> {
    hello_with(rng, session_id, Some(outer_sni), alpn, 0, true)
}

fn hello_with(
    rng: &mut Rng,
    session_id: &[u8; 32],
    sni: Option<&str>,
    alpn: &[&str],
    padding: usize,
    ech: bool,
) -> Result<Vec<u8>, GenerateError> {
    let mut b = Vec::with_capacity(512 + padding);
    // Record header says TLS 1.0 for middlebox compatibility, as browsers do.
    let (rec, hs) = hello_head(&mut b, 0x01, 0x01, rng, session_id);
    let suites: [u16; 9] = [
        0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8,
    ];
    b.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        b.extend_from_slice(&s.to_be_bytes());
    }
    b.extend_from_slice(&[0x01, 0x00]);

    let exts = open_len(&mut b, 2);
    if let Some(host) = sni {
        let mut sn = Vec::with_capacity(host.len() + 5);
        let list = open_len(&mut sn, 2);
        sn.push(0);
        let n = open_len(&mut sn, 2);
        sn.extend_from_slice(host.as_bytes());
        close_len(&mut sn, n, 2, "sni name")?;
        close_len(&mut sn, list, 2, "sni list")?;
        ext(&mut b, 0x0000, &sn)?;
    }
    ext(&mut b, 0x0017, &[])?; // extended_master_secret
    ext(&mut b, 0xff01, &[0x00])?; // renegotiation_info
    ext(
        &mut b,
        0x000a,
        &[0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18],
    )?; // groups
    ext(&mut b, 0x000b, &[0x01, 0x00])?; // ec_point_formats
    ext(&mut b, 0x0023, &[])?; // session_ticket
    if !alpn.is_empty() {
        let mut al = Vec::new();
        let list = open_len(&mut al, 2);
        for id in alpn {
            al.push(id.len() as u8);
            al.extend_from_slice(id.as_bytes());
        }
        close_len(&mut al, list, 2, "alpn list")?;
        ext(&mut b, 0x0010, &al)?;
    }
    ext(&mut b, 0x0005, &[0x01, 0x00, 0x00, 0x00, 0x00])?; // status_request
    ext(
        &mut b,
        0x000d,
        &[
            0x00, 0x10, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01,
            0x08, 0x06, 0x06, 0x01,
        ],
    )?; // signature_algorithms
    let mut ks = vec![0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
    let mut key = [0u8; 32];
    rng.fill(&mut key);
    ks.extend_from_slice(&key);
    ext(&mut b, 0x0033, &ks)?; // key_share x25519
    ext(&mut b, 0x002d, &[0x01, 0x01])?; // psk_key_exchange_modes
    ext(&mut b, 0x002b, &[0x04, 0x03, 0x04, 0x03, 0x03])?; // supported_versions 1.3, 1.2
    if padding > 0 {
        ext(&mut b, 0x0015, &vec![0; padding])?;
    }
    if ech {
        // Outer ECHClientHello: type 0, HPKE suite (HKDF-SHA256, AES-128-GCM), config_id,
        // a 32-byte encapsulated key, then the encrypted inner hello.
        let mut e = vec![
            0x00,
            0x00,
            0x01,
            0x00,
            0x01,
            rng.next_u64() as u8,
            0x00,
            0x20,
        ];
        let mut enc = [0u8; 32];
        rng.fill(&mut enc);
        e.extend_from_slice(&enc);
        let payload = 200 + rng.below(100) as usize;
        e.extend_from_slice(&(payload as u16).to_be_bytes());
        e.extend_from_slice(&rng.bytes(payload));
        ext(&mut b, 0xfe0d, &e)?;
    }
    close_len(&mut b, exts, 2, "extensions")?;
    close_len(&mut b, hs, 3, "handshake")?;
    close_len(&mut b, rec, 2, "record")?;
    Ok(b)
}

/// A QUIC v1 client Initial datagram (padded to 1200 bytes, RFC 9000 section 14.1) whose CRYPTO
/// frame carries a TLS 1.3 ClientHello for `sni`, protected with the keys of a random
/// Destination Connection ID by the decoder's own sealer, so the generator and the sensor
/// share one RFC 9001 key schedule.
pub(crate) fn quic_initial(
    rng: &mut Rng,
    sni: &str,
    alpn: &[&str],
) -> Result<Vec<u8>, GenerateError> {
    let mut sid = [0u8; 32];
    rng.fill(&mut sid);
    let record = client_hello(rng, &sid, Some(sni), alpn)?;
    // CRYPTO frames carry handshake messages without the TLS record header.
    let hello = record
        .get(5..)
        .ok_or_else(|| GenerateError::Internal("short ClientHello".into()))?;
    let len = u16::try_from(hello.len())
        .ok()
        .filter(|&l| l < 0x4000)
        .ok_or_else(|| too_long("QUIC CRYPTO frame"))?;
    // Frame type CRYPTO, offset 0, two-byte varint length.
    let mut frame = vec![0x06, 0x00];
    frame.extend_from_slice(&(0x4000 | len).to_be_bytes());
    frame.extend_from_slice(hello);
    let mut dcid = [0u8; 8];
    rng.fill(&mut dcid);
    crate::decode::quic::client_initial(crate::decode::quic::V1, &dcid, 0, &frame)
        .ok_or_else(|| GenerateError::Internal("QUIC Initial sealing failed".into()))
}

/// A QUIC packet after the handshake (short header, RFC 9000 section 17.3): fixed bit set,
/// the rest opaque.
pub(crate) fn quic_short(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut b = rng.bytes(len.max(1));
    if let Some(first) = b.first_mut() {
        *first = 0x40 | (*first & 0x3f);
    }
    b
}

/// ServerHello + ChangeCipherSpec + one encrypted record standing for the rest of the
/// server's first flight (EncryptedExtensions, Certificate, CertificateVerify, Finished).
pub(crate) fn server_flight(
    rng: &mut Rng,
    session_id: &[u8; 32],
    encrypted_len: usize,
) -> Result<Vec<u8>, GenerateError> {
    let mut b = Vec::with_capacity(128 + encrypted_len);
    let (rec, hs) = hello_head(&mut b, 0x02, 0x03, rng, session_id);
    b.extend_from_slice(&[0x13, 0x01, 0x00]);
    let exts = open_len(&mut b, 2);
    ext(&mut b, 0x002b, &[0x03, 0x04])?;
    let mut ks = vec![0x00, 0x1d, 0x00, 0x20];
    let mut key = [0u8; 32];
    rng.fill(&mut key);
    ks.extend_from_slice(&key);
    ext(&mut b, 0x0033, &ks)?;
    close_len(&mut b, exts, 2, "extensions")?;
    close_len(&mut b, hs, 3, "handshake")?;
    close_len(&mut b, rec, 2, "record")?;
    b.extend_from_slice(&[TLS_CCS, 0x03, 0x03, 0x00, 0x01, 0x01]);
    app_data_into(rng, &mut b, encrypted_len);
    Ok(b)
}

/// Opaque application-data records carrying `len` bytes of ciphertext in total.
pub(crate) fn app_data_into(rng: &mut Rng, out: &mut Vec<u8>, mut len: usize) {
    while len > 0 {
        let n = len.min(TLS_MAX_RECORD);
        out.extend_from_slice(&[TLS_APP_DATA, 0x03, 0x03]);
        out.extend_from_slice(&(n as u16).to_be_bytes());
        let start = out.len();
        out.resize(start + n, 0);
        if let Some(body) = out.get_mut(start..) {
            rng.fill(body);
        }
        len -= n;
    }
}

pub(crate) fn app_data(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 5 * (len / TLS_MAX_RECORD + 1));
    app_data_into(rng, &mut v, len);
    v
}

/// The client's second flight: ChangeCipherSpec, encrypted Finished, first request.
pub(crate) fn client_finished(rng: &mut Rng, request_len: usize) -> Vec<u8> {
    let mut v = vec![TLS_CCS, 0x03, 0x03, 0x00, 0x01, 0x01];
    app_data_into(rng, &mut v, 53);
    app_data_into(rng, &mut v, request_len);
    v
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1

pub(crate) fn http_get(host: &str, path: &str, user_agent: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n\
         Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

pub(crate) fn http_response(rng: &mut Rng, content_type: &str, body_len: usize) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: {content_type}\r\n\
         Content-Length: {body_len}\r\nCache-Control: max-age=300\r\n\r\n"
    )
    .into_bytes();
    let start = v.len();
    v.reserve(body_len);
    // Printable filler: the body's content is irrelevant, but text keeps the capture
    // readable in Wireshark's "follow stream".
    for _ in 0..body_len / 8 + 1 {
        let r = rng.next_u64();
        for i in 0..8 {
            v.push(b'a' + ((r >> (i * 8)) as u8 % 26));
        }
    }
    v.truncate(start + body_len);
    v
}

pub(crate) fn http_connect(target: &str, port: u16) -> Vec<u8> {
    format!(
        "CONNECT {target}:{port} HTTP/1.1\r\nHost: {target}:{port}\r\n\
         User-Agent: Mozilla/5.0\r\nProxy-Connection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

pub(crate) fn http_connect_ok() -> Vec<u8> {
    b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec()
}

/// Record and handshake headers of a Client/ServerHello up to the session id; returns the open
/// record and handshake length fields for the caller to close.
fn hello_head(
    b: &mut Vec<u8>,
    handshake_type: u8,
    record_minor: u8,
    rng: &mut Rng,
    session_id: &[u8; 32],
) -> (usize, usize) {
    b.extend_from_slice(&[TLS_HANDSHAKE, 0x03, record_minor]);
    let rec = open_len(b, 2);
    b.push(handshake_type);
    let hs = open_len(b, 3);
    b.extend_from_slice(&[0x03, 0x03]);
    let mut random = [0u8; 32];
    rng.fill(&mut random);
    b.extend_from_slice(&random);
    b.push(32);
    b.extend_from_slice(session_id);
    (rec, hs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answer_is_compressed_and_parses() {
        let answers = [
            Rr {
                owner: "outlook.office365.com".into(),
                ttl: 60,
                data: RData::Cname("outlook.ha.office365.com".into()),
            },
            Rr {
                owner: "outlook.ha.office365.com".into(),
                ttl: 60,
                data: RData::A(Ipv4Addr::new(198, 51, 100, 7)),
            },
        ];
        let msg = dns_response(7, "outlook.office365.com", QTYPE_A, 0, &answers, None).unwrap();
        let p = simple_dns::Packet::parse(&msg).unwrap();
        assert_eq!(p.answers.len(), 2);
        assert_eq!(p.answers[1].name.to_string(), "outlook.ha.office365.com");
        // The first answer's owner is a pointer to the question name at offset 12.
        let q_end = 12 + "outlook.office365.com".len() + 2 + 4;
        assert_eq!(&msg[q_end..q_end + 2], &[0xC0, 0x0C]);
    }

    #[test]
    fn nxdomain_and_https_parse() {
        let nx = dns_response(
            9,
            "wpad.example.com",
            QTYPE_A,
            RCODE_NXDOMAIN,
            &[],
            Some("example.com"),
        )
        .unwrap();
        let p = simple_dns::Packet::parse(&nx).unwrap();
        assert_eq!(p.name_servers.len(), 1);
        let https = Rr {
            owner: "www.google.com".into(),
            ttl: 300,
            data: RData::Https {
                alpn: vec!["h2", "h3"],
                v4hint: vec![Ipv4Addr::new(203, 0, 113, 5)],
                v6hint: vec![],
            },
        };
        let m = dns_response(3, "www.google.com", QTYPE_HTTPS, 0, &[https], None).unwrap();
        let p = simple_dns::Packet::parse(&m).unwrap();
        assert_eq!(p.answers.len(), 1);
    }

    #[test]
    fn client_hello_parses_with_sni_and_alpn() {
        let mut rng = Rng::new(1);
        let ch = client_hello(
            &mut rng,
            &[7; 32],
            Some("api.honeygain.com"),
            &["h2", "http/1.1"],
        )
        .unwrap();
        let (_, rec) = tls_parser::parse_tls_plaintext(&ch).unwrap();
        let tls_parser::TlsMessage::Handshake(tls_parser::TlsMessageHandshake::ClientHello(hello)) =
            &rec.msg[0]
        else {
            panic!("not a ClientHello");
        };
        let (_, exts) = tls_parser::parse_tls_client_hello_extensions(hello.ext.unwrap()).unwrap();
        assert!(exts.iter().any(|e| matches!(e,
            tls_parser::TlsExtension::SNI(v) if v[0].1 == b"api.honeygain.com")));
        assert!(
            exts.iter()
                .any(|e| matches!(e, tls_parser::TlsExtension::ALPN(v) if v.len() == 2))
        );
        let sf = server_flight(&mut rng, &[7; 32], 3000).unwrap();
        let (rest, _) = tls_parser::parse_tls_plaintext(&sf).unwrap();
        assert_eq!(rest[0], TLS_CCS);
    }
}
