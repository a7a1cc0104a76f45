//! The `office` scenario: ten minutes of a small office network, committed as a test
//! capture. Every flow is built with its own timing, then all packets are merged by time.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::blocks::{
    FlowTruth, HiddenTruth, Host, HostBook, Round, Size, TlsPlan, Via, Zone, connect_msgs,
    dns_exchange, http_msgs, opaque_msgs, proxyware_service, remote, tls_msgs,
};
use super::conv::{BulkPatterns, Conv, Msg};
use super::proto::{self, QTYPE_A, QTYPE_AAAA, QTYPE_HTTPS};
use super::rng::Rng;
use super::wire::PcapWriter;
use super::{GenerateError, ScenarioTruth};

const SEC: u64 = 1_000_000;
const MS: u64 = 1_000;
/// 2024-03-04 09:00:00 UTC: a Monday morning.
const START: u64 = 1_709_542_800 * SEC;
const END: u64 = START + 600 * SEC;

const OFFICE_TLS: [&str; 11] = [
    "www.example.com",
    "portal.example.com",
    "cdn.example.net",
    "static.example.org",
    "mail.example.com",
    "login.microsoftonline.com",
    "www.google.com",
    "outlook.office365.com",
    "github.com",
    "docs.example.org",
    "api.example.net",
];
const OFFICE_HTTP: [&str; 3] = [
    "www.example.org",
    "updates.example.net",
    "intranet.example.com",
];
const NX_NAMES: [&str; 2] = ["wpad.example.com", "printer-3f.example.org"];
const LOOKALIKES: [&str; 5] = [
    "notpawns.app",
    "pawns.app.example.net",
    "myhoneygain.com",
    "honeygain.com.example.org",
    "earnapp.community",
];
/// Office activities; the pinned ones make sure each building block is in the capture.
#[derive(Debug, Clone, Copy)]
enum Act {
    HttpsRecord,
    CnameChain,
    Connect,
    SplitHello,
    NxDomain,
    KeepAliveHttp,
    Random,
}

/// First activity of office hosts 10.20.1.10 to .15, in order.
const PINNED: [Act; 6] = [
    Act::HttpsRecord,
    Act::CnameChain,
    Act::Connect,
    Act::SplitHello,
    Act::NxDomain,
    Act::KeepAliveHttp,
];

const PROXY_NAME: &str = "proxy.example.net";
const PROXY_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn cname_chain(name: &str) -> &'static [&'static str] {
    match name {
        "outlook.office365.com" => &["outlook.ha.office365.com", "outlook.ms-acdc.example.net"],
        "cdn.example.net" => &["e1234.a.cdn-edge.example.org"],
        // A chain in a proxyware answer: the address must still be tied to the queried name.
        "api.pawns.app" => &["api-lb.edge.example.net"],
        _ => &[],
    }
}

/// The resolver's view of the world. Addresses are handed out in first-use order, which is
/// deterministic, and never shared between names so DNS-cache lookups are unambiguous.
#[derive(Default)]
struct NameBook {
    zones: HashMap<String, Zone>,
    next_office: u8,
    next_other: u8,
}

impl NameBook {
    fn zone(&mut self, name: &str) -> Result<Zone, GenerateError> {
        if let Some(z) = self.zones.get(name) {
            return Ok(z.clone());
        }
        let suspicious = proxyware_service(name).is_some() || LOOKALIKES.contains(&name);
        let zone = if NX_NAMES.contains(&name) {
            Zone {
                nxdomain: true,
                ..Zone::default()
            }
        } else if name == PROXY_NAME {
            Zone {
                v4: Some(PROXY_ADDR),
                ..Zone::default()
            }
        } else {
            let (counter, net, v6net) = if suspicious {
                (&mut self.next_other, [203, 0, 113], 0x200)
            } else {
                (&mut self.next_office, [198, 51, 100], 0x100)
            };
            if *counter >= 200 {
                return Err(GenerateError::Internal(
                    "office address pool exhausted".into(),
                ));
            }
            let n = 20 + *counter;
            *counter += 1;
            Zone {
                cnames: cname_chain(name).iter().map(|s| s.to_string()).collect(),
                v4: Some(Ipv4Addr::new(net[0], net[1], net[2], n)),
                // Proxyware and look-alike names get no AAAA: the NODATA path is exercised.
                v6: (!suspicious)
                    .then(|| Ipv6Addr::new(0x2001, 0xdb8, v6net, 0, 0, 0, 0, u16::from(n))),
                nxdomain: false,
            }
        };
        self.zones.insert(name.to_string(), zone.clone());
        Ok(zone)
    }

