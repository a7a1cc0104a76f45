//! The `behaviour` scenario: four hours of an office network on Monday 2024-03-04,
//! 16:30-20:30 UTC. With business hours 08:00-18:00 UTC the first six 15-minute windows are
//! business hours and the other ten are off-hours. Ordinary hosts browse in every window, so
//! per-host baselines and the population's 90th percentile exist. One host per behavioural
//! detector must alert, and benign look-alikes must stay quiet. No host ever names a
//! proxyware service.
//!
//! Bulk data travels in 64 000-byte TSO/GRO-style segments cut to their headers, so gigabytes
//! of traffic fit in a few MB of capture (see `frames`).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::GenerateError;
use super::blocks::{ALPN, Host, Zone, remote};
use super::frames::{Frames, HostTally, Keep, Tcp};
use super::proto::{self, QTYPE_A};
use super::rng::Rng;
use super::wire::{Endpoint, PcapWriter, mac_for};

pub(super) const SEC: u64 = 1_000_000;
pub(super) const MS: u64 = 1_000;
const KB: u64 = 1_000;
const MB: u64 = 1_000_000;
/// Monday 2024-03-04 00:00:00 UTC, in seconds.
const DAY: u64 = 1_709_510_400;
const WINDOW: u64 = 900 * SEC;

/// Event time of hh:mm:ss on the scenario's Monday, in microseconds.
const fn clock(h: u64, m: u64, s: u64) -> u64 {
    (DAY + h * 3600 + m * 60 + s) * SEC
}

const START: u64 = clock(16, 30, 0);
const END: u64 = clock(20, 30, 0);
const BUSINESS_END: u64 = clock(18, 0, 0);

/// What the truth file says about one host.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoleTruth {
    pub role: &'static str,
    /// The DetectionBranch of the alert(s) this host must raise, or "none".
    pub expect_branch: &'static str,
    /// Branches that may also fire for the host, only ever as weaker findings inside an
    /// alert of `expect_branch`.
    pub secondary_branches: Vec<&'static str>,
    pub what: String,
    /// When the behaviour to be found begins (RFC 3339), for hosts that must alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behaviour_start: Option<String>,
    /// How long the behaviour must run before the defaults can see it at all (a session's
    /// age threshold, consecutive windows). The first alert must come within one window of
    /// `behaviour_start` plus this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detectable_after_s: Option<u64>,
    /// What the capture holds for the host (IP total lengths, host's point of view).
    #[serde(flatten)]
    pub traffic: HostTally,
}

impl RoleTruth {
    fn benign(role: &'static str, what: String) -> RoleTruth {
        RoleTruth {
            role,
            expect_branch: "none",
            secondary_branches: Vec::new(),
            what,
            behaviour_start: None,
            detectable_after_s: None,
            traffic: HostTally::default(),
        }
    }
}

/// A scenario whose truth is host roles rather than a flow list.
pub(crate) struct RoleScenario {
    pub hosts: Vec<(IpAddr, RoleTruth)>,
    pub start_us: u64,
    pub end_us: u64,
}

pub(super) struct Role {
    pub ip: Ipv4Addr,
    pub role: &'static str,
    pub expect: &'static str,
    pub secondary: &'static [&'static str],
    pub what: &'static str,
    /// Event time (µs) the behaviour begins, and seconds before the defaults can see it;
    /// zero start for benign hosts.
    pub starts_us: u64,
    pub detectable_after_s: u64,
}

impl Role {
    const fn starting(self, at_us: u64, detectable_after_s: u64) -> Role {
        Role {
            starts_us: at_us,
            detectable_after_s,
            ..self
        }
    }

    fn truth(&self) -> RoleTruth {
        let starts = self.starts_us > 0;
        RoleTruth {
            role: self.role,
            expect_branch: self.expect,
            secondary_branches: self.secondary.to_vec(),
            what: self.what.to_string(),
            behaviour_start: starts.then(|| crate::alert::rfc3339(self.starts_us * 1000)),
            detectable_after_s: starts.then_some(self.detectable_after_s),
            traffic: HostTally::default(),
        }
    }
}

/// Each host's truth with what the capture holds for it.
fn with_traffic(
    roles: Vec<(IpAddr, RoleTruth)>,
    tallies: &std::collections::BTreeMap<IpAddr, HostTally>,
) -> Vec<(IpAddr, RoleTruth)> {
    roles
        .into_iter()
        .map(|(ip, mut truth)| {
            truth.traffic = tallies.get(&ip).copied().unwrap_or_default();
            (ip, truth)
        })
        .collect()
}

const fn role(
    ip: [u8; 4],
    role: &'static str,
    expect: &'static str,
    secondary: &'static [&'static str],
    what: &'static str,
) -> Role {
    Role {
        ip: Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]),
        role,
        expect,
        secondary,
        what,
        starts_us: 0,
        detectable_after_s: 0,
    }
}

const OFFICE_HOSTS: u8 = 11;

