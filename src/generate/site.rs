//! The `site` scenario: three sites of one organisation, for fleet mode (a sensor per site,
//! an aggregator correlating across them). `--seed N` is site N; seeds other than 1, 2 and 3
//! are rejected, so a typo never yields a fourth site nobody described. Every site covers
//! Monday 2024-03-04 08:00-11:00 UTC (twelve 900-second windows, all in business hours) in
//! 10.(30+N).0.0/16, with its resolver at 10.(30+N).0.2.
//!
//! Each site alone: eight office hosts browse steadily in every window (per-host baselines and
//! a population p90), one host keeps a long upload session to an AS64500 relay endpoint (too
//! small to alert on its own), and at sites 1 and 3 one host runs the IPRoyal Pawns agent (a
//! ProxywareDomain alert). Only together do the sites show the fleet findings: one relay
//! endpoint at sites 1 and 2, one ASN at all three, one proxyware service at sites 1 and 3,
//! and at site 2 a window in which six office hosts at once send about ten times their usual
//! egress (far below every per-host threshold).
//!
//! Bulk data is sliced to its headers (see `frames`), so the three captures stay small.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::behaviour::{MS, SEC, Sim};
use super::blocks::{FlowTruth, Host, HostBook, HostTruth, Via, Zone, proxyware_service};
use super::conv::Tally;
use super::frames::{Frames, HostTally, Keep, Tcp};
use super::proto::{self, QTYPE_A};
use super::rng::Rng;
use super::wire::{Endpoint, PcapWriter, mac_for};
use super::{FLEET_CONFIG, GenerateError, HostMap};

const KB: u64 = 1_000;
/// Monday 2024-03-04 08:00:00 UTC, in microseconds.
const START: u64 = 1_709_539_200 * SEC;
const WINDOW_S: u64 = 900;
const WINDOW: u64 = WINDOW_S * SEC;
const WINDOWS: usize = 12;
const END: u64 = START + WINDOWS as u64 * WINDOW;
/// Site 2's egress shift: the ninth window (10:00-10:15), after eight windows of history.
const SHIFT_WINDOW: usize = 8;
/// Office hosts per site, and how many of them shift at site 2.
const OFFICE_HOSTS: u8 = 8;
const SHIFTED_HOSTS: u8 = 6;
/// The relay session's keep-alive period. Its pings go out just after every window boundary,
/// so the first packet of each window is the relay's: the sensor ticks after a packet, and
/// charges the packet that crosses a boundary to the window it closes (a second at most in
/// busy traffic, but the office hosts here are quiet for minutes).
const PING: u64 = 300 * SEC;

/// The relay endpoints' AS (RFC 5398 documentation ASN), as tests/data/geo/asn-test.csv maps
/// 198.51.100.192/26.
pub(crate) const RELAY_ASN: u32 = 64500;
pub(crate) const RELAY_AS_ORG: &str = "Example relay network (RFC 5398 documentation ASN)";
const PROXYWARE_NAME: &str = "api.pawns.app";
const PROXYWARE_ADDR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 40);
/// Where site 2's shifted hosts upload (a pushed client update sending diagnostics).
const SHIFT_NAME: &str = "collector.example-telemetry.net";
const SHIFT_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 140);

/// The office's web: a handful of servers every site uses.
const WEB: [(&str, Ipv4Addr); 6] = [
    ("www.example.com", Ipv4Addr::new(198, 51, 100, 20)),
    ("portal.example.com", Ipv4Addr::new(198, 51, 100, 21)),
    ("mail.example.com", Ipv4Addr::new(198, 51, 100, 22)),
    ("cdn.example.net", Ipv4Addr::new(198, 51, 100, 23)),
    ("docs.example.org", Ipv4Addr::new(198, 51, 100, 24)),
    ("api.example.net", Ipv4Addr::new(198, 51, 100, 25)),
];

/// What makes one site different from the others.
struct Plan {
    n: u8,
    relay_name: &'static str,
    relay_addr: Ipv4Addr,
    /// Seconds after START the relay session opens, and before END it closes.
    relay_open_s: u64,
    relay_close_before_end_s: u64,
    proxyware: bool,
    shift: bool,
}

