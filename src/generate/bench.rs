//! The `bench` scenario: a large, realistic-looking mix streamed straight to the file.
//!
//! A fixed pool of conversation slots is kept busy; each packet comes from a random slot
//! and a finished conversation is replaced by a new one. Only conversation state lives in
//! memory (plus per-flow counters when ground truth is requested), never packets.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::blocks::{
    FlowTruth, Host, HostBook, PROXYWARE_NAMES, Round, Size, TlsPlan, Via, Zone, dns_exchange,
    http_msgs, opaque_msgs, remote, tls_msgs,
};
use super::conv::{BulkPatterns, Conv, Msg, Tally};
use super::proto::{self, QTYPE_A, QTYPE_AAAA, QTYPE_HTTPS};
use super::rng::Rng;
use super::wire::{Endpoint, PcapWriter};
use super::{GenerateError, ScenarioTruth};

/// 2024-03-05 14:00:00 UTC.
const START: u64 = 1_709_647_200 * 1_000_000;
const OFFICE_V4_HOSTS: usize = 400;
const OFFICE_V6_HOSTS: usize = 40;
const PROXYWARE_HOSTS: u8 = 3;
const MAX_CONCURRENT: u64 = 3000;
/// Per mille of new conversations that belong to a proxyware host.
const PROXYWARE_SHARE: u64 = 15;

struct Slot {
    conv: Conv,
    order: u64,
    name: Option<usize>,
}

struct FlowRec {
    order: u64,
    tcp: bool,
    c: Endpoint,
    s: Endpoint,
    tally: Tally,
    name: Option<usize>,
}

struct Bench {
    rng: Rng,
    hosts: Vec<Host>,
    proxy_hosts: Vec<Host>,
    /// Ordinary names first, then the proxyware names from `first_proxyware` on.
    names: Vec<(String, Zone)>,
    first_proxyware: usize,
    nx: Zone,
    book: HostBook,
    next_order: u64,
    quic: bool,
}

fn bench_names() -> Vec<(String, Zone)> {
    let mut names: Vec<String> = [
        "login.microsoftonline.com",
        "www.google.com",
        "outlook.office365.com",
        "github.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..296 {
        names.push(match i % 4 {
            0 => format!("cdn{i}.example.net"),
            1 => format!("www{i}.example.com"),
            2 => format!("static{i}.example.org"),
            _ => format!("api{i}.example.com"),
        });
    }
    let nets = [[198, 51, 100], [203, 0, 113], [192, 0, 2]];
    let mut out: Vec<(String, Zone)> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let net = nets[i % 3];
            let host = 1 + (i / 3 % 190) as u8;
            let zone = Zone {
                v4: Some(Ipv4Addr::new(net[0], net[1], net[2], host)),
                v6: Some(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i as u16 + 1)),
                ..Zone::default()
            };
            (name, zone)
        })
        .collect();
    for (j, (name, _)) in PROXYWARE_NAMES.iter().enumerate() {
        let zone = Zone {
            v4: Some(Ipv4Addr::new(203, 0, 113, 200 + j as u8)),
            ..Zone::default()
        };
        out.push((name.to_string(), zone));
    }
    out
}

