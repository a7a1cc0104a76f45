//! QUIC client Initial reader: the ClientHello a client sends in its first packets, for the
//! flow's name (SNI) and ALPN.
//!
//! - IETF QUIC (v1 RFC 9001, v2 RFC 9369, drafts 23-34, Facebook mvfst): the Initial keys
//!   are derived from the Destination Connection ID of the client's first Initial with the
//!   version's salt; header protection is removed, the payload decrypted (AES-128-GCM) and
//!   CRYPTO frames reassembled by offset across packets (in any order, coalesced or not)
//!   until the ClientHello handshake message is whole; [`tls`] reads it.
//! - Google QUIC: up to Q043 (public header) and Q044-Q046 (long header) carry the
//!   handshake in plaintext STREAM frames on stream 1: the CHLO message's SNI tag is read.
//!   Q050 (CHLO) and T050/T051 (TLS) use IETF-style protected Initials with their own salts.
//!
//! Crypto is `ring`'s (HKDF, AES header protection, AES-GCM). Pure and bounded: no I/O, no
//! panics; the reassembly buffer is capped by [`QuicLimits::max_crypto_bytes`] and the work
//! per connection by [`QuicLimits::max_datagrams`]; every early end is a [`QuicEnd`].
use super::reader::Reader;
use super::tls::{self, ClientHelloInfo, TlsParse};
use ring::aead::quic::{AES_128, HeaderProtectionKey};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;

pub const V1: u32 = 0x0000_0001;
/// RFC 9369 3.1.
pub const V2: u32 = 0x6b33_43cf;
const Q050: u32 = u32::from_be_bytes(*b"Q050");
const T050: u32 = u32::from_be_bytes(*b"T050");
const T051: u32 = u32::from_be_bytes(*b"T051");

/// RFC 9001 5.2.
const SALT_V1: [u8; 20] = hex20(b"38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
/// RFC 9369 3.3.1.
const SALT_V2: [u8; 20] = hex20(b"0dede3def700a6db819381be6e269dcbf9bd2ed9");
/// draft-ietf-quic-tls-22 5.2 (mvfst 0xfaceb001 is based on draft 22).
const SALT_DRAFT22: [u8; 20] = hex20(b"7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a");
/// draft-ietf-quic-tls-23 to -28 5.2 (and mvfst 0xfaceb002/0xfaceb00e, based on draft 27).
const SALT_DRAFT23: [u8; 20] = hex20(b"c3eef712c72ebb5a11a7d2432bb46365bef9f502");
/// draft-ietf-quic-tls-29 to -32 5.2 (33 and 34 use v1's).
const SALT_DRAFT29: [u8; 20] = hex20(b"afbfec289993d24c9e9786f19c6111e04390a899");
/// Google's Q050, T050 and T051 Initial salts (as Wireshark and nDPI document them).
const SALT_Q050: [u8; 20] = hex20(b"504574efd066fe2f9d945cfcdbd3a7f0d3b56b45");
const SALT_T050: [u8; 20] = hex20(b"7ff579e5acd072915580304c43a2367c60488310");
const SALT_T051: [u8; 20] = hex20(b"7a4edef4e7ccee5fa4506c19124fc8ccda6e033d");

/// RFC 9000 14.1: a client pads every datagram carrying an Initial to 1200 bytes, so a
/// shorter first datagram is not taken for QUIC (gQUIC pads its CHLO packets too).
pub const MIN_INITIAL_DATAGRAM: usize = 1200;
/// RFC 9000 17.2: connection IDs are at most 20 bytes in v1 (and drafts, v2).
const MAX_CID_LEN: usize = 20;
/// RFC 9000 7.2: the client's first Destination Connection ID is at least 8 bytes.
const MIN_CLIENT_DCID_LEN: usize = 8;
const TAG_LEN: usize = 16;
/// RFC 9001 5.4.2: the sample starts 4 bytes after the packet number's first byte.
const SAMPLE_OFFSET: usize = 4;
const SAMPLE_LEN: usize = 16;
/// gQUIC unencrypted packets carry a 12-byte message authentication hash before the frames.
const GQUIC_HASH_LEN: usize = 12;
/// Letters kept in `history` (one per kind of packet, so a handful in practice).
const MAX_HISTORY: usize = 16;

// Evaluated at compile time only: a bad literal is a build error.
#[allow(clippy::indexing_slicing)]
const fn hex20(s: &[u8; 40]) -> [u8; 20] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not lower-case hex"),
        }
    }
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 20 {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// Bounds on what one connection may make the reader hold or do (config `[flow]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuicLimits {
    /// Handshake bytes reassembled (a ClientHello reaches ~16 KiB only with big PQ shares).
    pub max_crypto_bytes: usize,
    /// Client datagrams read while the hello is incomplete.
    pub max_datagrams: u32,
}

impl Default for QuicLimits {
    fn default() -> Self {
        QuicLimits {
            max_crypto_bytes: 16 * 1024,
            max_datagrams: 32,
        }
    }
}

/// How reading a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuicEnd {
    /// The ClientHello (or CHLO) was read.
    Complete,
    /// The handshake stream is not a ClientHello/CHLO, or it is malformed.
    NotClientHello,
    /// CRYPTO data beyond `max_crypto_bytes`.
    CryptoOverflow,
    /// `max_datagrams` client datagrams without a whole hello.
    DatagramLimit,
    /// The flow ended (idle, evicted, end of input) before the hello was whole.
    FlowEnded,
}

impl QuicEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            QuicEnd::Complete => "complete",
            QuicEnd::NotClientHello => "not_client_hello",
            QuicEnd::CryptoOverflow => "crypto_overflow",
            QuicEnd::DatagramLimit => "datagram_limit",
            QuicEnd::FlowEnded => "flow_ended",
        }
    }
}

/// Per-packet outcomes of one connection's client datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketCounts {
    pub initials_decrypted: u32,
    /// Initial packets whose header protection or AEAD tag did not check out.
    pub decrypt_failed: u32,
    /// Packets cut short (a length beyond the datagram, a header past its end).
    pub truncated: u32,
    /// Packets whose frames stopped at a frame type the reader does not walk.
    pub unknown_frames: u32,
}

/// What the client's handshake said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// IETF QUIC and T05x: a TLS 1.3 ClientHello.
    Tls(ClientHelloInfo),
    /// gQUIC crypto: the CHLO's SNI and UAID (user agent) tags.
    Chlo {
        sni: Option<String>,
        uaid: Option<String>,
    },
}