    fn addr(&mut self, name: &str, v6: bool) -> Result<IpAddr, GenerateError> {
        let z = self.zone(name)?;
        let a = if v6 {
            z.v6.map(IpAddr::V6)
        } else {
            z.v4.map(IpAddr::V4)
        };
        a.ok_or_else(|| GenerateError::Internal(format!("no address for {name}")))
    }
}

struct Stamped {
    ts: u64,
    order: u64,
    frame: Vec<u8>,
}

struct Office {
    rng: Rng,
    pats: BulkPatterns,
    book: HostBook,
    names: NameBook,
    frames: Vec<Stamped>,
    flows: Vec<(u64, u64, FlowTruth)>,
    order: u64,
    hdr: Vec<u8>,
}

pub(super) fn run<W: Write>(
    seed: u64,
    w: &mut PcapWriter<W>,
) -> Result<ScenarioTruth, GenerateError> {
    build(seed, w, |o| {
        // Each host gets its own stream so tuning one host's plan leaves the others unchanged.
        for i in 0..6u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 20, 1, 10 + i));
            let mut r = o.rng.fork(u64::from(i));
            let mut h = Host::new(&mut r, ip, 128);
            o.book.add_host(ip, "office");
            o.with_rng(r, |o| o.office_host(usize::from(i), &mut h))?;
        }
        let r = o.rng.fork(66);
        o.with_rng(r, Office::proxyware_host)?;
        let r = o.rng.fork(77);
        o.with_rng(r, Office::lookalike_host)?;
        let r = o.rng.fork(6);
        o.with_rng(r, Office::ipv6_host)
    })
}

/// The `hidden-names` scenario: ten minutes of hosts whose names the sensor can or cannot
/// read. One resolves over DNS over HTTPS and then connects without names, one uses DNS over
/// TLS and QUIC but names its connections by SNI, one offers ECH, one connects to addresses
/// it learned only from HTTPS-record hints, one connects to bare addresses with no DNS at
/// all, one reaches its proxyware service only over QUIC, and two ordinary office hosts.
pub(super) fn run_hidden_names<W: Write>(
    seed: u64,
    w: &mut PcapWriter<W>,
) -> Result<ScenarioTruth, GenerateError> {
    build(seed, w, |o| {
        for i in 0..2u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 20, 1, 10 + i));
            let mut r = o.rng.fork(u64::from(i));
            let mut h = Host::new(&mut r, ip, 128);
            o.book.add_host(ip, "office");
            o.with_rng(r, |o| o.office_host(usize::from(i), &mut h))?;
        }
        type HostPlan = fn(&mut Office, &mut Host) -> Result<HiddenTruth, GenerateError>;
        let plans: [(u8, &'static str, HostPlan); 6] = [
            (10, "doh", Office::doh_host),
            (11, "dot", Office::dot_host),
            (12, "ech", Office::ech_host),
            (13, "https-hints", Office::hints_host),
            (14, "bare-addresses", Office::bare_address_host),
            (15, "quic-proxyware", Office::quic_proxyware_host),
        ];
        for (last, role, plan) in plans {
            let ip = IpAddr::V4(Ipv4Addr::new(10, 20, 3, last));
            let mut r = o.rng.fork(300 + u64::from(last));
            let mut h = Host::new(&mut r, ip, 128);
            o.book.add_host(ip, role);
            let truth = o.with_rng(r, |o| plan(o, &mut h))?;
            o.book.hidden(ip, truth);
        }
        Ok(())
    })
}

