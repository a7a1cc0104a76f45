//! The `concurrent` scenario: `flows` distinct connections, all live at the end of the
//! capture, for measuring what the flow table holds per flow (bytes per flow, peak RSS).
//!
//! Flows open evenly over the first 50 s, under the UDP and TCP idle timeouts, and none
//! closes, so a replay tracks every one of them at once. Inside hosts (4000 IPv4, 400 IPv6)
//! talk to random addresses in the benchmarking ranges (198.18.0.0/15, 2001:2::/48). Most
//! flows are TCP: a handshake, then a TLS 1.3 ClientHello with SNI, the server's flight and the
//! client's Finished (so the session is established and inspection ends), or an HTTP GET and
//! its response (a keep-alive connection still inspected); the rest are UDP exchanges.
//!
//! Payloads come from small precomputed pools (with their checksums), and a heap orders the
//! packets of the flows in flight, so memory stays small and tens of millions of flows stream
//! straight to disk at a few million packets a second.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::blocks::{ALPN, FlowTruth, remote};
use super::conv::Tally;
use super::proto;
use super::rng::Rng;
use super::wire::{Endpoint, L4, PcapWriter, build_headers, mac_for, ones_sum};
use super::{GenerateError, ScenarioTruth};

/// 2024-03-05 14:01:00 UTC: the 50 s of openings stay inside one 15-minute window.
const START_US: u64 = 1_709_647_260 * 1_000_000;
/// Every flow opens within this span (the UDP idle timeout is 60 s).
const OPEN_SPAN_US: u64 = 50_000_000;
const V4_HOSTS: u64 = 4000;
const V6_HOSTS: u64 = 400;
/// Ephemeral ports per inside host: `(host, port)` is unique for this many times the hosts.
const PORTS_PER_HOST: u64 = 55_000;
const POOL: usize = 64;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tls,
    Http,
    Udp,
}

/// What one packet of a flow carries.
#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    Hello,
    Flight,
    Finished,
    AppData,
    Get,
    Response,
    Datagram,
    Reply,
}

/// (from client, TCP flags, payload) per packet.
type Step = (bool, u8, Body);

const TLS_STEPS: [Step; 7] = [
    (true, SYN, Body::None),
    (false, SYN | ACK, Body::None),
    (true, ACK, Body::None),
    (true, PSH | ACK, Body::Hello),
    (false, PSH | ACK, Body::Flight),
    (true, PSH | ACK, Body::Finished),
    (false, PSH | ACK, Body::AppData),
];
const HTTP_STEPS: [Step; 6] = [
    (true, SYN, Body::None),
    (false, SYN | ACK, Body::None),
    (true, ACK, Body::None),
    (true, PSH | ACK, Body::Get),
    (false, PSH | ACK, Body::Response),
    (true, ACK, Body::None),
];
const UDP_STEPS: [Step; 2] = [(true, 0, Body::Datagram), (false, 0, Body::Reply)];

fn steps(kind: Kind) -> &'static [Step] {
    match kind {
        Kind::Tls => &TLS_STEPS,
        Kind::Http => &HTTP_STEPS,
        Kind::Udp => &UDP_STEPS,
    }
}

fn sni(variant: usize) -> String {
    format!("edge{variant}.cdn{}.example.net", variant % 7)
}

fn http_host(variant: usize) -> String {
    format!("www{variant}.example.com")
}

/// A payload with its precomputed one's-complement sum.
struct Payload {
    bytes: Vec<u8>,
    sum: u64,
}

impl Payload {
    fn new(bytes: Vec<u8>) -> Payload {
        let sum = ones_sum(&bytes);
        Payload { bytes, sum }
    }
}

struct Pools {
    hello: Vec<Payload>,
    flight: Vec<Payload>,
    finished: Vec<Payload>,
    app_data: Vec<Payload>,
    get: Vec<Payload>,
    response: Vec<Payload>,
    datagram: Vec<Payload>,
    reply: Vec<Payload>,
}

