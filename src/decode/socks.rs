//! SOCKS4/4a/5 client handshake reader (client-to-server stream only).
//!
//! Pure and bounded: reads at most a few hundred bytes, allocates only the target string.
//! Strict (versions, counts, command and address-type values, printable names) so random
//! or TLS streams are rejected within the first bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

/// SOCKS5 commands (RFC 1928 4): CONNECT, BIND, UDP ASSOCIATE.
pub const SOCKS5_CONNECT: u8 = 1;
pub const SOCKS5_BIND: u8 = 2;
pub const SOCKS5_UDP_ASSOCIATE: u8 = 3;
/// Method offering username/password (RFC 1929).
const METHOD_USER_PASS: u8 = 2;
/// SOCKS4 user ids have no length limit in the protocol; real clients send short or empty
/// ids. Bounding the scan for the NUL keeps the work constant on hostile streams.
const MAX_SOCKS4_FIELD: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksRequest {
    /// 4 (SOCKS4 and SOCKS4a) or 5.
    pub version: u8,
    /// Request command: 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE (SOCKS5 only).
    pub command: u8,
    /// Target host name or address as text (IPv6 in its canonical text form).
    pub target: String,
    pub port: u16,
    /// Offset in the client stream where tunnelled bytes begin.
    pub tunnel_offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksParse {
    Done(SocksRequest),
    Incomplete,
    NotSocks,
}

/// Reads the client's side of a SOCKS handshake from the start of `stream`. An empty
/// stream is `Incomplete`. GSSAPI sub-negotiation (method 1) is not followed: a client
/// that performs it is reported as `NotSocks`.
pub fn parse_client_stream(stream: &[u8]) -> SocksParse {
    match stream.first() {
        None => SocksParse::Incomplete,
        Some(4) => socks4(stream),
        Some(5) => socks5(stream),
        Some(_) => SocksParse::NotSocks,
    }
}

/// Outcome of one parsing step, so `?` can carry Incomplete and NotSocks.
enum Stop {
    Incomplete,
    Not,
}

impl From<Stop> for SocksParse {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Incomplete => SocksParse::Incomplete,
            Stop::Not => SocksParse::NotSocks,
        }
    }
}

fn byte(s: &[u8], at: usize) -> Result<u8, Stop> {
    s.get(at).copied().ok_or(Stop::Incomplete)
}

fn take(s: &[u8], at: usize, n: usize) -> Result<&[u8], Stop> {
    s.get(at..at + n).ok_or(Stop::Incomplete)
}

fn array<const N: usize>(s: &[u8], at: usize) -> Result<[u8; N], Stop> {
    s.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or(Stop::Incomplete)
}

fn check(ok: bool) -> Result<(), Stop> {
    if ok { Ok(()) } else { Err(Stop::Not) }
}

fn socks5(s: &[u8]) -> SocksParse {
    socks5_inner(s).unwrap_or_else(SocksParse::from)
}

fn socks5_inner(s: &[u8]) -> Result<SocksParse, Stop> {
    // Greeting: VER NMETHODS METHODS[NMETHODS].
    let nmethods = usize::from(byte(s, 1)?);
    check(nmethods > 0)?;
    // Methods must be IANA-assigned (0x00-0x09) or private (0x80-0xFE); 0xFF is the
    // server's "no acceptable method" and never offered. Validate bytes as they arrive.
    let avail = s.get(2..(2 + nmethods).min(s.len())).unwrap_or(&[]);
    check(
        avail
            .iter()
            .all(|&m| m <= 0x09 || (0x80..=0xfe).contains(&m)),
    )?;
    let methods = take(s, 2, nmethods)?;
    let mut pos = 2 + nmethods;

    // The server's choice is not visible here; the next client byte tells: 0x01 starts
    // the RFC 1929 username/password exchange, 0x05 the request.
    if byte(s, pos)? == 1 {
        check(methods.contains(&METHOD_USER_PASS))?;
        let ulen = usize::from(byte(s, pos + 1)?);
        check(ulen > 0)?;
        check(
            take_partial(s, pos + 2, ulen)
                .iter()
                .all(|&b| b > 0x1f && b != 0x7f),
        )?;
        take(s, pos + 2, ulen)?;
        // RFC 1929 says PLEN >= 1, but some clients send an empty password.
        let plen = usize::from(byte(s, pos + 2 + ulen)?);
        take(s, pos + 3 + ulen, plen)?;
        pos += 3 + ulen + plen;
    }

    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
    check(byte(s, pos)? == 5)?;
    let command = byte(s, pos + 1)?;
    check((SOCKS5_CONNECT..=SOCKS5_UDP_ASSOCIATE).contains(&command))?;
    check(byte(s, pos + 2)? == 0)?;
    let atyp = byte(s, pos + 3)?;
    let addr_at = pos + 4;
    let (target, addr_len) = match atyp {
        1 => (Ipv4Addr::from(array::<4>(s, addr_at)?).to_string(), 4),
        3 => {
            let n = usize::from(byte(s, addr_at)?);
            check(n > 0)?;
            check(is_host_text(take_partial(s, addr_at + 1, n)))?;
            let name = take(s, addr_at + 1, n)?;
            (String::from_utf8_lossy(name).into_owned(), 1 + n)
        }
        4 => (Ipv6Addr::from(array::<16>(s, addr_at)?).to_string(), 16),
        _ => return Err(Stop::Not),
    };
    let port_at = addr_at + addr_len;
    let port = u16::from_be_bytes(array(s, port_at)?);
    // Port 0 is meaningless for CONNECT; BIND and UDP ASSOCIATE may legitimately send it.
    check(port != 0 || command != SOCKS5_CONNECT)?;
    Ok(SocksParse::Done(SocksRequest {
        version: 5,
        command,
        target,
        port,
        tunnel_offset: port_at + 2,
    }))
}

