//! Where names are hidden. Name-based detection (proxyware domains, the DNS cache, SNI) is
//! blind for a host that resolves through an encrypted resolver (DNS over HTTPS, TLS or
//! QUIC) and connects without a readable name. Flows to such resolvers are marked, and hosts
//! whose connections mostly carry no name are reported, so an analyst knows which hosts only
//! the behavioural detectors can judge.
use crate::config::DnsConfig;
use crate::decode::packet::ip_proto;
use crate::enrich::domains::{DomainListError, DomainMatcher};
use rustc_hash::{FxHashMap, FxHashSet};
use std::net::IpAddr;

/// DNS over TLS and DNS over QUIC (RFC 7858, RFC 9250).
const ENCRYPTED_DNS_PORT: u16 = 853;
const HTTPS_PORT: u16 = 443;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EncryptedDns {
    /// DNS over HTTPS (over TCP or HTTP/3) to a listed resolver.
    Https,
    /// DNS over TLS: TCP port 853.
    Tls,
    /// DNS over QUIC: UDP port 853.
    Quic,
}

impl EncryptedDns {
    const ALL: [EncryptedDns; 3] = [EncryptedDns::Https, EncryptedDns::Tls, EncryptedDns::Quic];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EncryptedDns::Https => "doh",
            EncryptedDns::Tls => "dot",
            EncryptedDns::Quic => "doq",
        }
    }
}

/// The configured encrypted-DNS resolvers (`[dns] encrypted_resolvers` and
/// `encrypted_resolver_names`).
#[derive(Debug, Default)]
pub struct EncryptedResolvers {
    addresses: FxHashSet<IpAddr>,
    names: DomainMatcher,
}

impl EncryptedResolvers {
    pub fn new(config: &DnsConfig) -> Result<EncryptedResolvers, DomainListError> {
        Ok(EncryptedResolvers {
            addresses: config.encrypted_resolvers.iter().copied().collect(),
            names: DomainMatcher::from_list("encrypted-dns", &config.encrypted_resolver_names)?,
        })
    }

    /// The encrypted DNS a flow to `server` carries, if any: port 853 is DoT or DoQ whoever
    /// answers; port 443 is DoH when the server is a listed resolver or named like one.
    pub fn classify(
        &self,
        proto: u8,
        server: (IpAddr, u16),
        sni: Option<&str>,
    ) -> Option<EncryptedDns> {
        match (proto, server.1) {
            (ip_proto::TCP, ENCRYPTED_DNS_PORT) => Some(EncryptedDns::Tls),
            (ip_proto::UDP, ENCRYPTED_DNS_PORT) => Some(EncryptedDns::Quic),
            (ip_proto::TCP | ip_proto::UDP, HTTPS_PORT)
                if self.addresses.contains(&server.0)
                    || sni.is_some_and(|name| self.names.find(name).is_some()) =>
            {
                Some(EncryptedDns::Https)
            }
            _ => None,
        }
    }
}

/// One inside host's answered outbound connections, and how many carried a name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostNaming {
    pub connections: u32,
    pub unnamed: u32,
    /// ClientHellos with the encrypted_client_hello extension (ECH, or Chrome's GREASE).
    pub ech: u32,
    /// Flows to encrypted-DNS resolvers, and their kinds (bits of `EncryptedDns`).
    pub encrypted_dns: u32,
    pub encrypted_kinds: u8,
    /// The first encrypted resolver seen, to name in the report.
    pub resolver: Option<(EncryptedDns, IpAddr)>,
}

/// A host reported as name-blind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameBlindHost {
    pub host: IpAddr,
    pub naming: HostNaming,
}

/// A host that resolved through encrypted DNS: its DNS names are hidden from the sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedDnsHost {
    pub host: IpAddr,
    pub flows: u32,
    pub kinds: Vec<EncryptedDns>,
}

impl std::fmt::Display for EncryptedDnsHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<&str> = self.kinds.iter().map(|k| k.as_str()).collect();
        write!(
            f,
            "{}: {} ({} flows)",
            self.host,
            kinds.join(", "),
            self.flows
        )
    }
}

/// Per-host naming counts, bounded by `[dns] max_naming_hosts`.
#[derive(Debug, Default)]
pub struct NameCoverage {
    hosts: FxHashMap<IpAddr, HostNaming>,
    max_hosts: usize,
    /// Hosts not counted because the bound was reached.
    pub untracked_hosts: u64,
    untracked: FxHashSet<IpAddr>,
}

impl NameCoverage {
    pub fn new(max_hosts: usize) -> NameCoverage {
        NameCoverage {
            max_hosts,
            ..NameCoverage::default()
        }
    }

    fn host(&mut self, host: IpAddr) -> Option<&mut HostNaming> {
        if !self.hosts.contains_key(&host) && self.hosts.len() >= self.max_hosts {
            // Counted once per host, remembered only up to the same bound.
            if self.untracked.len() < self.max_hosts && self.untracked.insert(host) {
                self.untracked_hosts += 1;
            }
            return None;
        }
        Some(self.hosts.entry(host).or_default())
    }

    /// An answered connection of `host` ended.
    pub fn connection(&mut self, host: IpAddr, named: bool, ech: bool) {
        if let Some(h) = self.host(host) {
            h.connections += 1;
            h.unnamed += u32::from(!named);
            h.ech += u32::from(ech);
        }
    }