// The 10-minute tier alone scores below min_alert_score; the 1-hour tier, with the
// upload past heavy_upload_bytes by then, alerts.
const LONG_LIVED: Role = role(
    [10, 20, 2, 10],
    "long_lived_upload",
    "LongLivedSession",
    &[],
    "keeps one TLS session to sync.filedrop.example.net (192.0.2.80:443) open 18:05-20:25 \
     (2 h 20 min, off-hours) and uploads about 32 MB through it, some 3-4 MB per window, \
     far more than it receives",
)
.starting(clock(18, 5, 0), 3600);
// consecutive_windows = 2: the second window of the upload.
const SUSTAINED: Role = role(
    [10, 20, 2, 20],
    "sustained_egress",
    "SustainedEgress",
    // Back-to-back 2-3 minute uploads to one server stitch into a session past 10 min.
    &["LongLivedSession"],
    "browses like the office for six windows, then from 18:00 to 18:27 uploads about \
     130 MB and 100 MB in two windows to uploads.example-cloud.net (192.0.2.90) in 2-3 minute TLS \
     sessions (never one long session)",
)
.starting(clock(18, 0, 20), 900);
const FANOUT: Role = role(
    [10, 20, 2, 30],
    "fanout_scan",
    "FanOut",
    &[],
    "Atomic Red Team style burst at 18:20:05: TCP SYNs to 80 different 8.8.x.1 addresses \
     on port 80 within about 50 s, each retransmitted once, none answered",
)
.starting(clock(18, 20, 5), 0);
const TORRENT: Role = role(
    [10, 20, 2, 40],
    "torrent_seeder",
    "TorrentSeeding",
    &[],
    "19:01-19:12: BitTorrent peer-wire handshakes with 14 peers (203.0.113.20-33), then \
     uploads about 28 MB to them while downloading under 3 MB",
)
.starting(clock(19, 1, 0), 0);
// The control session must be control_min_seconds old.
const RELAY: Role = role(
    [10, 20, 2, 50],
    "relay_proxyware",
    "RelayBehaviour",
    &["LongLivedSession"],
    "proxyware that never shows a proxyware name: from 17:45 a TLS control session to \
     gw3.fastlane-cdn.example.net (203.0.113.5:443) stays open to the end; every window it \
     receives 22-24 small requests, fetches each from a different site (short TLS flows to \
     203.0.113.100-199) and sends what it downloaded up the control session (about 7 MB per \
     window, download/upload close to 1)",
)
.starting(clock(17, 45, 0), 600);
const PLANTED: Role = role(
    [10, 20, 2, 60],
    "planted_proxy",
    "RelayBehaviour",
    &[],
    "a planted SOCKS5 proxy on port 1080: 19:30-20:00, 13 connections per window from 13 \
     different outside addresses (192.0.2.100-125); for each it opens an outbound flow to \
     the requested address (192.0.2.150-175:443) and serves back what it downloads",
)
.starting(clock(19, 30, 0), 0);
const BACKUP: Role = role(
    [10, 20, 3, 10],
    "nightly_backup",
    "none",
    &[],
    "uploads 200 MB to vault.backup.example.net (192.0.2.50:443) in one 25-minute TLS \
     session from 19:30; the scenario config allowlists 192.0.2.48/29",
);
const VIDEO: Role = role(
    [10, 20, 3, 20],
    "video_call",
    "none",
    &[],
    "a 65-minute UDP video call to media.meet.example.com (192.0.2.70:3478) from 16:33, \
     in business hours, about 35 MB each way (symmetric)",
);
const DOWNLOAD: Role = role(
    [10, 20, 3, 30],
    "software_download",
    "none",
    &[],
    "downloads 200 MB from dl.example-mirror.net (192.0.2.60:443) in one 20-minute TLS \
     session from 18:50; upload is only ACKs",
);
const WEB_PROXY: Role = role(
    [10, 20, 3, 40],
    "web_proxy",
    "none",
    &[],
    "the office's web proxy, allowlisted in the scenario config (allowlist.inside_hosts): \
     in business hours (16:30-18:00) it fetches 24-27 sites per window and keeps a \
     CONNECT-tunnelled upload to upload.bigdrive.example.org (198.51.100.90) open for 88 \
     minutes (about 8 MB per window), then 3-6 fetches per window; without the allowlist \
     it would look like a relay",
);
const KEYWORD: Role = role(
    [10, 20, 3, 50],
    "keyword_lookalike",
    "none",
    &[],
    "looks up and visits names that merely contain a proxyware keyword \
     (honeygain-review.example.com, notpawns.app, myhoneygain.com, earnapp.community, \
     pawns.app.example.net, packetstream-alternatives.example.org)",
);
const GEO: Role = role(
    [10, 20, 2, 70],
    "geo_unusual",
    "GeoUnusual",
    &[],
    "browses like the office, then at 19:00 uploads 15 MB in a 4-minute TLS session to \
     files.storage.example (95.213.0.10:443), which the scenario's test geo database \
     (tests/data/geo) places in RU, outside the scenario's allowed_countries",
)
.starting(clock(19, 0, 0), 0);

const PORT_SWEEP: Role = role(
    [10, 20, 2, 80],
    "port_sweep",
    "FanOut",
    &[],
    "masscan-style vertical sweep at 19:40: SYNs from one source port to 300 ports of \
     198.51.100.200 (ports 1-300) in 3 s; 297 are refused (RST/ACK), 22, 80 and 143 answer and get a RST",
)
.starting(clock(19, 40, 0), 0);
const SPEED_TEST: Role = role(
    [10, 20, 3, 60],
    "speed_test",
    "none",
    &[],
    "a scheduled speed test every 15 minutes from 17:35 to 18:05 against \
     sea.speedtest.ooklaserver.net (198.51.100.60:443): 4 parallel TLS flows, 10 s download \
     of about 40 MB then 10 s upload of about 60 MB; the default allowlist's speed-test \
     domains keep it quiet",
);
const IPERF: Role = role(
    [10, 20, 3, 70],
    "iperf_test",
    "none",
    &[],
    "authorised iperf3 runs at 18:10 and 18:25 to the lab server 192.0.2.40:5201 (a control \
     connection plus one data connection sending about 70 MB in 10 s); the scenario config \
     allowlists 192.0.2.40/32",
);

const OFFICE_TLS: [&str; 10] = [
    "www.example.com",
    "portal.example.com",
    "cdn.example.net",
    "mail.example.com",
    "login.microsoftonline.com",
    "www.google.com",
    "outlook.office365.com",
    "github.com",
    "docs.example.org",
    "api.example.net",
];

const KEYWORD_NAMES: [&str; 6] = [
    "honeygain-review.example.com",
    "notpawns.app",
    "myhoneygain.com",
    "earnapp.community",
    "pawns.app.example.net",
    "packetstream-alternatives.example.org",
];

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

