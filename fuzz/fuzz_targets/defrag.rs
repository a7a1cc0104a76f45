//! IPv4/IPv6 fragment reassembly: a reassembled datagram holds no byte that was not fed to
//! it, and the pending table never holds more datagrams or bytes than its limits (four
//! datagram ids against a limit of three, so eviction runs).
#![no_main]
use egresswatch::decode::packet::Fragment;
use egresswatch::flow::defrag::{DefragOutcome, Defragmenter};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

const MAX_DATAGRAMS: usize = 3;
const MAX_BYTES: usize = 512;

fuzz_target!(|data: &[u8]| {
    let mut defrag = Defragmenter::new(MAX_DATAGRAMS, MAX_BYTES, 30_000_000_000);
    let mut rest = data;
    let mut fed = 0usize;
    let mut ts_ns = 0u64;
    // Each fragment: flags, offset (2 bytes, in 8-byte units), length, payload.
    while let [flags, off_hi, off_lo, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        fed += payload.len();
        ts_ns += u64::from(*flags >> 4) * 1_000_000_000;
        let frag = Fragment {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            proto: 17,
            id: u32::from(flags & 3),
            offset: u32::from(u16::from_be_bytes([*off_hi, *off_lo])) * 8,
            more: flags & 4 != 0,
            payload,
            cut: flags & 8 != 0,
            ip_len: 20 + len as u32,
        };
        if let DefragOutcome::Complete(datagram) = defrag.add(ts_ns, &frag) {
            assert!(
                datagram.payload.len() <= fed,
                "reassembled more than was fed"
            );
        }
        assert!(defrag.len() <= MAX_DATAGRAMS);
        assert!(defrag.bytes() <= MAX_BYTES);
    }
    defrag.expire(u64::MAX);
    assert_eq!(defrag.len(), 0);
    assert_eq!(defrag.bytes(), 0);
});
