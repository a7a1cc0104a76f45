//! The floor for benchmarks: the least work any flow tool does per frame. It reads the files
//! with the pipeline's own reader, slices the headers with the pipeline's own `decode_frame`
//! and counts packets and bytes per direction-free 5-tuple in a plain hash map. Nothing
//! else: no fragment reassembly, TCP state, payloads, names or detectors.
//! `benches/compare.sh` runs it beside the full pipeline.
//!
//! `decode_frame` rather than etherparse's `LaxSlicedPacket`: it executes fewer instructions
//! per frame (about 950 against 1160 on the sliced bench capture), so the floor is the
//! tighter lower bound.
use crate::decode::packet::{Decoded, Layer, decode_frame};
use crate::source::pcap_file::{CaptureReader, SourceError};
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: (IpAddr, u16),
    b: (IpAddr, u16),
    proto: u8,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FloorReport {
    pub packets: u64,
    /// Transport headers counted in a flow (fragments are not reassembled, so not counted).
    pub counted: u64,
    pub flows: u64,
    /// Wire bytes of the counted frames.
    pub bytes: u64,
}

impl std::fmt::Display for FloorReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "floor: {} packets, {} counted, {} flows, {} bytes",
            self.packets, self.counted, self.flows, self.bytes
        )
    }
}

/// Reads every frame of `paths` and counts it in its 5-tuple.
pub fn run(paths: &[PathBuf]) -> Result<FloorReport, SourceError> {
    let mut reader = CaptureReader::open(paths)?;
    let mut flows: FxHashMap<Key, Counts> = FxHashMap::default();
    let mut report = FloorReport::default();
    while let Some(packet) = reader.next_packet() {
        report.packets += 1;
        // Borrows the reader's buffer, so one per frame (a stack value, as in the pipeline).
        let mut decoded = Decoded::default();
        decode_frame(packet.linktype, packet.data, &mut decoded);
        for layer in &decoded.layers {
            let Layer::Transport(t) = layer else {
                continue;
            };
            let (src, dst) = ((t.src, t.sport), (t.dst, t.dport));
            let (a, b) = if src <= dst { (src, dst) } else { (dst, src) };
            let counts = flows
                .entry(Key {
                    a,
                    b,
                    proto: t.proto,
                })
                .or_default();
            counts.packets += 1;
            counts.bytes += u64::from(packet.orig_len);
        }
    }
    for counts in flows.values() {
        report.counted += counts.packets;
        report.bytes += counts.bytes;
    }
    report.flows = flows.len() as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{ReplayOptions, replay};
    use std::path::Path;

    fn capture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("captures")
            .join(name)
    }

    /// The floor sees the same frames and bytes as the pipeline on a whole and a sliced
    /// capture (the generated office mix has no fragments or tunnels).
    #[test]
    fn counts_what_the_pipeline_counts() {
        for name in ["office.pcap", "office-sliced.pcap"] {
            let path = capture(name);
            let floor = run(std::slice::from_ref(&path)).unwrap();
            let report = replay(
                &crate::config::Config::default(),
                std::slice::from_ref(&path),
                &ReplayOptions::default(),
                &mut |_| Ok(()),
            )
            .unwrap();
            assert_eq!(floor.packets, report.stats.frames, "{name}");
            assert_eq!(floor.bytes, report.stats.wire_bytes, "{name}");
            // No connection reuse or idle timeout splits a flow in these captures.
            assert_eq!(floor.flows, report.stats.flows, "{name}");
        }
    }
}