fn socks4(s: &[u8]) -> SocksParse {
    socks4_inner(s).unwrap_or_else(SocksParse::from)
}

/// VN=4 CD(1 CONNECT, 2 BIND) DSTPORT DSTIP USERID NUL, and for SOCKS4a (DSTIP 0.0.0.x,
/// x != 0) a host name NUL after the user id.
fn socks4_inner(s: &[u8]) -> Result<SocksParse, Stop> {
    let command = byte(s, 1)?;
    check(command == 1 || command == 2)?;
    let port = u16::from_be_bytes(array(s, 2)?);
    check(port != 0 || command != 1)?;
    let [o1, o2, o3, o4] = array::<4>(s, 4)?;
    let ip = Ipv4Addr::new(o1, o2, o3, o4);
    let is_4a = o1 == 0 && o2 == 0 && o3 == 0 && o4 != 0;
    check(command != 1 || is_4a || !ip.is_unspecified())?;
    let (_, after_user) = nul_terminated(s, 8, true)?;
    if !is_4a {
        return Ok(SocksParse::Done(SocksRequest {
            version: 4,
            command,
            target: ip.to_string(),
            port,
            tunnel_offset: after_user,
        }));
    }
    let (host, end) = nul_terminated(s, after_user, false)?;
    check(!host.is_empty() && is_host_text(host))?;
    Ok(SocksParse::Done(SocksRequest {
        version: 4,
        command,
        target: String::from_utf8_lossy(host).into_owned(),
        port,
        tunnel_offset: end,
    }))
}