/// One QUIC connection as far as its client's first packets tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicInfo {
    pub version: u32,
    /// The Destination Connection ID of the client's first Initial (gQUIC: its CID).
    pub client_initial_dcid: Vec<u8>,
    pub hello: Option<Hello>,
    /// Zeek's letters, client's upper case: I/i Initial, H/h Handshake, Z 0-RTT, r Retry,
    /// S ClientHello read. Each letter once, in order of first appearance.
    pub history: String,
    pub end: QuicEnd,
    pub packets: PacketCounts,
}

impl QuicInfo {
    pub fn sni(&self) -> Option<&str> {
        match &self.hello {
            Some(Hello::Tls(h)) => h.sni.as_deref(),
            Some(Hello::Chlo { sni, .. }) => sni.as_deref(),
            None => None,
        }
    }

    /// The ClientHello offered (or greased) ECH: `sni` is then the outer name.
    pub fn ech(&self) -> bool {
        matches!(&self.hello, Some(Hello::Tls(h)) if h.ech)
    }

    /// First ALPN id offered (Zeek's `client_protocol`).
    pub fn client_protocol(&self) -> Option<&str> {
        match &self.hello {
            Some(Hello::Tls(h)) => h.alpn.first().map(String::as_str),
            _ => None,
        }
    }

    /// Google QUIC (its own crypto handshake), as tshark's `gquic` tells it apart.
    pub fn is_gquic(&self) -> bool {
        is_google(self.version) && !matches!(self.hello, Some(Hello::Tls(_)))
    }
}

fn is_google(version: u32) -> bool {
    let [a, b, c, d] = version.to_be_bytes();
    (a == b'Q' || a == b'T') && b.is_ascii_digit() && c.is_ascii_digit() && d.is_ascii_digit()
}

/// gQUIC version number (43 for Q043), if it is one.
fn google_number(version: u32) -> Option<u32> {
    let [_, b, c, d] = version.to_be_bytes();
    is_google(version)
        .then(|| u32::from(b - b'0') * 100 + u32::from(c - b'0') * 10 + u32::from(d - b'0'))
}

/// The version as Zeek's `QUIC::version_strings` spells it ("1", "quicv2", "draft-29",
/// "mvfst (faceb002)"), gQUIC as its tag ("Q046"), else "unknown-<hex>". (Zeek's table
/// names 0xff00001f "draft-30"; it is draft 31.)
pub fn version_name(version: u32) -> String {
    match version {
        V1 => "1".into(),
        V2 => "quicv2".into(),
        _ if version >> 8 == 0xff_0000 => format!("draft-{}", version & 0xff),
        _ if version >> 8 == 0x00fa_ceb0 => format!("mvfst ({version:08x})"),
        _ if is_google(version) => String::from_utf8_lossy(&version.to_be_bytes()).into_owned(),
        _ => format!("unknown-{version:x}"),
    }
}

/// How a version's client Initials are laid out and protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// IETF long header, protected with keys derived from the client's DCID.
    Protected {
        salt: &'static [u8; 20],
        /// RFC 9369: "quicv2" labels and its own long-header type bits.
        v2: bool,
        /// Frame type of CRYPTO: 0x06, but 0x08 in Google's Q05x/T05x.
        crypto_frame: u8,
        /// The handshake is a gQUIC CHLO (Q050), not TLS.
        chlo: bool,
    },
    /// Google Q044-Q046: IETF-like long header, plaintext frames after a 12-byte hash.
    GoogleLong,
    /// Google up to Q043: public header (flags, CID, version, packet number).
    GooglePublic,
}

fn wire(version: u32) -> Option<Wire> {
    let protected = |salt, crypto_frame, chlo| {
        Some(Wire::Protected {
            salt,
            v2: false,
            crypto_frame,
            chlo,
        })
    };
    match version {
        V1 | 0xff00_0021..=0xff00_0022 => protected(&SALT_V1, 0x06, false),
        V2 => Some(Wire::Protected {
            salt: &SALT_V2,
            v2: true,
            crypto_frame: 0x06,
            chlo: false,
        }),
        0xff00_0017..=0xff00_001c | 0xface_b002 | 0xface_b00e => {
            protected(&SALT_DRAFT23, 0x06, false)
        }
        0xff00_001d..=0xff00_0020 => protected(&SALT_DRAFT29, 0x06, false),
        0xface_b001 => protected(&SALT_DRAFT22, 0x06, false),
        Q050 => protected(&SALT_Q050, 0x08, true),
        T050 => protected(&SALT_T050, 0x08, false),
        T051 => protected(&SALT_T051, 0x08, false),
        _ if version.to_be_bytes()[0] == b'Q' => match google_number(version)? {
            44..=46 => Some(Wire::GoogleLong),
            24..=43 => Some(Wire::GooglePublic),
            _ => None,
        },
        _ => None,
    }
}

/// Long-header packet types (RFC 9000 17.2; RFC 9369 3.2 permutes the bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LongType {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
}

fn long_type(first: u8, v2: bool) -> LongType {
    match ((first >> 4) & 3, v2) {
        (0, false) | (1, true) => LongType::Initial,
        (1, false) | (2, true) => LongType::ZeroRtt,
        (2, false) | (3, true) => LongType::Handshake,
        _ => LongType::Retry,
    }
}

/// One long-header packet at the start of a datagram.
struct LongPacket<'a> {
    first: u8,
    version: u32,
    dcid: &'a [u8],
    kind: LongType,
    /// Offset of the packet number (Initial, 0-RTT, Handshake).
    pn_offset: usize,
    /// The packet's bytes (a Retry takes the rest of the datagram).
    bytes: &'a [u8],
}

enum Parsed<'a> {
    Long(LongPacket<'a>),
    /// Short header or Version Negotiation: nothing more to read in this datagram.
    End,
    Truncated,
}

fn parse_long(data: &[u8], v2: bool) -> Parsed<'_> {
    let mut r = Reader::new(data);
    let Some(first) = r.u8() else {
        return Parsed::Truncated;
    };
    if first & 0x80 == 0 {
        return Parsed::End;
    }
    let Some(version) = r.uint(4, true) else {
        return Parsed::Truncated;
    };
    let version = version as u32;
    if version == 0 {
        return Parsed::End;
    }
    let header = (|| {
        let dcid_len = usize::from(r.u8()?);
        let dcid = r.bytes(dcid_len)?;
        let scid_len = usize::from(r.u8()?);
        r.bytes(scid_len)?;
        if dcid_len > MAX_CID_LEN || scid_len > MAX_CID_LEN {
            return None;
        }
        let kind = long_type(first, v2);
        if kind == LongType::Retry {
            return Some((dcid, kind, r.pos(), data.len()));
        }
        if kind == LongType::Initial {
            let token_len = usize::try_from(r.varint()?).ok()?;
            r.bytes(token_len)?;
        }
        let length = usize::try_from(r.varint()?).ok()?;
        let end = r.pos().checked_add(length)?;
        (end <= data.len()).then_some((dcid, kind, r.pos(), end))
    })();
    match header {
        Some((dcid, kind, pn_offset, end)) => Parsed::Long(LongPacket {
            first,
            version,
            dcid,
            kind,
            pn_offset,
            bytes: data.get(..end).unwrap_or(data),
        }),
        None => Parsed::Truncated,
    }
}

