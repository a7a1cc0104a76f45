//! Application-layer inspection of a flow's first bytes: which protocol, and the names in it.
//!
//! The client stream is identified by content, not port (TLS on port 80, HTTP on 8080 both
//! work): TLS ClientHello, HTTP requests (CONNECT tunnels and keep-alive requests followed),
//! SOCKS4/5 handshakes (the tunnelled bytes are inspected again), BitTorrent handshakes, and
//! DNS over TCP on port 53. After a ClientHello both directions are followed record by record
//! (nothing buffered) until the ServerHello is read and the session is established. Inspection
//! ends when the names are read, the protocol is unknown, a gap appears, or the buffer budget
//! is spent; then the state is freed.
use super::stream::StreamDir;
use crate::decode::bittorrent;
use crate::decode::dns::{self, DnsMessage};
use crate::decode::http::{self, ChunkedBody, ChunkedStep, HttpParse, RequestHead};
use crate::decode::quic::QuicInfo;
use crate::decode::socks::{self, SocksParse, SocksRequest};
use crate::decode::tls::{self, ClientHelloInfo, ServerInfo, SessionTracker, TlsParse};

/// Client bytes buffered while a head or hello is incomplete (a ClientHello with post-quantum
/// key shares is ~2 KB; HTTP heads above 16 KB are refused by common servers).
const MAX_APP_BUFFER: usize = 64 * 1024;
/// HTTP requests read per connection; later ones on a long keep-alive add little.
const MAX_HTTP_REQUESTS: u32 = 100;
/// Tunnels inside tunnels (CONNECT inside SOCKS) inspected before giving up.
const MAX_TUNNELS: u8 = 2;

#[derive(Debug)]
pub enum AppEvent {
    Tls(ClientHelloInfo),
    /// The server side of the TLS session: sent when the ServerHello is read and again when
    /// the session is established.
    TlsServer(ServerInfo),
    Http(RequestHead),
    Socks(SocksRequest),
    Dns {
        from_orig: bool,
        msg: DnsMessage,
    },
    BitTorrent,
    /// A QUIC connection's client hello, or why it could not be read (UDP flows, from the
    /// flow table's QUIC reader).
    Quic(QuicInfo),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Detect,
    Tls,
    Http,
    Socks,
    DnsTcp,
    Done,
}

#[derive(Debug)]
pub struct AppState {
    client: StreamDir,
    server: StreamDir,
    client_buf: Vec<u8>,
    server_buf: Vec<u8>,
    mode: Mode,
    /// Set once the ClientHello is read; both directions are then fed to it unbuffered.
    tls: Option<Box<SessionTracker>>,
    http_body_left: u64,
    /// Walking the chunked body of the previous HTTP request.
    http_chunked: Option<Box<ChunkedBody>>,
    http_requests: u32,
    tunnels: u8,
}

impl AppState {
    pub fn new(dns_port: bool) -> AppState {
        AppState {
            client: StreamDir::default(),
            server: StreamDir::default(),
            client_buf: Vec::new(),
            server_buf: Vec::new(),
            mode: if dns_port { Mode::DnsTcp } else { Mode::Detect },
            tls: None,
            http_body_left: 0,
            http_chunked: None,
            http_requests: 0,
            tunnels: 0,
        }
    }

    pub fn done(&self) -> bool {
        self.mode == Mode::Done
    }

    #[cfg(test)]
    pub(crate) fn buffers_released(&self) -> bool {
        self.client_buf.capacity() == 0 && self.server_buf.capacity() == 0
    }