/// Runs `plan` on a fresh office and writes its frames in time order.
fn build<W: Write>(
    seed: u64,
    w: &mut PcapWriter<W>,
    plan: impl FnOnce(&mut Office) -> Result<(), GenerateError>,
) -> Result<ScenarioTruth, GenerateError> {
    let mut rng = Rng::new(seed);
    let pats = BulkPatterns::new(&mut rng);
    let mut o = Office {
        rng,
        pats,
        book: HostBook::default(),
        names: NameBook::default(),
        frames: Vec::new(),
        flows: Vec::new(),
        order: 0,
        hdr: Vec::with_capacity(128),
    };
    plan(&mut o)?;

    o.frames.sort_by_key(|f| (f.ts, f.order));
    for f in &o.frames {
        w.write(f.ts, &f.frame, &[])?;
    }
    o.flows.sort_by_key(|(t, order, _)| (*t, *order));
    Ok(ScenarioTruth {
        hosts: o.book.truth(),
        flows: o.flows.into_iter().map(|(_, _, f)| f).collect(),
    })
}

impl Office {
    fn with_rng<T>(
        &mut self,
        rng: Rng,
        f: impl FnOnce(&mut Office) -> Result<T, GenerateError>,
    ) -> Result<T, GenerateError> {
        let saved = std::mem::replace(&mut self.rng, rng);
        let res = f(self);
        self.rng = saved;
        res
    }

    /// Stamps a conversation's packets from `t0` and returns the time of its last packet.
    fn run(
        &mut self,
        mut conv: Conv,
        t0: u64,
        rtt: u64,
        name: Option<&str>,
    ) -> Result<u64, GenerateError> {
        let mut t = t0;
        let mut first = true;
        while let Some(seg) = conv.next_seg() {
            if first {
                first = false;
            } else {
                let gap = match (seg.turn, seg.from_client) {
                    // The sensor sits next to the clients: a reply from outside costs a full
                    // round trip, a client's reaction only its own processing time.
                    (true, false) => rtt * 9 / 10 + self.rng.below(rtt / 5 + 1),
                    (true, true) => self.rng.range(150, 600),
                    (false, _) => self.rng.range(15, 120),
                };
                t += seg.think_us + gap;
            }
            let (payload, _) = conv.render(&seg, &self.pats, &mut self.hdr)?;
            let mut frame = Vec::with_capacity(self.hdr.len() + payload.len());
            frame.extend_from_slice(&self.hdr);
            frame.extend_from_slice(payload);
            self.frames.push(Stamped {
                ts: t,
                order: self.order,
                frame,
            });
            self.order += 1;
        }
        let flow = FlowTruth::new(conv.is_tcp(), &conv.c, &conv.s, &conv.tally, name);
        self.flows.push((t0, self.order, flow));
        Ok(t)
    }

    fn lookup(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        qtype: u16,
    ) -> Result<u64, GenerateError> {
        let zone = self.names.zone(name)?;
        // Mostly cache hits at the resolver, sometimes a full recursion.
        let latency = if self.rng.chance(60) {
            self.rng.range(300, 2 * MS)
        } else {
            self.rng.range(8 * MS, 45 * MS)
        };
        let c = h.client(&mut self.rng);
        let conv = dns_exchange(&mut self.rng, c, h.resolver(), name, qtype, &zone, latency)?;
        self.book.note(h.ip, name, Via::Dns);
        self.run(conv, t, 200, Some(name))
    }

