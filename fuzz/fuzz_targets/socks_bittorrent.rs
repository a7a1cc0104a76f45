//! SOCKS client handshakes and the BitTorrent recognisers: deterministic, and a SOCKS
//! request read from a prefix is read the same from the whole stream.
#![no_main]
use egresswatch::decode::bittorrent::{is_dht_message, is_peer_wire_handshake, is_utp_packet};
use egresswatch::decode::socks::{SocksParse, parse_client_stream};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_client_stream(data);
    assert_eq!(parsed, parse_client_stream(data));
    if let Some((&cut, _)) = data.split_first() {
        let prefix = &data[..usize::from(cut).min(data.len())];
        if let SocksParse::Done(request) = parse_client_stream(prefix) {
            assert_eq!(parsed, SocksParse::Done(request));
        }
    }
    let _ = (
        is_peer_wire_handshake(data),
        is_dht_message(data),
        is_utp_packet(data),
    );
});