/// SOCKS4 has little structure, so its user id and host name must be printable ASCII
/// (space included) to keep random data from passing.
fn is_printable_ascii(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// A printable field ending in NUL at or after `at`, at most MAX_SOCKS4_FIELD bytes long.
/// Returns the field and the offset past the NUL.
fn nul_terminated(s: &[u8], at: usize, allow_empty: bool) -> Result<(&[u8], usize), Stop> {
    let rest = s.get(at..).unwrap_or(&[]);
    let window = rest.get(..MAX_SOCKS4_FIELD + 1).unwrap_or(rest);
    match window.iter().position(|&b| b == 0) {
        Some(n) => {
            let field = window.get(..n).unwrap_or(&[]);
            check(allow_empty || n > 0)?;
            check(field.iter().all(|&b| is_printable_ascii(b)))?;
            Ok((field, at + n + 1))
        }
        None => {
            check(window.len() <= MAX_SOCKS4_FIELD)?;
            check(window.iter().all(|&b| is_printable_ascii(b)))?;
            Err(Stop::Incomplete)
        }
    }
}

/// Whatever part of `s[at..at + n]` has arrived.
fn take_partial(s: &[u8], at: usize, n: usize) -> &[u8] {
    let rest = s.get(at..).unwrap_or(&[]);
    rest.get(..n).unwrap_or(rest)
}

/// Host names (and address literals sent as names) are printable ASCII without spaces.
fn is_host_text(name: &[u8]) -> bool {
    name.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    //! Client streams from zeek's socks-with-ssl.pcap and socks-auth.pcap (both listed in
    //! /work/shared/captures/public/MANIFEST.tsv), extracted with tests/data/app/extract.py.
    use super::*;
    use crate::decode::tls::{TlsParse, parse_client_hello};

    /// zeek socks-with-ssl.pcap, client side (first 191 bytes):
    /// 05 01 00                          greeting: 1 method, "no auth"
    /// 05 01 00 03 0e "www.google.com" 01bb   CONNECT www.google.com:443
    /// 16 03 01 00 a2 01 ...             the tunnelled TLS ClientHello (167 bytes)
    const WITH_SSL: &[u8] = include_bytes!("../../tests/data/app/socks_with_ssl_client.bin");

    /// zeek socks-auth.pcap, the whole client side (26 bytes):
    /// 05 03 00 03 02                    greeting: methods no-auth, CHAP, user/pass
    /// 01 03 "bob" 05 "alice"            RFC 1929 username/password
    /// 05 01 00 01 c0a80002 0016         CONNECT 192.168.0.2:22
    const AUTH: &[u8] = &[
        0x05, 0x03, 0x00, 0x03, 0x02, 0x01, 0x03, b'b', b'o', b'b', 0x05, b'a', b'l', b'i', b'c',
        b'e', 0x05, 0x01, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0x02, 0x00, 0x16,
    ];

    fn done(s: &[u8]) -> SocksRequest {
        match parse_client_stream(s) {
            SocksParse::Done(r) => r,
            other => panic!("expected a SOCKS request, got {other:?}"),
        }
    }

    #[test]
    fn socks5_domain_connect_then_tls_with_sni() {
        let r = done(WITH_SSL);
        assert_eq!(
            r,
            SocksRequest {
                version: 5,
                command: SOCKS5_CONNECT,
                target: "www.google.com".into(),
                port: 443,
                tunnel_offset: 24,
            }
        );
        let TlsParse::ClientHello(hello) = parse_client_hello(&WITH_SSL[r.tunnel_offset..]) else {
            panic!("tunnel does not start with a ClientHello");
        };
        assert_eq!(hello.sni.as_deref(), Some("www.google.com"));
        assert_eq!(
            hello.legacy_version, 0x0301,
            "oracle handshake_version 0x0301"
        );
    }

    #[test]
    fn socks5_username_password_then_ipv4_connect() {
        let r = done(AUTH);
        assert_eq!(
            r,
            SocksRequest {
                version: 5,
                command: SOCKS5_CONNECT,
                target: "192.168.0.2".into(),
                port: 22,
                tunnel_offset: AUTH.len(),
            }
        );
    }

    #[test]
    fn prefixes_are_incomplete_until_the_request_ends() {
        for (s, end) in [(WITH_SSL, 24), (AUTH, AUTH.len())] {
            for n in 0..end {
                assert_eq!(
                    parse_client_stream(&s[..n]),
                    SocksParse::Incomplete,
                    "prefix {n}"
                );
            }
            assert_eq!(done(&s[..end]).tunnel_offset, end);
        }
    }

    #[test]
    fn socks5_ipv6_and_other_commands() {
        let mut s = vec![5, 1, 0, 5, 1, 0, 4];
        s.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        s.extend_from_slice(&[0x01, 0xbb, 0xaa]);
        let r = done(&s);
        assert_eq!(
            (r.target.as_str(), r.port, r.tunnel_offset),
            ("2001:db8::1", 443, 25)
        );
        // UDP ASSOCIATE with 0.0.0.0:0 is how clients ask for a relay.
        let r = done(&[5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            (r.command, r.target.as_str(), r.port),
            (SOCKS5_UDP_ASSOCIATE, "0.0.0.0", 0)
        );
    }

    #[test]
    fn socks4_and_socks4a() {
        // SOCKS4 CONNECT 192.168.0.1:80, user id "fred".
        let s = [4, 1, 0, 80, 192, 168, 0, 1, b'f', b'r', b'e', b'd', 0, 0x16];
        let r = done(&s);
        assert_eq!(
            r,
            SocksRequest {
                version: 4,
                command: 1,
                target: "192.168.0.1".into(),
                port: 80,
                tunnel_offset: 13,
            }
        );
        // SOCKS4a: DSTIP 0.0.0.1, empty user id, host name after it.
        let mut s = vec![4, 1, 0x01, 0xbb, 0, 0, 0, 1, 0];
        s.extend_from_slice(b"example.com\0");
        let r = done(&s);
        assert_eq!(
            (r.target.as_str(), r.port, r.tunnel_offset),
            ("example.com", 443, s.len())
        );
        for n in 0..s.len() {
            assert_eq!(
                parse_client_stream(&s[..n]),
                SocksParse::Incomplete,
                "prefix {n}"
            );
        }
    }

    #[test]
    fn rejects_lookalikes() {
        let cases: &[&[u8]] = &[
            &[0x16, 0x03, 0x01, 0x00, 0xa2],             // TLS
            b"CONNECT www.google.com:443 HTTP/1.1\r\n",  // HTTP proxy
            &[0xf5, 0xb7, 0x01, 0x00, 0x00, 0x01],       // DNS header
            &[5, 0],                                     // no methods
            &[5, 1, 0xff],                               // "no acceptable" offered
            &[5, 1, 0x42],                               // unassigned method
            &[5, 1, 0, 1, 3, b'b', b'o', b'b', 0],       // user/pass not offered
            &[5, 1, 0, 4, 1, 0, 1],                      // wrong request version
            &[5, 1, 0, 5, 4, 0, 1],                      // command 4
            &[5, 1, 0, 5, 1, 1, 1],                      // reserved byte set
            &[5, 1, 0, 5, 1, 0, 2],                      // address type 2
            &[5, 1, 0, 5, 1, 0, 3, 0],                   // empty domain
            &[5, 1, 0, 5, 1, 0, 3, 3, b'a', b' ', b'b'], // space in domain
            &[5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 0],   // CONNECT to port 0
            &[4, 3, 0, 80],                              // SOCKS4 command 3
            &[4, 1, 0, 0],                               // SOCKS4 CONNECT port 0
            &[4, 1, 0, 80, 0, 0, 0, 0, 0],               // SOCKS4 CONNECT 0.0.0.0
            &[4, 1, 0, 80, 10, 0, 0, 1, b'a', 0x07],     // control byte in user id
            &[4, 1, 0, 80, 0, 0, 0, 9, 0, 0],            // SOCKS4a without host name
        ];
        for c in cases {
            assert_eq!(parse_client_stream(c), SocksParse::NotSocks, "{c:02x?}");
        }
        // A user id that runs past MAX_SOCKS4_FIELD without a NUL.
        let mut s = vec![4, 1, 0, 80, 10, 0, 0, 1];
        s.resize(8 + MAX_SOCKS4_FIELD, b'u');
        assert_eq!(parse_client_stream(&s), SocksParse::Incomplete);
        s.push(b'u');
        assert_eq!(parse_client_stream(&s), SocksParse::NotSocks);
    }

    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn no_panic_and_no_false_positives() {
        let mut seed = 0x853c_49e6_748f_ea9bu64;
        let s4a: &[u8] = b"\x04\x01\x01\xbb\x00\x00\x00\x01u\x00example.com\x00";
        for base in [WITH_SSL, AUTH, s4a] {
            for _ in 0..2000 {
                let mut m = base.to_vec();
                for _ in 0..1 + rng(&mut seed) % 3 {
                    let i = (rng(&mut seed) as usize) % m.len().min(40);
                    m[i] = rng(&mut seed) as u8;
                }
                let cut = (rng(&mut seed) as usize) % (m.len() + 1);
                for s in [&m[..], &m[..cut]] {
                    if let SocksParse::Done(r) = parse_client_stream(s) {
                        assert!(r.tunnel_offset <= s.len());
                        assert!(r.version == 4 || r.version == 5);
                    }
                }
            }
        }
        // Random streams that start with a version byte almost never parse as a complete
        // request. A SOCKS4 CONNECT with a short printable user id is a valid request, so
        // the rate is not zero: about 1 in 128 (command) x 1 in 160 (NUL before a byte
        // outside 0x20..0x7f) x 1/2 (version 4) = 1 in 40k.
        let mut hits = 0;
        for _ in 0..40_000 {
            let len = (rng(&mut seed) % 64) as usize;
            let mut m: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            if let Some(first) = m.first_mut() {
                *first = 4 + (*first & 1); // force the version byte to reach deeper checks
            }
            if let SocksParse::Done(r) = parse_client_stream(&m) {
                assert_eq!(r.version, 4, "random SOCKS5 accepted: {m:02x?}");
                hits += 1;
            }
        }
        assert!(hits <= 5, "{hits} random streams accepted");
    }
}
