//! sFlow v5. (Contract stub.)
use super::{ExportConfig, ExportError, Exporter, FlowRecord};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SflowCounters {
    pub datagrams: u64,
    pub flow_samples: u64,
    pub counter_samples: u64,
    pub headers_decoded: u64,
    pub headers_undecoded: u64,
    pub malformed: u64,
}

pub struct SflowDecoder {
    pub counters: SflowCounters,
}

impl SflowDecoder {
    pub fn new(config: &ExportConfig) -> SflowDecoder {
        let _ = config;
        SflowDecoder {
            counters: SflowCounters::default(),
        }
    }

    pub fn decode(
        &mut self,
        exporter: Exporter,
        recv_ns: u64,
        datagram: &[u8],
        out: &mut Vec<FlowRecord>,
    ) -> Result<(), ExportError> {
        let _ = (exporter, recv_ns, datagram, out);
        Err(ExportError::Unsupported {
            what: "sflow",
            detail: "not built yet".into(),
        })
    }
}

pub fn looks_like_sflow(datagram: &[u8]) -> bool {
    let _ = datagram;
    false
}
