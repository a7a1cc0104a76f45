//! HTTP/1.0 and HTTP/1.1 request/response head parser, and a walker for chunked bodies.
//!
//! Pure and bounded: looks at most at [`MAX_HEAD_LEN`] bytes, allocates only the returned
//! strings; the chunked walker keeps a few integers, never body bytes. Strict on the first
//! line (known method, `HTTP/1.0` or `HTTP/1.1`) so that TLS or binary streams are rejected
//! within a few bytes; tolerant of bare LF line ends.

/// Longest head (request/status line + headers + blank line) we accept. Browsers send
/// 0.5-2 KB and common servers refuse heads above 8-16 KB (nginx 8 KB per header buffer,
/// Apache 8 KB per line), so anything longer is not traffic we need to understand.
pub const MAX_HEAD_LEN: usize = 16 * 1024;

/// Methods recognised in a request line: RFC 9110 and RFC 5789 (PATCH), WebDAV and its
/// extensions (RFC 4918, 3253, 3648, 3744, 4437, 4791, 5323, 5842), Microsoft Exchange's
/// B* methods, SSDP/GENA (M-SEARCH, NOTIFY, SUBSCRIBE, UNSUBSCRIBE), RPC over HTTP and
/// the PURGE cache method. These are the methods tshark and zeek recognise as HTTP.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"TRACE",
    b"CONNECT",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"VERSION-CONTROL",
    b"REPORT",
    b"CHECKOUT",
    b"CHECKIN",
    b"UNCHECKOUT",
    b"MKWORKSPACE",
    b"UPDATE",
    b"LABEL",
    b"MERGE",
    b"BASELINE-CONTROL",
    b"MKACTIVITY",
    b"ORDERPATCH",
    b"ACL",
    b"SEARCH",
    b"MKCALENDAR",
    b"BIND",
    b"UNBIND",
    b"REBIND",
    b"MKREDIRECTREF",
    b"UPDATEREDIRECTREF",
    b"BCOPY",
    b"BDELETE",
    b"BMOVE",
    b"BPROPFIND",
    b"BPROPPATCH",
    b"POLL",
    b"NOTIFY",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"M-SEARCH",
    b"X-MS-ENUMATTS",
    b"RPC_IN_DATA",
    b"RPC_OUT_DATA",
    b"PURGE",
];