    #[allow(clippy::too_many_arguments)]
    pub fn tcp_segment(
        &mut self,
        from_orig: bool,
        seq: u32,
        syn: bool,
        captured: &[u8],
        declared: u32,
        max_pending: usize,
        events: &mut Vec<AppEvent>,
    ) {
        if self.mode == Mode::Done {
            return;
        }
        if let Some(session) = self.tls.as_deref_mut() {
            let dir = if from_orig {
                &mut self.client
            } else {
                &mut self.server
            };
            dir.segment(seq, syn, captured, declared, max_pending, &mut |d| {
                session.feed(from_orig, d)
            });
            if let Some(info) = session.take_update() {
                events.push(AppEvent::TlsServer(info));
            }
            if session.done() || dir.gap {
                self.finish();
            }
            return;
        }
        if from_orig {
            let mut fresh = std::mem::take(&mut self.client_buf);
            self.client
                .segment(seq, syn, captured, declared, max_pending, &mut |d| {
                    fresh.extend_from_slice(d)
                });
            self.client_buf = fresh;
            self.client_progress(events);
            if self.client.gap && self.mode != Mode::DnsTcp {
                self.finish();
            }
        } else if self.mode == Mode::DnsTcp {
            let mut fresh = std::mem::take(&mut self.server_buf);
            self.server
                .segment(seq, syn, captured, declared, max_pending, &mut |d| {
                    fresh.extend_from_slice(d)
                });
            self.server_buf = fresh;
            dns_tcp_messages(&mut self.server_buf, false, events);
        } else if self.mode == Mode::Tls {
            // Server bytes before the ClientHello is complete; the server's stream is taken
            // to start here, so a proxy's reply before a tunnelled hello is never fed.
            let mut fresh = std::mem::take(&mut self.server_buf);
            self.server
                .segment(seq, syn, captured, declared, max_pending, &mut |d| {
                    fresh.extend_from_slice(d)
                });
            self.server_buf = fresh;
            if self.server.gap {
                self.finish();
            }
        } else {
            // Only the client side carries names; keep the server's sequence state for nothing.
        }
        if self.client_buf.len() > MAX_APP_BUFFER || self.server_buf.len() > MAX_APP_BUFFER {
            self.finish();
        }
        if self.mode == Mode::DnsTcp && self.client.gap && self.server.gap {
            self.finish();
        }
        self.release_idle_buffers();
    }

    /// Between messages (an HTTP keep-alive connection waiting for its next request, DNS over
    /// TCP between queries) the buffers are empty: their capacity goes back, so a table of
    /// idle connections holds none. The next message allocates again, once.
    fn release_idle_buffers(&mut self) {
        let idle = match self.mode {
            Mode::Http => self.http_body_left == 0 && self.http_chunked.is_none(),
            Mode::DnsTcp => true,
            _ => false,
        };
        if idle && self.client_buf.is_empty() && self.client_buf.capacity() > 0 {
            self.client_buf = Vec::new();
        }
        if idle && self.server_buf.is_empty() && self.server_buf.capacity() > 0 {
            self.server_buf = Vec::new();
        }
    }

    fn finish(&mut self) {
        self.mode = Mode::Done;
        self.tls = None;
        self.client_buf = Vec::new();
        self.server_buf = Vec::new();
    }

