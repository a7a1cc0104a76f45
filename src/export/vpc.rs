//! AWS VPC Flow Logs (default version 2 text format, plain or gzip). (Contract stub.)
use super::FlowRecord;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum VpcError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {detail}")]
    Line {
        path: String,
        line: u64,
        detail: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcCounters {
    pub lines: u64,
    pub records: u64,
    /// NODATA / SKIPDATA lines (no traffic, or records the service skipped).
    pub no_data: u64,
    pub bad_lines: u64,
}

/// True when the file starts like a VPC flow log (gzip, or the v2 header / a v2 line).
pub fn is_vpc_flow_log(path: &Path) -> bool {
    let _ = path;
    false
}

/// Reads a whole VPC flow log file, calling `on_record` per record; bad lines are counted and
/// reported through `on_error` and the read goes on.
pub fn read_file(
    path: &Path,
    counters: &mut VpcCounters,
    on_record: &mut dyn FnMut(FlowRecord),
    on_error: &mut dyn FnMut(VpcError),
) -> Result<(), VpcError> {
    let _ = (path, counters, on_record, on_error);
    Ok(())
}
