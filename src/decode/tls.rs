//! TLS ClientHello reader for the client-to-server byte stream, and a session tracker that
//! reads the ServerHello and sees the handshake complete.
//!
//! Pure and bounded: no I/O, no panics, at most one allocation for the handshake body (only
//! when the ClientHello spans several records) plus the small result vectors; the tracker
//! holds only the ServerHello body ([`MAX_SERVER_HELLO_LEN`]) and record headers.

use super::reader::Reader;

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

/// A ClientHello handshake message without the record layer, as QUIC carries it in CRYPTO
/// frames (RFC 9001 4.1.3): msg_type (1), length (3), body. Bytes after the message are
/// ignored; a message that does not fit in `msg` is `Incomplete`.
pub fn parse_client_hello_message(msg: &[u8]) -> TlsParse {
    let Some(&[msg_type, a, b, c]) = msg.get(..HANDSHAKE_HEADER_LEN) else {
        return TlsParse::Incomplete {
            needed: HANDSHAKE_HEADER_LEN,
        };
    };
    let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if msg_type != HANDSHAKE_CLIENT_HELLO
        || !(MIN_CLIENT_HELLO_LEN..=MAX_CLIENT_HELLO_LEN).contains(&len)
    {
        return TlsParse::NotClientHello;
    }
    match msg.get(HANDSHAKE_HEADER_LEN..HANDSHAKE_HEADER_LEN + len) {
        Some(body) => parse_body(body),
        None => TlsParse::Incomplete {
            needed: HANDSHAKE_HEADER_LEN + len,
        },
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

/// Non-empty UTF-8 without control characters (host names, ALPN ids), else None.
pub(crate) fn clean_host_name(name: &[u8]) -> Option<String> {
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

// ---------------------------------------------------------------------------------------
// Server side: the ServerHello and whether the session got established.
// ---------------------------------------------------------------------------------------

const CONTENT_TYPE_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_TYPE_APPLICATION_DATA: u8 = 23;
/// Highest record type walked: heartbeat (RFC 6520). Anything above is not TLS we follow.
const CONTENT_TYPE_MAX: u8 = 24;
const HANDSHAKE_SERVER_HELLO: u8 = 2;
/// RFC 5246 6.2.3: a protected record may exceed the 2^14 plaintext limit by 2048 bytes.
const MAX_CIPHERTEXT_LEN: usize = MAX_RECORD_LEN + 2048;
/// legacy_version (2) + random (32) + cipher_suite (2): the shortest (draft TLS 1.3) form.
const MIN_SERVER_HELLO_LEN: usize = 36;
/// Largest ServerHello body we gather. Real ones are ~100 bytes, ~1.2 KB with a post-quantum
/// key share (an ML-KEM-768 ciphertext is 1088 bytes); 8 KiB bounds what a hostile server
/// can make us hold.
pub const MAX_SERVER_HELLO_LEN: usize = 8 * 1024;
/// Records followed per direction. A full TLS 1.2 handshake is 4-8 records per side and a
/// TLS 1.3 one 2-6, so a session not established within 64 never will be in a way we see.
pub const MAX_SESSION_RECORDS: u32 = 64;
/// Bytes followed per direction: server flights with certificate chains are 2-10 KB and
/// rarely reach 30 KB.
pub const MAX_SESSION_BYTES: u64 = 64 * 1024;
/// RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest
/// (SHA-256 of "HelloRetryRequest").
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];
pub const TLS13: u16 = 0x0304;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerHelloInfo {
    /// ServerHello.legacy_version (0x0303 for TLS 1.2 and 1.3; 0x7fXX in TLS 1.3 drafts).
    pub legacy_version: u16,
    /// The negotiated version: the supported_versions selection when present (TLS 1.3),
    /// else legacy_version.
    pub version: u16,
    pub cipher_suite: u16,
    /// The protocol the server selected with ALPN, when it is UTF-8 without control
    /// characters.
    pub alpn: Option<String>,
    /// The random is RFC 8446's HelloRetryRequest marker: the server asks for a new
    /// ClientHello and a real ServerHello follows.
    pub hello_retry: bool,
}

/// What the server side of a session showed so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerInfo {
    /// The final ServerHello; a HelloRetryRequest only when no ServerHello followed it.
    pub hello: Option<ServerHelloInfo>,
    /// Zeek's `established`: both sides switched to encrypted records (see
    /// [`SessionTracker`]).
    pub established: bool,
}

/// Parses a ServerHello handshake body (after the 4-byte handshake header). Handles the
/// TLS 1.3 draft layout (legacy_version 0x7fXX or 0x0304: no session id, no compression).
pub fn parse_server_hello(body: &[u8]) -> Option<ServerHelloInfo> {
    let mut r = Reader::new(body);
    let legacy_version = r.u16()?;
    let draft_layout = legacy_version >> 8 == 0x7f || legacy_version == TLS13;
    if legacy_version >> 8 != 3 && legacy_version >> 8 != 0x7f {
        return None;
    }
    let random = r.bytes(32)?;
    if !draft_layout && r.vec8()?.len() > 32 {
        return None; // session id
    }
    let cipher_suite = r.u16()?;
    if !draft_layout {
        r.u8()?; // compression method
    }
    let mut info = ServerHelloInfo {
        legacy_version,
        version: legacy_version,
        cipher_suite,
        alpn: None,
        hello_retry: random == HELLO_RETRY_RANDOM,
    };
    if r.is_empty() {
        return Some(info);
    }
    let mut exts = Reader::new(r.vec16()?);
    let (mut seen_alpn, mut seen_versions) = (false, false);
    while !exts.is_empty() {
        let ext_type = exts.u16()?;
        let data = exts.vec16()?;
        match ext_type {
            // RFC 8446 4.2.1: the server form is a single selected version.
            EXT_SUPPORTED_VERSIONS if !seen_versions => {
                seen_versions = true;
                let mut d = Reader::new(data);
                info.version = d.u16()?;
            }
            EXT_ALPN if !seen_alpn => {
                seen_alpn = true;
                // RFC 7301 3.1: the server's list holds exactly one name; take the first.
                let mut d = Reader::new(data);
                let mut list = Reader::new(d.vec16()?);
                info.alpn = clean_host_name(list.vec8()?);
            }
            _ => {}
        }
    }
    Some(info)
}

/// TLS 1.3 or one of its drafts (0x7fXX), the versions whose CCS Zeek ignores; the draft
/// test is Zeek's (`version / 0xff == 0x7f`).
fn is_tls13(version: u16) -> bool {
    version == TLS13 || version / 0xff == 0x7f
}

/// Zeek's name for a version (`SSL::version_strings` in base/protocols/ssl/consts.zeek),
/// including its fallbacks for TLS 1.3 drafts and unknown numbers.
pub fn version_name(version: u16) -> String {
    let known = match version {
        0x0002 => "SSLv2",
        0x0300 => "SSLv3",
        0x0301 => "TLSv10",
        0x0302 => "TLSv11",
        0x0303 => "TLSv12",
        0x0304 => "TLSv13",
        0xfeff => "DTLSv10",
        0xfefd => "DTLSv12",
        0xfefc => "DTLSv13",
        _ if version / 0xff == 0x7f => return format!("TLSv13-draft{}", version % 0x7f),
        _ => return format!("unknown-{version}"),
    };
    known.to_owned()
}

/// IANA name of a cipher suite, spelled as Zeek writes it, for the suites servers commonly
/// select; None for the rest, which are then left out rather than guessed.
pub fn cipher_name(suite: u16) -> Option<&'static str> {
    Some(match suite {
        0x0004 => "TLS_RSA_WITH_RC4_128_MD5",
        0x0005 => "TLS_RSA_WITH_RC4_128_SHA",
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        0x0013 => "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA",
        0x0016 => "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0032 => "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
        0x0033 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x0038 => "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
        0x0039 => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256",
        0x003d => "TLS_RSA_WITH_AES_256_CBC_SHA256",
        0x0041 => "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA",
        0x0045 => "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA",
        0x0067 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
        0x006b => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
        0x0084 => "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA",
        0x0088 => "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA",
        0x008c => "TLS_PSK_WITH_AES_128_CBC_SHA",
        0x008d => "TLS_PSK_WITH_AES_256_CBC_SHA",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0x00a8 => "TLS_PSK_WITH_AES_128_GCM_SHA256",
        0x00a9 => "TLS_PSK_WITH_AES_256_GCM_SHA384",
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0x1305 => "TLS_AES_128_CCM_8_SHA256",
        0xc004 => "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA",
        0xc005 => "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA",
        0xc007 => "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        0xc008 => "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc00e => "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA",
        0xc00f => "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA",
        0xc011 => "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        0xc012 => "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc023 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc024 => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        0xc025 => "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc026 => "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xc028 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        0xc029 => "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256",
        0xc02a => "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02d => "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02e => "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xc031 => "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256",
        0xc032 => "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384",
        0xc035 => "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA",
        0xc036 => "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA",
        0xc09c => "TLS_RSA_WITH_AES_128_CCM",
        0xc09d => "TLS_RSA_WITH_AES_256_CCM",
        0xc09e => "TLS_DHE_RSA_WITH_AES_128_CCM",
        0xc09f => "TLS_DHE_RSA_WITH_AES_256_CCM",
        0xc0ac => "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
        0xc0ad => "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
        0xc0ae => "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8",
        0xc0af => "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xccaa => "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xccab => "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
        0xccac => "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        0xccad => "TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        _ => return None,
    })
}