/// Packet stamping with its random stream; the `site` scenario builds on it too.
pub(super) struct Sim {
    pub(super) rng: Rng,
    pub(super) f: Frames,
}

pub(super) fn run<W: Write>(
    seed: u64,
    w: &mut PcapWriter<W>,
) -> Result<RoleScenario, GenerateError> {
    let mut rng = Rng::new(seed);
    let f = Frames::new(&mut rng);
    let mut sim = Sim { rng, f };
    let mut roles: Vec<(IpAddr, RoleTruth)> = Vec::new();

    for i in 0..OFFICE_HOSTS {
        let ip = Ipv4Addr::new(10, 20, 1, 10 + i);
        roles.push((
            v4(ip),
            RoleTruth::benign(
                "office",
                "ordinary office host: DNS and TLS to common names in every window, a few MB"
                    .to_string(),
            ),
        ));
        let r = sim.rng.fork(u64::from(i));
        sim.with_rng(r, |s| {
            let mut h = s.host(ip);
            let busy = 2 + s.rng.below(2);
            s.routine(&mut h, busy, 1)
        })?;
    }
    type Plan = fn(&mut Sim, &mut Host) -> Result<(), GenerateError>;
    let plans: [(&Role, Plan); 15] = [
        (&LONG_LIVED, Sim::long_lived),
        (&SUSTAINED, Sim::sustained),
        (&FANOUT, Sim::fanout),
        (&TORRENT, Sim::torrent),
        (&RELAY, Sim::relay),
        (&PLANTED, Sim::planted_proxy),
        (&BACKUP, Sim::backup),
        (&VIDEO, Sim::video_call),
        (&DOWNLOAD, Sim::download),
        (&WEB_PROXY, Sim::web_proxy),
        (&KEYWORD, Sim::keyword_lookalike),
        // Later additions go last, so the hosts above keep their random streams (and bytes).
        (&GEO, Sim::geo_unusual),
        (&PORT_SWEEP, Sim::port_sweep),
        (&SPEED_TEST, Sim::speed_test),
        (&IPERF, Sim::iperf),
    ];
    for (k, (r, plan)) in plans.iter().enumerate() {
        roles.push((v4(r.ip), r.truth()));
        let rng = sim.rng.fork(100 + k as u64);
        sim.with_rng(rng, |s| {
            let mut h = s.host(r.ip);
            plan(s, &mut h)
        })?;
    }
    let tallies = sim.f.write_to(w)?;
    Ok(RoleScenario {
        hosts: with_traffic(roles, &tallies),
        start_us: START,
        end_us: END,
    })
}

impl Sim {
    pub(super) fn with_rng(
        &mut self,
        rng: Rng,
        f: impl FnOnce(&mut Sim) -> Result<(), GenerateError>,
    ) -> Result<(), GenerateError> {
        let saved = std::mem::replace(&mut self.rng, rng);
        let res = f(self);
        self.rng = saved;
        res
    }

    pub(super) fn host(&mut self, ip: Ipv4Addr) -> Host {
        self.f.track(v4(ip));
        Host::new(&mut self.rng, v4(ip), 128)
    }

    pub(super) fn server(&mut self, ip: Ipv4Addr, port: u16) -> Endpoint {
        let ttl = 48 + self.rng.below(10) as u8;
        remote(v4(ip), port, ttl)
    }

    fn lookup(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        ip: Ipv4Addr,
    ) -> Result<u64, GenerateError> {
        let zone = Zone {
            v4: Some(ip),
            ..Zone::default()
        };
        let c = h.client(&mut self.rng);
        self.f
            .dns(&mut self.rng, t, c, h.resolver(), name, QTYPE_A, &zone)
    }

    /// TCP handshake, ClientHello (kept whole so the sensor reads the SNI), the server's
    /// first flight and the client's Finished with its first request.
    pub(super) fn tls_open(
        &mut self,
        h: &mut Host,
        t: u64,
        sni: Option<&str>,
        server: Endpoint,
        rtt: u64,
    ) -> Result<(Tcp, u64), GenerateError> {
        let c = h.client(&mut self.rng);
        self.tls_open_from(c, t, sni, server, rtt)
    }

    /// `tls_open` from a given client endpoint (a port the scenario had to fix beforehand).
    pub(super) fn tls_open_from(
        &mut self,
        c: Endpoint,
        t: u64,
        sni: Option<&str>,
        server: Endpoint,
        rtt: u64,
    ) -> Result<(Tcp, u64), GenerateError> {
        let (mut tcp, t) = self.f.tcp_open(&mut self.rng, c, server, t, rtt)?;
        let mut sid = [0u8; 32];
        self.rng.fill(&mut sid);
        let hello = proto::client_hello(&mut self.rng, &sid, sni, &ALPN)?;
        let t = self
            .f
            .tcp_data(&mut tcp, true, t + 100, &hello, Keep::Full)?;
        let cert = 1400 + self.rng.below(600) as usize;
        let flight = proto::server_flight(&mut self.rng, &sid, cert)?;
        let server_us = self.rng.range(2 * MS, 20 * MS);
        let t = self
            .f
            .tcp_data(&mut tcp, false, t + rtt + server_us, &flight, Keep::Slice)?;
        let request = 200 + self.rng.below(500) as usize;
        let finished = proto::client_finished(&mut self.rng, request);
        let t = self
            .f
            .tcp_data(&mut tcp, true, t + 300, &finished, Keep::Slice)?;
        Ok((tcp, t))
    }

    /// A TLS session: optional upload, a download spread over `dur`, then the client closes.
    fn fetch(
        &mut self,
        h: &mut Host,
        t: u64,
        sni: Option<&str>,
        server: Endpoint,
        (down, up, dur): (u64, u64, u64),
    ) -> Result<u64, GenerateError> {
        let rtt = self.rng.range(12 * MS, 70 * MS);
        let (mut tcp, mut t) = self.tls_open(h, t, sni, server, rtt)?;
        if up > 0 {
            t = self.f.tcp_bulk(&mut tcp, true, t + 200, dur / 3 + 1, up)?;
        }
        t = self.f.tcp_bulk(&mut tcp, false, t + rtt, dur, down)?;
        let think = self.rng.range(300 * MS, 3 * SEC);
        self.f.tcp_close(&mut tcp, t + think, rtt)
    }