/// Longest entry of [`METHODS`] (UPDATEREDIRECTREF).
const MAX_METHOD_LEN: usize = 17;
/// `HTTP/1.x`
const VERSION_LEN: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHead {
    pub method: String,
    /// Request-target as sent: origin form (`/path`), absolute form (`http://h/p`, via a
    /// forward proxy), authority form (`host:port`, CONNECT only) or `*`.
    pub uri: String,
    /// First non-empty Host header value, surrounding blanks trimmed; None if there is none.
    /// (Repeated Host headers are invalid; servers answer 400.)
    pub host: Option<String>,
    /// Content-Length when present and valid (identical comma-separated repeats allowed).
    pub content_length: Option<u64>,
    /// The last transfer coding is `chunked`.
    pub chunked: bool,
    /// Bytes from the start of the request line to the end of the blank line.
    pub head_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpParse<T> {
    Done(T),
    Incomplete,
    NotHttp,
}

/// Parses a request head at the start of `buf` (the client-to-server stream).
pub fn parse_request_head(buf: &[u8]) -> HttpParse<RequestHead> {
    let window = buf.get(..MAX_HEAD_LEN).unwrap_or(buf);
    let Some((first, first_end)) = next_line(window, 0) else {
        return if request_line_prefix_ok(window) && window.len() < MAX_HEAD_LEN {
            HttpParse::Incomplete
        } else {
            HttpParse::NotHttp
        };
    };
    let Some((method, uri)) = parse_request_line(first) else {
        return HttpParse::NotHttp;
    };
    let mut head = RequestHead {
        method: String::from_utf8_lossy(method).into_owned(),
        uri: String::from_utf8_lossy(uri).into_owned(),
        ..RequestHead::default()
    };
    let mut cl = ContentLength::Absent;
    let walk = walk_headers(window, first_end, |name, value| {
        if name.eq_ignore_ascii_case(b"host") {
            if head.host.is_none() {
                let v = trim(value);
                if !v.is_empty() {
                    head.host = Some(String::from_utf8_lossy(v).into_owned());
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            cl = cl.merge(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Codings accumulate across repeated headers; only the last one matters.
            if let Some(last) = value
                .rsplit(|&b| b == b',')
                .map(trim)
                .find(|c| !c.is_empty())
            {
                head.chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        }
    });
    match walk {
        Walk::End(len) => {
            head.head_len = len;
            head.content_length = cl.value();
            HttpParse::Done(head)
        }
        Walk::Incomplete if buf.len() < MAX_HEAD_LEN => HttpParse::Incomplete,
        Walk::Incomplete | Walk::Bad => HttpParse::NotHttp,
    }
}

/// Status code and head length of a response head.
pub fn parse_response_head(buf: &[u8]) -> HttpParse<(u16, usize)> {
    let window = buf.get(..MAX_HEAD_LEN).unwrap_or(buf);
    let Some((first, first_end)) = next_line(window, 0) else {
        return if status_line_prefix_ok(window) && window.len() < MAX_HEAD_LEN {
            HttpParse::Incomplete
        } else {
            HttpParse::NotHttp
        };
    };
    let Some(status) = parse_status_line(first) else {
        return HttpParse::NotHttp;
    };
    match walk_headers(window, first_end, |_, _| {}) {
        Walk::End(len) => HttpParse::Done((status, len)),
        Walk::Incomplete if buf.len() < MAX_HEAD_LEN => HttpParse::Incomplete,
        Walk::Incomplete | Walk::Bad => HttpParse::NotHttp,
    }
}

/// Returns the line starting at `start` without its terminator (LF or CRLF) and the offset
/// just past the terminator, or None when no LF follows yet.
fn next_line(buf: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(start..)?;
    let lf = rest.iter().position(|&b| b == b'\n')?;
    let line = rest.get(..lf)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, start + lf + 1))
}

enum Walk {
    /// Head ends at this offset (just past the blank line).
    End(usize),
    Incomplete,
    Bad,
}

/// Walks header lines from `pos` until the blank line, calling `on_header` for each field.
/// Folded continuation lines (obs-fold) are accepted and ignored.
fn walk_headers(buf: &[u8], mut pos: usize, mut on_header: impl FnMut(&[u8], &[u8])) -> Walk {
    loop {
        let Some((line, next)) = next_line(buf, pos) else {
            let partial = buf.get(pos..).unwrap_or(&[]);
            return if header_prefix_ok(partial) {
                Walk::Incomplete
            } else {
                Walk::Bad
            };
        };
        if line.is_empty() {
            return Walk::End(next);
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            if !line.iter().all(|&b| is_field_byte(b)) {
                return Walk::Bad;
            }
        } else {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Walk::Bad;
            };
            let name = line.get(..colon).unwrap_or(&[]);
            let value = line.get(colon + 1..).unwrap_or(&[]);
            if name.is_empty()
                || !name.iter().all(|&b| is_tchar(b))
                || !value.iter().all(|&b| is_field_byte(b))
            {
                return Walk::Bad;
            }
            on_header(name, value);
        }
        pos = next;
    }
}

/// Could `partial` (an unterminated line) still become a header line or the blank line?
fn header_prefix_ok(partial: &[u8]) -> bool {
    match partial {
        [] | [b'\r'] => true,
        [b' ' | b'\t', ..] => partial.iter().all(|&b| is_field_byte(b) || b == b'\r'),
        _ => match partial.iter().position(|&b| b == b':') {
            Some(colon) => {
                colon > 0
                    && partial
                        .get(..colon)
                        .is_some_and(|n| n.iter().all(|&b| is_tchar(b)))
                    && partial
                        .get(colon + 1..)
                        .is_some_and(|v| v.iter().all(|&b| is_field_byte(b) || b == b'\r'))
            }
            None => partial.iter().all(|&b| is_tchar(b)),
        },
    }
}

/// `METHOD SP request-target SP HTTP/1.x` (the line terminator already stripped).
fn parse_request_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp1 = line.iter().position(|&b| b == b' ')?;
    let method = line.get(..sp1)?;
    if !METHODS.contains(&method) {
        return None;
    }
    let rest = line.get(sp1 + 1..)?;
    let sp2 = rest.iter().position(|&b| b == b' ')?;
    let target = rest.get(..sp2)?;
    let version = rest.get(sp2 + 1..)?;
    if !is_version(version) || !target_ok(method, target) {
        return None;
    }
    Some((method, target))
}

/// Could `partial` (no LF yet) still become a valid request line?
fn request_line_prefix_ok(partial: &[u8]) -> bool {
    let Some(sp1) = partial.iter().position(|&b| b == b' ') else {
        // Only a method so far: it must be a prefix of a known method.
        return partial.len() <= MAX_METHOD_LEN && METHODS.iter().any(|m| m.starts_with(partial));
    };
    let method = partial.get(..sp1).unwrap_or(&[]);
    if !METHODS.contains(&method) {
        return false;
    }
    let rest = partial.get(sp1 + 1..).unwrap_or(&[]);
    match rest.iter().position(|&b| b == b' ') {
        None => {
            let shape_ok = match rest.first() {
                None => true,
                Some(_) if method == b"CONNECT" => true,
                Some(&c) => c == b'/' || c == b'*' || c.is_ascii_alphabetic(),
            };
            shape_ok && rest.iter().all(|&b| is_target_byte(b))
        }
        Some(sp2) => {
            let target = rest.get(..sp2).unwrap_or(&[]);
            let version = rest.get(sp2 + 1..).unwrap_or(&[]);
            let version = version.strip_suffix(b"\r").unwrap_or(version);
            target_ok(method, target) && is_version_prefix(version)
        }
    }
}

/// `HTTP/1.x SP 3DIGIT [SP reason]`; a missing reason (even without the SP) is tolerated.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let version = line.get(..VERSION_LEN)?;
    if !is_version(version) || line.get(VERSION_LEN) != Some(&b' ') {
        return None;
    }
    let code = line.get(VERSION_LEN + 1..VERSION_LEN + 4)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    if status < 100 {
        return None;
    }
    let reason = line.get(VERSION_LEN + 4..).unwrap_or(&[]);
    match reason.split_first() {
        None => Some(status),
        Some((b' ', text)) if text.iter().all(|&b| is_field_byte(b)) => Some(status),
        _ => None,
    }
}