impl Pools {
    fn new(rng: &mut Rng) -> Result<Pools, GenerateError> {
        let mut p = Pools {
            hello: Vec::new(),
            flight: Vec::new(),
            finished: Vec::new(),
            app_data: Vec::new(),
            get: Vec::new(),
            response: Vec::new(),
            datagram: Vec::new(),
            reply: Vec::new(),
        };
        for i in 0..POOL {
            let mut sid = [0u8; 32];
            rng.fill(&mut sid);
            let name = sni(i);
            p.hello.push(Payload::new(proto::client_hello(
                rng,
                &sid,
                Some(&name),
                &ALPN,
            )?));
            let cert = 800 + rng.below(500) as usize;
            p.flight
                .push(Payload::new(proto::server_flight(rng, &sid, cert)?));
            let request = 60 + rng.below(200) as usize;
            p.finished
                .push(Payload::new(proto::client_finished(rng, request)));
            let response = 100 + rng.below(400) as usize;
            p.app_data
                .push(Payload::new(proto::app_data(rng, response)));
            p.get.push(Payload::new(proto::http_get(
                &http_host(i),
                &format!("/api/v1/items/{}", rng.below(100_000)),
                "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
            )));
            let body = 50 + rng.below(400) as usize;
            p.response.push(Payload::new(proto::http_response(
                rng,
                "application/json",
                body,
            )));
            let len = 40 + rng.below(400) as usize;
            p.datagram.push(Payload::new(rng.bytes(len)));
            let len = 40 + rng.below(400) as usize;
            p.reply.push(Payload::new(rng.bytes(len)));
        }
        Ok(p)
    }

    fn get(&self, body: Body, variant: usize) -> Option<&Payload> {
        let pool = match body {
            Body::None => return None,
            Body::Hello => &self.hello,
            Body::Flight => &self.flight,
            Body::Finished => &self.finished,
            Body::AppData => &self.app_data,
            Body::Get => &self.get,
            Body::Response => &self.response,
            Body::Datagram => &self.datagram,
            Body::Reply => &self.reply,
        };
        pool.get(variant % pool.len())
    }
}

/// A flow in flight, ordered by its next packet's time (then by opening order).
struct Live {
    ts_us: u64,
    order: u64,
    kind: Kind,
    step: u8,
    variant: u16,
    rtt_us: u32,
    c: Endpoint,
    s: Endpoint,
    next_seq: [u32; 2],
    ip_ids: [u16; 2],
    tally: Tally,
}

impl PartialEq for Live {
    fn eq(&self, other: &Live) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Live {}

impl PartialOrd for Live {
    fn partial_cmp(&self, other: &Live) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Live {
    fn cmp(&self, other: &Live) -> Ordering {
        (self.ts_us, self.order).cmp(&(other.ts_us, other.order))
    }
}

/// The `i`-th flow: its inside host and port follow from `i`, so 5-tuples never repeat.
fn open(rng: &mut Rng, i: u64, ts_us: u64) -> Live {
    let host = i % (V4_HOSTS + V6_HOSTS);
    let port = 10_000 + (i / (V4_HOSTS + V6_HOSTS) % PORTS_PER_HOST) as u16;
    // One host in eleven is an IPv6 one, so even small captures mix both.
    let (cip, sip) = if host % 11 != 10 {
        let h = host / 11 * 10 + host % 11;
        let far = rng.below(1 << 17) as u32;
        (
            IpAddr::V4(Ipv4Addr::new(
                10,
                20,
                16 + (h / 250) as u8,
                1 + (h % 250) as u8,
            )),
            IpAddr::V4(Ipv4Addr::from(0xc612_0000 | far)),
        )
    } else {
        let h = (host / 11) as u16;
        (
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 3, h + 1)),
            IpAddr::V6(Ipv6Addr::new(
                0x2001,
                2,
                0,
                rng.next_u16(),
                rng.next_u16(),
                rng.next_u16(),
                rng.next_u16(),
                1,
            )),
        )
    };
    let kind = match rng.below(100) {
        0..70 => Kind::Tls,
        70..85 => Kind::Http,
        _ => Kind::Udp,
    };
    let sport = match kind {
        Kind::Tls | Kind::Udp => 443,
        Kind::Http => 80,
    };
    let c = Endpoint {
        mac: mac_for(cip),
        ip: cip,
        port,
        ttl: if host.is_multiple_of(3) { 64 } else { 128 },
    };
    Live {
        ts_us,
        order: i,
        kind,
        step: 0,
        variant: rng.below(POOL as u64) as u16,
        rtt_us: 5_000 + rng.below(120_000) as u32,
        c,
        s: remote(sip, sport, 40 + rng.below(20) as u8),
        next_seq: [rng.next_u32(), rng.next_u32()],
        ip_ids: [rng.next_u16(), rng.next_u16()],
        tally: Tally::default(),
    }
}