    /// DNS lookup, then a TLS session to the answer.
    fn visit(
        &mut self,
        h: &mut Host,
        t: u64,
        name: &str,
        ip: Ipv4Addr,
        sizes: (u64, u64, u64),
    ) -> Result<u64, GenerateError> {
        let d = self.lookup(h, t, name, ip)?;
        let server = self.server(ip, 443);
        let start = d + self.rng.range(MS, 5 * MS);
        self.fetch(h, start, Some(name), server, sizes)
    }

    /// Ordinary browsing: `busy` sessions per business-hours window, `quiet` off-hours.
    fn routine(&mut self, h: &mut Host, busy: u64, quiet: u64) -> Result<(), GenerateError> {
        let mut w = START;
        while w < END {
            let business = w < BUSINESS_END;
            let n = if business { busy } else { quiet };
            let mut offsets: Vec<u64> = (0..n).map(|_| self.rng.range(5, 860) * SEC).collect();
            offsets.sort_unstable();
            for off in offsets {
                let i = self.rng.index(OFFICE_TLS.len());
                let name = OFFICE_TLS.get(i).copied().unwrap_or("www.example.com");
                let ip = Ipv4Addr::new(198, 51, 100, 20 + i as u8);
                let sizes = if business {
                    (
                        self.rng.range(150 * KB, 2500 * KB),
                        self.rng.range(20 * KB, 500 * KB),
                        self.rng.range(SEC, 12 * SEC),
                    )
                } else {
                    (
                        self.rng.range(60 * KB, 900 * KB),
                        self.rng.range(10 * KB, 200 * KB),
                        self.rng.range(SEC, 8 * SEC),
                    )
                };
                self.visit(h, w + off, name, ip, sizes)?;
            }
            w += WINDOW;
        }
        Ok(())
    }

    /// An upload-heavy session kept open from `from` to `until`: chunks of `chunk` bytes
    /// every `every` seconds, each confirmed by a small reply.
    fn trickle_upload(
        &mut self,
        h: &mut Host,
        name: &str,
        ip: Ipv4Addr,
        (from, until): (u64, u64),
        chunk: (u64, u64),
        every: (u64, u64),
    ) -> Result<u64, GenerateError> {
        let d = self.lookup(h, from, name, ip)?;
        let server = self.server(ip, 443);
        let rtt = self.rng.range(20 * MS, 60 * MS);
        let (mut tcp, mut t) = self.tls_open(h, d + 2 * MS, Some(name), server, rtt)?;
        let mut sent = 0;
        while t + every.1 * SEC + 30 * SEC < until {
            t += self.rng.range(every.0, every.1) * SEC;
            let up = self.rng.range(chunk.0, chunk.1);
            let dur = self.rng.range(5 * SEC, 20 * SEC);
            t = self.f.tcp_bulk(&mut tcp, true, t, dur, up)?;
            sent += up;
            let n = self.rng.range(300, 2500) as usize;
            let reply = proto::app_data(&mut self.rng, n);
            t = self
                .f
                .tcp_data(&mut tcp, false, t + rtt, &reply, Keep::Slice)?;
        }
        self.f.tcp_close(&mut tcp, until, rtt)?;
        Ok(sent)
    }

    fn long_lived(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        self.trickle_upload(
            h,
            "sync.filedrop.example.net",
            Ipv4Addr::new(192, 0, 2, 80),
            (clock(18, 5, 0), clock(20, 25, 0)),
            (250 * KB, 530 * KB),
            (60, 120),
        )?;
        Ok(())
    }