fn plan(seed: u64) -> Option<Plan> {
    let relay = Ipv4Addr::new(198, 51, 100, 200);
    match seed {
        1 => Some(Plan {
            n: 1,
            relay_name: "up.relaynet.example",
            relay_addr: relay,
            relay_open_s: 260,
            relay_close_before_end_s: 230,
            proxyware: true,
            shift: false,
        }),
        2 => Some(Plan {
            n: 2,
            relay_name: "up.relaynet.example",
            relay_addr: relay,
            relay_open_s: 400,
            relay_close_before_end_s: 150,
            proxyware: false,
            shift: true,
        }),
        3 => Some(Plan {
            n: 3,
            relay_name: "up2.relaynet.example",
            relay_addr: Ipv4Addr::new(198, 51, 100, 201),
            relay_open_s: 190,
            relay_close_before_end_s: 260,
            proxyware: true,
            shift: false,
        }),
        _ => None,
    }
}

/// Seeds are site numbers: only 1, 2 and 3 exist.
pub(super) fn check_seed(seed: u64) -> Result<(), GenerateError> {
    match plan(seed) {
        Some(_) => Ok(()),
        None => Err(GenerateError::InvalidOptions(format!(
            "site needs --seed 1, 2 or 3 (the site number), not {seed}"
        ))),
    }
}

fn addr(n: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 30 + n, c, d)
}

fn window_of(t: u64) -> usize {
    (((t.saturating_sub(START)) / WINDOW) as usize).min(WINDOWS - 1)
}

fn rfc3339(t_us: u64) -> String {
    crate::alert::rfc3339(t_us * 1000)
}

/// One host in the truth file.
#[derive(Serialize)]
pub(super) struct SiteHost {
    #[serde(flatten)]
    truth: HostTruth,
    what: String,
    /// What the capture holds for the host (IP total lengths, host's point of view).
    #[serde(flatten)]
    traffic: HostTally,
    /// IP bytes the host sent in each of the twelve windows.
    bytes_out_per_window: [u64; WINDOWS],
}

/// One shifted host of site 2: its egress in the shift window against the windows before.
#[derive(Serialize)]
struct Shifted {
    host: String,
    window_bytes_out: u64,
    mean_prior_bytes_out: u64,
    /// window_bytes_out / mean_prior_bytes_out, one decimal.
    factor: f64,
}

/// The facts the fleet aggregator must put together across the three sites.
#[derive(Serialize)]
struct FleetTruth {
    site: String,
    home_net: String,
    resolver: String,
    /// The host with the long upload session, and where it goes.
    relay_host: String,
    relay_endpoint: String,
    relay_name: &'static str,
    relay_asn: u32,
    relay_as_org: &'static str,
    relay_session_start: String,
    relay_session_end: String,
    relay_session_seconds: u64,
    relay_bytes_out: u64,
    relay_bytes_in: u64,
    /// The proxyware service one host runs (null where none does).
    proxyware_service: Option<&'static str>,
    proxyware_host: Option<String>,
    proxyware_name: Option<&'static str>,
    /// The window in which several office hosts at once sent many times their usual egress
    /// (null where there is none).
    shift_window_start: Option<String>,
    shift_window_end: Option<String>,
    shifted_hosts: Vec<String>,
    shift_bytes_out: Vec<Shifted>,
}

/// Ground truth of one site.
#[derive(Serialize)]
pub(super) struct SiteTruthDoc {
    scenario: &'static str,
    seed: u64,
    generator_command: String,
    packets: u64,
    site: String,
    home_nets: [String; 1],
    /// The config to replay all three sites with.
    config: &'static str,
    start: String,
    end: String,
    window_seconds: u64,
    business_hours: &'static str,
    hosts: HostMap<SiteHost>,
    fleet: FleetTruth,
    flows: Vec<FlowTruth>,
}

/// What `run` hands back; the command and packet count are added when the truth is written.
pub(crate) struct SiteScenario {
    seed: u64,
    hosts: Vec<(IpAddr, SiteHost)>,
    fleet: FleetTruth,
    flows: Vec<FlowTruth>,
}

impl SiteScenario {
    pub(super) fn into_doc(self, generator_command: String, packets: u64) -> SiteTruthDoc {
        SiteTruthDoc {
            scenario: "site",
            seed: self.seed,
            generator_command,
            packets,
            site: self.fleet.site.clone(),
            home_nets: [self.fleet.home_net.clone()],
            config: FLEET_CONFIG,
            start: rfc3339(START),
            end: rfc3339(END),
            window_seconds: WINDOW_S,
            business_hours: "08:00-18:00 UTC, Monday to Friday",
            hosts: HostMap(self.hosts),
            fleet: self.fleet,
            flows: self.flows,
        }
    }
}

