//! Packet and flow sources.
mod chunks;
pub mod collector;
pub mod live;
pub mod pcap_file;

/// One captured frame, borrowed from the source's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Event time: nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// LINKTYPE_* value of the frame's interface.
    pub linktype: u32,
    /// Captured bytes (may be shorter than `orig_len`: snaplen or slicing).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub orig_len: u32,
}

/// Now, in nanoseconds since the Unix epoch (live timestamps, collector arrival times).
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