fn status_line_prefix_ok(partial: &[u8]) -> bool {
    let head = partial.get(..VERSION_LEN).unwrap_or(partial);
    if !is_version_prefix(head) {
        return false;
    }
    let rest = partial.get(VERSION_LEN..).unwrap_or(&[]);
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    match rest.split_first() {
        None => true,
        Some((b' ', after)) => {
            let code = after.get(..3).unwrap_or(after);
            code.iter().all(u8::is_ascii_digit)
                && after
                    .get(3..)
                    .is_none_or(|r| r.iter().all(|&b| is_field_byte(b)))
        }
        _ => false,
    }
}

fn is_version(v: &[u8]) -> bool {
    v == b"HTTP/1.1" || v == b"HTTP/1.0"
}

fn is_version_prefix(v: &[u8]) -> bool {
    v.len() <= VERSION_LEN && (b"HTTP/1.1".starts_with(v) || b"HTTP/1.0".starts_with(v))
}

/// Request-target shape per method: authority form only for CONNECT (RFC 9110 9.3.6),
/// otherwise origin form, absolute form or `*`.
fn target_ok(method: &[u8], target: &[u8]) -> bool {
    if target.is_empty() || !target.iter().all(|&b| is_target_byte(b)) {
        return false;
    }
    if method == b"CONNECT" {
        return authority_ok(target);
    }
    match target.first() {
        Some(b'/') => true,
        Some(b'*') => target.len() == 1,
        Some(c) if c.is_ascii_alphabetic() => target.windows(3).any(|w| w == b"://"),
        _ => false,
    }
}

/// `host:port` with a non-empty host (name, IPv4 or bracketed IPv6) and a 1-5 digit port.
fn authority_ok(target: &[u8]) -> bool {
    let Some(colon) = target.iter().rposition(|&b| b == b':') else {
        return false;
    };
    let host = target.get(..colon).unwrap_or(&[]);
    let port = target.get(colon + 1..).unwrap_or(&[]);
    !host.is_empty()
        && !host.contains(&b'/')
        && (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit)
}

/// Visible ASCII plus obs-text bytes (raw UTF-8 in paths is common in the wild).
fn is_target_byte(b: u8) -> bool {
    b > 0x20 && b != 0x7f
}

/// RFC 9110 5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Field value bytes: HTAB, SP, VCHAR, obs-text. Other controls (NUL, bare CR) are not HTTP.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

fn trim(v: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_blank(b)).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or(&[])
}

/// Content-Length accumulated over repeated headers (RFC 9110 8.6: a list of identical
/// values may be treated as one; anything else is invalid).
#[derive(Clone, Copy)]
enum ContentLength {
    Absent,
    Value(u64),
    Invalid,
}

impl ContentLength {
    fn merge(self, raw: &[u8]) -> Self {
        let mut acc = self;
        for part in raw.split(|&b| b == b',') {
            let part = trim(part);
            let parsed = if part.is_empty() || part.len() > 19 {
                None // 19 digits always fit in u64
            } else if part.iter().all(u8::is_ascii_digit) {
                Some(part.iter().fold(0u64, |a, &d| a * 10 + u64::from(d - b'0')))
            } else {
                None
            };
            acc = match (acc, parsed) {
                (ContentLength::Absent, Some(v)) => ContentLength::Value(v),
                (ContentLength::Value(a), Some(v)) if a == v => ContentLength::Value(a),
                _ => ContentLength::Invalid,
            };
        }
        acc
    }

