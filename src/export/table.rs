//! Stitches flow records into bidirectional flows and FlowUpdates. (Contract stub.)
use super::{ExportConfig, FlowRecord, RecordSource};
use crate::flow::key::Uid;
use crate::flow::update::{FlowUpdate, UpdateKind};
use std::net::IpAddr;

/// Export flows number their uids from here, apart from the packet flow table's.
pub const UID_BASE: u64 = 1 << 62;

/// One stitched connection, oriented originator -> responder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFlow {
    pub uid: Uid,
    pub source: RecordSource,
    pub exporter: IpAddr,
    pub proto: u8,
    pub orig: (IpAddr, u16),
    pub resp: (IpAddr, u16),
    pub first_ns: u64,
    pub last_ns: u64,
    pub orig_bytes: u64,
    pub orig_pkts: u64,
    pub resp_bytes: u64,
    pub resp_pkts: u64,
    pub orig_flags: Option<u8>,
    pub resp_flags: Option<u8>,
    /// Records stitched into this flow.
    pub records: u64,
    pub sampling: u32,
}

impl ExportFlow {
    /// Zeek-style conn_state from the cumulative TCP flags and whether the responder sent
    /// anything; "OTH" when flow export cannot tell.
    pub fn conn_state(&self) -> &'static str {
        "OTH"
    }
}

/// Receives stitched flows.
pub trait RecordSink {
    /// `update` is oriented inside -> outside (via `is_inside`); `flow` is the stitched flow.
    fn export_flow(&mut self, flow: &ExportFlow, update: &FlowUpdate<'_>);
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordTableCounters {
    pub records: u64,
    pub flows_created: u64,
    pub records_stitched: u64,
    pub flows_evicted: u64,
}

pub struct RecordTable {
    pub counters: RecordTableCounters,
}

impl RecordTable {
    pub fn new(config: &ExportConfig) -> RecordTable {
        let _ = config;
        RecordTable {
            counters: RecordTableCounters::default(),
        }
    }

    /// Adds a record: creates or extends its flow and sends an Interim update (a Final one
    /// when the record says the connection ended). `is_inside` orients updates.
    pub fn record(
        &mut self,
        record: &FlowRecord,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        let _ = (record, is_inside, sink, UpdateKind::Final);
    }

    /// Ends flows idle past the timeout at event time `now_ns` (Final updates).
    pub fn expire(
        &mut self,
        now_ns: u64,
        is_inside: &dyn Fn(IpAddr) -> bool,
        sink: &mut dyn RecordSink,
    ) {
        let _ = (now_ns, is_inside, sink);
    }

    /// Ends every flow (end of input).
    pub fn flush(&mut self, is_inside: &dyn Fn(IpAddr) -> bool, sink: &mut dyn RecordSink) {
        let _ = (is_inside, sink);
    }
}