/// The client's Initial keys (RFC 9001 5.2).
struct Keys {
    aead: LessSafeKey,
    iv: [u8; NONCE_LEN],
    hp: HeaderProtectionKey,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// RFC 8446 7.1 HKDF-Expand-Label with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    let len = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(b"tls13 ".len() + label.len()).ok()?];
    let info: [&[u8]; 5] = [&len, &label_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

impl Keys {
    fn derive(salt: &[u8; 20], v2: bool, dcid: &[u8]) -> Option<Keys> {
        let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dcid);
        let mut client = [0u8; 32];
        expand_label(&initial, b"client in", &mut client)?;
        let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &client);
        let (key_label, iv_label, hp_label): (&[u8], &[u8], &[u8]) = if v2 {
            (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
        } else {
            (b"quic key", b"quic iv", b"quic hp")
        };
        let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; NONCE_LEN], [0u8; 16]);
        expand_label(&client, key_label, &mut key)?;
        expand_label(&client, iv_label, &mut iv)?;
        expand_label(&client, hp_label, &mut hp)?;
        Some(Keys {
            aead: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).ok()?),
            iv,
            hp: HeaderProtectionKey::new(&AES_128, &hp).ok()?,
        })
    }

    /// Removes header protection and decrypts one Initial; the plaintext frames.
    fn open(&self, packet: &LongPacket<'_>) -> Option<Vec<u8>> {
        let pn_offset = packet.pn_offset;
        let sample_at = pn_offset + SAMPLE_OFFSET;
        let sample = packet.bytes.get(sample_at..sample_at + SAMPLE_LEN)?;
        let mask = self.hp.new_mask(sample).ok()?;
        let [m0, pn_mask @ ..] = mask;
        let first = packet.first ^ (m0 & 0x0f);
        let pn_len = usize::from(first & 3) + 1;
        let mut buf = packet.bytes.to_vec();
        *buf.first_mut()? = first;
        let mut pn = 0u64;
        for (b, m) in buf
            .get_mut(pn_offset..pn_offset + pn_len)?
            .iter_mut()
            .zip(pn_mask)
        {
            *b ^= m;
            pn = pn << 8 | u64::from(*b);
        }
        // Client Initials are numbered from 0, so the truncated number is the full one.
        let mut nonce = self.iv;
        for (n, p) in nonce.iter_mut().rev().zip(pn.to_le_bytes()) {
            *n ^= p;
        }
        let (header, payload) = buf.split_at_mut_checked(pn_offset + pn_len)?;
        if payload.len() < TAG_LEN {
            return None;
        }
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&*header),
                payload,
            )
            .ok()?;
        let n = plain.len();
        let at = pn_offset + pn_len;
        buf.truncate(at + n);
        buf.drain(..at);
        Some(buf)
    }
}

/// Handshake bytes by offset, with a bitmap of which bytes arrived.
#[derive(Default)]
struct CryptoStream {
    buf: Vec<u8>,
    have: Vec<u64>,
}

impl CryptoStream {
    /// False when the data reaches past `max`.
    fn insert(&mut self, offset: u64, data: &[u8], max: usize) -> bool {
        let Ok(start) = usize::try_from(offset) else {
            return false;
        };
        let Some(end) = start.checked_add(data.len()).filter(|&e| e <= max) else {
            return false;
        };
        if end > self.buf.len() {
            self.buf.resize(end, 0);
            self.have.resize(end.div_ceil(64), 0);
        }
        if let Some(dst) = self.buf.get_mut(start..end) {
            dst.copy_from_slice(data);
        }
        let mut i = start;
        while i < end {
            let (word, bit) = (i / 64, i % 64);
            let n = (64 - bit).min(end - i);
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            if let Some(w) = self.have.get_mut(word) {
                *w |= mask;
            }
            i += n;
        }
        true
    }

    /// The bytes received contiguously from offset 0.
    fn prefix(&self) -> &[u8] {
        let mut n = 0usize;
        for w in &self.have {
            n += w.trailing_ones() as usize;
            if *w != u64::MAX {
                break;
            }
        }
        self.buf.get(..n.min(self.buf.len())).unwrap_or(&[])
    }
}

enum ChloParse {
    Done {
        sni: Option<String>,
        uaid: Option<String>,
    },
    Incomplete {
        needed: usize,
    },
    Not,
}

/// gQUIC handshake message: tag "CHLO", u16 LE tag count, 2 bytes padding, then per tag its
/// name and u32 LE end offset, then the values.
fn parse_chlo(msg: &[u8]) -> ChloParse {
    let mut r = Reader::new(msg);
    match r.bytes(4) {
        Some(b"CHLO") => {}
        Some(_) => return ChloParse::Not,
        None => return ChloParse::Incomplete { needed: 8 },
    }
    let Some(count) = r.uint(2, false) else {
        return ChloParse::Incomplete { needed: 8 };
    };
    let index_end = 8 + 8 * count as usize;
    let Some(index) = msg.get(8..index_end) else {
        return ChloParse::Incomplete { needed: index_end };
    };
    let ends: Vec<(&[u8], usize)> = index
        .chunks_exact(8)
        .filter_map(|e| {
            let (tag, end) = e.split_at_checked(4)?;
            Some((tag, u32::from_le_bytes(end.try_into().ok()?) as usize))
        })
        .collect();
    let values_len = ends.last().map_or(0, |&(_, end)| end);
    let Some(values) = msg.get(index_end..index_end + values_len) else {
        return ChloParse::Incomplete {
            needed: index_end.saturating_add(values_len),
        };
    };
    let (mut sni, mut uaid, mut start) = (None, None, 0usize);
    for (tag, end) in ends {
        let Some(value) = values.get(start..end) else {
            return ChloParse::Not; // offsets must not decrease
        };
        match tag {
            b"SNI\0" if sni.is_none() => sni = tls::clean_host_name(value),
            b"UAID" if uaid.is_none() => uaid = tls::clean_host_name(value),
            _ => {}
        }
        start = end;
    }
    ChloParse::Done { sni, uaid }
}