/// Incremental record walker for one direction: keeps only the record header being read
/// and how many body bytes of the current record are still to come.
#[derive(Debug, Default)]
struct RecordCursor {
    header: [u8; RECORD_HEADER_LEN],
    header_have: usize,
    content_type: u8,
    /// Body bytes of the current record not yet seen.
    left: usize,
    records: u32,
    bytes: u64,
}

/// Follows both directions of a TLS connection after the ClientHello, record by record,
/// without buffering record bodies: it gathers the server's ServerHello (across records and
/// segments) and decides `established` as Zeek does (the Spicy and binpac SSL analyzers,
/// `startEncryption` / `determine_encryption_on` in src/analyzer/protocol/ssl):
///
/// - below TLS 1.3, a side is encrypted once it sent ChangeCipherSpec;
/// - for TLS 1.3 (or a 0x7fXX draft), CCS is ignored and a side is encrypted once it sent a
///   non-empty application_data record after the ServerHello said TLS 1.3;
/// - the session is established when both sides are encrypted.
///
/// Feed each direction's in-order bytes in capture order, starting at the first byte of the
/// client's TLS stream and of the server's reply.
#[derive(Debug, Default)]
pub struct SessionTracker {
    client: RecordCursor,
    server: RecordCursor,
    /// Header of the server handshake message being read.
    hs_header: [u8; HANDSHAKE_HEADER_LEN],
    hs_header_have: usize,
    /// Body bytes of that message still to come.
    hs_left: usize,
    /// The message is a ServerHello, gathered into `hello_body`.
    hs_is_hello: bool,
    hello_body: Vec<u8>,
    hello: Option<ServerHelloInfo>,
    retry: Option<ServerHelloInfo>,
    tls13: bool,
    client_encrypted: bool,
    server_encrypted: bool,
    established: bool,
    /// The server hello or a record header was malformed, or a limit was reached.
    stopped: bool,
    /// The ServerInfo changed since the last `take_update`.
    changed: bool,
}

