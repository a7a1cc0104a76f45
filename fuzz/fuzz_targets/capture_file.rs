//! pcap and pcapng files: whatever the bytes, the reader ends, every frame lies within the
//! file, and every problem names an offset inside it.
#![no_main]
use egresswatch::source::pcap_file::CaptureReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path =
        std::env::temp_dir().join(format!("egresswatch-fuzz-capture-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let size = data.len() as u64;
    if let Ok(mut reader) = CaptureReader::open(std::slice::from_ref(&path)) {
        let mut frames = 0u64;
        let mut bytes = 0u64;
        while let Some(packet) = reader.next_packet() {
            frames += 1;
            bytes += packet.data.len() as u64;
        }
        // Every record has a header of at least 12 bytes besides its frame bytes.
        assert!(bytes + 12 * frames <= size);
        for problem in reader.problems() {
            assert!(problem.offset <= size, "{problem}");
        }
    }
    // Not left in the temp dir once the fuzzer stops.
    let _ = std::fs::remove_file(&path);
});