    fn client_progress(&mut self, events: &mut Vec<AppEvent>) {
        loop {
            // Skip the body of the previous HTTP request.
            if self.http_body_left > 0 {
                let n = (self.http_body_left as usize).min(self.client_buf.len());
                self.client_buf.drain(..n);
                self.http_body_left -= n as u64;
                if self.http_body_left > 0 {
                    return;
                }
            }
            if let Some(body) = self.http_chunked.as_mut() {
                match body.feed(&self.client_buf) {
                    ChunkedStep::More => {
                        self.client_buf.clear();
                        return;
                    }
                    ChunkedStep::End(n) => {
                        self.client_buf.drain(..n.min(self.client_buf.len()));
                        self.http_chunked = None;
                    }
                    ChunkedStep::Bad => {
                        self.finish();
                        return;
                    }
                }
            }
            if self.client_buf.is_empty() {
                return;
            }
            match self.mode {
                Mode::Done => return,
                Mode::DnsTcp => {
                    dns_tcp_messages(&mut self.client_buf, true, events);
                    return;
                }
                Mode::Detect => {
                    let Some(&first) = self.client_buf.first() else {
                        return;
                    };
                    self.mode = match first {
                        0x16 => Mode::Tls,
                        0x04 | 0x05 => Mode::Socks,
                        0x13 => {
                            if self.client_buf.len() < 20 {
                                return;
                            }
                            if bittorrent::is_peer_wire_handshake(&self.client_buf) {
                                events.push(AppEvent::BitTorrent);
                            }
                            self.finish();
                            return;
                        }
                        b'A'..=b'Z' => Mode::Http,
                        _ => {
                            self.finish();
                            return;
                        }
                    };
                }
                Mode::Tls => {
                    match tls::parse_client_hello(&self.client_buf) {
                        TlsParse::ClientHello(hello) => {
                            events.push(AppEvent::Tls(hello));
                            self.follow_tls_session(events);
                        }
                        TlsParse::Incomplete { needed } if needed <= MAX_APP_BUFFER => {}
                        TlsParse::Incomplete { .. } | TlsParse::NotClientHello => self.finish(),
                    }
                    return;
                }
                Mode::Socks => match socks::parse_client_stream(&self.client_buf) {
                    SocksParse::Done(request) => {
                        let offset = request.tunnel_offset.min(self.client_buf.len());
                        events.push(AppEvent::Socks(request));
                        self.client_buf.drain(..offset);
                        if !self.enter_tunnel() {
                            return;
                        }
                    }
                    SocksParse::Incomplete => return,
                    SocksParse::NotSocks => {
                        self.finish();
                        return;
                    }
                },
                Mode::Http => match http::parse_request_head(&self.client_buf) {
                    HttpParse::Done(request) => {
                        let head_len = request.head_len.min(self.client_buf.len());
                        let connect = request.method.eq_ignore_ascii_case("CONNECT");
                        // RFC 9112 6.3: a chunked coding overrides any Content-Length.
                        let chunked = request.chunked;
                        let body_len = request.content_length.unwrap_or(0);
                        events.push(AppEvent::Http(request));
                        self.client_buf.drain(..head_len);
                        self.http_requests += 1;
                        if connect {
                            if !self.enter_tunnel() {
                                return;
                            }
                        } else {
                            if chunked {
                                self.http_chunked = Some(Box::new(ChunkedBody::new()));
                            } else {
                                self.http_body_left = body_len;
                            }
                            if self.http_requests >= MAX_HTTP_REQUESTS {
                                self.finish();
                                return;
                            }
                        }
                    }
                    HttpParse::Incomplete => return,
                    HttpParse::NotHttp => {
                        self.finish();
                        return;
                    }
                },
            }
        }
    }

    /// Hands both buffered streams to a session tracker; later bytes go to it directly.
    fn follow_tls_session(&mut self, events: &mut Vec<AppEvent>) {
        let mut session = Box::new(SessionTracker::new());
        session.feed(true, &self.client_buf);
        session.feed(false, &self.server_buf);
        self.client_buf = Vec::new();
        self.server_buf = Vec::new();
        if let Some(info) = session.take_update() {
            events.push(AppEvent::TlsServer(info));
        }
        if session.done() {
            self.finish();
        } else {
            self.tls = Some(session);
        }
    }

    /// After a CONNECT or SOCKS handshake the client's next bytes are a new protocol.
    fn enter_tunnel(&mut self) -> bool {
        self.tunnels += 1;
        if self.tunnels > MAX_TUNNELS {
            self.finish();
            return false;
        }
        self.mode = Mode::Detect;
        true
    }
}

/// Parses every complete length-prefixed DNS message in `buf` and removes it.
fn dns_tcp_messages(buf: &mut Vec<u8>, from_orig: bool, events: &mut Vec<AppEvent>) {
    let mut at = 0;
    while let (Some(&hi), Some(&lo)) = (buf.get(at), buf.get(at + 1)) {
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(message) = buf.get(at + 2..at + 2 + len) else {
            break;
        };
        if let Ok(msg) = dns::parse_message(message) {
            events.push(AppEvent::Dns { from_orig, msg });
        }
        at += 2 + len;
    }
    buf.drain(..at);
}