impl SessionTracker {
    pub fn new() -> SessionTracker {
        SessionTracker::default()
    }

    /// True once nothing more will be learned: established, malformed or over the limits.
    pub fn done(&self) -> bool {
        self.established || self.stopped
    }

    pub fn info(&self) -> ServerInfo {
        ServerInfo {
            hello: self.hello.clone().or_else(|| self.retry.clone()),
            established: self.established,
        }
    }

    /// The current ServerInfo when it changed since the last call and holds something.
    pub fn take_update(&mut self) -> Option<ServerInfo> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let info = self.info();
        (info.hello.is_some() || info.established).then_some(info)
    }

    /// Next in-order bytes of the client (`from_client`) or server stream.
    pub fn feed(&mut self, from_client: bool, mut data: &[u8]) {
        while !data.is_empty() && !self.done() {
            let cur = if from_client {
                &mut self.client
            } else {
                &mut self.server
            };
            if cur.left == 0 {
                let take = (RECORD_HEADER_LEN - cur.header_have).min(data.len());
                for (slot, b) in cur.header.iter_mut().skip(cur.header_have).zip(data) {
                    *slot = *b;
                }
                cur.header_have += take;
                cur.bytes += take as u64;
                data = data.get(take..).unwrap_or(&[]);
                if cur.header_have < RECORD_HEADER_LEN {
                    return;
                }
                cur.header_have = 0;
                let [content_type, major, minor, hi, lo] = cur.header;
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if !(CONTENT_TYPE_CHANGE_CIPHER_SPEC..=CONTENT_TYPE_MAX).contains(&content_type)
                    || major != 3
                    || minor > 4
                    || len > MAX_CIPHERTEXT_LEN
                {
                    self.stopped = true;
                    return;
                }
                cur.content_type = content_type;
                cur.left = len;
                cur.records += 1;
                if cur.records > MAX_SESSION_RECORDS {
                    self.stopped = true;
                    return;
                }
                self.record_started(from_client, content_type, len);
                continue;
            }
            let take = cur.left.min(data.len());
            let Some((body, rest)) = data.split_at_checked(take) else {
                return;
            };
            cur.left -= take;
            cur.bytes += take as u64;
            data = rest;
            let handshake = cur.content_type == CONTENT_TYPE_HANDSHAKE;
            if cur.bytes > MAX_SESSION_BYTES {
                self.stopped = true;
                return;
            }
            if !from_client && handshake && self.hello.is_none() && !self.server_encrypted {
                self.server_handshake(body);
            }
        }
    }

    fn record_started(&mut self, from_client: bool, content_type: u8, len: usize) {
        let encrypts = match content_type {
            CONTENT_TYPE_CHANGE_CIPHER_SPEC => !self.tls13,
            CONTENT_TYPE_APPLICATION_DATA => self.tls13 && len > 0,
            _ => false,
        };
        if !encrypts {
            return;
        }
        if from_client {
            self.client_encrypted = true;
        } else {
            self.server_encrypted = true;
        }
        if self.client_encrypted && self.server_encrypted && !self.established {
            self.established = true;
            self.changed = true;
        }
    }

    /// Server handshake-protocol bytes, until the final ServerHello is read.
    fn server_handshake(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.hello.is_none() && !self.stopped {
            if self.hs_left == 0 && !self.hs_is_hello {
                let take = (HANDSHAKE_HEADER_LEN - self.hs_header_have).min(data.len());
                for (slot, b) in self
                    .hs_header
                    .iter_mut()
                    .skip(self.hs_header_have)
                    .zip(data)
                {
                    *slot = *b;
                }
                self.hs_header_have += take;
                data = data.get(take..).unwrap_or(&[]);
                if self.hs_header_have < HANDSHAKE_HEADER_LEN {
                    return;
                }
                self.hs_header_have = 0;
                let [msg_type, a, b, c] = self.hs_header;
                let len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                self.hs_left = len;
                if msg_type == HANDSHAKE_SERVER_HELLO {
                    if !(MIN_SERVER_HELLO_LEN..=MAX_SERVER_HELLO_LEN).contains(&len) {
                        self.stopped = true;
                        return;
                    }
                    self.hs_is_hello = true;
                    self.hello_body.clear();
                    self.hello_body.reserve_exact(len);
                }
                continue;
            }
            let take = self.hs_left.min(data.len());
            let Some((body, rest)) = data.split_at_checked(take) else {
                return;
            };
            self.hs_left -= take;
            data = rest;
            if !self.hs_is_hello {
                continue;
            }
            self.hello_body.extend_from_slice(body);
            if self.hs_left > 0 {
                return;
            }
            self.hs_is_hello = false;
            let parsed = parse_server_hello(&self.hello_body);
            self.hello_body = Vec::new();
            let Some(info) = parsed else {
                self.stopped = true;
                return;
            };
            // Zeek marks TLS 1.3 on either number (set_version is called for both).
            self.tls13 |= is_tls13(info.legacy_version) || is_tls13(info.version);
            if info.hello_retry {
                self.retry = Some(info);
            } else {
                self.hello = Some(info);
            }
            self.changed = true;
        }
    }
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