/// `quic`: the office TLS sessions go over QUIC v1 instead (the `quic-bench` scenario).
pub(super) fn run<W: Write>(
    seed: u64,
    packets: u64,
    want_truth: bool,
    quic: bool,
    w: &mut PcapWriter<W>,
) -> Result<ScenarioTruth, GenerateError> {
    let mut rng = Rng::new(seed ^ 0xBE4C);
    let pats = BulkPatterns::new(&mut rng);
    let mut book = HostBook::default();
    let mut hosts = Vec::new();
    for i in 0..OFFICE_V4_HOSTS {
        let ip = IpAddr::V4(Ipv4Addr::new(
            10,
            20,
            2 + (i / 250) as u8,
            1 + (i % 250) as u8,
        ));
        book.add_host(ip, "office");
        hosts.push(Host::new(&mut rng, ip, if i % 3 == 0 { 64 } else { 128 }));
    }
    for i in 0..OFFICE_V6_HOSTS {
        let ip = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 2, i as u16 + 1));
        book.add_host(ip, "office");
        hosts.push(Host::new(&mut rng, ip, 64));
    }
    let mut proxy_hosts = Vec::new();
    for i in 0..PROXYWARE_HOSTS {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 20, 9, 66 + i));
        book.add_host(ip, "proxyware");
        proxy_hosts.push(Host::new(&mut rng, ip, 128));
    }
    let names = bench_names();
    let first_proxyware = names.len() - PROXYWARE_NAMES.len();
    let mut b = Bench {
        rng,
        hosts,
        proxy_hosts,
        names,
        first_proxyware,
        nx: Zone {
            nxdomain: true,
            ..Zone::default()
        },
        book,
        next_order: 0,
        quic,
    };

    let conc = (packets / 800).clamp(1, MAX_CONCURRENT) as usize;
    let mut slots = Vec::with_capacity(conc);
    for _ in 0..conc {
        slots.push(b.new_slot()?);
    }
    let mut flows: Vec<FlowRec> = Vec::new();
    let mut pick = b.rng.fork(1);
    let mut t = START;
    let mut hdr = Vec::with_capacity(128);
    for _ in 0..packets {
        let i = pick.index(slots.len());
        let slot = slots
            .get_mut(i)
            .ok_or_else(|| GenerateError::Internal("slot index out of range".into()))?;
        let seg = match slot.conv.next_seg() {
            Some(seg) => seg,
            None => {
                let fresh = b.new_slot()?;
                let done = std::mem::replace(slot, fresh);
                if want_truth {
                    flows.push(flow_rec(done));
                }
                slot.conv
                    .next_seg()
                    .ok_or_else(|| GenerateError::Internal("new conversation is empty".into()))?
            }
        };
        // About 180k packets per second of capture time: a busy gigabit uplink.
        t += 1 + pick.below(10);
        let (payload, _) = slot.conv.render(&seg, &pats, &mut hdr)?;
        w.write(t, &hdr, payload)?;
    }

    let mut out = Vec::new();
    if want_truth {
        // Conversations still open at the end are in the file too, cut short.
        flows.extend(slots.into_iter().map(flow_rec));
        flows.retain(|f| f.tally.orig_pkts + f.tally.resp_pkts > 0);
        flows.sort_by_key(|f| f.order);
        out = flows
            .iter()
            .map(|f| {
                let name = f.name.and_then(|n| b.names.get(n)).map(|(s, _)| s.as_str());
                FlowTruth::new(f.tcp, &f.c, &f.s, &f.tally, name)
            })
            .collect();
    }
    Ok(ScenarioTruth {
        hosts: b.book.truth(),
        flows: out,
    })
}

/// An HTTP/3 session: the client's Initial, the server's handshake flight, then each round's
/// request and response in datagrams of at most 1200 bytes (a full TLS record's worth of
/// response per `Size::Records`).
fn quic_msgs(rng: &mut Rng, name: &str, rounds: &[Round]) -> Result<Vec<Msg>, GenerateError> {
    const DATAGRAM: usize = 1200;
    let mut msgs = vec![
        Msg::client(proto::quic_initial(rng, name, &["h3"])?),
        Msg::server(rng.bytes(DATAGRAM)),
        Msg::server(rng.bytes(DATAGRAM)),
    ];
    for round in rounds {
        let bytes = |size: Size| match size {
            Size::Bytes(n) => n,
            Size::Records(n) => n as usize * 16 * 1024,
        };
        let mut up = bytes(round.up);
        while up > 0 {
            let n = up.min(DATAGRAM);
            msgs.push(Msg::client(proto::quic_short(rng, n)));
            up -= n;
        }
        let mut down = bytes(round.down);
        while down > 0 {
            let n = down.min(DATAGRAM);
            msgs.push(Msg::server(proto::quic_short(rng, n)));
            down -= n;
        }
    }
    Ok(msgs)
}

fn flow_rec(s: Slot) -> FlowRec {
    FlowRec {
        order: s.order,
        tcp: s.conv.is_tcp(),
        c: s.conv.c,
        s: s.conv.s,
        tally: s.conv.tally,
        name: s.name,
    }
}

impl Bench {
    fn zone(&self, n: usize) -> Result<(&str, &Zone), GenerateError> {
        self.names
            .get(n)
            .map(|(s, z)| (s.as_str(), z))
            .ok_or_else(|| GenerateError::Internal("name index out of range".into()))
    }

    fn new_slot(&mut self) -> Result<Slot, GenerateError> {
        let order = self.next_order;
        self.next_order += 1;
        let (conv, name) = if self.rng.below(1000) < PROXYWARE_SHARE {
            self.proxyware_conv()?
        } else {
            self.office_conv()?
        };
        Ok(Slot { conv, order, name })
    }

