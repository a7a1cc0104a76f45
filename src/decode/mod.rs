//! Protocol decoders: bytes in, a borrowed or small owned view out. No I/O, no logging.
pub mod bittorrent;
pub mod dns;
pub mod http;
pub mod packet;
pub mod socks;
pub mod tls;