struct Site {
    sim: Sim,
    resolver: Endpoint,
    book: HostBook,
    /// (first packet, creation order, flow)
    flows: Vec<(u64, usize, FlowTruth)>,
    window_out: BTreeMap<IpAddr, [u64; WINDOWS]>,
}

pub(super) fn run<W: Write>(
    seed: u64,
    w: &mut PcapWriter<W>,
) -> Result<SiteScenario, GenerateError> {
    let p = plan(seed).ok_or_else(|| GenerateError::Internal(format!("no site {seed}")))?;
    let mut rng = Rng::new(seed);
    let f = Frames::new(&mut rng);
    let resolver_ip = IpAddr::V4(addr(p.n, 0, 2));
    let mut s = Site {
        sim: Sim { rng, f },
        resolver: Endpoint {
            mac: mac_for(resolver_ip),
            ip: resolver_ip,
            port: 53,
            ttl: 64,
        },
        book: HostBook::default(),
        flows: Vec::new(),
        window_out: BTreeMap::new(),
    };
    let mut what: BTreeMap<IpAddr, String> = BTreeMap::new();
    let mut shifted = Vec::new();

    for i in 0..OFFICE_HOSTS {
        let ip = addr(p.n, 1, 10 + i);
        let r = s.sim.rng.fork(u64::from(i));
        let shifts = p.shift && i < SHIFTED_HOSTS;
        let text = s.with_rng(r, |s| {
            let (mut h, scale) = s.host(ip, "office");
            s.browse(&mut h, scale)?;
            let mut text = format!(
                "ordinary office host: in every window one DNS lookup and one TLS session with \
                 three requests to a common web name, about {} KB out per window",
                scale * 51 / 100
            );
            if shifts {
                let sent = s.shift_upload(&mut h, scale)?;
                text.push_str(&format!(
                    "; in the shift window (10:00-10:15), with five other hosts, it also \
                     uploads {} KB to {SHIFT_NAME} ({SHIFT_ADDR}:443)",
                    sent / KB
                ));
            }
            Ok(text)
        })?;
        if shifts {
            shifted.push(IpAddr::V4(ip));
        }
        what.insert(IpAddr::V4(ip), text);
    }

    let relay_ip = addr(p.n, 2, 20);
    let r = s.sim.rng.fork(20);
    let relay = s.with_rng(r, |s| {
        let (mut h, scale) = s.host(relay_ip, "relay_upload");
        s.browse(&mut h, scale)?;
        s.relay_upload(&mut h, &p)
    })?;
    what.insert(
        IpAddr::V4(relay_ip),
        format!(
            "browses like the office and keeps one TLS session to {} ({}:443, AS{RELAY_ASN}) open \
             {}-{}, uploading 28-42 KB every 60-110 s ({} KB out, {} KB in): a long session \
             that stays below the alert score on its own (LongLivedSession tiers 25 and 35, \
             not upload-heavy under 10 MB)",
            p.relay_name,
            p.relay_addr,
            relay.start.get(11..16).unwrap_or_default(),
            relay.end.get(11..16).unwrap_or_default(),
            relay.tally.orig_ip_bytes / KB,
            relay.tally.resp_ip_bytes / KB,
        ),
    );

    let proxyware_ip = addr(p.n, 2, 66);
    if p.proxyware {
        let r = s.sim.rng.fork(66);
        s.with_rng(r, |s| {
            let (mut h, scale) = s.host(proxyware_ip, "proxyware");
            s.browse(&mut h, scale)?;
            s.pawns_agent(&mut h)
        })?;
        what.insert(
            IpAddr::V4(proxyware_ip),
            format!(
                "browses like the office and runs the IPRoyal Pawns agent: in every window it \
                 resolves {PROXYWARE_NAME} and checks in over TLS (SNI {PROXYWARE_NAME}, \
                 {PROXYWARE_ADDR}:443)"
            ),
        );
    }

    let tallies = s.sim.f.write_to(w)?;
    let shift_bytes_out = shifted
        .iter()
        .map(|ip| {
            let per = s.window_out.get(ip).copied().unwrap_or_default();
            let prior: u64 = per.iter().take(SHIFT_WINDOW).sum();
            let mean = prior / SHIFT_WINDOW as u64;
            let now = per.get(SHIFT_WINDOW).copied().unwrap_or(0);
            Shifted {
                host: ip.to_string(),
                window_bytes_out: now,
                mean_prior_bytes_out: mean,
                factor: (now as f64 / mean.max(1) as f64 * 10.0).round() / 10.0,
            }
        })
        .collect();
    let hosts = s
        .book
        .truth()
        .into_iter()
        .map(|(ip, truth)| {
            let host = SiteHost {
                truth,
                what: what.remove(&ip).unwrap_or_default(),
                traffic: tallies.get(&ip).copied().unwrap_or_default(),
                bytes_out_per_window: s.window_out.get(&ip).copied().unwrap_or_default(),
            };
            (ip, host)
        })
        .collect();
    let shift_start = START + SHIFT_WINDOW as u64 * WINDOW;
    let fleet = FleetTruth {
        site: format!("site-{}", p.n),
        home_net: format!("10.{}.0.0/16", 30 + p.n),
        resolver: resolver_ip.to_string(),
        relay_host: relay_ip.to_string(),
        relay_endpoint: format!("{}:443", p.relay_addr),
        relay_name: p.relay_name,
        relay_asn: RELAY_ASN,
        relay_as_org: RELAY_AS_ORG,
        relay_session_start: relay.start,
        relay_session_end: relay.end,
        relay_session_seconds: relay.seconds,
        relay_bytes_out: relay.tally.orig_ip_bytes,
        relay_bytes_in: relay.tally.resp_ip_bytes,
        proxyware_service: p
            .proxyware
            .then(|| proxyware_service(PROXYWARE_NAME))
            .flatten(),
        proxyware_host: p.proxyware.then(|| proxyware_ip.to_string()),
        proxyware_name: p.proxyware.then_some(PROXYWARE_NAME),
        shift_window_start: p.shift.then(|| rfc3339(shift_start)),
        shift_window_end: p.shift.then(|| rfc3339(shift_start + WINDOW)),
        shifted_hosts: shifted.iter().map(IpAddr::to_string).collect(),
        shift_bytes_out,
    };
    s.flows.sort_by_key(|(t, order, _)| (*t, *order));
    Ok(SiteScenario {
        seed,
        hosts,
        fleet,
        flows: s.flows.into_iter().map(|(_, _, f)| f).collect(),
    })
}