    fn value(self) -> Option<u64> {
        match self {
            ContentLength::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// Longest chunk-size line (size, extensions) or trailer section we walk. Real size lines are
/// a few bytes; extensions and trailers are header-like, so the head limit applies.
pub const MAX_CHUNK_META_LEN: usize = MAX_HEAD_LEN;

/// Where a [`ChunkedBody`] is inside the chunked coding (RFC 9112 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Hex digits of chunk-size (`digits` read so far).
    Size { digits: u8 },
    /// After the size: BWS and chunk extensions until the line end.
    Ext,
    /// CR seen at the end of the size line; LF must follow.
    SizeLf,
    /// Chunk data still to come.
    Data { left: u64 },
    /// Chunk data complete; its CRLF must follow.
    DataEnd,
    /// CR seen after the data; LF must follow.
    DataLf,
    /// In the trailer section; `empty` while the current line has no bytes yet.
    Trailer { empty: bool },
    /// CR seen in the trailer section.
    TrailerLf { empty: bool },
}

/// Walks a chunked message body incrementally, across any segment boundaries, keeping only
/// its position: body data is counted, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedBody {
    state: ChunkState,
    size: u64,
    /// Bytes of the current size line, or of the trailer section.
    meta_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedStep {
    /// Every byte given belongs to the body and more is to come.
    More,
    /// The body ended after this many of the bytes given; the rest is the next message.
    End(usize),
    /// Not a well-formed chunked body: where the next message starts is unknown.
    Bad,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        ChunkedBody {
            state: ChunkState::Size { digits: 0 },
            size: 0,
            meta_len: 0,
        }
    }
}

impl ChunkedBody {
    pub fn new() -> ChunkedBody {
        ChunkedBody::default()
    }

    /// Next bytes of the body. After `End` or `Bad` the walker must not be fed again.
    pub fn feed(&mut self, data: &[u8]) -> ChunkedStep {
        let mut pos = 0;
        while let Some(&b) = data.get(pos) {
            if let ChunkState::Data { left } = self.state {
                // Skip chunk data in one step; `left` may exceed usize on 32-bit targets.
                let avail = (data.len() - pos) as u64;
                let take = left.min(avail);
                pos += take as usize;
                self.state = if take == left {
                    ChunkState::DataEnd
                } else {
                    ChunkState::Data { left: left - take }
                };
                continue;
            }
            pos += 1;
            self.meta_len += 1;
            if self.meta_len > MAX_CHUNK_META_LEN {
                return ChunkedStep::Bad;
            }
            self.state = match (self.state, b) {
                (ChunkState::Size { digits }, _) if b.is_ascii_hexdigit() => {
                    let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                    let Some(size) = self.size.checked_mul(16).and_then(|s| s.checked_add(digit))
                    else {
                        return ChunkedStep::Bad; // larger than any real body
                    };
                    self.size = size;
                    ChunkState::Size {
                        digits: digits.saturating_add(1),
                    }
                }
                (ChunkState::Size { digits: 0 }, _) => return ChunkedStep::Bad,
                (ChunkState::Size { .. }, b' ' | b'\t' | b';') => ChunkState::Ext,
                (ChunkState::Size { .. } | ChunkState::Ext, b'\r') => ChunkState::SizeLf,
                (ChunkState::Size { .. } | ChunkState::Ext | ChunkState::SizeLf, b'\n') => {
                    self.meta_len = 0;
                    if self.size == 0 {
                        ChunkState::Trailer { empty: true }
                    } else {
                        ChunkState::Data { left: self.size }
                    }
                }
                (ChunkState::Ext, _) if b == b'\t' || !b.is_ascii_control() => ChunkState::Ext,
                (ChunkState::DataEnd, b'\r') => ChunkState::DataLf,
                (ChunkState::DataEnd | ChunkState::DataLf, b'\n') => {
                    self.size = 0;
                    self.meta_len = 0;
                    ChunkState::Size { digits: 0 }
                }
                (ChunkState::Trailer { empty }, b'\r') => ChunkState::TrailerLf { empty },
                (ChunkState::Trailer { empty } | ChunkState::TrailerLf { empty }, b'\n') => {
                    if empty {
                        return ChunkedStep::End(pos);
                    }
                    ChunkState::Trailer { empty: true }
                }
                (ChunkState::Trailer { .. }, _) if b == b'\t' || !b.is_ascii_control() => {
                    ChunkState::Trailer { empty: false }
                }
                _ => return ChunkedStep::Bad,
            };
        }
        ChunkedStep::More
    }
}

#[cfg(test)]
mod tests {
    //! Request and response heads are the exact bytes of the public captures in
    //! /work/shared/captures/public (extracted with tests/data/app/extract.py); method, uri
    //! and host are checked against http.requests[] of the tshark oracles.
    use super::*;