#[cfg(test)]
mod session_tests {
    //! Both directions of real TLS connections, cut from the public captures in
    //! /work/shared/captures/public with `tests/data/app/extract.py FILE conv N OUT`
    //! (chunks in capture order). Version, cipher and ALPN are what tshark 4.0 shows for the
    //! ServerHello (tests/data/ssl_server_hello.tsv); `established` follows Zeek's rule,
    //! read off the record types tshark lists for each direction.
    use super::*;
    use crate::decode::conversation;

    /// zeek chrome-1250-tls-x25519-kyber.pcap: TLS 1.3, 1210-byte ServerHello (Kyber share),
    /// client CCS + application data after the server's flight.
    const KYBER: &[u8] = include_bytes!("../../tests/data/app/tls_chrome_kyber_conv.bin");
    /// zeek tls1_1.pcap: TLS 1.1, CCS from both sides.
    const TLS11: &[u8] = include_bytes!("../../tests/data/app/tls1_1_conv.bin");
    /// zeek signed_certificate_timestamp-2.pcap: TLS 1.2 with ALPN h2.
    const SCT2: &[u8] = include_bytes!("../../tests/data/app/tls_sct2_conv.bin");
    /// nDPI http_ipv6.pcap TCP connection 3: the server sends a warning alert before its
    /// ServerHello (15 03 03 00 02 01 70, then 16 03 03 00 41 02 ...).
    const NTOP: &[u8] = include_bytes!("../../tests/data/app/tls_ntop_ipv6_conv.bin");
    /// nDPI tls_2_reasms.pcapng: Facebook's 0xfb1a version in supported_versions; the client
    /// sends CCS right after its hello.
    const FB1A: &[u8] = include_bytes!("../../tests/data/app/tls_2_reasms_conv.bin");
    /// zeek openjdk-zeek.org-sll2.pcap: TLS 1.3, the client never answers the server flight.
    const OPENJDK: &[u8] = include_bytes!("../../tests/data/app/tls_openjdk_conv.bin");
    /// nDPI tls_alert.pcap connection 0: the server answers the hello with a fatal alert.
    const ALERT: &[u8] = include_bytes!("../../tests/data/app/tls_alert_conv.bin");