/// Reads one connection's client datagrams until its hello is whole.
pub struct QuicConn {
    version: u32,
    wire: Wire,
    dcid: Vec<u8>,
    keys: Option<Box<Keys>>,
    /// After a Retry the client protects its Initials with keys from the new DCID.
    retry_keys: Option<(Vec<u8>, Box<Keys>)>,
    crypto: CryptoStream,
    /// gQUIC crypto stream offset where the CHLO being read starts (a client sends a new
    /// CHLO at the next offset after a rejection).
    chlo_base: Option<u64>,
    datagrams: u32,
    history: String,
    packets: PacketCounts,
    limits: QuicLimits,
    /// Set when reading stopped early.
    end: Option<QuicEnd>,
}

impl std::fmt::Debug for QuicConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicConn")
            .field("version", &self.version)
            .field("datagrams", &self.datagrams)
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

/// The client's first datagram as gQUIC public-header packet: (version, CID, frames offset).
fn google_public_header(data: &[u8], known: Option<u32>) -> Option<(u32, &[u8], usize)> {
    let mut r = Reader::new(data);
    let flags = r.u8()?;
    // 0x80 reserved, 0x02 public reset.
    if flags & 0x82 != 0 {
        return None;
    }
    let old = known.and_then(google_number).is_some_and(|n| n < 33);
    // Before Q033 two bits gave the CID length; later 0x08 means 8 bytes and 0x04 is the
    // server's diversification nonce, which clients never send.
    let cid_len = match (flags & 0x0c, old) {
        (0x0c, _) | (0x08, false) => 8,
        (0x08, true) => 4,
        (0x04, true) => 1,
        _ => 0,
    };
    let cid = r.bytes(cid_len)?;
    let version = if flags & 0x01 != 0 {
        r.uint(4, true)? as u32
    } else {
        known?
    };
    google_number(version)?;
    let pn_len = match flags >> 4 & 3 {
        0 => 1,
        1 => 2,
        2 => 4,
        _ => 6,
    };
    r.bytes(pn_len)?;
    r.bytes(GQUIC_HASH_LEN)?;
    if google_number(version).is_some_and(|n| n < 34) {
        r.u8()?; // private flags
    }
    Some((version, cid, r.pos()))
}

/// Q044-Q046 long header: (version, DCID, frames offset).
fn google_long_header(data: &[u8]) -> Option<(u32, &[u8], usize)> {
    let mut r = Reader::new(data);
    let first = r.u8()?;
    if first & 0x80 == 0 {
        return None;
    }
    let version = r.uint(4, true)? as u32;
    let lens = r.u8()?;
    // Each nibble is a CID length minus 3, 0 meaning none.
    let cid_len = |n: u8| if n == 0 { 0 } else { usize::from(n) + 3 };
    let dcid = r.bytes(cid_len(lens >> 4))?;
    r.bytes(cid_len(lens & 0x0f))?;
    r.bytes(usize::from(first & 3) + 1)?;
    r.bytes(GQUIC_HASH_LEN)?;
    Some((version, dcid, r.pos()))
}

impl QuicConn {
    /// A reader for the flow whose client sent `datagram`, when it is a QUIC client Initial
    /// of a version we read, with what that datagram already told (its info when the hello
    /// was whole in it). Only a datagram that decrypts (gQUIC: that carries the crypto
    /// stream) makes a flow QUIC, so other UDP never holds a reader or logs a line.
    pub fn start(datagram: &[u8], limits: QuicLimits) -> Option<(QuicConn, Option<QuicInfo>)> {
        if datagram.len() < MIN_INITIAL_DATAGRAM {
            return None;
        }
        let first = *datagram.first()?;
        let version = if first & 0x80 != 0 {
            u32::from_be_bytes(datagram.get(1..5)?.try_into().ok()?)
        } else {
            google_public_header(datagram, None)?.0
        };
        let wire = wire(version)?;
        let (dcid, keys) = match wire {
            Wire::Protected { salt, v2, .. } => {
                let Parsed::Long(p) = parse_long(datagram, v2) else {
                    return None;
                };
                if p.kind != LongType::Initial || p.dcid.len() < MIN_CLIENT_DCID_LEN {
                    return None;
                }
                let keys = Box::new(Keys::derive(salt, v2, p.dcid)?);
                (p.dcid.to_vec(), Some(keys))
            }
            Wire::GoogleLong => (google_long_header(datagram)?.1.to_vec(), None),
            Wire::GooglePublic => (google_public_header(datagram, None)?.1.to_vec(), None),
        };
        let mut conn = QuicConn {
            version,
            wire,
            dcid,
            keys,
            retry_keys: None,
            crypto: CryptoStream::default(),
            chlo_base: None,
            datagrams: 0,
            history: String::new(),
            packets: PacketCounts::default(),
            limits,
            end: None,
        };
        let info = conn.datagram(true, datagram);
        let quic = match wire {
            Wire::Protected { .. } => conn.packets.initials_decrypted > 0,
            _ => conn.chlo_base.is_some(),
        };
        quic.then_some((conn, info))
    }

    /// The next datagram of the flow; the connection's info once reading is over.
    pub fn datagram(&mut self, from_client: bool, data: &[u8]) -> Option<QuicInfo> {
        if !from_client {
            self.server_datagram(data);
            return None;
        }
        self.datagrams += 1;
        match self.wire {
            Wire::Protected { v2, .. } => self.protected_datagram(data, v2),
            Wire::GoogleLong | Wire::GooglePublic => self.google_packet(data),
        }
        if let Some(end) = self.end {
            return Some(self.info(end, None));
        }
        if let Some(result) = self.hello() {
            return Some(result);
        }
        (self.datagrams >= self.limits.max_datagrams)
            .then(|| self.info(QuicEnd::DatagramLimit, None))
    }

    /// The flow ended before reading did.
    pub fn flow_ended(&mut self) -> QuicInfo {
        self.info(QuicEnd::FlowEnded, None)
    }

    fn info(&mut self, end: QuicEnd, hello: Option<Hello>) -> QuicInfo {
        self.end = Some(end);
        if hello.is_some() {
            self.letter('S');
        }
        QuicInfo {
            version: self.version,
            client_initial_dcid: self.dcid.clone(),
            hello,
            history: std::mem::take(&mut self.history),
            end,
            packets: self.packets,
        }
    }

    fn letter(&mut self, c: char) {
        if self.history.len() < MAX_HISTORY && !self.history.contains(c) {
            self.history.push(c);
        }
    }

    fn packet_letter(&mut self, kind: LongType, from_client: bool) {
        let c = match kind {
            LongType::Initial => 'I',
            LongType::ZeroRtt => 'Z',
            LongType::Handshake => 'H',
            LongType::Retry => 'R',
        };
        self.letter(if from_client {
            c
        } else {
            c.to_ascii_lowercase()
        });
    }

