//! BitTorrent markers. HELPER-OWNED.

/// True when a TCP payload starts with the peer-wire handshake.
pub fn is_peer_wire_handshake(_payload: &[u8]) -> bool {
    false
}

/// True when a UDP payload is a Mainline DHT KRPC message.
pub fn is_dht_message(_payload: &[u8]) -> bool {
    false
}

pub fn is_utp_packet(_payload: &[u8]) -> bool {
    false
}
