//! Sysmon event text (JSON lines, Windows event XML, syslog; plain, gzip or UTF-16): whatever
//! the bytes, the reader ends with a format or an error, keeps at most its limit of
//! problems, and every problem names the file and a line within the text.
#![no_main]
use egresswatch::endpoint::read::{Location, MAX_PROBLEMS, ReadCounters, read_bytes};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // EVTX has its own target.
    if data.starts_with(b"ElfFile\0") {
        return;
    }
    let name = Path::new("fuzz.log");
    let mut counters = ReadCounters::default();
    let mut problems = Vec::new();
    let mut events = 0u64;
    let _ = read_bytes(name, data, &mut counters, &mut problems, &mut |_| {
        events += 1
    });
    assert_eq!(events, counters.events);
    assert!(problems.len() <= MAX_PROBLEMS);
    assert!(counters.malformed + counters.unsupported_lines.min(1) >= problems.len() as u64);
    // Lines of uncompressed text: at most one more than its newlines.
    let plain = !data.starts_with(&[0x1f, 0x8b]) && !data.starts_with(&[0xff, 0xfe]);
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    for problem in &problems {
        assert_eq!(problem.file, name);
        match problem.at {
            Location::Line(n) => assert!(n >= 1 && (!plain || n <= lines), "{problem}"),
            other => panic!("a text problem placed at {other:?}: {problem}"),
        }
    }
});