#[cfg(test)]
mod tests {
    //! Whole connections through AppState: both directions of real captures, in capture
    //! order (tests/data/app/*_conv.bin, see its README).
    use super::*;
    use crate::decode::conversation;
    use crate::decode::tls::TLS13;

    /// zeek chrome-1250-tls-x25519-kyber.pcap: direct TLS 1.3.
    const KYBER: &[u8] = include_bytes!("../../tests/data/app/tls_chrome_kyber_conv.bin");
    /// zeek socks-with-ssl.pcap: SOCKS5 greeting and connect, then TLS 1.0 through it.
    const SOCKS_TLS: &[u8] = include_bytes!("../../tests/data/app/socks_with_ssl_conv.bin");
    /// nDPI http_connect.pcap: CONNECT, the proxy's 200, then TLS 1.3 through it.
    const CONNECT_TLS: &[u8] = include_bytes!("../../tests/data/app/http_connect_apache_conv.bin");
    /// Budget for out-of-order segments, as the flow table passes it.
    const PENDING: usize = 64 * 1024;

    /// Feeds chunks as segments with consecutive sequence numbers per direction.
    fn replay(chunks: &[(bool, &[u8])]) -> (AppState, Vec<AppEvent>) {
        let mut app = AppState::new(false);
        let mut seq = [7_000u32, 90_000u32];
        let mut events = Vec::new();
        for &(from_client, chunk) in chunks {
            let s = &mut seq[usize::from(!from_client)];
            let len = chunk.len() as u32;
            app.tcp_segment(from_client, *s, false, chunk, len, PENDING, &mut events);
            *s = s.wrapping_add(len);
        }
        (app, events)
    }

    fn server_infos(events: &[AppEvent]) -> Vec<&ServerInfo> {
        events
            .iter()
            .filter_map(|e| match e {
                AppEvent::TlsServer(info) => Some(info),
                _ => None,
            })
            .collect()
    }

