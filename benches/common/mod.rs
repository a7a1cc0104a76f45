//! Inputs shared by the criterion benches, loaded before anything is timed.
use egresswatch::source::pcap_file::CaptureReader;
use std::path::{Path, PathBuf};

/// The frames (link type, bytes) of every public capture, one list per capture, in file
/// name order.
pub fn public_captures() -> Vec<Vec<(u32, Vec<u8>)>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    paths.retain(|p| {
        let s = p.to_string_lossy();
        (s.ends_with(".pcap") || s.ends_with(".pcapng")) && !s.contains("oracle")
    });
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let Ok(mut reader) = CaptureReader::open(std::slice::from_ref(&p)) else {
            continue;
        };
        let mut frames = Vec::new();
        while let Some(packet) = reader.next_packet() {
            frames.push((packet.linktype, packet.data.to_vec()));
        }
        out.push(frames);
    }
    out
}
