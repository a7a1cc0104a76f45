//! NetFlow v5, v9 and IPFIX (v10) decoding with template state. (Contract stub.)
use super::{ExportConfig, ExportError, Exporter, FlowRecord};

/// Counters for the stats summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetflowCounters {
    pub datagrams: u64,
    pub records: u64,
    pub options_records: u64,
    pub templates: u64,
    pub options_templates: u64,
    pub templates_withdrawn: u64,
    pub templates_expired: u64,
    pub sets_pending: u64,
    pub pending_decoded: u64,
    pub pending_dropped: u64,
    pub malformed: u64,
}

pub struct NetflowDecoder {
    pub counters: NetflowCounters,
}

impl NetflowDecoder {
    pub fn new(config: &ExportConfig) -> NetflowDecoder {
        let _ = config;
        NetflowDecoder {
            counters: NetflowCounters::default(),
        }
    }

    /// Decodes one datagram from `exporter`, received at `recv_ns`; appends its records.
    pub fn decode(
        &mut self,
        exporter: Exporter,
        recv_ns: u64,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        let _ = (exporter, recv_ns, datagram, out);
        Err(ExportError::Unsupported {
            what: "netflow",
            detail: "not built yet".into(),
        })
    }
}

/// The version (5, 9 or 10) when the datagram's header and lengths are consistent.
pub fn looks_like_netflow(datagram: &[u8]) -> Option<u16> {
    let _ = datagram;
    None
}