    /// zeek http-proxy.pcap, frame 4: absolute-URI request to a forward proxy.
    const PROXY_REQ: &[u8] = b"GET HTTP://bro.org/ HTTP/1.1\r\nUser-Agent: curl/7.33.0\r\nHost: bro.org\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n";
    /// Its response head, followed by the first body bytes.
    const PROXY_RESP: &[u8] = b"HTTP/1.1 200 OK\r\nDate: Mon, 13 Jan 2014 23:12:30 GMT\r\nServer: Apache/2.4.6 (Fedora)\r\nLast-Modified: Mon, 13 Jan 2014 22:13:28 GMT\r\nETag: \"3e59-4efe1629d5200\"\r\nAccept-Ranges: bytes\r\nContent-Length: 15961\r\nContent-Type: text/html; charset=UTF-8\r\nVary: Accept-Encoding\r\n\r\n\n<!D";
    /// suricata http-connect-tls: CONNECT without Host, an extra LF, then tunnel bytes.
    const VICTOR_REQ: &[u8] =
        b"CONNECT abc:443 HTTP/1.1\r\nUser-Agent: Victor/1.0\r\n\r\n\n\x16\x03\x00\x00\x00\x00";
    const VICTOR_RESP: &[u8] = b"HTTP/1.1 200 OK\r\nServer: VictorServer/1.0\r\n\r\n\n";
    /// nDPI http_connect.pcap: client stream = CONNECT head (203 bytes) + TLS ClientHello.
    const APACHE_CONNECT: &[u8] =
        include_bytes!("../../tests/data/app/http_connect_apache_client.bin");
    /// Its proxy's reply, then the tunnelled ServerHello (16 03 03 00 ...).
    const APACHE_RESP: &[u8] = b"HTTP/1.0 200 Connection Established\r\nProxy-agent: Apache/2.4.41 (Ubuntu)\r\n\r\n\x16\x03\x03\x00";
    /// zeek bittorrent/tracker.pcap, frame 4: tracker announce.
    const TRACKER_REQ: &[u8] = b"GET /announce?info_hash=%e4%be%9eM%b8v%e3%e3%17%97x%b0%3e%90b%97%be%5c%8d%be&peer_id=-DE13F0-VnpZRF8ZP9iv&port=63448&uploaded=0&downloaded=0&left=1921843200&corrupt=0&key=764CA003&event=started&numwant=200&compact=1&no_peer_id=1&supportcrypto=1&redundant=0 HTTP/1.1\r\nHost: torrent.ubuntu.com:6969\r\nUser-Agent: Deluge 1.3.15\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n";
    const TRACKER_RESP: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 397\r\nContent-Type: text/plain\r\nPragma: no-cache\r\nContent-Encoding: gzip\r\n\r\n\x1f\x8b\x08\x00";
    /// nDPI http_ipv6.pcap holds no HTTP (its oracle lists no requests), only TLS: the
    /// first bytes of a ClientHello to www.ntop.org.
    const NTOP_TLS: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0xcf, 0x01, 0x00, 0x00, 0xcb, 0x03, 0x03, 0x72, 0xa7, 0xb8,
    ];

    fn req(buf: &[u8]) -> RequestHead {
        match parse_request_head(buf) {
            HttpParse::Done(h) => h,
            other => panic!("expected a request head, got {other:?}"),
        }
    }

    #[test]
    fn real_requests_match_oracle() {
        let h = req(PROXY_REQ);
        assert_eq!(
            (h.method.as_str(), h.uri.as_str()),
            ("GET", "HTTP://bro.org/")
        );
        assert_eq!(h.host.as_deref(), Some("bro.org"));
        assert_eq!(h.head_len, PROXY_REQ.len());
        assert_eq!((h.content_length, h.chunked), (None, false));

        let h = req(VICTOR_REQ);
        assert_eq!((h.method.as_str(), h.uri.as_str()), ("CONNECT", "abc:443"));
        assert_eq!(h.host, None);
        assert_eq!(
            h.head_len, 52,
            "the stray LF after the head belongs to the tunnel"
        );

        let h = req(APACHE_CONNECT);
        assert_eq!(
            (h.method.as_str(), h.uri.as_str()),
            ("CONNECT", "apache.org:443")
        );
        assert_eq!(h.host.as_deref(), Some("apache.org:443"));
        assert_eq!(h.head_len, 203);
        assert_eq!(APACHE_CONNECT.get(203..206), Some(&[0x16, 0x03, 0x01][..]));

        let h = req(TRACKER_REQ);
        assert_eq!(h.method, "GET");
        // uri exactly as in the oracle's http.requests[0].uri
        assert_eq!(
            h.uri,
            "/announce?info_hash=%e4%be%9eM%b8v%e3%e3%17%97x%b0%3e%90b%97%be%5c%8d%be\
             &peer_id=-DE13F0-VnpZRF8ZP9iv&port=63448&uploaded=0&downloaded=0\
             &left=1921843200&corrupt=0&key=764CA003&event=started&numwant=200&compact=1\
             &no_peer_id=1&supportcrypto=1&redundant=0"
        );
        assert_eq!(h.host.as_deref(), Some("torrent.ubuntu.com:6969"));
        assert_eq!(h.head_len, TRACKER_REQ.len());
    }

