//! NetFlow v5/v9, IPFIX and sFlow v5 with template state kept across datagrams from several
//! exporters: templates and pending sets stay within their limits, and records never
//! outnumber what the datagrams have room for.
#![no_main]
use egresswatch::export::netflow::NetflowDecoder;
use egresswatch::export::sflow::SflowDecoder;
use egresswatch::export::{DatagramKind, ExportConfig, classify};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fuzz_target!(|data: &[u8]| {
    let config = ExportConfig {
        max_templates: 16,
        max_pending_sets: 4,
        ..ExportConfig::default()
    };
    let mut netflow = NetflowDecoder::new(&config);
    let mut sflow = SflowDecoder::new(&config);
    let mut records = Vec::new();
    let mut rest = data;
    let mut recv_ns = 1_700_000_000_000_000_000u64;
    let mut fed = 0usize;
    // Each datagram: exporter (low 2 bits) and seconds since the last one, length (2 bytes),
    // bytes. The version decides the decoder unless `classify` does not know it.
    while let [who, len_hi, len_lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;
        fed += datagram.len();
        recv_ns += u64::from(who >> 2) * 1_000_000_000;
        let exporter = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, who & 3)), 2055);
        let before = records.len();
        let _ = match classify(datagram) {
            Some(DatagramKind::Sflow) => sflow.decode(exporter, recv_ns, datagram, &mut records),
            Some(DatagramKind::Netflow(_)) | None => {
                netflow.decode(exporter, recv_ns, datagram, &mut records)
            }
        };
        // A record needs at least one byte of the datagram (v9/IPFIX fields can be 1 byte);
        // pending sets decoded later count against the bytes fed so far.
        assert!(records.len() - before <= fed);
        assert!(netflow.template_count() <= config.max_templates);
        assert!(netflow.pending_count() <= config.max_pending_sets * 4);
    }
});