    fn rounds(&mut self, n: usize, down_lo: u64, down_hi: u64) -> Vec<Round> {
        (0..n)
            .map(|_| Round {
                up: Size::Bytes(self.rng.range(150, 700) as usize),
                down: Size::Bytes(self.rng.range(down_lo, down_hi) as usize),
                think_us: self.rng.range(200 * MS, 4 * SEC),
            })
            .collect()
    }

    fn tls(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        split: Option<usize>,
        rounds: Vec<Round>,
    ) -> Result<u64, GenerateError> {
        let ip = self.names.addr(name, h.ip.is_ipv6())?;
        self.tls_at(h, t, (ip, 443), name, false, split, rounds)
    }

    /// A TLS session to `server` with `name` as SNI (the outer name when `ech`).
    #[allow(clippy::too_many_arguments)]
    fn tls_at(
        &mut self,
        h: &mut Host,
        t: u64,
        server: (IpAddr, u16),
        name: &str,
        ech: bool,
        split: Option<usize>,
        rounds: Vec<Round>,
    ) -> Result<u64, GenerateError> {
        let rtt = self.rng.range(12 * MS, 70 * MS);
        let plan = TlsPlan {
            sni: Some(name),
            ech,
            split,
            rounds,
            server_us: self.rng.range(2 * MS, 25 * MS),
        };
        let msgs = tls_msgs(&mut self.rng, &plan)?;
        let c = h.client(&mut self.rng);
        let ttl = 50 + self.rng.below(8) as u8;
        let mut conv = Conv::tcp(&mut self.rng, c, remote(server.0, server.1, ttl), msgs);
        conv.fin_think_us = self.rng.range(300 * MS, 5 * SEC);
        self.book.note(h.ip, name, Via::Sni);
        self.run(conv, t, rtt, Some(name))
    }

    fn http(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        requests: &[(&str, usize)],
    ) -> Result<u64, GenerateError> {
        let ip = self.names.addr(name, h.ip.is_ipv6())?;
        let rtt = self.rng.range(12 * MS, 70 * MS);
        let server_us = self.rng.range(3 * MS, 30 * MS);
        let msgs = http_msgs(&mut self.rng, name, requests, server_us);
        let c = h.client(&mut self.rng);
        let ttl = 50 + self.rng.below(8) as u8;
        let mut conv = Conv::tcp(&mut self.rng, c, remote(ip, 80, ttl), msgs);
        conv.fin_think_us = self.rng.range(100 * MS, 2 * SEC);
        self.book.note(h.ip, name, Via::Http);
        self.run(conv, t, rtt, Some(name))
    }

    /// DNS lookup(s) followed by a TLS session to the answer.
    fn visit(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        split: Option<usize>,
    ) -> Result<u64, GenerateError> {
        let v6 = h.ip.is_ipv6();
        let mut done = self.lookup(h, t, name, if v6 { QTYPE_AAAA } else { QTYPE_A })?;
        if !v6 && self.rng.chance(30) {
            // Dual-stack resolvers ask for both at once.
            done = done.max(self.lookup(h, t + 40, name, QTYPE_AAAA)?);
        }
        let n = if self.rng.chance(25) { 2 } else { 1 };
        let rounds = self.rounds(n, 300, 2500);
        let start = done + self.rng.range(MS, 5 * MS);
        self.tls(h, start, name, split, rounds)
    }