    #[test]
    fn tunnel_after_connect_carries_the_oracle_sni() {
        use crate::decode::tls::{TlsParse, parse_client_hello};
        let h = req(APACHE_CONNECT);
        let TlsParse::ClientHello(info) = parse_client_hello(&APACHE_CONNECT[h.head_len..]) else {
            panic!("no ClientHello after CONNECT");
        };
        assert_eq!(info.sni.as_deref(), Some("apache.org"));
        assert_eq!(info.supported_versions, vec![0x0304, 0x0303]);
    }

    #[test]
    fn real_responses() {
        assert_eq!(
            parse_response_head(PROXY_RESP),
            HttpParse::Done((200, PROXY_RESP.len() - 4))
        );
        assert_eq!(parse_response_head(VICTOR_RESP), HttpParse::Done((200, 45)));
        assert_eq!(parse_response_head(APACHE_RESP), HttpParse::Done((200, 76)));
        assert_eq!(
            parse_response_head(TRACKER_RESP),
            HttpParse::Done((200, 108))
        );
        assert_eq!(
            parse_response_head(b"HTTP/1.1 407\r\n\r\n"),
            HttpParse::Done((407, 16))
        );
        assert_eq!(
            parse_response_head(b"HTTP/1.1 200 OK\n\n"),
            HttpParse::Done((200, 17))
        );
    }

    #[test]
    fn every_prefix_is_incomplete_until_the_blank_line() {
        for full in [
            PROXY_REQ,
            TRACKER_REQ,
            &APACHE_CONNECT[..203],
            &VICTOR_REQ[..52],
        ] {
            for n in 0..full.len() {
                assert_eq!(
                    parse_request_head(&full[..n]),
                    HttpParse::Incomplete,
                    "prefix {n}"
                );
            }
            assert!(matches!(parse_request_head(full), HttpParse::Done(_)));
        }
        for full in [&PROXY_RESP[..PROXY_RESP.len() - 4], &APACHE_RESP[..76]] {
            for n in 0..full.len() {
                assert_eq!(
                    parse_response_head(&full[..n]),
                    HttpParse::Incomplete,
                    "prefix {n}"
                );
            }
        }
    }

    #[test]
    fn bare_lf_heads_are_accepted() {
        let lf: Vec<u8> = PROXY_REQ.iter().copied().filter(|&b| b != b'\r').collect();
        let h = req(&lf);
        assert_eq!(h.host.as_deref(), Some("bro.org"));
        assert_eq!(h.head_len, lf.len());
    }