    fn sustained(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 2, 1)?;
        let name = "uploads.example-cloud.net";
        let ip = Ipv4Addr::new(192, 0, 2, 90);
        let mut t = self.lookup(h, clock(18, 0, 20), name, ip)?;
        while t < clock(18, 27, 0) {
            let server = self.server(ip, 443);
            let rtt = self.rng.range(20 * MS, 40 * MS);
            let (mut tcp, t1) = self.tls_open(h, t + 2 * MS, Some(name), server, rtt)?;
            let up = self.rng.range(22 * MB, 34 * MB);
            let dur = self.rng.range(100 * SEC, 200 * SEC);
            let t2 = self.f.tcp_bulk(&mut tcp, true, t1 + 300, dur, up)?;
            let n = self.rng.range(400, 1500) as usize;
            let reply = proto::app_data(&mut self.rng, n);
            let t3 = self
                .f
                .tcp_data(&mut tcp, false, t2 + rtt, &reply, Keep::Slice)?;
            t = self.f.tcp_close(&mut tcp, t3 + 200 * MS, rtt)?;
            t += self.rng.range(10 * SEC, 60 * SEC);
        }
        Ok(())
    }

    fn fanout(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 2, 1)?;
        let mut t = clock(18, 20, 5);
        for i in 0..80u8 {
            let target = remote(v4(Ipv4Addr::new(8, 8, i, 1)), 80, 0);
            let c = h.client(&mut self.rng);
            self.f.tcp_syn_unanswered(&mut self.rng, c, target, t, 1)?;
            t += self.rng.range(550 * MS, 700 * MS);
        }
        Ok(())
    }

    fn torrent(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        let info_hash = self.rng.bytes(20);
        let mut my_id = b"-qB4630-".to_vec();
        my_id.extend(self.rng.bytes(12));
        let mut t = clock(19, 1, 0);
        for i in 0..14u8 {
            let port = if i % 3 == 0 {
                6881
            } else {
                self.rng.range(10_000, 60_000) as u16
            };
            let peer = self.server(Ipv4Addr::new(203, 0, 113, 20 + i), port);
            let rtt = self.rng.range(30 * MS, 180 * MS);
            let c = h.client(&mut self.rng);
            let (mut tcp, t1) = self.f.tcp_open(&mut self.rng, c, peer, t, rtt)?;
            let mut their_id = b"-TR3000-".to_vec();
            their_id.extend(self.rng.bytes(12));
            let t2 = self.f.tcp_data(
                &mut tcp,
                true,
                t1 + 100,
                &handshake(&info_hash, &my_id),
                Keep::Full,
            )?;
            let t3 = self.f.tcp_data(
                &mut tcp,
                false,
                t2 + rtt,
                &handshake(&info_hash, &their_id),
                Keep::Full,
            )?;
            // Bitfield (id 5) saying we have every piece, then unchoke (id 1).
            let mut msgs = vec![0, 0, 0, 41, 5];
            msgs.extend([0xff; 40]);
            msgs.extend([0, 0, 0, 1, 1]);
            let t4 = self
                .f
                .tcp_data(&mut tcp, true, t3 + 300, &msgs, Keep::Slice)?;
            // Interested (id 2) and three block requests (id 6).
            let mut req = vec![0, 0, 0, 1, 2];
            for k in 0..3u32 {
                req.extend([0, 0, 0, 13, 6]);
                req.extend(u32::from(i).to_be_bytes());
                req.extend((k * 16_384).to_be_bytes());
                req.extend(16_384u32.to_be_bytes());
            }
            let t5 = self
                .f
                .tcp_data(&mut tcp, false, t4 + rtt, &req, Keep::Slice)?;
            let up = self.rng.range(1400 * KB, 2600 * KB);
            let dur = self.rng.range(60 * SEC, 240 * SEC);
            let t6 = self.f.tcp_bulk(&mut tcp, true, t5 + 200, dur, up)?;
            let down = self.rng.range(60 * KB, 200 * KB);
            let t7 = self.f.tcp_bulk(&mut tcp, false, t6 + rtt, 2 * SEC, down)?;
            self.f.tcp_close(&mut tcp, t7 + SEC, rtt)?;
            t += self.rng.range(20 * SEC, 35 * SEC);
        }
        Ok(())
    }

    fn relay(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        let name = "gw3.fastlane-cdn.example.net";
        let ip = Ipv4Addr::new(203, 0, 113, 5);
        let d = self.lookup(h, clock(17, 45, 0), name, ip)?;
        let server = self.server(ip, 443);
        let rtt = 45 * MS;
        let (mut ctl, mut ctl_t) = self.tls_open(h, d + 2 * MS, Some(name), server, rtt)?;
        let mut w = clock(17, 45, 0);
        while w < END {
            let n = self.rng.range(22, 24) as usize;
            let sites = self.sample(100, n);
            for (i, idx) in sites.into_iter().enumerate() {
                let slot = w + 20 * SEC + i as u64 * 35 * SEC + self.rng.range(0, 8) * SEC;
                let ts = slot.max(ctl_t + 50 * MS);
                // A customer's request arrives on the control session...
                let n = self.rng.range(400, 1500) as usize;
                let req = proto::app_data(&mut self.rng, n);
                let t1 = self.f.tcp_data(&mut ctl, false, ts, &req, Keep::Slice)?;
                // ...the agent fetches it from the site...
                let site = Ipv4Addr::new(203, 0, 113, 100 + idx as u8);
                let sni = format!("www.site{idx}.example.com");
                let server = self.server(site, 443);
                let down = self.rng.range(180 * KB, 420 * KB);
                let dur = self.rng.range(SEC, 12 * SEC);
                let t2 = self.fetch(h, t1 + 2 * MS, Some(&sni), server, (down, 0, dur))?;
                // ...and sends the response up the control session.
                let dur = self.rng.range(SEC, 4 * SEC);
                ctl_t = self
                    .f
                    .tcp_bulk(&mut ctl, true, t2 + 5 * MS, dur, down + down / 50)?;
            }
            w += WINDOW;
        }
        // The control session is still open when the capture ends.
        Ok(())
    }

    fn planted_proxy(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        let me = Endpoint {
            mac: mac_for(h.ip),
            ip: h.ip,
            port: 1080,
            ttl: 64,
        };
        let mut k = 0u8;
        for win in 0..2u64 {
            let w = clock(19, 30, 0) + win * WINDOW;
            for i in 0..13u64 {
                let ts = w + 15 * SEC + i * 60 * SEC + self.rng.range(0, 10) * SEC;
                let port = self.rng.range(32_768, 60_999) as u16;
                let client = self.server(Ipv4Addr::new(192, 0, 2, 100 + k), port);
                let target = Ipv4Addr::new(192, 0, 2, 150 + k);
                k += 1;
                let rtt_in = self.rng.range(40 * MS, 160 * MS);
                let (mut inb, t) = self.f.tcp_open(&mut self.rng, client, me, ts, rtt_in)?;
                // SOCKS5: no-auth greeting, then CONNECT to an IPv4 address on 443.
                let t = self
                    .f
                    .tcp_data(&mut inb, true, t + 100, &[5, 1, 0], Keep::Full)?;
                let t = self
                    .f
                    .tcp_data(&mut inb, false, t + 200, &[5, 0], Keep::Full)?;
                let mut req = vec![5, 1, 0, 1];
                req.extend(target.octets());
                req.extend(443u16.to_be_bytes());
                let t = self
                    .f
                    .tcp_data(&mut inb, true, t + rtt_in, &req, Keep::Full)?;
                let rtt_out = self.rng.range(10 * MS, 60 * MS);
                let out_c = h.client(&mut self.rng);
                let dst = self.server(target, 443);
                let (mut out, t) = self
                    .f
                    .tcp_open(&mut self.rng, out_c, dst, t + 300, rtt_out)?;
                let mut reply = vec![5, 0, 0, 1];
                reply.extend(PLANTED.ip.octets());
                reply.extend(out.c.port.to_be_bytes());
                let t = self
                    .f
                    .tcp_data(&mut inb, false, t + 200, &reply, Keep::Full)?;
                // The customer's bytes go out, the site's answer comes back and is served
                // to the customer at the same pace.
                let n = self.rng.range(300, 900) as usize;
                let hello = proto::app_data(&mut self.rng, n);
                let t = self
                    .f
                    .tcp_data(&mut inb, true, t + rtt_in, &hello, Keep::Slice)?;
                let t = self
                    .f
                    .tcp_data(&mut out, true, t + 200, &hello, Keep::Slice)?;
                let down = self.rng.range(300 * KB, 1200 * KB);
                let dur = self.rng.range(2 * SEC, 15 * SEC);
                let t_out = self.f.tcp_bulk(&mut out, false, t + rtt_out, dur, down)?;
                let t_in = self
                    .f
                    .tcp_bulk(&mut inb, false, t + rtt_out + 3 * MS, dur, down)?;
                self.f.tcp_close(&mut out, t_out + 500 * MS, rtt_out)?;
                self.f.tcp_close(&mut inb, t_in + 800 * MS, rtt_in)?;
            }
        }
        Ok(())
    }

    fn backup(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        let name = "vault.backup.example.net";
        let ip = Ipv4Addr::new(192, 0, 2, 50);
        let d = self.lookup(h, clock(19, 30, 5), name, ip)?;
        let server = self.server(ip, 443);
        let rtt = 25 * MS;
        let (mut tcp, t) = self.tls_open(h, d + 2 * MS, Some(name), server, rtt)?;
        let t = self
            .f
            .tcp_bulk(&mut tcp, true, t + 300, 1500 * SEC, 200 * MB)?;
        let reply = proto::app_data(&mut self.rng, 900);
        let t = self
            .f
            .tcp_data(&mut tcp, false, t + rtt, &reply, Keep::Slice)?;
        self.f.tcp_close(&mut tcp, t + 100 * MS, rtt)?;
        Ok(())
    }

    fn video_call(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 2, 1)?;
        let name = "media.meet.example.com";
        let ip = Ipv4Addr::new(192, 0, 2, 70);
        let d = self.lookup(h, clock(16, 33, 0), name, ip)?;
        let c = h.client(&mut self.rng);
        let s = self.server(ip, 3478);
        self.f.udp_flow(&c, &s);
        let end = d + 3900 * SEC;
        let mut t = d + 50 * MS;
        let mut ids = [self.rng.next_u16(), self.rng.next_u16()];
        let mut seq = [self.rng.next_u16(), self.rng.next_u16()];
        let ssrc = [self.rng.next_u32(), self.rng.next_u32()];
        while t < end {
            for dir in 0..2usize {
                let (src, dst) = if dir == 0 { (&c, &s) } else { (&s, &c) };
                let ts = t + dir as u64 * self.rng.range(5 * MS, 30 * MS);
                // RTP header (version 2, dynamic payload type 96), then GRO-coalesced media.
                let mut rtp = vec![0x80, 96];
                let (sq, id) = match (seq.get_mut(dir), ids.get_mut(dir)) {
                    (Some(sq), Some(id)) => (sq, id),
                    _ => continue,
                };
                rtp.extend(sq.to_be_bytes());
                rtp.extend(((ts / 1000) as u32).wrapping_mul(90).to_be_bytes());
                rtp.extend(ssrc.get(dir).copied().unwrap_or(0).to_be_bytes());
                let len = self.rng.range(40_000, 64_000) as usize;
                self.f
                    .udp(ts, src, dst, *id, &rtp, len - rtp.len(), Keep::Slice)?;
                *sq = sq.wrapping_add(40);
                *id = id.wrapping_add(1);
            }
            t += self.rng.range(4 * SEC, 8 * SEC);
        }
        Ok(())
    }

    fn download(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        let name = "dl.example-mirror.net";
        let ip = Ipv4Addr::new(192, 0, 2, 60);
        self.visit(h, clock(18, 50, 0), name, ip, (200 * MB, 0, 1200 * SEC))?;
        Ok(())
    }

    fn web_proxy(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        let upload = self.rng.fork(1);
        self.with_rng(upload, |s| {
            s.trickle_upload(
                h,
                "upload.bigdrive.example.org",
                Ipv4Addr::new(198, 51, 100, 90),
                (clock(16, 31, 0), clock(17, 59, 0)),
                (500 * KB, 1000 * KB),
                (60, 100),
            )
            .map(|_| ())
        })?;
        let mut w = START;
        while w < END {
            let busy = w < BUSINESS_END;
            let n = if busy {
                self.rng.range(24, 27)
            } else {
                self.rng.range(3, 6)
            } as usize;
            let sites = self.sample(100, n);
            let spacing = 860 / n as u64;
            for (i, idx) in sites.into_iter().enumerate() {
                let ts = w + (5 + i as u64 * spacing) * SEC + self.rng.range(0, 4) * SEC;
                let site = Ipv4Addr::new(198, 51, 100, 100 + idx as u8);
                let sni = format!("www.portal{idx}.example.net");
                let server = self.server(site, 443);
                let sizes = (
                    self.rng.range(250 * KB, 600 * KB),
                    self.rng.range(2 * KB, 60 * KB),
                    self.rng.range(SEC, 10 * SEC),
                );
                self.fetch(h, ts, Some(&sni), server, sizes)?;
            }
            w += WINDOW;
        }
        Ok(())
    }

    fn geo_unusual(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        let ip = Ipv4Addr::new(95, 213, 0, 10);
        self.visit(
            h,
            clock(19, 0, 0),
            "files.storage.example",
            ip,
            (200 * KB, 15 * MB, 240 * SEC),
        )?;
        Ok(())
    }

    fn keyword_lookalike(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 2, 1)?;
        for (i, name) in KEYWORD_NAMES.iter().enumerate() {
            let ip = Ipv4Addr::new(198, 51, 100, 200 + i as u8);
            let t = clock(16, 40, 0) + i as u64 * 7 * 60 * SEC;
            let sizes = (
                self.rng.range(200 * KB, 900 * KB),
                self.rng.range(5 * KB, 40 * KB),
                self.rng.range(SEC, 6 * SEC),
            );
            self.visit(h, t, name, ip, sizes)?;
            // The names come back in the evening, looked up again.
            let t = clock(19, 0, 0) + i as u64 * 3 * 60 * SEC;
            self.lookup(h, t, name, ip)?;
        }
        Ok(())
    }

    /// `n` distinct indexes below `of`, in random order.
    fn port_sweep(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 2, 1)?;
        let scanner = h.client(&mut self.rng);
        let target = Ipv4Addr::new(198, 51, 100, 200);
        let rtt = self.rng.range(5 * MS, 15 * MS);
        let mut t = clock(19, 40, 0);
        for port in 1..=300u16 {
            let s = self.server(target, port);
            if matches!(port, 22 | 80 | 143) {
                // Open: SYN/ACK, and the scanner (no socket behind the SYN) resets.
                let (mut tcp, t1) = self.f.tcp_open(&mut self.rng, scanner, s, t, rtt)?;
                self.f.tcp_reset(&mut tcp, t1)?;
            } else {
                self.f.tcp_syn_refused(&mut self.rng, scanner, s, t, rtt)?;
            }
            t += self.rng.range(8 * MS, 12 * MS);
        }
        Ok(())
    }

    /// A speed test: `flows` parallel TLS flows, each downloading then uploading.
    fn speed_test(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        let name = "sea.speedtest.ooklaserver.net";
        let ip = Ipv4Addr::new(198, 51, 100, 60);
        let mut at = clock(17, 35, 0);
        while at <= clock(18, 5, 0) {
            let d = self.lookup(h, at, name, ip)?;
            let rtt = self.rng.range(8 * MS, 20 * MS);
            for _ in 0..4 {
                let server = self.server(ip, 443);
                let (mut tcp, t) = self.tls_open(h, d + 2 * MS, Some(name), server, rtt)?;
                let down = self.rng.range(9 * MB, 11 * MB);
                let t = self.f.tcp_bulk(&mut tcp, false, t + rtt, 10 * SEC, down)?;
                let up = self.rng.range(14 * MB, 16 * MB);
                let t = self.f.tcp_bulk(&mut tcp, true, t + SEC, 10 * SEC, up)?;
                self.f.tcp_close(&mut tcp, t + 100 * MS, rtt)?;
            }
            at += WINDOW;
        }
        Ok(())
    }

    fn iperf(&mut self, h: &mut Host) -> Result<(), GenerateError> {
        self.routine(h, 1, 1)?;
        let ip = Ipv4Addr::new(192, 0, 2, 40);
        for start in [clock(18, 10, 0), clock(18, 25, 0)] {
            let rtt = self.rng.range(2 * MS, 6 * MS);
            let c = h.client(&mut self.rng);
            let server = self.server(ip, 5201);
            // iperf3's control connection: the cookie, JSON parameters and results.
            let (mut ctl, t) = self.f.tcp_open(&mut self.rng, c, server, start, rtt)?;
            let cookie = self.rng.bytes(37);
            let t = self
                .f
                .tcp_data(&mut ctl, true, t + 100, &cookie, Keep::Full)?;
            let params = proto::app_data(&mut self.rng, 140);
            let t = self
                .f
                .tcp_data(&mut ctl, true, t + rtt, &params, Keep::Full)?;
            let c = h.client(&mut self.rng);
            let (mut data, t) = self.f.tcp_open(&mut self.rng, c, server, t + rtt, rtt)?;
            let t = self
                .f
                .tcp_data(&mut data, true, t + 100, &cookie, Keep::Full)?;
            let up = self.rng.range(68 * MB, 72 * MB);
            let t = self.f.tcp_bulk(&mut data, true, t + rtt, 10 * SEC, up)?;
            let t = self.f.tcp_close(&mut data, t + 50 * MS, rtt)?;
            let results = proto::app_data(&mut self.rng, 900);
            let t = self
                .f
                .tcp_data(&mut ctl, false, t + rtt, &results, Keep::Slice)?;
            self.f.tcp_close(&mut ctl, t + 50 * MS, rtt)?;
        }
        Ok(())
    }

    fn sample(&mut self, of: usize, n: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..of).collect();
        for i in 0..n.min(of) {
            let j = i + self.rng.index(of - i);
            all.swap(i, j);
        }
        all.truncate(n.min(of));
        all
    }
}

