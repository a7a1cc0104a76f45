//! Protocol decoders: bytes in, a borrowed or small owned view out. No I/O, no logging.
// Decoders meet hostile bytes: a panic here would stop the sensor (RELIABILITY.md).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
pub mod bittorrent;
pub mod dns;
pub mod http;
pub mod packet;
pub mod quic;
mod reader;
pub mod socks;
pub mod tls;

/// Test input written as commented hex: every non-hex-digit character is ignored.
#[cfg(test)]
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Splits a conversation file of tests/data/app (extract.py `conv`) into its chunks:
/// (from the client, bytes), in capture order.
#[cfg(test)]
pub(crate) fn conversation(file: &[u8]) -> Vec<(bool, &[u8])> {
    let mut out = Vec::new();
    let mut rest = file;
    while let [dir, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        assert!(*dir == b'c' || *dir == b's', "bad direction byte");
        let (chunk, next) = tail.split_at(len);
        out.push((*dir == b'c', chunk));
        rest = next;
    }
    assert!(rest.is_empty(), "truncated conversation file");
    out
}