    fn server_datagram(&mut self, mut data: &[u8]) {
        let Wire::Protected { v2, .. } = self.wire else {
            return;
        };
        while let Parsed::Long(p) = parse_long(data, v2) {
            if p.version != self.version {
                return;
            }
            self.packet_letter(p.kind, false);
            data = data.get(p.bytes.len()..).unwrap_or(&[]);
        }
    }

    fn protected_datagram(&mut self, mut data: &[u8], v2: bool) {
        while !data.is_empty() && self.end.is_none() {
            let p = match parse_long(data, v2) {
                Parsed::Long(p) => p,
                Parsed::End => return,
                Parsed::Truncated => {
                    self.packets.truncated += 1;
                    return;
                }
            };
            data = data.get(p.bytes.len()..).unwrap_or(&[]);
            if p.version != self.version {
                continue;
            }
            self.packet_letter(p.kind, true);
            if p.kind != LongType::Initial {
                continue;
            }
            match self.open(&p) {
                Some(plain) => {
                    self.packets.initials_decrypted += 1;
                    self.ietf_frames(&plain);
                }
                None => self.packets.decrypt_failed += 1,
            }
        }
    }

    fn open(&mut self, p: &LongPacket<'_>) -> Option<Vec<u8>> {
        if p.dcid == self.dcid.as_slice() {
            return self.keys.as_ref()?.open(p);
        }
        if let Some((dcid, keys)) = &self.retry_keys
            && dcid.as_slice() == p.dcid
        {
            return keys.open(p);
        }
        // A later Initial may carry the server's chosen CID (still under the first keys),
        // or follow a Retry (keys from its own DCID).
        if let Some(plain) = self.keys.as_ref().and_then(|k| k.open(p)) {
            return Some(plain);
        }
        let Wire::Protected { salt, v2, .. } = self.wire else {
            return None;
        };
        if p.dcid.len() < MIN_CLIENT_DCID_LEN {
            return None;
        }
        let keys = Box::new(Keys::derive(salt, v2, p.dcid)?);
        let plain = keys.open(p);
        if plain.is_some() {
            self.retry_keys = Some((p.dcid.to_vec(), keys));
        }
        plain
    }

    /// PADDING, PING, ACK and CRYPTO frames; anything else ends the packet (counted).
    fn ietf_frames(&mut self, plain: &[u8]) {
        let Wire::Protected { crypto_frame, .. } = self.wire else {
            return;
        };
        let mut r = Reader::new(plain);
        let walked = (|| {
            while let Some(t) = r.u8() {
                match t {
                    0x00 | 0x01 => {}
                    0x02 | 0x03 => {
                        r.varint()?; // largest acknowledged
                        r.varint()?; // delay
                        let ranges = r.varint()?;
                        r.varint()?; // first range
                        for _ in 0..ranges {
                            r.varint()?;
                            r.varint()?;
                        }
                        if t == 0x03 {
                            for _ in 0..3 {
                                r.varint()?;
                            }
                        }
                    }
                    _ if t == crypto_frame => {
                        let offset = r.varint()?;
                        let len = usize::try_from(r.varint()?).ok()?;
                        let data = r.bytes(len)?;
                        if !self.crypto_data(offset, data) {
                            return Some(());
                        }
                    }
                    _ => {
                        self.packets.unknown_frames += 1;
                        return Some(());
                    }
                }
            }
            Some(())
        })();
        if walked.is_none() {
            self.packets.truncated += 1;
        }
    }

    /// Stores handshake bytes; false (and the connection ended) past the bound.
    fn crypto_data(&mut self, offset: u64, data: &[u8]) -> bool {
        let chlo = matches!(self.wire, Wire::GoogleLong | Wire::GooglePublic);
        let offset = if chlo {
            if self.chlo_base.is_none() && data.starts_with(b"CHLO") {
                self.chlo_base = Some(offset);
            }
            match self.chlo_base.and_then(|base| offset.checked_sub(base)) {
                Some(relative) => relative,
                None => return true, // before the CHLO we read
            }
        } else {
            offset
        };
        if self
            .crypto
            .insert(offset, data, self.limits.max_crypto_bytes)
        {
            return true;
        }
        self.end = Some(QuicEnd::CryptoOverflow);
        false
    }

    /// gQUIC plaintext packet: STREAM frames of stream 1 carry the CHLO.
    fn google_packet(&mut self, data: &[u8]) {
        let header = match self.wire {
            Wire::GoogleLong => google_long_header(data),
            _ => google_public_header(data, Some(self.version)),
        };
        let Some((_, _, at)) = header else {
            self.packets.truncated += 1;
            return;
        };
        self.letter('I');
        // Multi-byte fields are big-endian from Q039 on.
        let big_endian = google_number(self.version).is_some_and(|n| n >= 39);
        let mut r = Reader::new(data.get(at..).unwrap_or(&[]));
        let walked = (|| {
            while let Some(t) = r.u8() {
                if t == 0x00 {
                    return Some(()); // PADDING: the rest of the packet
                }
                if t & 0x80 == 0 {
                    self.packets.unknown_frames += 1;
                    return Some(());
                }
                // STREAM: 1 F D OOO SS.
                let offset_len = match (t >> 2) & 7 {
                    0 => 0,
                    n => usize::from(n) + 1,
                };
                let stream = r.uint(usize::from(t & 3) + 1, big_endian)?;
                let offset = r.uint(offset_len, big_endian)?;
                let len = if t & 0x20 != 0 {
                    r.uint(2, big_endian)? as usize
                } else {
                    r.rest().len()
                };
                let data = r.bytes(len)?;
                if stream == 1 && !self.crypto_data(offset, data) {
                    return Some(());
                }
            }
            Some(())
        })();
        if walked.is_none() {
            self.packets.truncated += 1;
        }
    }

    /// The hello, once the handshake stream holds it whole (or proves it is none).
    fn hello(&mut self) -> Option<QuicInfo> {
        let chlo = match self.wire {
            Wire::Protected { chlo, .. } => chlo,
            _ => true,
        };
        let prefix = self.crypto.prefix();
        if prefix.is_empty() {
            return None;
        }
        let max = self.limits.max_crypto_bytes;
        let (end, hello) = if chlo {
            match parse_chlo(prefix) {
                ChloParse::Done { sni, uaid } => {
                    (QuicEnd::Complete, Some(Hello::Chlo { sni, uaid }))
                }
                ChloParse::Incomplete { needed } if needed <= max => return None,
                ChloParse::Incomplete { .. } => (QuicEnd::CryptoOverflow, None),
                ChloParse::Not => (QuicEnd::NotClientHello, None),
            }
        } else {
            match tls::parse_client_hello_message(prefix) {
                TlsParse::ClientHello(h) => (QuicEnd::Complete, Some(Hello::Tls(h))),
                TlsParse::Incomplete { needed } if needed <= max => return None,
                TlsParse::Incomplete { .. } => (QuicEnd::CryptoOverflow, None),
                TlsParse::NotClientHello => (QuicEnd::NotClientHello, None),
            }
        };
        Some(self.info(end, hello))
    }
}

