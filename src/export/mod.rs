//! Flow export ingest: NetFlow v5/v9, IPFIX and sFlow datagrams (from a collector socket or
//! from export packets inside a capture) and AWS VPC Flow Logs files, normalised to
//! [`FlowRecord`]s. [`table::RecordTable`] stitches records into the same [`FlowUpdate`]s the
//! packet path produces, so every detector works on router flows.
//!
//! [`FlowUpdate`]: crate::flow::update::FlowUpdate
// Decoders meet hostile bytes: a panic here would stop the sensor (RELIABILITY.md).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]
pub mod netflow;
pub mod reorder;
pub mod sflow;
pub mod table;
pub mod vpc;

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};

/// Which export protocol a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RecordSource {
    NetflowV5,
    NetflowV9,
    Ipfix,
    Sflow,
    VpcFlowLog,
}

impl RecordSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordSource::NetflowV5 => "netflow5",
            RecordSource::NetflowV9 => "netflow9",
            RecordSource::Ipfix => "ipfix",
            RecordSource::Sflow => "sflow",
            RecordSource::VpcFlowLog => "vpc_flow_log",
        }
    }
}

/// One exported flow record, normalised. Counters are already multiplied by the sampling
/// interval (`sampling`); a unidirectional record has zero reverse counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub source: RecordSource,
    /// Address of the exporter (the datagram's sender; for VPC logs, unspecified).
    pub exporter: IpAddr,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Zero for protocols without ports.
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
    /// IP bytes (octetDeltaCount) and packets src -> dst.
    pub octets: u64,
    pub packets: u64,
    /// Biflow (RFC 5103) reverse direction dst -> src; zero when the record is unidirectional.
    pub rev_octets: u64,
    pub rev_packets: u64,
    /// Exporter time of the first and last packet, ns since the Unix epoch.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Cumulative TCP flags src -> dst (and reverse for biflows); `None` when not exported.
    pub tcp_flags: Option<u8>,
    pub rev_tcp_flags: Option<u8>,
    /// Sampling interval the counters were scaled by (1 = unsampled).
    pub sampling: u32,
    /// IPFIX flowEndReason (1 idle, 2 active, 3 end of flow, 4 forced, 5 lack of resources).
    pub end_reason: Option<u8>,
}

/// Why a datagram or a record was not decoded: counted per reason, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("truncated {what} at offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("invalid {what} at offset {offset}: {detail}")]
    Invalid {
        what: &'static str,
        offset: usize,
        detail: String,
    },
    #[error("unsupported {what}: {detail}")]
    Unsupported { what: &'static str, detail: String },
}

impl ExportError {
    /// Stable snake_case name for drop counters.
    pub fn reason(&self) -> &'static str {
        match self {
            ExportError::Truncated { .. } => "export_truncated",
            ExportError::Invalid { .. } => "export_invalid",
            ExportError::Unsupported { .. } => "export_unsupported",
        }
    }
}

/// What an export datagram is, by structure (any UDP port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    Netflow(u16),
    Sflow,
}

/// Recognises NetFlow v5/v9, IPFIX and sFlow v5 datagrams by their headers and lengths.
pub fn classify(datagram: &[u8]) -> Option<DatagramKind> {
    if let Some(v) = netflow::looks_like_netflow(datagram) {
        return Some(DatagramKind::Netflow(v));
    }
    sflow::looks_like_sflow(datagram).then_some(DatagramKind::Sflow)
}

/// `[export]`: flow export ingest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Decode NetFlow/IPFIX/sFlow datagrams found in replayed captures (any UDP port).
    pub decode_in_captures: bool,
    /// Templates unused this long expire (RFC 7011 suggests 3x the exporter's refresh).
    pub template_timeout_seconds: u64,
    /// Data sets waiting for their template, per exporter; the oldest are dropped (counted).
    pub max_pending_sets: usize,
    /// Bytes of data sets waiting for their template, across all exporters (each counts its
    /// body plus `netflow::PENDING_SET_OVERHEAD`); beyond it new ones are dropped (counted).
    pub max_pending_bytes: usize,
    /// Pending data sets older than this are dropped (counted).
    pub pending_timeout_seconds: u64,
    /// Templates kept at once across all exporters; beyond it the least recently used go.
    pub max_templates: usize,
    /// Sampling interval per exporter address, overriding what options data says.
    pub sampling: Vec<ExporterSampling>,
    /// Records of one connection closer than this are stitched into one flow.
    pub stitch_gap_seconds: u64,
    /// A flow opened by a one-way record (unsampled NetFlow/IPFIX) waits this long in event
    /// time for its other direction before detectors see it.
    pub pair_wait_seconds: u64,
    /// A stitched flow with no record for this long ends (Final update).
    pub idle_timeout_seconds: u64,
    /// Stitched flows tracked at once; beyond it the least recently updated end (counted).
    pub max_flows: usize,
    /// Collector: datagrams queued between the sockets and the decoder; a full queue drops
    /// (counted per exporter) rather than block the socket.
    pub queue_datagrams: usize,
    /// Decoded records wait this long (by arrival) and leave sorted by event time, so an
    /// exporter that dumps its cache at once is still processed in event-time order.
    pub reorder_seconds: u64,
    /// Records held for reordering at most; beyond it the earliest arrivals leave at once.
    pub max_reorder_records: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterSampling {
    pub exporter: IpAddr,
    pub interval: u32,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            decode_in_captures: true,
            template_timeout_seconds: 1800,
            max_pending_sets: 256,
            max_pending_bytes: 32 << 20,
            pending_timeout_seconds: 300,
            max_templates: 65_536,
            sampling: Vec::new(),
            stitch_gap_seconds: 60,
            pair_wait_seconds: 30,
            idle_timeout_seconds: 120,
            max_flows: 1_000_000,
            queue_datagrams: 65_536,
            reorder_seconds: 5,
            max_reorder_records: 1_000_000,
        }
    }
}

impl ExportConfig {
    /// The configured sampling interval for an exporter, if any.
    pub fn sampling_for(&self, exporter: IpAddr) -> Option<u32> {
        self.sampling
            .iter()
            .find(|s| s.exporter == exporter)
            .map(|s| s.interval)
    }
}

/// A datagram's sender, as decoders key their state.
pub type Exporter = SocketAddr;
