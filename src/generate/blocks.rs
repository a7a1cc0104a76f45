//! Traffic building blocks shared by the scenarios: hosts, DNS exchanges, TLS / HTTP /
//! CONNECT / opaque TCP sessions, and the ground-truth book-keeping that goes with them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::GenerateError;
use super::conv::{Conv, Data, Msg, Tally};
use super::proto::{self, QTYPE_A, QTYPE_AAAA, QTYPE_HTTPS, RData, Rr};
use super::rng::Rng;
use super::wire::{Endpoint, GATEWAY_MAC, mac_for};

/// The proxyware names the scenarios use, with the service each belongs to. Exact names
/// only: the generator decides what it emits, the sensor does the suffix matching.
pub(crate) const PROXYWARE_NAMES: [(&str, &str); 7] = [
    ("api.honeygain.com", "Honeygain"),
    ("pawns.app", "IPRoyal Pawns"),
    ("api.pawns.app", "IPRoyal Pawns"),
    ("earnapp.com", "EarnApp"),
    ("client.earnapp.com", "EarnApp"),
    ("traffmonetizer.com", "Traffmonetizer"),
    ("packetstream.io", "PacketStream"),
];

/// Order of services in `expect_alerts`.
const SERVICE_ORDER: [&str; 5] = [
    "Honeygain",
    "IPRoyal Pawns",
    "EarnApp",
    "Traffmonetizer",
    "PacketStream",
];

pub(crate) fn proxyware_service(name: &str) -> Option<&'static str> {
    PROXYWARE_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, s)| *s)
}

pub(crate) const ALPN: [&str; 2] = ["h2", "http/1.1"];
pub(crate) const RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 2);
pub(crate) const RESOLVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x20, 0, 0, 0, 0, 0, 2);

// ---------------------------------------------------------------------------------------
// Hosts and endpoints

pub(crate) struct Host {
    pub ip: IpAddr,
    ttl: u8,
    next_port: u16,
}

impl Host {
    pub(crate) fn new(rng: &mut Rng, ip: IpAddr, ttl: u8) -> Host {
        Host {
            ip,
            ttl,
            next_port: 49152 + rng.below(12000) as u16,
        }
    }

    /// A fresh ephemeral port, stepping like OS allocators do so 5-tuples never repeat.
    pub(crate) fn client(&mut self, rng: &mut Rng) -> Endpoint {
        let port = self.next_port;
        let step = 1 + rng.below(7) as u16;
        self.next_port = if port > 65000 { 49152 } else { port + step };
        Endpoint {
            mac: mac_for(self.ip),
            ip: self.ip,
            port,
            ttl: self.ttl,
        }
    }

    pub(crate) fn resolver(&self) -> Endpoint {
        let ip = match self.ip {
            IpAddr::V4(_) => IpAddr::V4(RESOLVER_V4),
            IpAddr::V6(_) => IpAddr::V6(RESOLVER_V6),
        };
        Endpoint {
            mac: mac_for(ip),
            ip,
            port: 53,
            ttl: 64,
        }
    }
}

/// A server outside: reached through the gateway, a dozen hops away.
pub(crate) fn remote(ip: IpAddr, port: u16, ttl: u8) -> Endpoint {
    Endpoint {
        mac: GATEWAY_MAC,
        ip,
        port,
        ttl,
    }
}

// ---------------------------------------------------------------------------------------
// DNS

/// What the resolver knows about a name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Zone {
    pub cnames: Vec<String>,
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
    pub nxdomain: bool,
}

/// The registrable-looking parent used as the SOA owner in negative answers.
fn soa_zone(name: &str) -> &str {
    let mut dots = name.rmatch_indices('.');
    match (dots.next(), dots.next()) {
        (Some(_), Some((i, _))) => name.get(i + 1..).unwrap_or(name),
        _ => name,
    }
}

/// One query and its answer over UDP. `latency_us` is the resolver's response time.
pub(crate) fn dns_exchange(
    rng: &mut Rng,
    client: Endpoint,
    resolver: Endpoint,
    qname: &str,
    qtype: u16,
    zone: &Zone,
    latency_us: u64,
) -> Result<Conv, GenerateError> {
    let id = rng.next_u16();
    let query = proto::dns_query(id, qname, qtype)?;
    let response = if zone.nxdomain {
        proto::dns_response(
            id,
            qname,
            qtype,
            proto::RCODE_NXDOMAIN,
            &[],
            Some(soa_zone(qname)),
        )?
    } else {
        let mut answers = Vec::new();
        let mut owner = qname.to_string();
        let ttl = 60 + 30 * rng.below(10) as u32;
        for target in &zone.cnames {
            answers.push(Rr {
                owner: owner.clone(),
                ttl,
                data: RData::Cname(target.clone()),
            });
            owner.clone_from(target);
        }
        let last = match qtype {
            QTYPE_A => zone.v4.map(RData::A),
            QTYPE_AAAA => zone.v6.map(RData::Aaaa),
            QTYPE_HTTPS => Some(RData::Https {
                alpn: vec!["h2", "h3"],
                v4hint: zone.v4.into_iter().collect(),
                v6hint: zone.v6.into_iter().collect(),
            }),
            _ => None,
        };
        let nodata = last.is_none();
        if let Some(data) = last {
            answers.push(Rr { owner, ttl, data });
        }
        // NOERROR without the requested type carries the SOA, like real resolvers.
        let soa = nodata.then(|| soa_zone(qname));
        proto::dns_response(id, qname, qtype, 0, &answers, soa)?
    };
    Ok(Conv::udp(
        rng,
        client,
        resolver,
        vec![Msg::client(query), Msg::server(response).think(latency_us)],
    ))
}

