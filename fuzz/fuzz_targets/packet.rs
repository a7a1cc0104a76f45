//! Link layers, tunnels, IP and transport headers: every payload the decoder hands on lies
//! inside the frame, and decoding is a pure function of the bytes.
#![no_main]
use egresswatch::decode::packet::{Decoded, Layer, decode_frame, linktype};
use libfuzzer_sys::fuzz_target;

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr_range(), inner.as_ptr_range());
    inner.is_empty() || (o.start <= i.start && i.end <= o.end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let link = linktype::SUPPORTED[usize::from(pick) % linktype::SUPPORTED.len()];
    let mut decoded = Decoded::default();
    decode_frame(link, frame, &mut decoded);
    for layer in &decoded.layers {
        let payload = match layer {
            Layer::Transport(t) => t.payload,
            Layer::Fragment(f) => f.payload,
        };
        assert!(inside(frame, payload), "payload outside the frame");
    }
    let mut again = Decoded::default();
    decode_frame(link, frame, &mut again);
    assert_eq!(decoded.layers, again.layers);
    assert_eq!(decoded.drop, again.drop);
});