    /// (conversation, version, cipher suite, ALPN, established)
    type Expect = (&'static [u8], u16, u16, Option<&'static str>, bool);
    const CASES: [Expect; 6] = [
        (KYBER, 0x0304, 0x1301, None, true),
        (TLS11, 0x0302, 0xc013, None, true),
        (SCT2, 0x0303, 0xc02f, Some("h2"), true),
        (NTOP, 0x0303, 0xc02f, None, true),
        // 0xfb1a is not TLS 1.3 to Zeek, so the CCS of both sides count.
        (FB1A, 0xfb1a, 0x1301, None, true),
        (OPENJDK, 0x0304, 0x1302, None, false),
    ];

    /// Feeds a conversation, each chunk cut into pieces of `piece` bytes.
    fn run(conv: &[u8], piece: usize) -> (SessionTracker, Vec<ServerInfo>) {
        let mut t = SessionTracker::new();
        let mut updates = Vec::new();
        for (from_client, chunk) in conversation(conv) {
            for part in chunk.chunks(piece) {
                t.feed(from_client, part);
                updates.extend(t.take_update());
            }
        }
        (t, updates)
    }

    #[test]
    fn real_sessions_match_tshark_and_zeek_rule() {
        for (i, (conv, version, cipher, alpn, established)) in CASES.into_iter().enumerate() {
            let (t, updates) = run(conv, usize::MAX);
            let info = t.info();
            let hello = info.hello.clone().expect("a ServerHello");
            assert_eq!(hello.version, version, "case {i}");
            assert_eq!(hello.cipher_suite, cipher, "case {i}");
            assert_eq!(hello.alpn.as_deref(), alpn, "case {i}");
            assert!(!hello.hello_retry, "case {i}");
            assert_eq!(info.established, established, "case {i}");
            // An update at the ServerHello and one when established, merged when both
            // happen in one segment (FB1A: ServerHello and the server's CCS together).
            assert_eq!(updates.last(), Some(&info), "case {i}");
            assert!(updates.len() <= 2 && updates.windows(2).all(|w| w[0] != w[1]));
            assert_eq!(t.done(), established, "case {i}");
        }
    }