/// The relay session as the truth describes it.
struct RelaySession {
    start: String,
    end: String,
    seconds: u64,
    tally: Tally,
}

impl Site {
    fn with_rng<T>(
        &mut self,
        rng: Rng,
        f: impl FnOnce(&mut Site) -> Result<T, GenerateError>,
    ) -> Result<T, GenerateError> {
        let saved = std::mem::replace(&mut self.sim.rng, rng);
        let res = f(self);
        self.sim.rng = saved;
        res
    }

    /// A tracked inside host and its traffic scale (percent of the office's typical egress).
    fn host(&mut self, ip: Ipv4Addr, role: &'static str) -> (Host, u64) {
        let h = self.sim.host(ip);
        self.book.add_host(h.ip, role);
        self.window_out.insert(h.ip, [0; WINDOWS]);
        (h, self.sim.rng.range(70, 140))
    }

    /// Adds what `ip` sent since `mark` to the window of `t`; returns the new mark.
    fn account(&mut self, ip: IpAddr, t: u64, mark: HostTally) -> HostTally {
        let now = self.sim.f.tally(ip);
        if let Some(w) = self
            .window_out
            .get_mut(&ip)
            .and_then(|w| w.get_mut(window_of(t)))
        {
            *w += now.bytes_out.saturating_sub(mark.bytes_out);
        }
        now
    }

    /// Records one flow whose packets were all made since `before` (the client's tally).
    fn record(
        &mut self,
        tcp: bool,
        (c, s): (&Endpoint, &Endpoint),
        t: u64,
        before: HostTally,
        name: &str,
    ) -> Tally {
        let now = self.sim.f.tally(c.ip);
        let tally = Tally {
            orig_pkts: now.pkts_out.saturating_sub(before.pkts_out),
            resp_pkts: now.pkts_in.saturating_sub(before.pkts_in),
            orig_ip_bytes: now.bytes_out.saturating_sub(before.bytes_out),
            resp_ip_bytes: now.bytes_in.saturating_sub(before.bytes_in),
        };
        let order = self.flows.len();
        self.flows
            .push((t, order, FlowTruth::new(tcp, c, s, &tally, Some(name))));
        tally
    }

