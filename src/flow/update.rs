//! What the flow table tells the rest of the sensor.
use super::key::Uid;
use super::table::Flow;
use crate::decode::dns::DnsMessage;
use crate::decode::http::RequestHead;
use crate::decode::quic::QuicInfo;
use crate::decode::socks::SocksRequest;
use crate::decode::tls::{ClientHelloInfo, ServerInfo};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// Active timeout: the flow goes on.
    Interim,
    /// Idle timeout, close, eviction or end of input.
    Final,
}

/// Application protocols seen on a flow (Zeek's `service`).
pub mod service {
    pub const DNS: u8 = 1;
    pub const SSL: u8 = 2;
    pub const HTTP: u8 = 4;
    pub const SOCKS: u8 = 8;
    pub const BITTORRENT: u8 = 16;
    pub const QUIC: u8 = 32;
    pub const NAMES: [(u8, &str); 6] = [
        (DNS, "dns"),
        (HTTP, "http"),
        (QUIC, "quic"),
        (SOCKS, "socks"),
        (SSL, "ssl"),
        (BITTORRENT, "bittorrent"),
    ];
}

/// Names a flow carries. The flow table shares one set between all flows carrying the same.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FlowNames {
    pub sni: Option<Box<str>>,
    pub http_host: Option<Box<str>>,
    pub connect_target: Option<Box<str>>,
    pub socks_target: Option<Box<str>>,
    /// Name the inside host resolved for the outside address before this flow began.
    pub dns_name: Option<Arc<str>>,
}

impl FlowNames {
    /// The most specific name: what the client asked the server for, then what it resolved.
    pub fn best(&self) -> Option<&str> {
        self.sni
            .as_deref()
            .or(self.http_host.as_deref())
            .or(self.connect_target.as_deref())
            .or(self.socks_target.as_deref())
            .or(self.dns_name.as_deref())
    }
}

/// How a name was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NameSource {
    DnsQuery,
    TlsSni,
    HttpHost,
    HttpConnect,
    Socks,
    /// A flow to an address the host had resolved from this name.
    DnsCache,
}

impl NameSource {
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::DnsQuery => "dns",
            NameSource::TlsSni => "sni",
            NameSource::HttpHost => "http",
            NameSource::HttpConnect => "http_connect",
            NameSource::Socks => "socks",
            NameSource::DnsCache => "dns_cache",
        }
    }

    /// True when the host exchanged data with the named service, not only looked it up.
    pub fn is_connection(self) -> bool {
        !matches!(self, NameSource::DnsQuery)
    }
}

/// The sensor-wide view of a flow: oriented inside -> outside. Counters are cumulative since
/// the flow began; a long flow sends several (interim, then final) with the same `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowUpdate<'a> {
    pub uid: Uid,
    pub kind: UpdateKind,
    pub proto: u8,
    pub inside: IpAddr,
    pub inside_port: u16,
    pub outside: IpAddr,
    pub outside_port: u16,
    /// The outside side opened the flow (an inside host accepting a connection).
    pub inbound: bool,
    pub first_ns: u64,
    pub last_ns: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub pkts_out: u64,
    pub pkts_in: u64,
    /// The responder has sent at least one packet.
    pub answered: bool,
    /// Zeek's conn_state as of this update ("S0", "SF", "REJ", ...; UDP "S0"/"SF"/"OTH").
    pub conn_state: &'static str,
    /// `service` bits (DNS, SSL, HTTP, SOCKS, BITTORRENT).
    pub services: u8,
    /// Names the flow carries (packet sources only).
    pub names: Option<&'a FlowNames>,
}

impl FlowUpdate<'_> {
    /// The flow's best name (SNI, HTTP Host, CONNECT/SOCKS target, then DNS cache).
    pub fn name(&self) -> Option<&str> {
        self.names.and_then(FlowNames::best)
    }

    pub fn duration_ns(&self) -> u64 {
        self.last_ns.saturating_sub(self.first_ns)
    }

    /// A TCP connection attempt nobody accepted: no answer, rejected, or reset unanswered.
    pub fn unanswered_attempt(&self) -> bool {
        self.proto == crate::decode::packet::ip_proto::TCP
            && (!self.answered || matches!(self.conn_state, "S0" | "REJ" | "RSTOS0" | "SH" | "SHR"))
    }
}

/// Receives everything the flow table learns. The pipeline implements it.
pub trait FlowSink {
    /// Name the client resolved for the server's address, if any (the DNS cache).
    fn resolved_name(
        &mut self,
        uid: Uid,
        client: IpAddr,
        server: (IpAddr, u16),
        ts_ns: u64,
    ) -> Option<Arc<str>>;
    fn flow(&mut self, flow: &Flow, kind: UpdateKind);
    fn dns(&mut self, flow: &Flow, ts_ns: u64, from_orig: bool, msg: &DnsMessage);
    fn tls(&mut self, flow: &Flow, ts_ns: u64, hello: &ClientHelloInfo);
    /// The server side of the flow's TLS session: after its ServerHello, and again once
    /// established.
    fn tls_server(&mut self, flow: &Flow, ts_ns: u64, info: &ServerInfo);
    fn http(&mut self, flow: &Flow, ts_ns: u64, request: &RequestHead);
    fn socks(&mut self, flow: &Flow, ts_ns: u64, request: &SocksRequest);
    /// A QUIC connection's client hello (its SNI names the flow as a TLS SNI does), or why
    /// it could not be read: once per connection.
    fn quic(&mut self, flow: &Flow, ts_ns: u64, info: &QuicInfo);
}
