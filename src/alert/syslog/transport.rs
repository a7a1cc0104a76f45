//! Syslog transports: UDP (RFC 5426, one datagram per message), TCP with octet-counting framing
//! (RFC 6587 3.4.1, `LEN SP MSG`) and TLS (RFC 5425, the same framing inside TLS, rustls).
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A collector that accepts the connection but stops reading is given up on after this long,
/// so the worker reconnects (and the caller's queue fills, then spools) instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: Scheme,
    /// Host name or address as written (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `udp://HOST[:PORT]`, `tcp://HOST[:PORT]`, `tls://HOST[:PORT]`; IPv6 in brackets.
    /// Default ports: 514 for UDP and TCP, 6514 for TLS (RFC 5425).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("'{url}': expected udp://, tcp:// or tls://HOST:PORT"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Scheme::Udp,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            other => return Err(format!("'{url}': unknown scheme '{other}' (udp, tcp, tls)")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let default_port = if scheme == Scheme::Tls { 6514 } else { 514 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{url}': unclosed '[' in IPv6 address"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| format!("'{url}': expected :PORT after ']'"))?,
                    ),
                ),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!("'{url}': expected HOST[:PORT] after the scheme"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("'{url}': invalid port '{p}'")),
            },
        };
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
        })
    }

    fn addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

/// TLS options of a target, as configured.
pub struct TlsFiles<'a> {
    pub ca_file: Option<&'a Path>,
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
}

/// rustls client config: the CA file's certificates as the only roots when given (a private
/// CA is the usual case for a collector), else Mozilla's roots (webpki-roots, built in, so the
/// result does not depend on the host's CA bundle); a client certificate for mutual TLS.
pub fn tls_config(files: &TlsFiles<'_>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match files.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("bad CA file {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("CA file {} holds no certificate", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
    let config = match (files.cert_file, files.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("cannot read certificate file {}: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bad certificate file {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "certificate file {} holds no certificate",
                    cert.display()
                ));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read key file {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key do not fit: {e}"))?
        }
        _ => return Err("cert_file and key_file go together (mutual TLS)".into()),
    };
    Ok(Arc::new(config))
}

pub enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

fn tcp_connect(endpoint: &Endpoint) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host name resolves to no address");
    for addr in endpoint.addrs()? {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(s) => {
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Connection {
    pub fn open(
        endpoint: &Endpoint,
        tls: Option<(&Arc<ClientConfig>, &ServerName<'static>)>,
    ) -> io::Result<Connection> {
        match endpoint.scheme {
            Scheme::Udp => {
                let addr = endpoint.addrs()?.into_iter().next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "host name resolves to no address")
                })?;
                let local: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().map_err(io::Error::other)?
                } else {
                    "[::]:0".parse().map_err(io::Error::other)?
                };
                let sock = UdpSocket::bind(local)?;
                sock.connect(addr)?;
                Ok(Connection::Udp(sock))
            }
            Scheme::Tcp => Ok(Connection::Tcp(tcp_connect(endpoint)?)),
            Scheme::Tls => {
                let (config, name) = tls.ok_or_else(|| io::Error::other("TLS not configured"))?;
                let sock = tcp_connect(endpoint)?;
                let conn = ClientConnection::new(config.clone(), name.clone())
                    .map_err(io::Error::other)?;
                let mut stream = StreamOwned::new(conn, sock);
                // Handshake now, so certificate errors show as connect errors, not send errors.
                while stream.conn.is_handshaking() {
                    stream.conn.complete_io(&mut stream.sock)?;
                }
                settle(&mut stream)?;
                Ok(Connection::Tls(Box::new(stream)))
            }
        }
    }

    /// One message: a datagram, or an octet-counted frame.
    pub fn send(&mut self, message: &[u8]) -> io::Result<()> {
        match self {
            Connection::Udp(s) => s.send(message).map(|_| ()),
            Connection::Tcp(s) => write_frame(s, message),
            Connection::Tls(s) => {
                write_frame(s.as_mut(), message)?;
                s.flush()
            }
        }
    }

    /// Whether a stream's peer has closed (or reset) it. Collectors never send, so anything
    /// readable is an end of stream, an error, or TLS housekeeping (tickets, close_notify).
    /// Checked before each write: a write into a connection the peer already closed succeeds
    /// locally and the message is lost, the failure showing only on the write after it.
    pub fn peer_closed(&mut self) -> bool {
        match self {
            Connection::Udp(_) => false,
            Connection::Tcp(s) => {
                let mut buf = [0u8; 512];
                let mut drained = 0;
                with_nonblocking(s, |s| {
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => return true,
                            // A peer that never stops talking is still open.
                            Ok(n) if drained + n >= DRAIN_MAX => return false,
                            Ok(n) => drained += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(_) => return true,
                        }
                    }
                })
            }
            Connection::Tls(stream) => {
                let StreamOwned { conn, sock } = stream.as_mut();
                let mut drained = 0;
                with_nonblocking(sock, |sock| {
                    loop {
                        match conn.read_tls(sock) {
                            Ok(0) => return true,
                            Ok(n) if drained + n >= DRAIN_MAX => return false,
                            Ok(n) => {
                                drained += n;
                                match conn.process_new_packets() {
                                    Ok(state) if state.peer_has_closed() => return true,
                                    Ok(_) => {
                                        // Discard application data; there should be none.
                                        let mut sink = [0u8; 512];
                                        while matches!(conn.reader().read(&mut sink), Ok(n) if n > 0)
                                        {
                                        }
                                    }
                                    Err(_) => return true,
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(_) => return true,
                        }
                    }
                })
            }
        }
    }

    /// Sends TLS close_notify; the TCP connection closes on drop.
    pub fn close(self) {
        if let Connection::Tls(mut s) = self {
            s.conn.send_close_notify();
            let _ = s.conn.write_tls(&mut s.sock);
        }
    }
}

