//! DNS messages: parsing is deterministic and never reports more questions or records than
//! the message has room for.
#![no_main]
use egresswatch::decode::dns::parse_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let first = parse_message(data);
    assert_eq!(first, parse_message(data));
    if let Ok(msg) = first {
        // A question takes at least 5 bytes (root name, type, class) after the 12-byte header.
        assert!(12 + 5 * msg.questions.len() <= data.len());
    }
});