// ---------------------------------------------------------------------------------------
// TCP sessions

#[derive(Debug, Clone, Copy)]
pub(crate) enum Size {
    Bytes(usize),
    /// Full-size bulk TLS records (about 16 KB each).
    Records(u32),
}

/// One request/response exchange inside a TLS session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round {
    pub up: Size,
    pub down: Size,
    /// Client idle time before sending the request.
    pub think_us: u64,
}

pub(crate) struct TlsPlan<'a> {
    pub sni: Option<&'a str>,
    /// The hello offers ECH: `sni` is then the outer, public name.
    pub ech: bool,
    /// Size of the first ClientHello segment when it is split across two segments.
    pub split: Option<usize>,
    pub rounds: Vec<Round>,
    /// Server processing time before each response.
    pub server_us: u64,
}

fn data_msg(rng: &mut Rng, from_client: bool, size: Size, think_us: u64) -> Msg {
    let data = match size {
        Size::Bytes(n) => Data::Bytes(proto::app_data(rng, n)),
        Size::Records(k) => Data::Bulk { records: k },
    };
    Msg {
        from_client,
        data,
        first_seg: None,
        think_us,
    }
}

/// TLS 1.3 session messages: ClientHello, server flight, client Finished, then rounds.
pub(crate) fn tls_msgs(rng: &mut Rng, plan: &TlsPlan<'_>) -> Result<Vec<Msg>, GenerateError> {
    let mut sid = [0u8; 32];
    rng.fill(&mut sid);
    let hello = match (plan.ech, plan.sni) {
        (true, Some(outer)) => proto::client_hello_ech(rng, &sid, outer, &ALPN)?,
        _ => proto::client_hello(rng, &sid, plan.sni, &ALPN)?,
    };
    let cert_len = 1400 + rng.below(1000) as usize;
    let mut msgs = vec![
        Msg {
            first_seg: plan.split,
            ..Msg::client(hello)
        },
        Msg::server(proto::server_flight(rng, &sid, cert_len)?).think(plan.server_us),
    ];
    for (i, r) in plan.rounds.iter().enumerate() {
        match (i, r.up) {
            // The first request rides with the client's Finished, as in a real 1-RTT flight.
            (0, Size::Bytes(n)) => msgs.push(Msg::client(proto::client_finished(rng, n))),
            (0, up) => {
                msgs.push(Msg::client(proto::client_finished(rng, 0)));
                msgs.push(data_msg(rng, true, up, 0));
            }
            (_, up) => msgs.push(data_msg(rng, true, up, r.think_us)),
        }
        msgs.push(data_msg(rng, false, r.down, plan.server_us));
    }
    Ok(msgs)
}

/// Plain HTTP/1.1 GETs on one keep-alive connection.
pub(crate) fn http_msgs(
    rng: &mut Rng,
    host: &str,
    requests: &[(&str, usize)],
    server_us: u64,
) -> Vec<Msg> {
    let mut msgs = Vec::new();
    for (i, (path, body)) in requests.iter().enumerate() {
        let think = if i == 0 {
            0
        } else {
            300_000 + rng.below(2_000_000)
        };
        msgs.push(
            Msg::client(proto::http_get(
                host,
                path,
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            ))
            .think(think),
        );
        let ctype = if path.ends_with(".js") {
            "application/javascript"
        } else {
            "text/html"
        };
        msgs.push(Msg::server(proto::http_response(rng, ctype, *body)).think(server_us));
    }
    msgs
}

/// HTTP CONNECT through a proxy, then the TLS session inside the tunnel.
pub(crate) fn connect_msgs(
    rng: &mut Rng,
    target: &str,
    plan: &TlsPlan<'_>,
) -> Result<Vec<Msg>, GenerateError> {
    let mut msgs = vec![
        Msg::client(proto::http_connect(target, 443)),
        Msg::server(proto::http_connect_ok()).think(plan.server_us),
    ];
    msgs.extend(tls_msgs(rng, plan)?);
    Ok(msgs)
}