    #[test]
    fn every_split_gives_the_same_answer() {
        for (conv, ..) in CASES {
            let whole = run(conv, usize::MAX).0.info();
            for piece in [1, 2, 3, 4, 5, 7, 100, 1000] {
                assert_eq!(run(conv, piece).0.info(), whole, "pieces of {piece}");
            }
        }
        // Every cut of the chunk holding the Kyber ServerHello, fed as two segments.
        let chunks = conversation(KYBER);
        let whole = run(KYBER, usize::MAX).0.info();
        let (_, server_first) = chunks[1];
        for cut in 0..=server_first.len() {
            let mut t = SessionTracker::new();
            for (i, &(from_client, chunk)) in chunks.iter().enumerate() {
                if i == 1 {
                    t.feed(false, &chunk[..cut]);
                    t.feed(false, &chunk[cut..]);
                } else {
                    t.feed(from_client, chunk);
                }
            }
            assert_eq!(t.info(), whole, "cut {cut}");
        }
    }

    #[test]
    fn alert_instead_of_server_hello() {
        let (t, updates) = run(ALERT, usize::MAX);
        assert_eq!(t.info(), ServerInfo::default());
        assert!(updates.is_empty());
        assert!(!t.done(), "a later ServerHello could still come");
    }

    /// Server handshake message bodies of a conversation, in order.
    fn server_handshake_messages(conv: &[u8]) -> Vec<Vec<u8>> {
        let server: Vec<u8> = conversation(conv)
            .into_iter()
            .filter(|(c, _)| !c)
            .flat_map(|(_, b)| b.to_vec())
            .collect();
        let mut hs = Vec::new();
        let mut at = 0;
        while at + 5 <= server.len() {
            let len = usize::from(u16::from_be_bytes([server[at + 3], server[at + 4]]));
            let body = &server[at + 5..(at + 5 + len).min(server.len())];
            if server[at] == CONTENT_TYPE_HANDSHAKE {
                hs.extend_from_slice(body);
            } else if server[at] == CONTENT_TYPE_CHANGE_CIPHER_SPEC {
                break; // encrypted from here
            }
            at += 5 + len;
        }
        let mut out = Vec::new();
        let mut at = 0;
        while at + 4 <= hs.len() {
            let len = usize::from(hs[at + 1]) << 16
                | usize::from(hs[at + 2]) << 8
                | usize::from(hs[at + 3]);
            out.push(hs[at..(at + 4 + len).min(hs.len())].to_vec());
            at += 4 + len;
        }
        out
    }