    fn office_host(&mut self, idx: usize, h: &mut Host) -> Result<(), GenerateError> {
        let mut t = START + self.rng.range(SEC, 20 * SEC);
        let mut k = 0;
        while t < END - 20 * SEC {
            // The first activity of each host is pinned so every building block appears.
            let act = if k == 0 {
                PINNED.get(idx).copied().unwrap_or(Act::Random)
            } else {
                Act::Random
            };
            match act {
                Act::HttpsRecord => {
                    // Browser-style HTTPS (type 65) query next to the A query.
                    let d = self.lookup(h, t, "www.google.com", QTYPE_HTTPS)?;
                    self.visit(h, d.max(t) + 30, "www.google.com", None)?;
                }
                Act::CnameChain => {
                    self.visit(h, t, "outlook.office365.com", None)?;
                }
                Act::Connect => {
                    let d = self.lookup(h, t, PROXY_NAME, QTYPE_A)?;
                    self.connect(h, d + 2 * MS, "github.com")?;
                }
                Act::SplitHello => {
                    self.visit(h, t, "login.microsoftonline.com", Some(64))?;
                }
                Act::NxDomain => {
                    let name = self.pick(&NX_NAMES);
                    let d = self.lookup(h, t, name, QTYPE_A)?;
                    self.lookup(h, d + 5 * MS, name, QTYPE_AAAA)?;
                }
                Act::KeepAliveHttp => {
                    let name = self.pick(&OFFICE_HTTP);
                    let d = self.lookup(h, t, name, QTYPE_A)?;
                    let reqs = [("/", 2400), ("/static/app.js", 1800)];
                    self.http(h, d + 2 * MS, name, &reqs)?;
                }
                Act::Random => self.random_activity(h, t)?,
            }
            t += self.rng.range(55 * SEC, 115 * SEC);
            k += 1;
        }
        Ok(())
    }

    fn random_activity(&mut self, h: &mut Host, t: u64) -> Result<(), GenerateError> {
        match self.rng.below(100) {
            0..58 => {
                let name = self.pick(&OFFICE_TLS);
                self.visit(h, t, name, None)?;
            }
            58..78 => {
                let name = self.pick(&OFFICE_HTTP);
                let d = self.lookup(h, t, name, QTYPE_A)?;
                let body = self.rng.range(500, 3500) as usize;
                self.http(h, d + 2 * MS, name, &[("/index.html", body)])?;
            }
            78..88 => {
                let name = self.pick(&["github.com", "www.google.com"]);
                let d = self.lookup(h, t, name, QTYPE_HTTPS)?;
                self.visit(h, d + 30, name, None)?;
            }
            _ => {
                let name = self.pick(&NX_NAMES);
                self.lookup(h, t, name, QTYPE_A)?;
            }
        }
        Ok(())
    }