/// BitTorrent peer-wire handshake (BEP 3): pstrlen, "BitTorrent protocol", reserved bits
/// (extension protocol and DHT), info hash, peer id.
fn handshake(info_hash: &[u8], peer_id: &[u8]) -> Vec<u8> {
    let mut v = vec![19];
    v.extend_from_slice(b"BitTorrent protocol");
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x01]);
    v.extend_from_slice(info_hash);
    v.extend_from_slice(peer_id);
    v
}

// ---------------------------------------------------------------------------------------
// The `flood` scenario

/// Tuesday 2024-03-05 10:00:00 UTC (business hours), in microseconds.
const FLOOD_START: u64 = clock(24 + 10, 0, 0);
const FLOOD_END: u64 = FLOOD_START + 210 * SEC;
const UDP_FLOOD_START: u64 = FLOOD_START + 60 * SEC;
const SYN_FLOOD_START: u64 = FLOOD_START + 100 * SEC;
/// Packets per second of each flood: above the 5000 pps default, averaged over any 10 s.
const FLOOD_PPS: u64 = 6000;

const UDP_BOT: Role = role(
    [10, 20, 4, 66],
    "udp_flood_bot",
    "FloodParticipation",
    &[],
    "10:01:00-10:01:20: UDP flood at 6000 packets/s (540-byte packets, four source ports) \
     to 203.0.113.77:80",
)
.starting(UDP_FLOOD_START, 0);
const SPOOFING_BOT: Role = role(
    [10, 20, 4, 77],
    "spoofing_bot",
    "none",
    &[],
    "browses, and 10:01:40-10:01:55 sends a SYN flood at 6000 packets/s to \
     198.51.100.88:443 from random spoofed, non-home source addresses (its own MAC). No \
     packet carries its address, so the flood's alert names the first spoofed source",
);