    fn office_conv(&mut self) -> Result<(Conv, Option<usize>), GenerateError> {
        let hi = self.rng.index(self.hosts.len());
        let n = self.rng.index(self.first_proxyware);
        let kind = self.rng.below(1000);
        let Bench {
            rng, hosts, names, ..
        } = self;
        let h = hosts
            .get_mut(hi)
            .ok_or_else(|| GenerateError::Internal("host index out of range".into()))?;
        let (name, zone) = names
            .get(n)
            .map(|(s, z)| (s.as_str(), z))
            .ok_or_else(|| GenerateError::Internal("name index out of range".into()))?;
        let v6 = h.ip.is_ipv6();
        let addr = if v6 {
            zone.v6.map(IpAddr::V6)
        } else {
            zone.v4.map(IpAddr::V4)
        }
        .ok_or_else(|| GenerateError::Internal(format!("no address for {name}")))?;
        let c = h.client(rng);
        let conv = if kind < 250 {
            let q = rng.below(100);
            let qtype = match q {
                _ if v6 => QTYPE_AAAA,
                0..60 => QTYPE_A,
                60..85 => QTYPE_AAAA,
                _ => QTYPE_HTTPS,
            };
            if q >= 95 {
                let nx = format!("host{}.corp.example.org", rng.below(500));
                let conv = dns_exchange(rng, c, h.resolver(), &nx, QTYPE_A, &self.nx, 0)?;
                return Ok((conv, None));
            }
            dns_exchange(rng, c, h.resolver(), name, qtype, zone, 0)?
        } else if kind < 880 {
            let rounds: Vec<Round> = (0..1 + rng.below(3))
                .map(|_| {
                    let p = rng.below(100);
                    let records = match p {
                        0..70 => 1 + rng.below(4),
                        70..95 => 5 + rng.below(16),
                        _ => 21 + rng.below(60),
                    } as u32;
                    Round {
                        up: Size::Bytes(100 + rng.below(700) as usize),
                        down: Size::Records(records),
                        think_us: 0,
                    }
                })
                .collect();
            if self.quic {
                let msgs = quic_msgs(rng, name, &rounds)?;
                Conv::udp(rng, c, remote(addr, 443, 52), msgs)
            } else {
                let plan = TlsPlan {
                    sni: Some(name),
                    ech: false,
                    split: rng.chance(5).then_some(40),
                    rounds,
                    server_us: 0,
                };
                let msgs = tls_msgs(rng, &plan)?;
                Conv::tcp(rng, c, remote(addr, 443, 52), msgs)
            }
        } else if kind < 960 {
            let body = 2000 + rng.below(60_000) as usize;
            let msgs = http_msgs(rng, name, &[("/download/file.bin", body)], 0);
            Conv::tcp(rng, c, remote(addr, 80, 52), msgs)
        } else {
            let rounds: Vec<(usize, usize)> = (0..1 + rng.below(4))
                .map(|_| {
                    (
                        64 + rng.below(4000) as usize,
                        64 + rng.below(20_000) as usize,
                    )
                })
                .collect();
            let msgs = opaque_msgs(rng, &rounds, 0);
            Conv::tcp(rng, c, remote(addr, 8443, 52), msgs)
        };
        Ok((conv, Some(n)))
    }

    /// A proxyware exit node: check-ins by DNS and TLS, and relayed traffic both ways.
    fn proxyware_conv(&mut self) -> Result<(Conv, Option<usize>), GenerateError> {
        let hi = self.rng.index(self.proxy_hosts.len());
        let n = self.first_proxyware + self.rng.index(PROXYWARE_NAMES.len());
        let dns = self.rng.chance(35);
        let (name, zone) = self.zone(n)?;
        let (name, zone) = (name.to_string(), zone.clone());
        let Bench {
            rng,
            proxy_hosts,
            book,
            ..
        } = self;
        let h = proxy_hosts
            .get_mut(hi)
            .ok_or_else(|| GenerateError::Internal("host index out of range".into()))?;
        let c = h.client(rng);
        let conv = if dns {
            book.note(h.ip, &name, Via::Dns);
            dns_exchange(rng, c, h.resolver(), &name, QTYPE_A, &zone, 0)?
        } else {
            let addr = zone
                .v4
                .map(IpAddr::V4)
                .ok_or_else(|| GenerateError::Internal(format!("no address for {name}")))?;
            let rounds: Vec<Round> = (0..1 + rng.below(3))
                .map(|_| Round {
                    up: Size::Records(1 + rng.below(4) as u32),
                    down: Size::Records(1 + rng.below(4) as u32),
                    think_us: 0,
                })
                .collect();
            let plan = TlsPlan {
                sni: Some(&name),
                ech: false,
                split: None,
                rounds,
                server_us: 0,
            };
            book.note(h.ip, &name, Via::Sni);
            let msgs = tls_msgs(rng, &plan)?;
            Conv::tcp(rng, c, remote(addr, 443, 49), msgs)
        };
        Ok((conv, Some(n)))
    }
}