pub(super) fn run<W: Write>(
    seed: u64,
    flows: u64,
    want_truth: bool,
    w: &mut PcapWriter<W>,
) -> Result<ScenarioTruth, GenerateError> {
    let mut rng = Rng::new(seed ^ 0xC0C0);
    let pools = Pools::new(&mut rng.fork(1))?;
    let mut rng = rng.fork(2);
    let mut heap: BinaryHeap<Reverse<Live>> = BinaryHeap::new();
    let mut truth = Vec::new();
    let mut head = Vec::with_capacity(128);
    let mut opened = 0u64;
    loop {
        let next_open = (opened < flows).then(|| START_US + opened * OPEN_SPAN_US / flows);
        let mut live = match (next_open, heap.peek()) {
            (Some(t), due) if due.is_none_or(|Reverse(l)| l.ts_us > t) => {
                opened += 1;
                open(&mut rng, opened - 1, t)
            }
            _ => match heap.pop() {
                Some(Reverse(l)) => l,
                None => break,
            },
        };
        let Some(&(from_client, flags, body)) = steps(live.kind).get(usize::from(live.step)) else {
            return Err(GenerateError::Internal("flow step out of range".into()));
        };
        let payload = pools.get(body, usize::from(live.variant));
        let (data, sum) = payload.map_or((&[][..], 0), |p| (&p.bytes[..], p.sum));
        let me = usize::from(!from_client);
        let (src, dst) = if from_client {
            (&live.c, &live.s)
        } else {
            (&live.s, &live.c)
        };
        let l4 = if live.kind == Kind::Udp {
            L4::Udp
        } else {
            let other = live.next_seq.get(1 - me).copied().unwrap_or(0);
            L4::Tcp {
                seq: live.next_seq.get(me).copied().unwrap_or(0),
                ack: if flags & ACK != 0 { other } else { 0 },
                flags,
                window: if from_client { 502 } else { 128 },
                options: &[],
            }
        };
        let id = live.ip_ids.get(me).copied().unwrap_or(0);
        let ip_len = build_headers(&mut head, src, dst, id, &l4, data.len(), sum)?;
        w.write(live.ts_us, &head, data)?;
        if let Some(v) = live.ip_ids.get_mut(me) {
            *v = v.wrapping_add(1);
        }
        if let Some(s) = live.next_seq.get_mut(me) {
            let control = u32::from(flags & (SYN | FIN) != 0);
            *s = s.wrapping_add(data.len() as u32 + control);
        }
        if from_client {
            live.tally.orig_pkts += 1;
            live.tally.orig_ip_bytes += u64::from(ip_len);
        } else {
            live.tally.resp_pkts += 1;
            live.tally.resp_ip_bytes += u64::from(ip_len);
        }
        live.step += 1;
        match steps(live.kind).get(usize::from(live.step)) {
            Some(&(next_from_client, _, _)) => {
                // A reply crosses the network; the client's next packet follows at once.
                live.ts_us += if next_from_client {
                    100
                } else {
                    u64::from(live.rtt_us)
                };
                heap.push(Reverse(live));
            }
            None if want_truth => {
                let variant = usize::from(live.variant);
                let name = match live.kind {
                    Kind::Tls => Some(sni(variant)),
                    Kind::Http => Some(http_host(variant)),
                    Kind::Udp => None,
                };
                let tcp = live.kind != Kind::Udp;
                truth.push(FlowTruth::new(
                    tcp,
                    &live.c,
                    &live.s,
                    &live.tally,
                    name.as_deref(),
                ));
            }
            None => {}
        }
    }
    Ok(ScenarioTruth {
        hosts: Vec::new(),
        flows: truth,
    })
}