    fn pick(&mut self, names: &[&'static str]) -> &'static str {
        self.rng.pick(names).copied().unwrap_or("www.example.com")
    }

    fn connect(&mut self, h: &mut Host, t: u64, target: &str) -> Result<u64, GenerateError> {
        let rtt = self.rng.range(5 * MS, 20 * MS);
        let plan = TlsPlan {
            sni: Some(target),
            ech: false,
            split: None,
            rounds: self.rounds(1, 1500, 4000),
            server_us: self.rng.range(20 * MS, 60 * MS),
        };
        let msgs = connect_msgs(&mut self.rng, target, &plan)?;
        let c = h.client(&mut self.rng);
        let mut conv = Conv::tcp(
            &mut self.rng,
            c,
            remote(IpAddr::V4(PROXY_ADDR), 3128, 60),
            msgs,
        );
        conv.fin_think_us = self.rng.range(SEC, 3 * SEC);
        self.book.note(h.ip, target, Via::Sni);
        self.run(conv, t, rtt, Some(target))
    }

    /// Opaque TCP to an address learned from an earlier DNS answer for `cached_name`.
    fn opaque(
        &mut self,
        h: &mut Host,
        t: u64,
        cached_name: &str,
        rounds: &[(usize, usize)],
    ) -> Result<u64, GenerateError> {
        let ip = self.names.addr(cached_name, h.ip.is_ipv6())?;
        self.book.note(h.ip, cached_name, Via::DnsCache);
        self.opaque_at(h, t, (ip, 443), true, rounds, Some(cached_name))
    }

    /// Opaque TCP (or UDP datagrams) to `server`; `name` is what the truth calls the flow.
    fn opaque_at(
        &mut self,
        h: &mut Host,
        t: u64,
        server: (IpAddr, u16),
        tcp: bool,
        rounds: &[(usize, usize)],
        name: Option<&str>,
    ) -> Result<u64, GenerateError> {
        let rtt = self.rng.range(20 * MS, 90 * MS);
        let server_us = self.rng.range(MS, 10 * MS);
        let msgs = opaque_msgs(&mut self.rng, rounds, server_us);
        let c = h.client(&mut self.rng);
        let s = remote(server.0, server.1, 47);
        let conv = if tcp {
            let mut conv = Conv::tcp(&mut self.rng, c, s, msgs);
            conv.fin_think_us = self.rng.range(SEC, 4 * SEC);
            conv
        } else {
            Conv::udp(&mut self.rng, c, s, msgs)
        };
        self.run(conv, t, rtt, name)
    }

    fn proxyware_host(&mut self) -> Result<(), GenerateError> {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 20, 1, 66));
        self.book.add_host(ip, "proxyware");
        let mut h = Host::new(&mut self.rng, ip, 128);
        let h = &mut h;
        let s = |secs: u64| START + secs * SEC;

        // Start-up: every service's client checks in.
        let d = self.lookup(h, s(6), "api.honeygain.com", QTYPE_A)?;
        self.lookup(h, s(6) + 40, "api.honeygain.com", QTYPE_AAAA)?;
        let r = self.rounds(3, 200, 900);
        self.tls(h, d + 3 * MS, "api.honeygain.com", None, r)?;

        let d = self.lookup(h, s(9), "pawns.app", QTYPE_A)?;
        let r = self.rounds(1, 300, 1200);
        self.tls(h, d + 2 * MS, "pawns.app", None, r)?;
        let d = self.lookup(h, s(11), "api.pawns.app", QTYPE_A)?;
        let r = self.rounds(2, 300, 1500);
        // ClientHello split before the SNI extension: the sensor must reassemble.
        self.tls(h, d + 2 * MS, "api.pawns.app", Some(60), r)?;

        self.lookup(h, s(16), "earnapp.com", QTYPE_A)?;
        let d = self.lookup(h, s(17), "client.earnapp.com", QTYPE_A)?;
        let r = self.rounds(2, 400, 2000);
        self.tls(h, d + 2 * MS, "client.earnapp.com", None, r)?;

        // Traffmonetizer is seen in DNS only, including an HTTPS-type query.
        self.lookup(h, s(21), "traffmonetizer.com", QTYPE_HTTPS)?;
        self.lookup(h, s(21) + 300, "traffmonetizer.com", QTYPE_A)?;

        // PacketStream: resolved once, then talked to without SNI or Host.
        self.lookup(h, s(30), "packetstream.io", QTYPE_A)?;
        self.opaque(
            h,
            s(42),
            "packetstream.io",
            &[(180, 420), (900, 2600), (1400, 600)],
        )?;

        // Plain HTTP check-in with a Host header.
        self.http(
            h,
            s(75),
            "api.honeygain.com",
            &[("/api/v1/ping?client=1.8.2", 120)],
        )?;

        self.visit(h, s(130), "www.google.com", None)?;

        // Periodic re-resolution: the same alert must fold instead of repeating.
        for k in 1..=9u64 {
            let d = self.lookup(h, s(6 + 60 * k), "api.honeygain.com", QTYPE_A)?;
            if k % 3 == 0 {
                let r = self.rounds(1, 200, 700);
                self.tls(h, d + 2 * MS, "api.honeygain.com", None, r)?;
            }
        }
        for k in 1..=3u64 {
            self.lookup(h, s(9 + 150 * k), "pawns.app", QTYPE_A)?;
            self.lookup(h, s(21 + 170 * k), "traffmonetizer.com", QTYPE_A)?;
        }
        let d = self.lookup(h, s(250), "client.earnapp.com", QTYPE_A)?;
        let r = self.rounds(1, 300, 1200);
        self.tls(h, d + 2 * MS, "client.earnapp.com", None, r)?;
        self.lookup(h, s(300), "packetstream.io", QTYPE_A)?;
        self.opaque(h, s(305), "packetstream.io", &[(300, 1500), (1200, 300)])?;
        self.opaque(h, s(480), "packetstream.io", &[(220, 800)])?;
        Ok(())
    }