    #[test]
    fn server_hellos_agree_with_tls_parser() {
        use tls_parser::{
            TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_message_handshake,
            parse_tls_server_hello_extensions,
        };
        for (conv, ..) in CASES {
            let msg = server_handshake_messages(conv).remove(0);
            assert_eq!(msg[0], HANDSHAKE_SERVER_HELLO);
            let ours = parse_server_hello(&msg[4..]).expect("our parse");
            let (_, parsed) = parse_tls_message_handshake(&msg).expect("tls-parser");
            let TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)) = parsed else {
                panic!("tls-parser: not a ServerHello");
            };
            assert_eq!(ours.legacy_version, sh.version.0);
            assert_eq!(ours.cipher_suite, sh.cipher.0);
            let (_, exts) = parse_tls_server_hello_extensions(sh.ext.unwrap_or(&[])).unwrap();
            let mut version = sh.version.0;
            let mut alpn = None;
            for ext in exts {
                match ext {
                    TlsExtension::SupportedVersions(v) => version = v[0].0,
                    TlsExtension::ALPN(ids) => {
                        alpn = Some(String::from_utf8(ids[0].to_vec()).unwrap())
                    }
                    _ => {}
                }
            }
            assert_eq!(ours.version, version);
            assert_eq!(ours.alpn, alpn);
        }
    }

    /// The Kyber conversation with its ServerHello's random replaced by RFC 8446's
    /// HelloRetryRequest value, and, when `then_real`, the real ServerHello record repeated
    /// after it as the server's second hello.
    fn with_hello_retry(then_real: bool) -> Vec<(bool, Vec<u8>)> {
        let chunks = conversation(KYBER);
        let (_, server) = chunks[1];
        // Record header 5 + handshake header 4 + legacy_version 2, then the random.
        let rec_len = 5 + usize::from(u16::from_be_bytes([server[3], server[4]]));
        let mut hrr = server[..rec_len].to_vec();
        hrr[11..43].copy_from_slice(&HELLO_RETRY_RANDOM);
        let mut out = vec![(true, chunks[0].1.to_vec()), (false, hrr)];
        if then_real {
            out.push((false, server.to_vec()));
        }
        out
    }

    #[test]
    fn hello_retry_request_is_not_the_final_hello() {
        let mut t = SessionTracker::new();
        for (from_client, bytes) in with_hello_retry(false) {
            t.feed(from_client, &bytes);
        }
        let only_retry = t.info().hello.expect("the retry request stands in");
        assert!(only_retry.hello_retry);
        assert_eq!(only_retry.version, TLS13);

        let mut t = SessionTracker::new();
        let mut updates = Vec::new();
        for (from_client, bytes) in with_hello_retry(true) {
            t.feed(from_client, &bytes);
            updates.extend(t.take_update());
        }
        let hello = t.info().hello.expect("final hello");
        assert!(!hello.hello_retry);
        assert_eq!((hello.version, hello.cipher_suite), (TLS13, 0x1301));
        assert_eq!(updates.len(), 2, "the retry request, then the ServerHello");
        // A CCS after the retry request is TLS 1.3 middlebox padding, not encryption.
        let mut t = SessionTracker::new();
        for (from_client, bytes) in with_hello_retry(false) {
            t.feed(from_client, &bytes);
        }
        t.feed(true, &[20, 3, 3, 0, 1, 1]);
        t.feed(false, &[20, 3, 3, 0, 1, 1]);
        assert!(!t.info().established);
    }

    #[test]
    fn version_names_as_zeek_writes_them() {
        assert_eq!(version_name(0x0300), "SSLv3");
        assert_eq!(version_name(0x0301), "TLSv10");
        assert_eq!(version_name(0x0302), "TLSv11");
        assert_eq!(version_name(0x0303), "TLSv12");
        assert_eq!(version_name(0x0304), "TLSv13");
        assert_eq!(version_name(0xfeff), "DTLSv10");
        assert_eq!(version_name(0xfefd), "DTLSv12");
        // Drafts as in Zeek's tls13 test baseline (TLSv13-draft14, TLSv13-draft16).
        assert_eq!(version_name(0x7f0e), "TLSv13-draft14");
        assert_eq!(version_name(0x7f10), "TLSv13-draft16");
        assert_eq!(version_name(0xfb1a), "unknown-64282");
        assert_eq!(cipher_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(
            cipher_name(0xc02f),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(cipher_name(0x0a0a), None, "GREASE or unknown: left out");
    }

    #[test]
    fn malformed_server_streams_stop_cleanly() {
        // Not a record at all (an HTTP reply where TLS was expected).
        let mut t = SessionTracker::new();
        t.feed(false, b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(t.done());
        assert_eq!(t.info(), ServerInfo::default());
        // Record longer than TLS allows.
        let mut t = SessionTracker::new();
        t.feed(false, &[22, 3, 3, 0x48, 0x01]);
        assert!(t.done());
        // ServerHello longer than MAX_SERVER_HELLO_LEN, rejected from its header.
        let mut t = SessionTracker::new();
        t.feed(false, &[22, 3, 3, 0, 4, 2, 0x01, 0, 0]);
        assert!(t.done());
        // A ServerHello whose extension block overruns: stop, report nothing.
        let (_, server) = conversation(SCT2)[1];
        let mut bad = server.to_vec();
        let ext_len_at = 5 + 4 + 2 + 32 + 1 + usize::from(server[5 + 4 + 2 + 32]) + 3;
        bad[ext_len_at] = 0xff;
        let mut t = SessionTracker::new();
        t.feed(false, &bad);
        assert!(t.done());
        assert_eq!(t.info(), ServerInfo::default());
    }

    #[test]
    fn record_limit_ends_tracking() {
        let mut t = SessionTracker::new();
        // Empty application data records, as TLS 1.0 CBC senders emit.
        for _ in 0..MAX_SESSION_RECORDS {
            t.feed(true, &[23, 3, 1, 0, 0]);
        }
        assert!(!t.done());
        t.feed(true, &[23, 3, 1, 0, 0]);
        assert!(t.done());
    }

    /// xorshift64: deterministic pseudo-random bytes without an extra crate.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn no_panic_on_mutated_conversations() {
        let mut seed = 0x853c_49e6_748f_ea9bu64;
        for (conv, ..) in CASES {
            let chunks = conversation(conv);
            for _ in 0..200 {
                let mut t = SessionTracker::new();
                for &(from_client, chunk) in &chunks {
                    let mut m = chunk.to_vec();
                    for _ in 0..rng(&mut seed) % 4 {
                        let i = (rng(&mut seed) as usize) % m.len();
                        m[i] = rng(&mut seed) as u8;
                    }
                    let cut = (rng(&mut seed) as usize) % (m.len() + 1);
                    t.feed(from_client, &m[..cut]);
                    t.feed(from_client, &m[cut..]);
                    let _ = t.take_update();
                }
                let info = t.info();
                if let Some(h) = info.hello {
                    assert!(h.alpn.is_none_or(|a| !a.is_empty()));
                }
            }
        }
        for _ in 0..2000 {
            let len = (rng(&mut seed) % 300) as usize;
            let mut m: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            if let [first, second, ..] = m.as_mut_slice() {
                *first = 22; // reach the handshake walk
                *second = 3;
            }
            let mut t = SessionTracker::new();
            t.feed(false, &m);
            let _ = parse_server_hello(&m);
        }
    }
}
