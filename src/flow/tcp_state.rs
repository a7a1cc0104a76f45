//! Zeek-compatible TCP connection state (`conn_state`) and `history`. HELPER-OWNED.

/// TCP flag bits as on the wire (byte 13 of the TCP header).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

#[derive(Debug, Clone, Default)]
pub struct TcpState {}

pub fn first_packet_is_from_responder(flags: u8) -> bool {
    flags & (flags::SYN | flags::ACK) == (flags::SYN | flags::ACK)
}

impl TcpState {
    /// One TCP segment. `from_orig` is true when it comes from the connection originator.
    pub fn observe(&mut self, _from_orig: bool, _flags: u8, _seq: u32, _ack: u32, _payload_len: u32) {}

    /// Marks a connection first seen at its SYN-ACK (history '^').
    pub fn record_flip(&mut self) {}

    /// Zeek's conn_state: S0, S1, SF, REJ, S2, S3, RSTO, RSTR, RSTOS0, RSTRH, SH, SHR, OTH.
    pub fn conn_state(&self) -> &'static str {
        "OTH"
    }

    pub fn orig_bytes(&self) -> u64 {
        0
    }

    pub fn resp_bytes(&self) -> u64 {
        0
    }

    /// Zeek's history string (originator upper case, responder lower case).
    pub fn history(&self) -> String {
        String::new()
    }
}

pub fn udp_conn_state(_orig_pkts: u64, _resp_pkts: u64) -> &'static str {
    "OTH"
}

pub fn udp_history(_orig_pkts: u64, _resp_pkts: u64) -> &'static str {
    ""
}
