//! TLS: the ClientHello parser (a stream prefix) and the session tracker (both directions).
//! A parsed name is never longer than the input, a prefix that is "incomplete" asks for more
//! than it has, and the tracker learns the same whatever the TCP segmentation.
#![no_main]
use egresswatch::decode::tls::{SessionTracker, TlsParse, parse_client_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first three bytes split the rest into the client's and the server's stream and
    // pick a segment size.
    let [cut_hi, cut_lo, segment, streams @ ..] = data else {
        return;
    };
    let cut = usize::from(u16::from_be_bytes([*cut_hi, *cut_lo])).min(streams.len());
    let (client, server) = streams.split_at(cut);

    let parsed = parse_client_hello(client);
    assert_eq!(parsed, parse_client_hello(client));
    match &parsed {
        TlsParse::ClientHello(hello) => {
            let sni = hello.sni.as_deref().unwrap_or("");
            assert!(sni.len() <= client.len());
        }
        TlsParse::Incomplete { needed } => assert!(*needed > client.len()),
        TlsParse::NotClientHello => {}
    }

    let mut whole = SessionTracker::new();
    whole.feed(true, client);
    whole.feed(false, server);
    let mut pieces = SessionTracker::new();
    let size = usize::from(*segment).max(1);
    for part in client.chunks(size) {
        pieces.feed(true, part);
    }
    for part in server.chunks(size) {
        pieces.feed(false, part);
    }
    assert_eq!(whole.info(), pieces.info());
    assert_eq!(whole.done(), pieces.done());
});
