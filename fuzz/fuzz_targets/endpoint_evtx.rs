//! EVTX files: the input is the first chunk after its `ElfChnk\0` magic (anything longer runs
//! into a second, partial chunk), behind a valid file header, so the fuzzer spends its time
//! in chunks and records. Whatever the bytes, the read ends, keeps at most its limit of
//! problems, and places every one inside the file.
#![no_main]
use egresswatch::endpoint::read::{Location, MAX_PROBLEMS, ReadCounters, read_bytes};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const HEADER_BYTES: usize = 4096;
const CHUNK_BYTES: usize = 65536;

fn file_of(chunk: &[u8]) -> Vec<u8> {
    let mut file = vec![0u8; HEADER_BYTES];
    file[..8].copy_from_slice(b"ElfFile\0");
    file[24..32].copy_from_slice(&1u64.to_le_bytes()); // next record id
    file[32..36].copy_from_slice(&128u32.to_le_bytes()); // header size
    file[36..38].copy_from_slice(&1u16.to_le_bytes()); // minor version
    file[38..40].copy_from_slice(&3u16.to_le_bytes()); // major version
    file[40..42].copy_from_slice(&(HEADER_BYTES as u16).to_le_bytes());
    file[42..44].copy_from_slice(&1u16.to_le_bytes()); // chunk count
    file.extend_from_slice(b"ElfChnk\0");
    let body = CHUNK_BYTES - 8;
    file.extend_from_slice(&chunk[..chunk.len().min(body)]);
    if chunk.len() < body {
        file.resize(HEADER_BYTES + CHUNK_BYTES, 0);
    } else {
        file.extend_from_slice(&chunk[body..]);
    }
    file
}

fuzz_target!(|data: &[u8]| {
    let file = file_of(data);
    let name = Path::new("fuzz.evtx");
    let mut counters = ReadCounters::default();
    let mut problems = Vec::new();
    let mut events = 0u64;
    let _ = read_bytes(name, &file, &mut counters, &mut problems, &mut |_| {
        events += 1
    });
    assert_eq!(events, counters.events);
    assert!(problems.len() <= MAX_PROBLEMS);
    for problem in &problems {
        if let Location::Byte(offset) = problem.at {
            assert!(offset < file.len() as u64, "{problem}");
        }
        assert!(!matches!(problem.at, Location::Line(_)), "{problem}");
    }
});
