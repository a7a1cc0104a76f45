//! The packet path as a whole: decode, defragmentation, the flow table, TCP reassembly and
//! the application parsers (DNS, TLS, HTTP, SOCKS, BitTorrent, QUIC), fed a stream of frames.
//! Flows never count more packets or bytes than were fed, and the table stays within its
//! limit.
#![no_main]
use egresswatch::config::Config;
use egresswatch::decode::dns::DnsMessage;
use egresswatch::decode::http::RequestHead;
use egresswatch::decode::packet::linktype;
use egresswatch::decode::quic::QuicInfo;
use egresswatch::decode::socks::SocksRequest;
use egresswatch::decode::tls::{ClientHelloInfo, ServerInfo};
use egresswatch::flow::key::Uid;
use egresswatch::flow::table::Flow;
use egresswatch::flow::update::{FlowSink, UpdateKind};
use egresswatch::shard::{PacketPath, PacketSink};
use egresswatch::source::Packet;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Checks every flow it is shown against what was fed so far.
#[derive(Default)]
struct Checker {
    frames: u64,
    wire_bytes: u64,
}

impl Checker {
    fn check(&self, flow: &Flow) {
        assert!(flow.orig_pkts + flow.resp_pkts <= self.frames);
        assert!(flow.orig_wire_bytes + flow.resp_wire_bytes <= self.wire_bytes);
        assert!(flow.first_ns <= flow.last_ns);
    }
}

impl FlowSink for Checker {
    fn resolved_name(&mut self, _: Uid, _: IpAddr, _: (IpAddr, u16), _: u64) -> Option<Arc<str>> {
        None
    }
    fn flow(&mut self, flow: &Flow, _: UpdateKind) {
        self.check(flow);
    }
    fn dns(&mut self, flow: &Flow, _: u64, _: bool, _: &DnsMessage) {
        self.check(flow);
    }
    fn tls(&mut self, flow: &Flow, _: u64, _: &ClientHelloInfo) {
        self.check(flow);
    }
    fn tls_server(&mut self, flow: &Flow, _: u64, _: &ServerInfo) {
        self.check(flow);
    }
    fn http(&mut self, flow: &Flow, _: u64, _: &RequestHead) {
        self.check(flow);
    }
    fn socks(&mut self, flow: &Flow, _: u64, _: &SocksRequest) {
        self.check(flow);
    }
    fn quic(&mut self, flow: &Flow, _: u64, info: &QuicInfo) {
        self.check(flow);
        assert!(info.sni().map_or(0, str::len) as u64 <= self.wire_bytes);
    }
}

impl PacketSink for Checker {
    fn quoted_dns(&mut self, _: u64, _: IpAddr, _: DnsMessage) {}
    fn export_datagram(&mut self, _: u64, _: SocketAddr, payload: &[u8]) {
        assert!(payload.len() as u64 <= self.wire_bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let link = if pick & 1 == 0 {
        linktype::RAW
    } else {
        linktype::ETHERNET
    };
    let mut config = Config::default();
    config.flow.max_flows = 8;
    config.reassembly.max_fragmented_datagrams = 4;
    let mut path = PacketPath::new(&config, 1);
    let mut sink = Checker::default();
    let mut ts_ns = 1_700_000_000_000_000_000u64;
    let mut frame_no = 0;
    // Each frame: seconds since the last one, length (2 bytes), bytes.
    while let [gap, len_hi, len_lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*len_hi, *len_lo])).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        ts_ns += u64::from(*gap) * 1_000_000_000;
        frame_no += 1;
        sink.frames += 1;
        sink.wire_bytes += frame.len() as u64;
        let packet = Packet {
            ts_ns,
            linktype: link,
            data: frame,
            orig_len: frame.len() as u32,
        };
        path.packet(frame_no, &packet, &mut sink);
        if *gap > 0 {
            path.expire(ts_ns, &mut sink);
            path.checkpoint(&mut sink);
        }
    }
    path.flush(&mut sink);
    assert_eq!(path.counters.frames, sink.frames);
});