/// A random unicast IPv4 address outside every private, shared, loopback and link-local range.
fn spoofed_source(rng: &mut Rng) -> Ipv4Addr {
    for _ in 0..64 {
        let a = Ipv4Addr::from(rng.next_u32());
        let [o0, o1, _, _] = a.octets();
        let reserved = o0 == 0
            || o0 == 10
            || o0 == 127
            || o0 >= 224
            || (o0 == 100 && (64..128).contains(&o1))
            || (o0 == 169 && o1 == 254)
            || (o0 == 172 && (16..32).contains(&o1))
            || (o0 == 192 && o1 == 168);
        if !reserved {
            return a;
        }
    }
    Ipv4Addr::new(198, 18, 0, 1)
}

pub(super) fn run_flood<W: Write>(
    seed: u64,
    w: &mut PcapWriter<W>,
) -> Result<RoleScenario, GenerateError> {
    let mut rng = Rng::new(seed);
    let f = Frames::new(&mut rng);
    let mut sim = Sim { rng, f };
    let mut roles: Vec<(IpAddr, RoleTruth)> = Vec::new();

    for i in 0..4u8 {
        let ip = Ipv4Addr::new(10, 20, 1, 10 + i);
        roles.push((
            v4(ip),
            RoleTruth::benign("office", "ordinary office host".to_string()),
        ));
        let r = sim.rng.fork(u64::from(i));
        sim.with_rng(r, |s| {
            let mut h = s.host(ip);
            s.browse(&mut h, FLOOD_START + 5 * SEC, FLOOD_END - 15 * SEC)
        })?;
    }

    roles.push((v4(UDP_BOT.ip), UDP_BOT.truth()));
    let r = sim.rng.fork(66);
    sim.with_rng(r, |s| {
        let mut h = s.host(UDP_BOT.ip);
        let target = s.server(Ipv4Addr::new(203, 0, 113, 77), 80);
        let flows: Vec<Endpoint> = (0..4).map(|_| h.client(&mut s.rng)).collect();
        for c in &flows {
            s.f.udp_flow(c, &target);
        }
        let mut ids: Vec<u16> = flows.iter().map(|_| s.rng.next_u16()).collect();
        let t0 = UDP_FLOOD_START;
        let payload = s.rng.bytes(24);
        for k in 0..20 * FLOOD_PPS {
            let ts = t0 + k * SEC / FLOOD_PPS;
            let i = (k % 4) as usize;
            if let (Some(c), Some(id)) = (flows.get(i), ids.get_mut(i)) {
                s.f.udp(
                    ts,
                    c,
                    &target,
                    *id,
                    &payload,
                    512 - payload.len(),
                    Keep::Slice,
                )?;
                *id = id.wrapping_add(1);
            }
        }
        Ok(())
    })?;

    let r = sim.rng.fork(77);
    let mut first_spoofed = None;
    sim.with_rng(r, |s| {
        let mut h = s.host(SPOOFING_BOT.ip);
        s.browse(&mut h, FLOOD_START + 10 * SEC, FLOOD_END - 15 * SEC)?;
        let target = s.server(Ipv4Addr::new(198, 51, 100, 88), 443);
        let t0 = SYN_FLOOD_START;
        for k in 0..15 * FLOOD_PPS {
            let src = spoofed_source(&mut s.rng);
            if first_spoofed.is_none() {
                first_spoofed = Some(src);
                s.f.track(v4(src));
            }
            let c = Endpoint {
                mac: mac_for(v4(SPOOFING_BOT.ip)),
                ip: v4(src),
                port: s.rng.range(1024, 65_535) as u16,
                ttl: 64,
            };
            s.f.tcp_syn_unanswered(&mut s.rng, c, target, t0 + k * SEC / FLOOD_PPS, 0)?;
        }
        Ok(())
    })?;
    roles.push((v4(SPOOFING_BOT.ip), SPOOFING_BOT.truth()));
    if let Some(src) = first_spoofed {
        let mut truth = RoleTruth::benign(
            "spoofed_source",
            format!(
                "first spoofed source of {}'s SYN flood: the address its alert carries",
                SPOOFING_BOT.ip
            ),
        );
        truth.expect_branch = "FloodParticipation";
        truth.behaviour_start = Some(crate::alert::rfc3339(SYN_FLOOD_START * 1000));
        truth.detectable_after_s = Some(0);
        roles.push((v4(src), truth));
    }

    let tallies = sim.f.write_to(w)?;
    Ok(RoleScenario {
        hosts: with_traffic(roles, &tallies),
        start_us: FLOOD_START,
        end_us: FLOOD_END,
    })
}

impl Sim {
    /// Short office visits every 20-40 s between `from` and `until`.
    fn browse(&mut self, h: &mut Host, from: u64, until: u64) -> Result<(), GenerateError> {
        let mut t = from + self.rng.range(0, 10) * SEC;
        while t < until {
            let i = self.rng.index(OFFICE_TLS.len());
            let name = OFFICE_TLS.get(i).copied().unwrap_or("www.example.com");
            let ip = Ipv4Addr::new(198, 51, 100, 20 + i as u8);
            let sizes = (
                self.rng.range(50 * KB, 800 * KB),
                self.rng.range(5 * KB, 100 * KB),
                self.rng.range(SEC, 5 * SEC),
            );
            self.visit(h, t, name, ip, sizes)?;
            t += self.rng.range(20, 40) * SEC;
        }
        Ok(())
    }
}
