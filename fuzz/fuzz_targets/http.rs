//! HTTP/1.x: request and response heads never claim more bytes than they were given, and the
//! chunked-body walker finds the same end whatever the segmentation.
#![no_main]
use egresswatch::decode::http::{
    ChunkedBody, ChunkedStep, HttpParse, parse_request_head, parse_response_head,
};
use libfuzzer_sys::fuzz_target;

/// Where the body ends (bytes from its start), fed `size` bytes at a time.
fn body_end(data: &[u8], size: usize) -> Option<Result<usize, ()>> {
    let mut body = ChunkedBody::new();
    let mut at = 0;
    for part in data.chunks(size.max(1)) {
        match body.feed(part) {
            ChunkedStep::More => at += part.len(),
            ChunkedStep::End(n) => {
                assert!(n <= part.len());
                return Some(Ok(at + n));
            }
            ChunkedStep::Bad => return Some(Err(())),
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks a segment size for the chunked walker; the rest is the stream.
    let Some((&segment, stream)) = data.split_first() else {
        return;
    };
    if let HttpParse::Done(head) = parse_request_head(stream) {
        assert!(head.head_len <= stream.len());
        assert!(head.host.as_ref().is_none_or(|h| h.len() <= stream.len()));
    }
    if let HttpParse::Done((_, len)) = parse_response_head(stream) {
        assert!(len <= stream.len());
    }
    let whole = body_end(stream, stream.len());
    let pieces = body_end(stream, usize::from(segment));
    // A body cut short is "more to come" whole and in pieces alike; an end or an error is
    // found at the same place.
    assert_eq!(whole, pieces);
});