    fn lookalike_host(&mut self) -> Result<(), GenerateError> {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 20, 1, 77));
        self.book.add_host(ip, "lookalike");
        let mut h = Host::new(&mut self.rng, ip, 64);
        let h = &mut h;
        for (i, name) in LOOKALIKES.iter().enumerate() {
            let t = START + (25 + 45 * i as u64) * SEC;
            self.visit(h, t, name, None)?;
        }
        let d = self.lookup(h, START + 260 * SEC, "myhoneygain.com", QTYPE_A)?;
        self.http(h, d + 2 * MS, "myhoneygain.com", &[("/", 900)])?;
        for (i, name) in LOOKALIKES.iter().enumerate() {
            self.lookup(h, START + (400 + 30 * i as u64) * SEC, name, QTYPE_A)?;
        }
        Ok(())
    }

    /// Resolves over DNS over HTTPS (a TLS session to cloudflare-dns.com, HTTP/3-like
    /// datagrams to 8.8.8.8: the one real address in the committed captures, because the
    /// shipped resolver list must recognise it), then connects to addresses nothing in the
    /// capture names.
    fn doh_host(&mut self, h: &mut Host) -> Result<HiddenTruth, GenerateError> {
        let mut truth = HiddenTruth::default();
        let doh = self.names.addr("cloudflare-dns.com", false)?;
        let rounds = self.rounds(6, 200, 600);
        self.tls_at(
            h,
            START + 5 * SEC,
            (doh, 443),
            "cloudflare-dns.com",
            false,
            None,
            rounds,
        )?;
        let google = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));
        let exchange = [(120, 400), (110, 380)];
        self.opaque_at(h, START + 7 * SEC, (google, 443), false, &exchange, None)?;
        truth.encrypted_dns.insert("doh", 2);
        for i in 0..14 {
            let ip = self.names.addr(&format!("hidden-{i}.example.net"), false)?;
            let t = START + (20 + 35 * i) * SEC;
            self.opaque_at(h, t, (ip, 443), true, &[(300, 2000)], None)?;
            truth.connections += 1;
            truth.unnamed += 1;
        }
        Ok(truth)
    }

    /// Resolves over DNS over TLS and DNS over QUIC (port 853 decides, so documentation
    /// addresses serve), but names every connection by SNI: encrypted DNS, readable names.
    fn dot_host(&mut self, h: &mut Host) -> Result<HiddenTruth, GenerateError> {
        let mut truth = HiddenTruth::default();
        let dot = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53));
        let rounds = self.rounds(5, 200, 600);
        self.tls_at(
            h,
            START + 4 * SEC,
            (dot, 853),
            "dns.quad9.net",
            false,
            None,
            rounds,
        )?;
        let doq = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 54));
        self.opaque_at(h, START + 6 * SEC, (doq, 853), false, &[(150, 450)], None)?;
        truth.encrypted_dns.insert("dot", 1);
        truth.encrypted_dns.insert("doq", 1);
        for i in 0..12 {
            let name = OFFICE_TLS[i % OFFICE_TLS.len()];
            let rounds = self.rounds(1, 300, 2500);
            self.tls(h, START + (15 + 40 * i as u64) * SEC, name, None, rounds)?;
            truth.connections += 1;
        }
        Ok(truth)
    }

    /// Resolves in plain DNS and offers ECH: the outer, public name is all there is to read.
    fn ech_host(&mut self, h: &mut Host) -> Result<HiddenTruth, GenerateError> {
        let mut truth = HiddenTruth::default();
        let front = "cloudflare-ech.com";
        for i in 0..12 {
            let d = self.lookup(h, START + (12 + 45 * i) * SEC, front, QTYPE_A)?;
            let ip = self.names.addr(front, false)?;
            let rounds = self.rounds(1, 300, 2500);
            self.tls_at(h, d + 2 * MS, (ip, 443), front, true, None, rounds)?;
            truth.connections += 1;
            truth.ech_hellos += 1;
        }
        Ok(truth)
    }

    /// Asks only for HTTPS records and connects to their ipv4hint without a name of its own:
    /// the DNS cache names each connection from the hint.
    fn hints_host(&mut self, h: &mut Host) -> Result<HiddenTruth, GenerateError> {
        let mut truth = HiddenTruth::default();
        for i in 0..12 {
            let name = format!("svc-{i}.example.com");
            let d = self.lookup(h, START + (10 + 45 * i) * SEC, &name, QTYPE_HTTPS)?;
            self.opaque(h, d + 2 * MS, &name, &[(400, 1500)])?;
            truth.connections += 1;
        }
        Ok(truth)
    }

    /// Connects to hard-coded addresses with no DNS at all: name-blind without encrypted DNS.
    fn bare_address_host(&mut self, h: &mut Host) -> Result<HiddenTruth, GenerateError> {
        let mut truth = HiddenTruth::default();
        for i in 0..12 {
            let ip = self.names.addr(&format!("peer-{i}.example.org"), false)?;
            let t = START + (30 + 40 * i) * SEC;
            self.opaque_at(h, t, (ip, 8443), true, &[(500, 700), (300, 900)], None)?;
            truth.connections += 1;
            truth.unnamed += 1;
        }
        Ok(truth)
    }

    /// Reaches its proxyware service only over QUIC (HTTP/3), with no plain DNS: the name is
    /// only in the QUIC Initial's encrypted ClientHello.
    fn quic_proxyware_host(&mut self, h: &mut Host) -> Result<HiddenTruth, GenerateError> {
        let mut truth = HiddenTruth::default();
        let name = "api.honeygain.com";
        let ip = self.names.addr(name, false)?;
        for i in 0..3 {
            let server_us = self.rng.range(2 * MS, 20 * MS);
            let mut msgs = vec![
                Msg::client(proto::quic_initial(&mut self.rng, name, &["h3"])?),
                // The server's Initial and Handshake: opaque here, the sensor reads only the
                // client's side.
                Msg::server(self.rng.bytes(1200)).think(server_us),
            ];
            for _ in 0..6 {
                msgs.push(Msg::client(proto::quic_short(&mut self.rng, 1200)).think(40 * MS));
                msgs.push(Msg::server(proto::quic_short(&mut self.rng, 60)).think(server_us));
            }
            let c = h.client(&mut self.rng);
            let conv = Conv::udp(&mut self.rng, c, remote(ip, 443, 52), msgs);
            self.book.note(h.ip, name, Via::Sni);
            let rtt = self.rng.range(15 * MS, 60 * MS);
            self.run(conv, START + (40 + 180 * i) * SEC, rtt, Some(name))?;
            truth.connections += 1;
        }
        Ok(truth)
    }

    fn ipv6_host(&mut self) -> Result<(), GenerateError> {
        let ip = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 0x10));
        self.book.add_host(ip, "office");
        let mut h = Host::new(&mut self.rng, ip, 64);
        let h = &mut h;
        let d = self.lookup(h, START + 10 * SEC, "www.example.org", QTYPE_HTTPS)?;
        self.visit(h, d + 30, "www.example.org", None)?;
        let mut t = START + 60 * SEC;
        for name in [
            "github.com",
            "www.example.com",
            "docs.example.org",
            "github.com",
        ] {
            self.visit(h, t, name, None)?;
            t += self.rng.range(80 * SEC, 140 * SEC);
        }
        Ok(())
    }
}