    /// An A lookup through the site's resolver; returns when the answer arrives.
    fn lookup(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        ip: Ipv4Addr,
    ) -> Result<u64, GenerateError> {
        let c = h.client(&mut self.sim.rng);
        let before = self.sim.f.tally(h.ip);
        let zone = Zone {
            v4: Some(ip),
            ..Zone::default()
        };
        let resolver = self.resolver;
        let done = self
            .sim
            .f
            .dns(&mut self.sim.rng, t, c, resolver, name, QTYPE_A, &zone)?;
        self.account(h.ip, t, before);
        self.record(false, (&c, &resolver), t, before, name);
        self.book.note(h.ip, name, Via::Dns);
        Ok(done)
    }

    /// A short TLS session: `rounds` of (upload, download) bytes, then the client closes.
    fn session(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        ip: Ipv4Addr,
        rounds: &[(u64, u64)],
    ) -> Result<u64, GenerateError> {
        let before = self.sim.f.tally(h.ip);
        let server = self.sim.server(ip, 443);
        let rtt = self.sim.rng.range(12 * MS, 60 * MS);
        let (mut tcp, mut now) = self.sim.tls_open(h, t, Some(name), server, rtt)?;
        for &(up, down) in rounds {
            // 1.7-5 MB/s either way.
            let think = self.sim.rng.range(300 * MS, 3 * SEC);
            let dur = (up * self.sim.rng.range(2, 6) / 10).max(20 * MS);
            now = self.sim.f.tcp_bulk(&mut tcp, true, now + think, dur, up)?;
            let dur = (down * self.sim.rng.range(2, 6) / 10).max(20 * MS);
            now = self.sim.f.tcp_bulk(&mut tcp, false, now + rtt, dur, down)?;
        }
        let think = self.sim.rng.range(300 * MS, 2 * SEC);
        let end = self.sim.f.tcp_close(&mut tcp, now + think, rtt)?;
        self.account(h.ip, t, before);
        self.record(true, (&tcp.c, &tcp.s), t, before, name);
        self.book.note(h.ip, name, Via::Sni);
        Ok(end)
    }

    fn visit(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        ip: Ipv4Addr,
        rounds: &[(u64, u64)],
    ) -> Result<u64, GenerateError> {
        let d = self.lookup(h, t, name, ip)?;
        let start = d + self.sim.rng.range(MS, 5 * MS);
        self.session(h, start, name, ip, rounds)
    }

    /// One visit per window with three requests of 14-20 KB (times `scale` percent) each:
    /// steady egress that varies mildly. Every visit ends well inside its window.
    fn browse(&mut self, h: &mut Host, scale: u64) -> Result<(), GenerateError> {
        for k in 0..WINDOWS as u64 {
            let t = START + k * WINDOW + self.sim.rng.range(20, 780) * SEC;
            let (name, ip) = WEB[self.sim.rng.index(WEB.len())];
            let mut rounds = [(0, 0); 3];
            for r in &mut rounds {
                *r = (
                    self.sim.rng.range(14 * KB, 20 * KB) * scale / 100,
                    self.sim.rng.range(60 * KB, 220 * KB),
                );
            }
            self.visit(h, t, name, ip, &rounds)?;
        }
        Ok(())
    }

    /// Site 2's coordinated change: 9-12 times the host's typical window egress, uploaded early
    /// in the shift window. Returns the bytes uploaded.
    fn shift_upload(&mut self, h: &mut Host, scale: u64) -> Result<u64, GenerateError> {
        let t = START + SHIFT_WINDOW as u64 * WINDOW + self.sim.rng.range(150, 330) * SEC;
        let up = self.sim.rng.range(9, 12) * 51 * KB * scale / 100;
        let down = self.sim.rng.range(2 * KB, 4 * KB);
        self.visit(h, t, SHIFT_NAME, SHIFT_ADDR, &[(up, down)])?;
        Ok(up)
    }

