//! QUIC client Initial reader: a flow's datagrams in order, some of them sealed here from
//! fuzzed plaintext frames so the frame walker and CRYPTO reassembly behind the AEAD are
//! reached. Deterministic, bounded, and what it reports fits the input.
#![no_main]
use egresswatch::decode::quic::{QuicConn, QuicEnd, QuicLimits, client_initial};
use egresswatch::decode::tls::parse_client_hello_message;
use libfuzzer_sys::fuzz_target;

/// Versions sealed records are protected with (v1, v2, drafts 27 and 29, Q050, T051).
const VERSIONS: [u32; 6] = [
    1,
    0x6b33_43cf,
    0xff00_001b,
    0xff00_001d,
    0x5130_3530,
    0x5430_3531,
];

/// Records: a head byte (bit 0: from the client; bit 1: the bytes are frames to seal into an
/// Initial, bits 2-4 pick the version), a 2-byte big-endian length, the bytes.
fn datagrams(data: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut pn = 0u32;
    while let [head, hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let from_client = head & 1 != 0;
        if head & 2 != 0 {
            let version = VERSIONS[usize::from(head >> 2 & 7) % VERSIONS.len()];
            let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
            if let Some(d) = client_initial(version, &dcid, pn, bytes) {
                out.push((from_client, d));
            }
            pn += 1;
        } else {
            out.push((from_client, bytes.to_vec()));
        }
    }
    out
}

fn run(datagrams: &[(bool, Vec<u8>)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut conn: Option<QuicConn> = None;
    for (from_client, d) in datagrams {
        let info = match conn.as_mut() {
            Some(c) => c.datagram(*from_client, d),
            None if *from_client => match QuicConn::start(d, QuicLimits::default()) {
                Some((c, info)) => {
                    conn = Some(c);
                    info
                }
                None => None,
            },
            None => None,
        };
        if let Some(info) = info {
            assert_eq!(info.end == QuicEnd::Complete, info.hello.is_some());
            assert!(info.history.len() <= 16);
            out.push(format!("{info:?}"));
            conn = None;
        }
    }
    if let Some(c) = conn.as_mut() {
        assert_eq!(c.flow_ended().end, QuicEnd::FlowEnded);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let datagrams = datagrams(data);
    let total: usize = datagrams.iter().map(|(_, d)| d.len()).sum();
    let first = run(&datagrams);
    assert_eq!(first, run(&datagrams));
    assert!(first.iter().all(|line| line.len() <= 2 * total + 4096));
    let _ = parse_client_hello_message(data);
});
