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

/// Asks the CPU to load the first two cache lines of `bytes` (a record's header and the
/// frame's headers): a hint that lets a later read find them near.
pub fn prefetch_head(bytes: &[u8]) {
    for at in [0, 64] {
        if let Some(byte) = bytes.get(at) {
            mem_prefetch::prefetch_read_data::<_, 3>(byte);
        }
    }
}

/// Now, in nanoseconds since the Unix epoch (live timestamps, collector arrival times).
pub fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