    /// One TLS session to the relay endpoint from about 08:05 to 10:55: 28-42 KB up every
    /// 60-110 s, each confirmed by a short reply, and a keep-alive every 5 minutes.
    fn relay_upload(&mut self, h: &mut Host, p: &Plan) -> Result<RelaySession, GenerateError> {
        let from = START + p.relay_open_s * SEC;
        let until = END - p.relay_close_before_end_s * SEC;
        let d = self.lookup(h, from, p.relay_name, p.relay_addr)?;
        let before = self.sim.f.tally(h.ip);
        let server = self.sim.server(p.relay_addr, 443);
        let rtt = self.sim.rng.range(20 * MS, 50 * MS);
        let open = d + 2 * MS;
        let (mut tcp, mut t) = self
            .sim
            .tls_open(h, open, Some(p.relay_name), server, rtt)?;
        let mut mark = self.account(h.ip, open, before);
        let mut ping = open - (open - START) % PING + PING;
        while t + 150 * SEC < until {
            let next = t + self.sim.rng.range(60, 110) * SEC;
            while ping < next {
                (t, mark) = self.relay_ping(h, &mut tcp, ping.max(t), rtt, mark)?;
                ping += PING;
            }
            t = next.max(t + 10 * MS);
            let piece = t;
            let up = self.sim.rng.range(28 * KB, 42 * KB);
            let dur = self.sim.rng.range(SEC, 3 * SEC);
            t = self.sim.f.tcp_bulk(&mut tcp, true, t, dur, up)?;
            let n = self.sim.rng.range(300, 900) as usize;
            let reply = proto::app_data(&mut self.sim.rng, n);
            t = self
                .sim
                .f
                .tcp_data(&mut tcp, false, t + rtt, &reply, Keep::Slice)?;
            mark = self.account(h.ip, piece, mark);
        }
        while ping < until {
            (t, mark) = self.relay_ping(h, &mut tcp, ping.max(t), rtt, mark)?;
            ping += PING;
        }
        let end = self
            .sim
            .f
            .tcp_close(&mut tcp, until.max(t + 10 * MS), rtt)?;
        self.account(h.ip, until, mark);
        let tally = self.record(true, (&tcp.c, &tcp.s), open, before, p.relay_name);
        self.book.note(h.ip, p.relay_name, Via::Sni);
        Ok(RelaySession {
            start: rfc3339(open),
            end: rfc3339(end),
            seconds: (end - open) / SEC,
            tally,
        })
    }

    /// The relay session's keep-alive, sent just after `at`: a small record and its ACK.
    fn relay_ping(
        &mut self,
        h: &Host,
        tcp: &mut Tcp,
        at: u64,
        rtt: u64,
        mark: HostTally,
    ) -> Result<(u64, HostTally), GenerateError> {
        let at = at + self.sim.rng.range(100 * MS, 900 * MS);
        let n = self.sim.rng.range(40, 60) as usize;
        let ping = proto::app_data(&mut self.sim.rng, n);
        let t = self.sim.f.tcp_data(tcp, true, at, &ping, Keep::Slice)?;
        self.sim.f.tcp_ack(tcp, false, t + rtt)?;
        Ok((t + rtt, self.account(h.ip, at, mark)))
    }

