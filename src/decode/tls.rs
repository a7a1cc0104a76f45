//! TLS ClientHello walker. HELPER-OWNED: replaced by the app-parser helper.

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHelloInfo {
    pub legacy_version: u16,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub supported_versions: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsParse {
    ClientHello(ClientHelloInfo),
    /// Looks like TLS so far; at least this many bytes of stream are needed in total.
    Incomplete { needed: usize },
    NotClientHello,
}

/// `stream` is the client-to-server byte stream from its first byte (records may be split
/// anywhere and a handshake message may span several records).
pub fn parse_client_hello(_stream: &[u8]) -> TlsParse {
    TlsParse::NotClientHello
}