    #[test]
    fn headers_host_length_and_chunked() {
        let h = req(
            b"POST /up HTTP/1.0\r\nhOsT: \t example.org:8080 \r\nContent-Length: 42\r\n\r\nbody",
        );
        assert_eq!(h.host.as_deref(), Some("example.org:8080"));
        assert_eq!(h.content_length, Some(42));
        assert!(!h.chunked);
        assert_eq!(h.head_len, 68);

        let h = req(b"PUT /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert!(h.chunked);
        let h = req(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert!(!h.chunked, "chunked must be the final coding");
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(h.content_length, Some(5));
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert_eq!(h.content_length, None);
        let h = req(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n");
        assert_eq!(h.content_length, None);
        let h = req(b"GET / HTTP/1.1\r\nHost:   \r\nHost: second\r\nHost: third\r\n\r\n");
        assert_eq!(
            h.host.as_deref(),
            Some("second"),
            "first non-empty Host wins"
        );
        let h = req(b"PROPFIND /dav/ HTTP/1.1\r\nHost: d\r\nX-Long: a\r\n b\r\n\r\n");
        assert_eq!(h.method, "PROPFIND");
        let h = req(b"OPTIONS * HTTP/1.1\r\n\r\n");
        assert_eq!(h.uri, "*");
        let h = req(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n");
        assert_eq!(h.uri, "[2001:db8::1]:443");
    }

    #[test]
    fn non_http_is_rejected_early() {
        assert_eq!(parse_request_head(NTOP_TLS), HttpParse::NotHttp);
        assert_eq!(parse_response_head(NTOP_TLS), HttpParse::NotHttp);
        for bad in [
            &b"get / HTTP/1.1\r\n"[..],
            b"GETS",
            b"FOO / HTTP/1.1\r\n\r\n",
            b"GET  / HTTP/1.1\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET foo HTTP/1.1\r\n\r\n",
            b"GET /\x00 HTTP/1.1\r\n\r\n",
            b"CONNECT /index.html HTTP/1.1\r\n\r\n",
            b"CONNECT example.com HTTP/1.1\r\n\r\n",
            b"CONNECT example.com:123456 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX\x01",
            b"SSH-2.0-OpenSSH_9.6\r\n",
        ] {
            assert_eq!(
                parse_request_head(bad),
                HttpParse::NotHttp,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"HTTP/1.2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20x OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 2000\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"http/1.1 200 OK\r\n",
            b"HTTP/1.1 200 OK\r\nX\x00",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse_response_head(bad),
                HttpParse::NotHttp,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn plausible_prefixes_stay_incomplete() {
        for p in [
            &b""[..],
            b"G",
            b"M-SEA",
            b"GET ",
            b"GET /a",
            b"GET /a HTTP/1",
            b"GET /a HTTP/1.1\r",
        ] {
            assert_eq!(
                parse_request_head(p),
                HttpParse::Incomplete,
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
        for p in [
            &b""[..],
            b"HTT",
            b"HTTP/1.1",
            b"HTTP/1.1 2",
            b"HTTP/1.1 200 O",
            b"HTTP/1.1 200\r",
        ] {
            assert_eq!(
                parse_response_head(p),
                HttpParse::Incomplete,
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
    }

    #[test]
    fn head_length_cap() {
        let mut big = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        big.resize(MAX_HEAD_LEN - 4, b'a');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(req(&big).head_len, MAX_HEAD_LEN);
        // One byte more and the blank line falls outside the window.
        let mut over = big[..big.len() - 4].to_vec();
        over.extend_from_slice(b"a\r\n\r\n");
        assert_eq!(parse_request_head(&over), HttpParse::NotHttp);
        // An unterminated head that already fills the window is given up on.
        assert_eq!(
            parse_request_head(&over[..MAX_HEAD_LEN]),
            HttpParse::NotHttp
        );
        assert_eq!(
            parse_request_head(&over[..MAX_HEAD_LEN - 1]),
            HttpParse::Incomplete
        );
        // A request line longer than the cap.
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_HEAD_LEN + 10, b'a');
        assert_eq!(parse_request_head(&long_line), HttpParse::NotHttp);
    }

    /// No public capture has a chunked request body, so the chunk framing (RFC 9112 7.1) is
    /// written here around real bytes: the tracker announce of zeek bittorrent/tracker.pcap
    /// as chunk data, split 0x40 + 0x1 + rest, with an extension and a trailer field.
    fn chunked_body() -> Vec<u8> {
        let data = TRACKER_REQ;
        let mut b = Vec::new();
        b.extend_from_slice(b"40;part=first\r\n");
        b.extend_from_slice(&data[..0x40]);
        b.extend_from_slice(b"\r\n1 \r\n");
        b.extend_from_slice(&data[0x40..0x41]);
        b.extend_from_slice(format!("\r\n{:X}\r\n", data.len() - 0x41).as_bytes());
        b.extend_from_slice(&data[0x41..]);
        b.extend_from_slice(b"\r\n0\r\nExpires: Mon, 13 Jan 2014 23:12:30 GMT\r\n\r\n");
        b
    }

    fn walk(parts: &[&[u8]]) -> Vec<ChunkedStep> {
        let mut w = ChunkedBody::new();
        parts.iter().map(|p| w.feed(p)).collect()
    }

    #[test]
    fn chunked_body_ends_where_the_next_request_starts() {
        let body = chunked_body();
        let mut stream = body.clone();
        stream.extend_from_slice(PROXY_REQ);
        assert_eq!(walk(&[&stream]), [ChunkedStep::End(body.len())]);
        assert_eq!(req(&stream[body.len()..]).uri, "HTTP://bro.org/");
    }

    #[test]
    fn chunked_body_split_at_every_byte() {
        let body = chunked_body();
        let mut stream = body.clone();
        stream.extend_from_slice(PROXY_REQ);
        for cut in 0..body.len() {
            assert_eq!(
                walk(&[&stream[..cut], &stream[cut..]]),
                [ChunkedStep::More, ChunkedStep::End(body.len() - cut)],
                "cut {cut}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let steps = walk(&bytes);
        assert!(
            steps[..body.len() - 1]
                .iter()
                .all(|s| *s == ChunkedStep::More)
        );
        assert_eq!(steps.last(), Some(&ChunkedStep::End(1)));
    }

    #[test]
    fn chunked_framing_variants() {
        // Bare LF line ends, upper/lower case hex, leading zeros, no trailer.
        assert_eq!(
            walk(&[b"0004\nWiki\na\n0123456789\n0\n\nGET"]),
            [ChunkedStep::End(26)]
        );
        assert_eq!(
            walk(&[b"A\r\n0123456789\r\n0\r\n\r\n"]),
            [ChunkedStep::End(20)]
        );
        assert_eq!(walk(&[b"0\r\n\r\n"]), [ChunkedStep::End(5)]);
        assert_eq!(
            walk(&[b"1\t;a=\"b c\"\r\nx\r\n0\r\n\r\n"]),
            [ChunkedStep::End(20)]
        );
    }

    #[test]
    fn hostile_chunk_sizes_stop_cleanly() {
        // Larger than u64: a clean stop, not an overflow.
        assert_eq!(walk(&[b"ffffffffffffffffff\r\n"]), [ChunkedStep::Bad]);
        assert_eq!(walk(&[b"10000000000000000\r\n"]), [ChunkedStep::Bad]);
        // u64::MAX itself is a size we can count down without holding anything.
        assert_eq!(
            walk(&[b"ffffffffffffffff\r\n", &[0u8; 4096]]),
            [ChunkedStep::More, ChunkedStep::More]
        );
        for bad in [
            &b"\r\n"[..],
            b"-1\r\n",
            b"0x10\r\n",
            b"g\r\n",
            b";ext\r\n",
            b"4\r\nWikiX",
            b"4\r\nWiki\r\r",
            b"4\rx",
            b"4;a\x00\r\n",
            b"0\r\nX-Bad: \x01\r\n",
        ] {
            assert_eq!(walk(&[bad]).last(), Some(&ChunkedStep::Bad), "{bad:?}");
        }
        // Extensions and trailers are bounded like a head.
        let mut long = b"1;".to_vec();
        long.resize(MAX_CHUNK_META_LEN + 1, b'a');
        assert_eq!(walk(&[&long]), [ChunkedStep::Bad]);
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() <= MAX_CHUNK_META_LEN {
            trailers.extend_from_slice(b"X-Trailer: value\r\n");
        }
        assert_eq!(walk(&[&trailers]), [ChunkedStep::Bad]);
    }

    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn no_panic_on_truncations_and_mutations() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let bases: [&[u8]; 8] = [
            PROXY_REQ,
            PROXY_RESP,
            VICTOR_REQ,
            VICTOR_RESP,
            APACHE_CONNECT,
            APACHE_RESP,
            TRACKER_REQ,
            TRACKER_RESP,
        ];
        for base in bases {
            for n in 0..=base.len() {
                let _ = parse_request_head(&base[..n]);
                let _ = parse_response_head(&base[..n]);
            }
            for _ in 0..300 {
                let mut m = base.to_vec();
                for _ in 0..1 + rng(&mut seed) % 4 {
                    let i = (rng(&mut seed) as usize) % m.len();
                    // Bias towards structural bytes to reach deeper branches.
                    const PICK: &[u8] = b" :\r\n\t/\x00\x80";
                    m[i] = if rng(&mut seed) & 1 == 0 {
                        PICK[(rng(&mut seed) as usize) % PICK.len()]
                    } else {
                        rng(&mut seed) as u8
                    };
                }
                if let HttpParse::Done(h) = parse_request_head(&m) {
                    assert!(h.head_len <= m.len().min(MAX_HEAD_LEN));
                }
                if let HttpParse::Done((_, len)) = parse_response_head(&m) {
                    assert!(len <= m.len().min(MAX_HEAD_LEN));
                }
            }
        }
        let body = chunked_body();
        for _ in 0..2000 {
            let mut m = body.clone();
            for _ in 0..1 + rng(&mut seed) % 3 {
                let i = (rng(&mut seed) as usize) % m.len();
                const PICK: &[u8] = b"0;\r\n\tfF";
                m[i] = PICK[(rng(&mut seed) as usize) % PICK.len()];
            }
            let cut = (rng(&mut seed) as usize) % (m.len() + 1);
            let mut w = ChunkedBody::new();
            if w.feed(&m[..cut]) == ChunkedStep::More
                && let ChunkedStep::End(n) = w.feed(&m[cut..])
            {
                assert!(n <= m.len() - cut);
            }
        }
        for _ in 0..2000 {
            let len = (rng(&mut seed) % 200) as usize;
            let m: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            // Random binary must not be taken for a complete head.
            assert!(!matches!(parse_request_head(&m), HttpParse::Done(_)));
            assert!(!matches!(parse_response_head(&m), HttpParse::Done(_)));
        }
    }
}