    /// The IPRoyal Pawns agent: a lookup and a TLS check-in every window.
    fn pawns_agent(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        for k in 0..WINDOWS as u64 {
            let t = START + k * WINDOW + self.sim.rng.range(30, 700) * SEC;
            let rounds = [(
                self.sim.rng.range(2 * KB, 4 * KB),
                self.sim.rng.range(KB, 3 * KB),
            )];
            self.visit(h, t, PROXYWARE_NAME, PROXYWARE_ADDR, &rounds)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use serde_json::Value;

    use super::super::{GenerateOptions, Scenario, generate};
    use super::*;
    use crate::config::Config;
    use crate::pipeline::{ReplayOptions, RunReport, replay};
    use crate::testing::TempDir;

    const NS_PER_US: u64 = 1_000;

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }

    fn site(n: u64) -> GenerateOptions {
        GenerateOptions {
            scenario: Scenario::Site,
            seed: n,
            ..GenerateOptions::default()
        }
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// The committed truth of site `n`.
    fn truth(n: u64) -> Value {
        read_json(&repo(&format!("captures/site-{n}.truth.json")))
    }

    /// The same seed gives the same bytes, and those are the committed captures; only the
    /// three site numbers are seeds.
    #[test]
    fn sites_are_deterministic_and_committed() {
        let dir = TempDir::new("site-det");
        let mut total = 0;
        for n in 1..=3 {
            let (a, b, t) = (dir.path("a.pcap"), dir.path("b.pcap"), dir.path("t.json"));
            let s = generate(&site(n), &a, Some(&t)).unwrap();
            generate(&site(n), &b, None).unwrap();
            let data = std::fs::read(&a).unwrap();
            assert_eq!(data, std::fs::read(&b).unwrap(), "site {n}");
            assert!(
                data == std::fs::read(repo(&format!("captures/site-{n}.pcap"))).unwrap(),
                "regenerate captures/site-{n}.pcap"
            );
            let mut fresh = read_json(&t);
            let mut committed = truth(n);
            for doc in [&mut fresh, &mut committed] {
                doc["generator_command"] = Value::Null;
            }
            assert!(
                fresh == committed,
                "regenerate captures/site-{n}.truth.json"
            );
            assert_eq!(fresh["packets"], s.packets);
            total += s.bytes;
        }
        assert!(total < 1_500_000, "site captures too big: {total} bytes");
        for seed in [0, 4] {
            assert!(matches!(
                generate(&site(seed), &dir.path("x.pcap"), None),
                Err(GenerateError::InvalidOptions(_))
            ));
        }
        assert!(!dir.path("x.pcap").exists());
    }

    fn replay_site(n: u64, log_dir: &Path) -> RunReport {
        let config = Config::load(&repo(FLEET_CONFIG)).unwrap();
        let options = ReplayOptions {
            collect: true,
            report: true,
            log_dir: Some(log_dir.to_path_buf()),
            ..ReplayOptions::default()
        };
        let pcap = repo(&format!("captures/site-{n}.pcap"));
        replay(&config, &[pcap], &options, &mut |_| Ok(())).unwrap()
    }

    /// (host, branch, service) -> ways the names were seen.
    type AlertSet = BTreeMap<(String, String, String), BTreeSet<String>>;

    fn expected_alerts(truth: &Value) -> AlertSet {
        let mut out = AlertSet::new();
        for (host, info) in truth["hosts"].as_object().unwrap() {
            for a in info["expect_alerts"].as_array().unwrap() {
                let via = a["via"].as_array().unwrap().iter();
                out.insert(
                    (
                        host.clone(),
                        a["branch"].as_str().unwrap().to_string(),
                        a["service"].as_str().unwrap().to_string(),
                    ),
                    via.map(|v| v.as_str().unwrap().to_string()).collect(),
                );
            }
        }
        out
    }

    fn actual_alerts(report: &RunReport) -> AlertSet {
        let mut out = AlertSet::new();
        for a in &report.alerts {
            let service = a.evidence["service"].as_str().unwrap_or("").to_string();
            let key = (a.host.to_string(), a.detection_branch.to_string(), service);
            let via = out.entry(key).or_default();
            for v in a.evidence["via"].as_array().into_iter().flatten() {
                via.insert(v.as_str().unwrap().to_string());
            }
        }
        out
    }

    fn host(truth: &Value, key: &str) -> IpAddr {
        truth["fleet"][key].as_str().unwrap().parse().unwrap()
    }

    /// Each site replayed alone with captures/fleet.toml: exactly the truth's alerts, every
    /// flow's volumes, every host's egress per window, the relay's long session and AS, and
    /// the shift (only at site 2) against the sensor's own baselines.
    #[test]
    fn sites_replay_to_their_truth() {
        for n in 1..=3 {
            let t = truth(n);
            let logs = TempDir::new(&format!("site-logs-{n}"));
            let r = replay_site(n, logs.dir());
            assert_eq!(r.stats.frames, t["packets"].as_u64().unwrap());
            assert_eq!(actual_alerts(&r), expected_alerts(&t), "site {n}");
            assert_eq!(
                t["fleet"]["proxyware_service"].is_string(),
                !expected_alerts(&t).is_empty()
            );

            // Volumes of every flow, as the sensor's conversation table counts them.
            let mut seen = BTreeMap::new();
            for c in &r.observed.conversations {
                let proto = if c.proto == 6 { "tcp" } else { "udp" };
                let key = (proto, c.a.0.to_string(), c.a.1, c.b.0.to_string(), c.b.1);
                let e = seen.entry(key).or_insert([0u64; 4]);
                e[0] += c.frames_a_to_b;
                e[1] += c.frames_b_to_a;
                e[2] += c.orig_ip_bytes;
                e[3] += c.resp_ip_bytes;
            }
            let flows = t["flows"].as_array().unwrap();
            assert_eq!(seen.len(), flows.len(), "site {n}");
            for f in flows {
                let key = (
                    f["proto"].as_str().unwrap(),
                    f["orig_h"].as_str().unwrap().to_string(),
                    f["orig_p"].as_u64().unwrap() as u16,
                    f["resp_h"].as_str().unwrap().to_string(),
                    f["resp_p"].as_u64().unwrap() as u16,
                );
                let want = ["orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes"]
                    .map(|k| f[k].as_u64().unwrap());
                assert_eq!(seen.get(&key), Some(&want), "site {n}: {key:?}");
            }

            // Every window has a population p90; every host's egress per window is the
            // truth's (the relay's long flow in total: its bytes reach windows by updates).
            let report = r.report.as_ref().unwrap();
            assert_eq!(report.windows.len(), WINDOWS);
            for w in &report.windows {
                assert!(w.population_p90_bytes_out.is_some(), "site {n}");
            }
            let relay = host(&t, "relay_host");
            for (ip, info) in t["hosts"].as_object().unwrap() {
                let ip: IpAddr = ip.parse().unwrap();
                let rec = report.host(ip).unwrap();
                let want: Vec<u64> = info["bytes_out_per_window"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                let got: Vec<u64> = rec.points.iter().map(|p| p.bytes_out).collect();
                if ip == relay {
                    assert_eq!(got.iter().sum::<u64>(), want.iter().sum::<u64>());
                } else {
                    assert_eq!(got, want, "site {n} {ip}");
                }
            }

            // The relay: one long, upload-heavy TLS session to the endpoint, in AS64500.
            let endpoint = t["fleet"]["relay_endpoint"].as_str().unwrap();
            let (addr, _) = endpoint.rsplit_once(':').unwrap();
            let conn = std::fs::read_to_string(logs.path("conn.log")).unwrap();
            let session: Vec<Value> = conn
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|c| c["id.orig_h"] == relay.to_string() && c["id.resp_h"] == addr)
                .collect();
            assert_eq!(session.len(), 1, "site {n}");
            let s = &session[0];
            let secs = t["fleet"]["relay_session_seconds"].as_u64().unwrap();
            assert!(secs >= 600);
            assert_eq!(s["duration"].as_f64().unwrap() as u64, secs);
            assert_eq!(s["orig_ip_bytes"], t["fleet"]["relay_bytes_out"]);
            assert_eq!(s["resp_ip_bytes"], t["fleet"]["relay_bytes_in"]);
            assert!(s["orig_ip_bytes"].as_u64() > s["resp_ip_bytes"].as_u64());
            let dest = report
                .host(relay)
                .unwrap()
                .destinations
                .iter()
                .find(|d| d.ip.map(|ip| ip.to_string()).as_deref() == Some(addr))
                .unwrap();
            assert_eq!(dest.asn, t["fleet"]["relay_asn"].as_u64().map(|a| a as u32));
            assert_eq!(dest.as_org.as_deref(), t["fleet"]["relay_as_org"].as_str());

            // The shift: the listed hosts, and only they, send at least 5x their baseline.
            let shift_start = t["fleet"]["shift_window_start"].as_str();
            let mut shifted: Vec<(String, u64)> = Vec::new();
            for rec in &report.hosts {
                for p in rec.points.iter().skip(4) {
                    let Some(base) = p.baseline() else { continue };
                    if p.bytes_out as f64 >= 5.0 * base {
                        shifted.push((rec.host.unwrap().to_string(), p.start_ns));
                    }
                }
            }
            shifted.sort();
            let want: Vec<(String, u64)> = t["fleet"]["shifted_hosts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let start = START + SHIFT_WINDOW as u64 * WINDOW;
                    (h.as_str().unwrap().to_string(), start * NS_PER_US)
                })
                .collect();
            assert_eq!(shifted, want, "site {n}");
            assert_eq!(shift_start.is_some(), !want.is_empty());
            if let Some(start) = shift_start {
                assert_eq!(start, rfc3339(START + SHIFT_WINDOW as u64 * WINDOW));
                assert!(want.len() >= 5);
            }
        }
    }
}
