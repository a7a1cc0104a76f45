//! DNS message decoder (UDP payload, or one TCP-framed message without its 2-byte length).
//! HELPER-OWNED: replaced by the DNS helper. The public API below is the contract.
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuestion {
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsRdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// Any other record type, kept as its number.
    Other(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    pub name: String,
    pub ttl: u32,
    pub data: DnsRdata,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsMessage {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    pub rcode: u8,
    pub truncated: bool,
    pub questions: Vec<DnsQuestion>,
    pub answers: Vec<DnsAnswer>,
    /// Set when some later section could not be read; questions/answers hold what was read.
    pub malformed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("not a DNS message")]
    NotDns,
}

pub fn parse_message(_buf: &[u8]) -> Result<DnsMessage, DnsError> {
    Err(DnsError::NotDns)
}

/// Zeek's name for a query type ("A", "AAAA", "HTTPS", ... or the number as text).
pub fn qtype_name(qtype: u16) -> String {
    qtype.to_string()
}

/// Zeek's name for a response code ("NOERROR", "NXDOMAIN", ...).
pub fn rcode_name(rcode: u8) -> String {
    rcode.to_string()
}