/// How long a new TLS connection is watched before the first write.
/// What `peer_closed` reads and discards at most per call: a collector that keeps talking
/// (it never should) must not keep the sender reading forever.
const DRAIN_MAX: usize = 64 << 10;

const TLS_SETTLE: Duration = Duration::from_secs(1);

/// Collectors check client certificates and peer names after the TLS handshake (rsyslog's
/// `x509/certvalid` and `x509/name` do), and a refused client learns it only from the close
/// that follows; messages written before it are lost unnoticed. So a new TLS connection is
/// watched for `TLS_SETTLE` first: a close then is a connect error, not silent loss.
fn settle(stream: &mut StreamOwned<ClientConnection, TcpStream>) -> io::Result<()> {
    let refused = || {
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the collector closed the connection after the TLS handshake \
             (client certificate or name refused?)",
        )
    };
    stream.sock.set_read_timeout(Some(TLS_SETTLE))?;
    let start = std::time::Instant::now();
    let result = loop {
        if start.elapsed() >= TLS_SETTLE {
            break Ok(());
        }
        match stream.conn.read_tls(&mut stream.sock) {
            Ok(0) => break Err(refused()),
            Ok(_) => match stream.conn.process_new_packets() {
                Ok(state) if state.peer_has_closed() => break Err(refused()),
                Ok(_) => {}
                Err(e) => break Err(io::Error::new(io::ErrorKind::ConnectionAborted, e)),
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    stream.sock.set_read_timeout(Some(IO_TIMEOUT))?;
    result
}

fn with_nonblocking(sock: &mut TcpStream, f: impl FnOnce(&mut TcpStream) -> bool) -> bool {
    if sock.set_nonblocking(true).is_err() {
        return true;
    }
    let closed = f(sock);
    sock.set_nonblocking(false).is_err() || closed
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`, in one write so a frame is one segment
/// when it fits.
fn write_frame(out: &mut dyn Write, message: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(message.len() + 8);
    frame.extend_from_slice(message.len().to_string().as_bytes());
    frame.push(b' ');
    frame.extend_from_slice(message);
    out.write_all(&frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("tcp://127.0.0.1:6514").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Tcp, "127.0.0.1", 6514)
        );
        let e = Endpoint::parse("TLS://logs.example.org").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Tls, "logs.example.org", 6514)
        );
        let e = Endpoint::parse("udp://[::1]:5514/").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Udp, "::1", 5514)
        );
        assert_eq!(Endpoint::parse("udp://[::1]").unwrap().port, 514);
        for bad in [
            "127.0.0.1:514",
            "http://x:1",
            "tcp://:514",
            "tcp://host:0",
            "tcp://host:70000",
            "tcp://host:514/path",
            "udp://[::1:514",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn octet_counting_frame() {
        let mut out = Vec::new();
        write_frame(&mut out, b"<13>1 - - - - - - hi").unwrap();
        assert_eq!(out, b"20 <13>1 - - - - - - hi");
    }

    #[test]
    fn tls_config_errors_name_the_file() {
        let missing = Path::new("/nonexistent/ca.pem");
        let err = tls_config(&TlsFiles {
            ca_file: Some(missing),
            cert_file: None,
            key_file: None,
        })
        .unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let err = tls_config(&TlsFiles {
            ca_file: None,
            cert_file: Some(missing),
            key_file: None,
        })
        .unwrap_err();
        assert!(err.contains("go together"), "{err}");
        assert!(
            tls_config(&TlsFiles {
                ca_file: None,
                cert_file: None,
                key_file: None
            })
            .is_ok()
        );
    }
}