    /// DNS over TCP: two length-prefixed queries in one segment, then one cut across three
    /// segments (inside its length prefix and inside its name).
    #[test]
    fn dns_over_tcp_messages_are_read_within_and_across_segments() {
        let framed = |name: &str| {
            let msg = crate::generate::proto::dns_query(0x4242, name, 1).unwrap();
            let mut out = (msg.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(&msg);
            out
        };
        let mut both = framed("one.example.com");
        both.extend_from_slice(&framed("two.example.com"));
        let split = framed("three.example.org");
        let mut app = AppState::new(true);
        let mut events = Vec::new();
        let mut seq = 1_000u32;
        for chunk in [&both[..], &split[..1], &split[1..9], &split[9..]] {
            let len = chunk.len() as u32;
            app.tcp_segment(true, seq, false, chunk, len, PENDING, &mut events);
            seq += len;
        }
        let names: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                AppEvent::Dns {
                    from_orig: true,
                    msg,
                } => Some(msg.questions[0].name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            ["one.example.com", "two.example.com", "three.example.org"]
        );
    }

    #[test]
    fn tls_session_followed_until_established() {
        let (app, events) = replay(&conversation(KYBER));
        assert!(
            matches!(&events[0], AppEvent::Tls(h) if h.sni.as_deref() == Some("lh3.google.com"))
        );
        let infos = server_infos(&events);
        assert_eq!(infos.len(), 2, "at the ServerHello, then established");
        let hello = infos[0].hello.as_ref().expect("ServerHello");
        assert_eq!((hello.version, hello.cipher_suite), (TLS13, 0x1301));
        assert!(!infos[0].established && infos[1].established);
        assert!(app.done(), "state is freed once established");
    }

    #[test]
    fn tls_through_socks_and_connect_tunnels() {
        let (app, events) = replay(&conversation(SOCKS_TLS));
        assert!(matches!(&events[0], AppEvent::Socks(r) if r.target == "www.google.com"));
        assert!(
            matches!(&events[1], AppEvent::Tls(h) if h.sni.as_deref() == Some("www.google.com"))
        );
        let last = *server_infos(&events).last().expect("server side");
        let hello = last
            .hello
            .as_ref()
            .expect("ServerHello after the SOCKS reply");
        assert_eq!((hello.version, hello.cipher_suite), (0x0301, 0xc011));
        assert!(last.established && app.done());

        let (app, events) = replay(&conversation(CONNECT_TLS));
        assert!(matches!(&events[0], AppEvent::Http(r) if r.method == "CONNECT"));
        assert!(matches!(&events[1], AppEvent::Tls(h) if h.sni.as_deref() == Some("apache.org")));
        let last = *server_infos(&events).last().expect("server side");
        let hello = last
            .hello
            .as_ref()
            .expect("ServerHello after the proxy's 200");
        assert_eq!((hello.version, hello.cipher_suite), (TLS13, 0x1301));
        assert!(last.established && app.done());
    }

    #[test]
    fn tls_session_split_into_small_segments() {
        let chunks = conversation(KYBER);
        let small: Vec<(bool, &[u8])> = chunks
            .iter()
            .flat_map(|&(c, b)| b.chunks(97).map(move |p| (c, p)))
            .collect();
        let (_, events) = replay(&small);
        let whole = replay(&chunks).1;
        assert_eq!(server_infos(&events), server_infos(&whole));
    }

    /// zeek http-proxy.pcap frame 4, the keep-alive request that follows the upload.
    const PROXY_REQ: &[u8] = b"GET HTTP://bro.org/ HTTP/1.1\r\nUser-Agent: curl/7.33.0\r\nHost: bro.org\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n";

    /// A chunked upload to the same proxy (no public capture has one: the framing is RFC
    /// 9112 7.1 around the real request bytes above), then the real keep-alive request.
    fn chunked_then_get() -> Vec<u8> {
        let mut s = b"POST HTTP://bro.org/upload HTTP/1.1\r\nHost: bro.org\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        s.extend_from_slice(format!("{:x};n=1\r\n", PROXY_REQ.len()).as_bytes());
        s.extend_from_slice(PROXY_REQ);
        s.extend_from_slice(b"\r\n5\r\n\r\n\r\n\r\n0\r\n\r\n");
        s.extend_from_slice(PROXY_REQ);
        s
    }

    fn requests(events: &[AppEvent]) -> Vec<(&str, &str)> {
        events
            .iter()
            .filter_map(|e| match e {
                AppEvent::Http(r) => Some((r.method.as_str(), r.uri.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn keep_alive_request_after_a_chunked_one_is_read() {
        let stream = chunked_then_get();
        let expect = [
            ("POST", "HTTP://bro.org/upload"),
            ("GET", "HTTP://bro.org/"),
        ];
        let (app, events) = replay(&[(true, &stream)]);
        assert_eq!(requests(&events), expect);
        assert!(!app.done(), "still reading the keep-alive connection");
        assert_eq!(app.client_buf.capacity(), 0, "idle: no buffer held");
        // Two segments, split at every byte.
        for cut in 0..=stream.len() {
            let (_, events) = replay(&[(true, &stream[..cut]), (true, &stream[cut..])]);
            assert_eq!(requests(&events), expect, "cut {cut}");
        }
        // A broken chunk size ends inspection instead of misreading the body as requests.
        let broken = String::from_utf8(stream.clone())
            .unwrap()
            .replacen(";n=1", "zz", 1);
        let (app, events) = replay(&[(true, broken.as_bytes())]);
        assert_eq!(requests(&events), expect[..1]);
        assert!(app.done());
    }
}