/// Opaque binary exchange: no TLS, no HTTP, nothing that names the peer.
pub(crate) fn opaque_msgs(rng: &mut Rng, rounds: &[(usize, usize)], server_us: u64) -> Vec<Msg> {
    let mut msgs = Vec::new();
    for (i, (up, down)) in rounds.iter().enumerate() {
        let think = if i == 0 {
            0
        } else {
            200_000 + rng.below(1_500_000)
        };
        let mut first = rng.bytes(*up);
        // Keep the first byte away from TLS/HTTP/SOCKS signatures so no parser claims it.
        if let Some(b) = first.first_mut() {
            *b = 0xa7;
        }
        msgs.push(Msg::client(first).think(think));
        msgs.push(Msg::server(rng.bytes(*down)).think(server_us));
    }
    msgs
}

// ---------------------------------------------------------------------------------------
// Ground truth

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Via {
    Dns,
    Sni,
    Http,
    DnsCache,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Dns => "dns",
            Via::Sni => "sni",
            Via::Http => "http",
            Via::DnsCache => "dns_cache",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExpectAlert {
    pub branch: &'static str,
    pub service: &'static str,
    pub names: Vec<String>,
    pub via: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostTruth {
    pub role: &'static str,
    pub expect_alerts: Vec<ExpectAlert>,
    /// What the sensor can name of this host's traffic (`hidden-names` scenario only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<HiddenTruth>,
}

/// A host's readable and hidden names, as the generator made them.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct HiddenTruth {
    /// Answered outbound TCP/UDP connections, DNS and encrypted DNS excepted...
    pub connections: u32,
    /// ...and those with no SNI, Host or address resolved in plain DNS.
    pub unnamed: u32,
    /// Flows to encrypted-DNS resolvers, by kind ("doh", "dot", "doq").
    pub encrypted_dns: BTreeMap<&'static str, u32>,
    /// ClientHellos with an encrypted_client_hello extension.
    pub ech_hellos: u32,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct FlowTruth {
    pub proto: &'static str,
    pub orig_h: String,
    pub orig_p: u16,
    pub resp_h: String,
    pub resp_p: u16,
    pub orig_pkts: u64,
    pub resp_pkts: u64,
    pub orig_ip_bytes: u64,
    pub resp_ip_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl FlowTruth {
    pub(crate) fn new(
        tcp: bool,
        c: &Endpoint,
        s: &Endpoint,
        t: &Tally,
        name: Option<&str>,
    ) -> FlowTruth {
        FlowTruth {
            proto: if tcp { "tcp" } else { "udp" },
            orig_h: c.ip.to_string(),
            orig_p: c.port,
            resp_h: s.ip.to_string(),
            resp_p: s.port,
            orig_pkts: t.orig_pkts,
            resp_pkts: t.resp_pkts,
            orig_ip_bytes: t.orig_ip_bytes,
            resp_ip_bytes: t.resp_ip_bytes,
            name: name.map(str::to_string),
        }
    }
}

#[derive(Default)]
struct HostNotes {
    role: &'static str,
    hidden: Option<HiddenTruth>,
    /// (service, names in first-seen order, vias)
    seen: Vec<(&'static str, Vec<String>, Vec<Via>)>,
}

/// Records which proxyware names each host exposes, and how, as packets are generated,
/// so the expected alerts always match what is actually in the capture.
#[derive(Default)]
pub(crate) struct HostBook {
    hosts: BTreeMap<IpAddr, HostNotes>,
}

impl HostBook {
    pub(crate) fn add_host(&mut self, ip: IpAddr, role: &'static str) {
        self.hosts.entry(ip).or_default().role = role;
    }

    pub(crate) fn hidden(&mut self, ip: IpAddr, truth: HiddenTruth) {
        self.hosts.entry(ip).or_default().hidden = Some(truth);
    }

    pub(crate) fn note(&mut self, ip: IpAddr, name: &str, via: Via) {
        let Some(service) = proxyware_service(name) else {
            return;
        };
        let notes = self.hosts.entry(ip).or_default();
        let i = match notes.seen.iter().position(|(s, _, _)| *s == service) {
            Some(i) => i,
            None => {
                notes.seen.push((service, Vec::new(), Vec::new()));
                notes.seen.len() - 1
            }
        };
        if let Some((_, names, vias)) = notes.seen.get_mut(i) {
            let name = name.to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
            if !vias.contains(&via) {
                vias.push(via);
                vias.sort();
            }
        }
    }

    pub(crate) fn truth(&self) -> Vec<(IpAddr, HostTruth)> {
        self.hosts
            .iter()
            .map(|(ip, n)| {
                let mut alerts: Vec<ExpectAlert> = n
                    .seen
                    .iter()
                    .map(|(service, names, vias)| ExpectAlert {
                        branch: "ProxywareDomain",
                        service,
                        names: names.clone(),
                        via: vias.iter().map(|v| v.as_str()).collect(),
                    })
                    .collect();
                alerts.sort_by_key(|a| SERVICE_ORDER.iter().position(|s| *s == a.service));
                (
                    *ip,
                    HostTruth {
                        role: n.role,
                        expect_alerts: alerts,
                        hidden: n.hidden.clone(),
                    },
                )
            })
            .collect()
    }
}