/// A client Initial of `version` carrying `frames` (padded with PADDING to fill a
/// 1200-byte datagram), protected as a client protects it: for tests, fuzzing, benches
/// and generated traffic. None for versions without Initial protection.
pub fn client_initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Option<Vec<u8>> {
    let Wire::Protected { salt, v2, .. } = wire(version)? else {
        return None;
    };
    let keys = Keys::derive(salt, v2, dcid)?;
    let mut header = vec![0xc3 | if v2 { 0x10 } else { 0x00 }];
    header.extend_from_slice(&version.to_be_bytes());
    header.push(u8::try_from(dcid.len()).ok()?);
    header.extend_from_slice(dcid);
    header.extend_from_slice(&[0, 0]); // no SCID, no token
    // Header so far, 2-byte Length, 4-byte packet number, tag: pad the frames to 1200.
    let fill = MIN_INITIAL_DATAGRAM.saturating_sub(header.len() + 2 + 4 + TAG_LEN);
    let mut payload = frames.to_vec();
    if payload.len() < fill {
        payload.resize(fill, 0);
    }
    let length = u16::try_from(4 + payload.len() + TAG_LEN)
        .ok()
        .filter(|&l| l < 0x4000)?;
    header.extend_from_slice(&(0x4000 | length).to_be_bytes());
    let pn_offset = header.len();
    header.extend_from_slice(&pn.to_be_bytes());
    let mut nonce = keys.iv;
    for (n, p) in nonce.iter_mut().rev().zip(u64::from(pn).to_le_bytes()) {
        *n ^= p;
    }
    keys.aead
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&header[..]),
            &mut payload,
        )
        .ok()?;
    let mut packet = header;
    packet.extend_from_slice(&payload);
    let sample_at = pn_offset + SAMPLE_OFFSET;
    let mask = keys
        .hp
        .new_mask(packet.get(sample_at..sample_at + SAMPLE_LEN)?)
        .ok()?;
    let [m0, pn_mask @ ..] = mask;
    *packet.first_mut()? ^= m0 & 0x0f;
    for (b, m) in packet
        .get_mut(pn_offset..pn_offset + 4)?
        .iter_mut()
        .zip(pn_mask)
    {
        *b ^= m;
    }
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test vector file: hex, with `#` comment lines.
    fn vector(text: &str) -> Vec<u8> {
        let body: String = text.lines().filter(|l| !l.starts_with('#')).collect();
        crate::decode::hex(&body)
    }

    const RFC9001_A2: &str = include_str!("../../tests/data/quic/rfc9001_a2_client_initial.hex");
    const RFC9369_A2: &str = include_str!("../../tests/data/quic/rfc9369_a2_client_initial.hex");
    const RFC_CRYPTO: &str = include_str!("../../tests/data/quic/rfc9001_a2_crypto_frame.hex");
    const RFC_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

    fn limits() -> QuicLimits {
        QuicLimits::default()
    }

    /// The RFC's ClientHello (the CRYPTO frame's data: type, offset 0, 2-byte length).
    fn rfc_client_hello() -> Vec<u8> {
        vector(RFC_CRYPTO)[4..].to_vec()
    }

    fn check_rfc_vector(packet: &[u8], version: u32, salt: &'static [u8; 20], v2: bool) {
        let Parsed::Long(p) = parse_long(packet, v2) else {
            panic!("header")
        };
        assert_eq!(
            (p.version, p.kind, p.dcid),
            (version, LongType::Initial, &RFC_DCID[..])
        );
        let plain = Keys::derive(salt, v2, p.dcid).unwrap().open(&p).unwrap();
        let mut expect = vector(RFC_CRYPTO);
        expect.resize(1162, 0);
        assert_eq!(plain, expect, "the RFC's plaintext payload");

        let (_, info) = QuicConn::start(packet, limits()).expect("a QUIC Initial");
        let info = info.expect("the hello is in this one packet");
        assert_eq!(info.end, QuicEnd::Complete);
        assert_eq!(info.sni(), Some("example.com"));
        assert_eq!(info.client_protocol(), Some("alpn"));
        assert_eq!(info.client_initial_dcid, RFC_DCID);
        assert_eq!(info.history, "IS");
        assert_eq!(info.packets.initials_decrypted, 1);
        assert!(!info.is_gquic());
    }

    #[test]
    fn rfc9001_client_initial_decrypts() {
        check_rfc_vector(&vector(RFC9001_A2), V1, &SALT_V1, false);
    }

    #[test]
    fn rfc9369_client_initial_decrypts() {
        check_rfc_vector(&vector(RFC9369_A2), V2, &SALT_V2, true);
    }

    #[test]
    fn version_names_as_zeek_writes_them() {
        let names: Vec<String> = [V1, V2, 0xff00_001d, 0xface_b002, 0x5130_3436, 0x1a2a_3a4a]
            .into_iter()
            .map(version_name)
            .collect();
        assert_eq!(
            names,
            [
                "1",
                "quicv2",
                "draft-29",
                "mvfst (faceb002)",
                "Q046",
                "unknown-1a2a3a4a"
            ]
        );
    }

    /// A client Initial without padding (to coalesce several in one datagram).
    fn initial(version: u32, dcid: &[u8], pn: u32, frames: &[u8]) -> Vec<u8> {
        let Some(Wire::Protected { salt, v2, .. }) = wire(version) else {
            panic!("not a protected version")
        };
        let keys = Keys::derive(salt, v2, dcid).unwrap();
        let mut header = vec![0xc3 | if v2 { 0x10 } else { 0x00 }];
        header.extend_from_slice(&version.to_be_bytes());
        header.push(dcid.len() as u8);
        header.extend_from_slice(dcid);
        header.extend_from_slice(&[0, 0]);
        let length = 4 + frames.len() + TAG_LEN;
        header.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
        let pn_offset = header.len();
        header.extend_from_slice(&pn.to_be_bytes());
        let mut nonce = keys.iv;
        for (n, p) in nonce.iter_mut().rev().zip(u64::from(pn).to_le_bytes()) {
            *n ^= p;
        }
        let mut payload = frames.to_vec();
        keys.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header[..]),
                &mut payload,
            )
            .unwrap();
        let mut packet = header;
        packet.extend_from_slice(&payload);
        let sample = packet[pn_offset + 4..pn_offset + 20].to_vec();
        let mask = keys.hp.new_mask(&sample).unwrap();
        packet[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            packet[pn_offset + i] ^= mask[1 + i];
        }
        packet
    }

    fn crypto_frame(offset: u64, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06];
        f.extend_from_slice(&(0x8000_0000 | offset as u32).to_be_bytes());
        f.extend_from_slice(&(0x4000 | data.len() as u16).to_be_bytes());
        f.extend_from_slice(data);
        f
    }

    /// A datagram of one Initial, padded to the 1200-byte minimum.
    fn datagram(version: u32, pn: u32, frames: &[u8]) -> Vec<u8> {
        client_initial(version, &RFC_DCID, pn, frames).unwrap()
    }

    #[test]
    fn client_initial_reproduces_the_rfc_packet() {
        // The RFC's header has a 4-byte packet number (2) and PADDING to 1200 bytes, as ours.
        let packet = client_initial(V1, &RFC_DCID, 2, &vector(RFC_CRYPTO)).unwrap();
        assert_eq!(packet, vector(RFC9001_A2));
        let packet = client_initial(V2, &RFC_DCID, 2, &vector(RFC_CRYPTO)).unwrap();
        assert_eq!(packet, vector(RFC9369_A2));
        assert!(client_initial(0x5130_3436, &RFC_DCID, 0, &[1]).is_none());
    }

    /// Runs datagrams through a reader as the flow table does; the info when it ends.
    fn run(datagrams: &[Vec<u8>]) -> Option<QuicInfo> {
        let (first, rest) = datagrams.split_first()?;
        let (mut conn, mut info) = QuicConn::start(first, limits())?;
        for d in rest {
            if info.is_some() {
                break;
            }
            info = conn.datagram(true, d);
        }
        info
    }

    #[test]
    fn crypto_split_across_initials_in_any_order() {
        let hello = rfc_client_hello();
        let cuts = [0, 50, 51, 180, hello.len()];
        let packets: Vec<Vec<u8>> = cuts
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let frame = crypto_frame(w[0] as u64, &hello[w[0]..w[1]]);
                datagram(V1, i as u32, &frame)
            })
            .collect();
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]] {
            let sent: Vec<Vec<u8>> = order.iter().map(|&i| packets[i].clone()).collect();
            // Incomplete until the last one.
            let (mut conn, info) = QuicConn::start(&sent[0], limits()).unwrap();
            assert!(info.is_none());
            assert!(conn.datagram(true, &sent[1]).is_none());
            assert!(conn.datagram(true, &sent[2]).is_none());
            let info = conn.datagram(true, &sent[3]).expect("whole now");
            assert_eq!(info.sni(), Some("example.com"), "order {order:?}");
            assert_eq!(info.packets.initials_decrypted, 4);
        }
    }

    /// A hello that offers ECH over QUIC: the outer name is read and the offer flagged.
    #[test]
    fn ech_offer_is_flagged() {
        let mut rng = crate::generate::rng::Rng::new(3);
        let record = crate::generate::proto::client_hello_ech(
            &mut rng,
            &[7; 32],
            "cloudflare-ech.com",
            &["h3"],
        )
        .unwrap();
        let info = run(&[datagram(V1, 0, &crypto_frame(0, &record[5..]))]).unwrap();
        assert_eq!(info.sni(), Some("cloudflare-ech.com"));
        assert!(info.ech());
        let plain = run(&[datagram(V1, 0, &crypto_frame(0, &rfc_client_hello()))]).unwrap();
        assert!(!plain.ech());
    }

    #[test]
    fn coalesced_packets_in_one_datagram() {
        let hello = rfc_client_hello();
        // Two Initials (second half first), then a Handshake packet the reader skips.
        let mut d = initial(V1, &RFC_DCID, 1, &crypto_frame(100, &hello[100..]));
        d.extend(initial(V1, &RFC_DCID, 0, &crypto_frame(0, &hello[..100])));
        let mut handshake = initial(V1, &RFC_DCID, 2, &[1; 40]);
        handshake[0] = (handshake[0] & !0x30) | 0x20;
        d.extend(handshake);
        d.resize(MIN_INITIAL_DATAGRAM, 0); // trailing zeros: padding after the packets
        let (_, info) = QuicConn::start(&d, limits()).unwrap();
        let info = info.unwrap();
        assert_eq!(info.sni(), Some("example.com"));
        assert_eq!(info.history, "IHS");
        assert_eq!(info.packets.initials_decrypted, 2);
    }

    #[test]
    fn draft_and_google_protected_versions() {
        let frame = crypto_frame(0, &rfc_client_hello());
        for version in [
            0xff00_0017,
            0xff00_001b,
            0xff00_001d,
            0xff00_0022,
            0xface_b002,
            T051,
        ] {
            let mut frame = frame.clone();
            if version == T051 {
                frame[0] = 0x08; // Google's CRYPTO frame type
            }
            let info = run(&[datagram(version, 0, &frame)]).expect("info");
            assert_eq!(info.sni(), Some("example.com"), "{}", version_name(version));
        }
        // Q050: a CHLO in CRYPTO frames.
        let chlo = chlo_message(&[(b"SNI\0", b"q50.example"), (b"UAID", b"test ua")]);
        let mut frame = crypto_frame(0, &chlo);
        frame[0] = 0x08;
        let info = run(&[datagram(Q050, 0, &frame)]).expect("info");
        assert_eq!(info.sni(), Some("q50.example"));
        assert!(info.is_gquic());
        // A draft-29 packet is not a v1 one: the salts differ.
        let mut wrong = datagram(0xff00_001d, 0, &crypto_frame(0, &rfc_client_hello()));
        wrong[1..5].copy_from_slice(&V1.to_be_bytes());
        assert!(QuicConn::start(&wrong, limits()).is_none());
    }

    fn chlo_message(tags: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut m = b"CHLO".to_vec();
        m.extend_from_slice(&(tags.len() as u16).to_le_bytes());
        m.extend_from_slice(&[0, 0]);
        let mut end = 0u32;
        for (tag, value) in tags {
            end += value.len() as u32;
            m.extend_from_slice(*tag);
            m.extend_from_slice(&end.to_le_bytes());
        }
        for (_, value) in tags {
            m.extend_from_slice(value);
        }
        m
    }

    #[test]
    fn google_plaintext_chlo() {
        let chlo = chlo_message(&[(b"PAD\0", &[b'-'; 20]), (b"SNI\0", b"www.example.org")]);
        // Q046: long header, 8-byte DCID, 4-byte packet number, 12-byte hash, STREAM frame
        // on stream 1 (data length present, 2-byte offset, big-endian).
        let mut q46 = vec![0xc3];
        q46.extend_from_slice(b"Q046");
        q46.push(0x50);
        q46.extend_from_slice(&RFC_DCID);
        q46.extend_from_slice(&[0, 0, 0, 1]);
        q46.extend_from_slice(&[0xaa; 12]);
        q46.extend_from_slice(&[0xa4, 0x01, 0x04, 0x00]); // stream 1 at offset 1024
        q46.extend_from_slice(&(chlo.len() as u16).to_be_bytes());
        q46.extend_from_slice(&chlo);
        q46.resize(1350, 0);
        let info = run(&[q46]).expect("Q046");
        assert_eq!(info.sni(), Some("www.example.org"));
        assert_eq!(version_name(info.version), "Q046");
        assert!(info.is_gquic());
        // Q025: public header (version, 8-byte CID), 1-byte packet number, hash, private
        // flags, then the STREAM frame with little-endian fields.
        let mut q25 = vec![0x0d];
        q25.extend_from_slice(&RFC_DCID);
        q25.extend_from_slice(b"Q025");
        q25.push(1);
        q25.extend_from_slice(&[0xaa; 12]);
        q25.push(0);
        q25.extend_from_slice(&[0xa0, 0x01]);
        q25.extend_from_slice(&(chlo.len() as u16).to_le_bytes());
        q25.extend_from_slice(&chlo);
        q25.resize(1350, 0);
        assert_eq!(run(&[q25]).expect("Q025").sni(), Some("www.example.org"));
    }

    #[test]
    fn bounds_end_reading_with_a_reason() {
        let hello = rfc_client_hello();
        // CRYPTO data past max_crypto_bytes.
        let far = datagram(V1, 0, &crypto_frame(20_000, &hello[..10]));
        let info = run(&[far]).unwrap();
        assert_eq!(info.end, QuicEnd::CryptoOverflow);
        // A hello whose length needs more than the bound.
        let mut big = hello.clone();
        big[1] = 0x01; // 64 KiB + ...
        let info = run(&[datagram(V1, 0, &crypto_frame(0, &big))]).unwrap();
        assert!(matches!(
            info.end,
            QuicEnd::CryptoOverflow | QuicEnd::NotClientHello
        ));
        // Not a ClientHello at all (a ServerHello type).
        let mut server = hello.clone();
        server[0] = 2;
        let info = run(&[datagram(V1, 0, &crypto_frame(0, &server))]).unwrap();
        assert_eq!(info.end, QuicEnd::NotClientHello);
        // Only the start of the hello, then padding-only datagrams up to the limit.
        let mut sent = vec![datagram(V1, 0, &crypto_frame(0, &hello[..20]))];
        for pn in 1..limits().max_datagrams {
            sent.push(datagram(V1, pn, &[1]));
        }
        let info = run(&sent).unwrap();
        assert_eq!(info.end, QuicEnd::DatagramLimit);
        assert_eq!(info.history, "I");
        // The flow ends first.
        let (mut conn, none) = QuicConn::start(&sent[0], limits()).unwrap();
        assert!(none.is_none());
        assert_eq!(conn.flow_ended().end, QuicEnd::FlowEnded);
    }

    #[test]
    fn wrong_keys_truncation_and_unknown_frames_are_counted() {
        let hello = rfc_client_hello();
        let first = datagram(V1, 0, &crypto_frame(0, &hello[..100]));
        let (mut conn, _) = QuicConn::start(&first, limits()).unwrap();
        // A corrupted tag.
        let mut bad = datagram(V1, 1, &crypto_frame(100, &hello[100..]));
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(conn.datagram(true, &bad).is_none());
        // Cut short inside the packet.
        let good = datagram(V1, 1, &crypto_frame(100, &hello[100..]));
        assert!(conn.datagram(true, &good[..600]).is_none());
        // An unknown frame (NEW_TOKEN, 0x07) before the rest: the packet's frames stop there.
        let mut frames = vec![0x07];
        frames.extend(crypto_frame(100, &hello[100..]));
        assert!(conn.datagram(true, &datagram(V1, 2, &frames)).is_none());
        let info = conn
            .datagram(true, &good)
            .expect("whole with the good copy");
        assert_eq!(info.sni(), Some("example.com"));
        let counts = info.packets;
        assert_eq!(
            (
                counts.initials_decrypted,
                counts.decrypt_failed,
                counts.truncated,
                counts.unknown_frames
            ),
            (3, 1, 1, 1)
        );
        // Wrong keys from the start: never QUIC.
        let mut other = first.clone();
        other[6] ^= 0xff; // the DCID, so the keys differ
        assert!(QuicConn::start(&other, limits()).is_none());
        // Short datagrams are not Initials.
        assert!(QuicConn::start(&first[..1199], limits()).is_none());
    }

    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn no_panic_on_truncations_and_mutations() {
        let packets = [
            vector(RFC9001_A2),
            vector(RFC9369_A2),
            datagram(0xff00_001d, 0, &crypto_frame(0, &rfc_client_hello())),
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for p in &packets {
            for cut in 0..p.len() {
                let _ = QuicConn::start(&p[..cut], limits());
            }
            let (mut conn, _) = QuicConn::start(p, limits()).unwrap();
            for _ in 0..2000 {
                let mut m = p.clone();
                for _ in 0..1 + rng(&mut state) % 8 {
                    let at = (rng(&mut state) as usize) % m.len();
                    m[at] = rng(&mut state) as u8;
                }
                let cut = (rng(&mut state) as usize) % (m.len() + 1);
                let _ = QuicConn::start(&m[..cut], limits());
                let _ = conn.datagram(rng(&mut state).is_multiple_of(2), &m[..cut]);
            }
        }
        for _ in 0..20_000 {
            let len = 1200 + (rng(&mut state) as usize) % 200;
            let mut g: Vec<u8> = (0..len).map(|_| rng(&mut state) as u8).collect();
            g[0] |= 0xc0;
            let versions = [V1, V2, 0xff00_001d, Q050, 0x5130_3436, 0x5130_3235];
            let v = versions[(rng(&mut state) as usize) % versions.len()];
            g[1..5].copy_from_slice(&v.to_be_bytes());
            if rng(&mut state).is_multiple_of(3) {
                g[0] = 0x0d;
                g[9..13].copy_from_slice(b"Q043");
            }
            if let Some((mut conn, _)) = QuicConn::start(&g, limits()) {
                let _ = conn.datagram(true, &g);
                let _ = conn.datagram(false, &g);
            }
        }
        // The parse helpers on their own.
        let chlo = chlo_message(&[(b"SNI\0", b"a.example"), (b"UAID", b"ua")]);
        for cut in 0..chlo.len() {
            assert!(!matches!(parse_chlo(&chlo[..cut]), ChloParse::Done { .. }));
        }
        assert!(matches!(
            parse_chlo(&chlo),
            ChloParse::Done { sni: Some(_), .. }
        ));
    }
}