    /// A flow of `host` to an encrypted-DNS resolver ended.
    pub fn encrypted_dns(&mut self, host: IpAddr, kind: EncryptedDns, resolver: IpAddr) {
        if let Some(h) = self.host(host) {
            h.encrypted_dns += 1;
            h.encrypted_kinds |= kind.bit();
            h.resolver.get_or_insert((kind, resolver));
        }
    }

    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// Hosts that used encrypted DNS, in address order.
    pub fn encrypted_dns_hosts(&self) -> Vec<EncryptedDnsHost> {
        let mut hosts: Vec<EncryptedDnsHost> = self
            .hosts
            .iter()
            .filter(|(_, n)| n.encrypted_dns > 0)
            .map(|(&host, n)| EncryptedDnsHost {
                host,
                flows: n.encrypted_dns,
                kinds: EncryptedDns::ALL
                    .into_iter()
                    .filter(|k| n.encrypted_kinds & k.bit() != 0)
                    .collect(),
            })
            .collect();
        hosts.sort_by_key(|h| h.host);
        hosts
    }

    /// Hosts with at least `min_connections` connections of which at least `share` had no
    /// name, most unnamed first.
    pub fn name_blind(&self, share: f64, min_connections: u32) -> Vec<NameBlindHost> {
        let mut blind: Vec<NameBlindHost> = self
            .hosts
            .iter()
            .filter(|(_, n)| {
                n.connections >= min_connections.max(1)
                    && f64::from(n.unnamed) >= share * f64::from(n.connections)
            })
            .map(|(&host, &naming)| NameBlindHost { host, naming })
            .collect();
        blind.sort_by(|a, b| {
            b.naming
                .unnamed
                .cmp(&a.naming.unnamed)
                .then(a.host.cmp(&b.host))
        });
        blind
    }
}

impl std::fmt::Display for NameBlindHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = &self.naming;
        write!(
            f,
            "{}: {} of {} connections without a name",
            self.host, n.unnamed, n.connections
        )?;
        if let Some((kind, resolver)) = n.resolver {
            write!(
                f,
                "; encrypted DNS: {} via {resolver} ({} flows)",
                kind.as_str(),
                n.encrypted_dns
            )?;
        }
        if n.ech > 0 {
            write!(f, "; {} ClientHellos offered ECH", n.ech)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolvers() -> EncryptedResolvers {
        let config = DnsConfig::default();
        EncryptedResolvers::new(&config).unwrap()
    }

    #[test]
    fn port_853_and_listed_resolvers_are_encrypted_dns() {
        let r = resolvers();
        let addr = |s: &str| s.parse::<IpAddr>().unwrap();
        let tcp = ip_proto::TCP;
        let udp = ip_proto::UDP;
        assert_eq!(
            r.classify(tcp, (addr("192.0.2.9"), 853), None),
            Some(EncryptedDns::Tls)
        );
        assert_eq!(
            r.classify(udp, (addr("192.0.2.9"), 853), None),
            Some(EncryptedDns::Quic)
        );
        assert_eq!(
            r.classify(tcp, (addr("1.1.1.1"), 443), None),
            Some(EncryptedDns::Https)
        );
        assert_eq!(
            r.classify(udp, (addr("2001:4860:4860::8888"), 443), None),
            Some(EncryptedDns::Https)
        );
        // By name: a resolver behind an address the list does not hold.
        assert_eq!(
            r.classify(
                tcp,
                (addr("192.0.2.9"), 443),
                Some("Mozilla.Cloudflare-DNS.com")
            ),
            Some(EncryptedDns::Https)
        );
        assert_eq!(
            r.classify(tcp, (addr("192.0.2.9"), 443), Some("example.com")),
            None
        );
        // Plain DNS to the same resolver is readable.
        assert_eq!(r.classify(udp, (addr("1.1.1.1"), 53), None), None);
    }

    #[test]
    fn hosts_mostly_without_names_are_reported_and_the_map_is_bounded() {
        let mut c = NameCoverage::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for i in 0..10 {
            c.connection(a, i < 2, false);
            c.connection(b, i < 8, true);
        }
        c.encrypted_dns(a, EncryptedDns::Https, "1.1.1.1".parse().unwrap());
        c.encrypted_dns(a, EncryptedDns::Quic, "192.0.2.1".parse().unwrap());
        let users = c.encrypted_dns_hosts();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].to_string(), "10.0.0.1: doh, doq (2 flows)");
        let blind = c.name_blind(0.5, 10);
        assert_eq!(blind.len(), 1);
        assert_eq!(blind[0].host, a);
        assert_eq!(blind[0].naming.unnamed, 8);
        assert_eq!(
            blind[0].to_string(),
            "10.0.0.1: 8 of 10 connections without a name; encrypted DNS: doh via 1.1.1.1 (2 flows)"
        );
        assert!(c.name_blind(0.5, 11).is_empty());
        // A third host is over the bound: counted, not held.
        c.connection("10.0.0.3".parse().unwrap(), false, false);
        c.connection("10.0.0.3".parse().unwrap(), false, false);
        assert_eq!((c.hosts(), c.untracked_hosts), (2, 1));
    }
}
