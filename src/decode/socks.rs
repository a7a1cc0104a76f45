//! SOCKS4/5 client handshake reader. HELPER-OWNED.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocksRequest {
    pub version: u8,
    /// Target host name or address as text.
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

pub fn parse_client_stream(_stream: &[u8]) -> SocksParse {
    SocksParse::NotSocks
}
