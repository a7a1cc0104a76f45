//! Typed configuration. Every key has a default here; `config/egresswatch.toml` lists them all
//! with comments, and a test proves that file parses to exactly `Config::default()`.
pub use crate::detect::allowlist::{AllowlistConfig, SegmentConfig, SegmentPolicy};
pub use crate::detect::clock::ClockConfig;
pub use crate::detect::fanout::FanOutConfig;
pub use crate::detect::flood::FloodConfig;
pub use crate::detect::geo_unusual::GeoUnusualConfig;
pub use crate::detect::long_lived::LongLivedConfig;
pub use crate::detect::relay::RelayConfig;
pub use crate::detect::score::ScoringConfig;
pub use crate::detect::sustained::SustainedConfig;
pub use crate::detect::torrent::TorrentConfig;
pub use crate::detect::windows::WindowsConfig;
pub use crate::enrich::geo::GeoConfig;
pub use crate::export::{ExportConfig, ExporterSampling};
pub use crate::report::ReportConfig;
pub use crate::source::live::LiveConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid CIDR '{0}': expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or fd00::/8")]
    Cidr(String),
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Networks whose hosts are "inside": egress is bytes from them to any other address.
    pub home_nets: HomeNets,
    pub flow: FlowConfig,
    pub reassembly: ReassemblyConfig,
    pub dns: DnsConfig,
    pub proxyware: ProxywareConfig,
    /// Per-host windows and baselines (DET0028 TimeWindow).
    pub windows: WindowsConfig,
    /// Business hours for off-hours weighting (DET0028 TimeWindow).
    pub business_hours: ClockConfig,
    pub geo: GeoConfig,
    /// Known-good destinations and hosts behavioural detectors never score.
    pub allowlist: AllowlistConfig,
    /// Network segments with their own policy (`[[segments]]`).
    pub segments: Vec<SegmentConfig>,
    pub scoring: ScoringConfig,
    pub detectors: DetectorsConfig,
    /// Flow export ingest (NetFlow, IPFIX, sFlow, VPC Flow Logs).
    pub export: ExportConfig,
    /// Live capture (`egresswatch live`).
    pub live: LiveConfig,
    /// Prometheus metrics and health endpoint of `live` and `collect`.
    pub metrics: crate::metrics::MetricsConfig,
    /// Syslog collectors that receive every alert (`[[syslog]]`).
    pub syslog: Vec<crate::alert::syslog::SyslogTarget>,
    /// The HTML report's bounds (`replay --report`).
    pub report: ReportConfig,
    /// Fleet mode: publishing to NATS JetStream (`[fleet]`).
    pub fleet: crate::fleet::FleetConfig,
    /// `egresswatch aggregate` (`[aggregate]`).
    pub aggregate: crate::fleet::aggregate::AggregateConfig,
    /// Sysmon evidence (`replay --endpoint-events`, `[endpoint]`).
    pub endpoint: crate::endpoint::EndpointConfig,
}

/// One table per behavioural detector; thresholds are DET0028's mutable elements.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorsConfig {
    pub long_lived: LongLivedConfig,
    pub sustained: SustainedConfig,
    pub fanout: FanOutConfig,
    pub torrent: TorrentConfig,
    pub flood: FloodConfig,
    pub relay: RelayConfig,
    pub geo_unusual: GeoUnusualConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            home_nets: default_home_nets(),
            flow: FlowConfig::default(),
            reassembly: ReassemblyConfig::default(),
            dns: DnsConfig::default(),
            proxyware: ProxywareConfig::default(),
            windows: WindowsConfig::default(),
            business_hours: ClockConfig::default(),
            geo: GeoConfig::default(),
            allowlist: AllowlistConfig::default(),
            segments: Vec::new(),
            scoring: ScoringConfig::default(),
            detectors: DetectorsConfig::default(),
            export: ExportConfig::default(),
            live: LiveConfig::default(),
            metrics: crate::metrics::MetricsConfig::default(),
            syslog: Vec::new(),
            report: ReportConfig::default(),
            fleet: crate::fleet::FleetConfig::default(),
            aggregate: crate::fleet::aggregate::AggregateConfig::default(),
            endpoint: crate::endpoint::EndpointConfig::default(),
        }
    }
}

fn default_home_nets() -> HomeNets {
    // RFC 1918, loopback, link-local, and IPv6 ULA/loopback/link-local: never routed outside.
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "fc00::/7",
        "::1/128",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Most flows held at once; beyond it the least recently seen flow is evicted (counted).
    pub max_flows: usize,
    /// A TCP flow with no packet for this long ends (Zeek's tcp_inactivity_timeout).
    pub tcp_idle_timeout_seconds: u64,
    /// A TCP flow closed by FIN from both sides or RST ends after this long without packets.
    pub tcp_closed_timeout_seconds: u64,
    /// A UDP flow with no packet for this long ends (Zeek's udp_inactivity_timeout).
    pub udp_idle_timeout_seconds: u64,
    /// ICMP and other IP protocols.
    pub other_idle_timeout_seconds: u64,
    /// A flow that lasts longer than this emits an interim update each time this much event time
    /// passes, so sessions lasting days are seen while they last.
    pub active_timeout_seconds: u64,
    /// QUIC handshake bytes reassembled per connection while its ClientHello is read; CRYPTO
    /// data beyond it ends reading (counted as `crypto_overflow`).
    pub quic_max_crypto_bytes: usize,
    /// Client datagrams of a QUIC connection read while its ClientHello is incomplete; then
    /// reading ends (counted as `datagram_limit`).
    pub quic_max_datagrams: u32,
}

impl FlowConfig {
    pub fn quic_limits(&self) -> crate::decode::quic::QuicLimits {
        crate::decode::quic::QuicLimits {
            max_crypto_bytes: self.quic_max_crypto_bytes,
            max_datagrams: self.quic_max_datagrams,
        }
    }
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            tcp_idle_timeout_seconds: 300,
            tcp_closed_timeout_seconds: 5,
            udp_idle_timeout_seconds: 60,
            other_idle_timeout_seconds: 60,
            active_timeout_seconds: 300,
            quic_max_crypto_bytes: crate::decode::quic::QuicLimits::default().max_crypto_bytes,
            quic_max_datagrams: crate::decode::quic::QuicLimits::default().max_datagrams,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReassemblyConfig {
    /// IP datagrams being reassembled at once; beyond it the oldest is evicted (counted).
    pub max_fragmented_datagrams: usize,
    /// Fragment bytes held across those datagrams; beyond it the oldest is evicted (counted).
    pub max_fragment_bytes: usize,
    /// An incomplete fragmented datagram is discarded after this long (RFC 791 suggests 15-120 s).
    pub fragment_timeout_seconds: u64,
    /// Out-of-order TCP bytes held per direction while waiting for a gap to fill.
    pub max_out_of_order_bytes: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_fragmented_datagrams: 4096,
            max_fragment_bytes: 32 * 1024 * 1024,
            fragment_timeout_seconds: 30,
            max_out_of_order_bytes: 32 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Answer entries (client, address -> name) held for naming later flows.
    pub cache_max_entries: usize,
    /// Answers with a shorter TTL are kept this long: clients connect after short TTLs expire.
    pub cache_min_ttl_seconds: u64,
    /// Answers with a longer TTL are kept only this long.
    pub cache_max_ttl_seconds: u64,
    /// Resolvers that answer DNS over HTTPS: flows to them on port 443 are marked
    /// `encrypted_dns`, as every flow to port 853 (DNS over TLS / QUIC) is.
    pub encrypted_resolvers: Vec<IpAddr>,
    /// Names of DNS-over-HTTPS services (suffix match on labels), for resolvers at other
    /// addresses.
    pub encrypted_resolver_names: Vec<String>,
    /// A host is reported as name-blind when at least this share of its answered outbound
    /// connections carried no name (no SNI, Host, CONNECT/SOCKS target or DNS-cache name)...
    pub name_blind_share: f64,
    /// ...and it had at least this many.
    pub name_blind_min_connections: u32,
    /// Inside hosts whose naming is counted; more are counted as untracked.
    pub max_naming_hosts: usize,
}

/// Public DNS-over-HTTPS resolvers of the big providers (their published anycast addresses).
const ENCRYPTED_RESOLVERS: [&str; 22] = [
    // Cloudflare
    "1.1.1.1",
    "1.0.0.1",
    "2606:4700:4700::1111",
    "2606:4700:4700::1001",
    // Google
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
    // Quad9
    "9.9.9.9",
    "149.112.112.112",
    "2620:fe::fe",
    "2620:fe::9",
    // AdGuard
    "94.140.14.14",
    "94.140.15.15",
    // OpenDNS
    "208.67.222.222",
    "208.67.220.220",
    // CleanBrowsing
    "185.228.168.168",
    "185.228.169.168",
    // NextDNS
    "45.90.28.0",
    "45.90.30.0",
    // Mullvad
    "194.242.2.2",
    // Control D
    "76.76.2.0",
];

const ENCRYPTED_RESOLVER_NAMES: [&str; 11] = [
    "cloudflare-dns.com",
    "one.one.one.one",
    "dns.google",
    "dns.google.com",
    "dns.quad9.net",
    "dns.adguard-dns.com",
    "doh.opendns.com",
    "doh.cleanbrowsing.org",
    "dns.nextdns.io",
    "dns.mullvad.net",
    "dns.controld.com",
];

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            cache_max_entries: 200_000,
            cache_min_ttl_seconds: 300,
            cache_max_ttl_seconds: 86_400,
            encrypted_resolvers: ENCRYPTED_RESOLVERS
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            encrypted_resolver_names: ENCRYPTED_RESOLVER_NAMES.map(String::from).to_vec(),
            name_blind_share: 0.5,
            name_blind_min_connections: 10,
            max_naming_hosts: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxywareConfig {
    /// Domain list file; empty means the list built into the binary
    /// (the shipped config/proxyware-domains.txt). A relative path is read from the config file's folder.
    pub domains_file: PathBuf,
    /// Observations of the same host and service within one window fold into one alert.
    pub alert_window_seconds: u64,
    /// Score of a host that only looked a proxyware name up.
    pub base_score: u8,
    /// Added when the host also connected (TLS SNI, HTTP Host/CONNECT, or a flow to a resolved address).
    pub connection_bonus: u8,
    /// Added when the host sent more than `upload_bonus_bytes` to the service in the window.
    pub upload_bonus: u8,
    pub upload_bonus_bytes: u64,
    /// Domains that never alert (suffix match on whole labels), e.g. a lab that studies proxyware.
    pub allow_domains: Vec<String>,
    /// Inside hosts that never alert.
    pub allow_hosts: Vec<Cidr>,
}

impl Default for ProxywareConfig {
    fn default() -> Self {
        ProxywareConfig {
            domains_file: PathBuf::new(),
            alert_window_seconds: 900,
            base_score: 60,
            connection_bonus: 20,
            upload_bonus: 10,
            upload_bonus_bytes: 1_000_000,
            allow_domains: Vec::new(),
            allow_hosts: Vec::new(),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if !config.proxyware.domains_file.as_os_str().is_empty()
            && config.proxyware.domains_file.is_relative()
        {
            config.proxyware.domains_file = dir.join(&config.proxyware.domains_file);
        }
        let binaries = &mut config.endpoint.binaries_file;
        if !binaries.as_os_str().is_empty() && binaries.is_relative() {
            *binaries = dir.join(&*binaries);
        }
        config.validate()?;
        Ok(config)
    }

    /// Keys that still load but no longer do anything: the caller warns about them.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.detectors.flood.max_tracked_flows.is_some() {
            keys.push("detectors.flood.max_tracked_flows");
        }
        keys
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("flow.max_flows", self.flow.max_flows as u64),
            (
                "flow.tcp_idle_timeout_seconds",
                self.flow.tcp_idle_timeout_seconds,
            ),
            (
                "flow.udp_idle_timeout_seconds",
                self.flow.udp_idle_timeout_seconds,
            ),
            (
                "flow.other_idle_timeout_seconds",
                self.flow.other_idle_timeout_seconds,
            ),
            (
                "flow.active_timeout_seconds",
                self.flow.active_timeout_seconds,
            ),
            (
                "flow.quic_max_datagrams",
                u64::from(self.flow.quic_max_datagrams),
            ),
            (
                "reassembly.fragment_timeout_seconds",
                self.reassembly.fragment_timeout_seconds,
            ),
            (
                "proxyware.alert_window_seconds",
                self.proxyware.alert_window_seconds,
            ),
            (
                "live.stats_interval_seconds",
                self.live.stats_interval_seconds,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be greater than 0"
                )));
            }
        }
        self.fleet.validate().map_err(ConfigError::Invalid)?;
        self.aggregate.validate().map_err(ConfigError::Invalid)?;
        for target in &self.syslog {
            crate::alert::syslog::transport::Endpoint::parse(&target.url)
                .map_err(|e| ConfigError::Invalid(format!("syslog url {e}")))?;
        }
        if self.dns.cache_min_ttl_seconds > self.dns.cache_max_ttl_seconds {
            return Err(ConfigError::Invalid(
                "dns.cache_min_ttl_seconds must not exceed dns.cache_max_ttl_seconds".into(),
            ));
        }
        if !(self.dns.name_blind_share > 0.0 && self.dns.name_blind_share <= 1.0) {
            return Err(ConfigError::Invalid(
                "dns.name_blind_share must be above 0 and at most 1".into(),
            ));
        }
        if !(self.live.drop_warn_percent >= 0.0 && self.live.drop_warn_percent <= 100.0) {
            return Err(ConfigError::Invalid(
                "live.drop_warn_percent must be between 0 and 100".into(),
            ));
        }
        Ok(())
    }

    pub fn is_inside(&self, addr: IpAddr) -> bool {
        self.home_nets.contains(addr)
    }
}

/// `home_nets`: the configured networks, plus the same compiled at load for `contains` (it runs
/// once or twice per flow update): per family (network, mask) pairs, and for IPv4 a bitmap of
/// the first octets any network covers, so most outside addresses are rejected by one test.
/// Built only from its CIDRs (`From`/`collect`), so the compiled form cannot go stale.
#[derive(Debug, Clone, Default)]
pub struct HomeNets {
    cidrs: Vec<Cidr>,
    v4_first_octets: [u64; 4],
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl HomeNets {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => {
                let ip = u32::from(ip);
                let octet = (ip >> 24) as usize;
                let word = self.v4_first_octets.get(octet / 64).copied().unwrap_or(0);
                word & (1 << (octet % 64)) != 0
                    && self.v4.iter().any(|&(net, mask)| ip & mask == net)
            }
            IpAddr::V6(ip) => {
                let ip = u128::from(ip);
                self.v6.iter().any(|&(net, mask)| ip & mask == net)
            }
        }
    }
}

impl From<Vec<Cidr>> for HomeNets {
    fn from(cidrs: Vec<Cidr>) -> Self {
        let mut nets = HomeNets {
            cidrs,
            ..HomeNets::default()
        };
        for cidr in &nets.cidrs {
            let prefix = u32::from(cidr.prefix);
            match cidr.addr {
                IpAddr::V4(net) => {
                    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                    let net = u32::from(net) & mask;
                    nets.v4.push((net, mask));
                    for octet in 0..256u32 {
                        if (octet << 24) & mask == net & 0xff00_0000
                            && let Some(word) = nets.v4_first_octets.get_mut(octet as usize / 64)
                        {
                            *word |= 1 << (octet % 64);
                        }
                    }
                }
                IpAddr::V6(net) => {
                    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                    nets.v6.push((u128::from(net) & mask, mask));
                }
            }
        }
        nets
    }
}

impl FromIterator<Cidr> for HomeNets {
    fn from_iter<I: IntoIterator<Item = Cidr>>(iter: I) -> Self {
        HomeNets::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl std::ops::Deref for HomeNets {
    type Target = [Cidr];
    fn deref(&self) -> &[Cidr] {
        &self.cidrs
    }
}

impl PartialEq for HomeNets {
    fn eq(&self, other: &Self) -> bool {
        self.cidrs == other.cidrs
    }
}

impl Serialize for HomeNets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.cidrs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for HomeNets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Cidr>::deserialize(d).map(HomeNets::from)
    }
}

/// An IP network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::Cidr(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/egresswatch.toml");
        let text = std::fs::read_to_string(&path).expect("shipped config exists");
        let parsed: Config = toml::from_str(&text).expect("shipped config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("[flow]\nmax_flow = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_flow"), "{err}");
    }

    #[test]
    fn cidr_membership() {
        let net: Cidr = "10.20.0.0/16".parse().unwrap();
        assert!(net.contains("10.20.255.1".parse().unwrap()));
        assert!(!net.contains("10.21.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.20.0.1".parse().unwrap()));
        let v6: Cidr = "fd00:20::/64".parse().unwrap();
        assert!(v6.contains("fd00:20::10".parse().unwrap()));
        assert!(!v6.contains("fd00:21::10".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("banana/8".parse::<Cidr>().is_err());
    }

    /// The compiled `HomeNets` answers as the plain walk over its CIDRs does.
    #[test]
    fn home_nets_agree_with_their_cidrs() {
        let sets = [
            vec!["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"],
            vec!["0.0.0.0/0"],
            vec!["96.0.0.0/3", "203.0.113.7", "2001:db8::/32", "::/0"],
            vec!["10.20.0.0/16", "10.20.30.0/24", "130.1.0.0/17"],
            vec![],
        ];
        let probes = [
            "10.1.2.3",
            "11.0.0.1",
            "172.31.255.255",
            "172.32.0.0",
            "192.168.9.9",
            "8.8.8.8",
            "95.255.255.255",
            "96.0.0.0",
            "127.255.0.1",
            "128.0.0.0",
            "203.0.113.7",
            "203.0.113.8",
            "10.20.30.40",
            "10.21.0.1",
            "130.1.127.255",
            "130.1.128.0",
            "0.0.0.0",
            "255.255.255.255",
            "fd00::1",
            "fe80::1",
            "2001:db8:ffff::1",
            "2001:db9::1",
            "::1",
            "::ffff:10.1.2.3",
        ];
        for set in &sets {
            let cidrs: Vec<Cidr> = set.iter().map(|c| c.parse().unwrap()).collect();
            let nets = HomeNets::from(cidrs.clone());
            assert_eq!(&*nets, cidrs.as_slice());
            for probe in probes {
                let ip: IpAddr = probe.parse().unwrap();
                let walk = cidrs.iter().any(|c| c.contains(ip));
                assert_eq!(nets.contains(ip), walk, "{probe} in {set:?}");
            }
        }
    }

    #[test]
    fn syslog_tables() {
        let c: Config = toml::from_str(
            "[[syslog]]\nurl = \"tls://logs.example.org\"\nformat = \"json\"\n\
             [[syslog]]\nurl = \"udp://127.0.0.1\"\n",
        )
        .unwrap();
        assert_eq!(c.syslog.len(), 2);
        assert!(toml::from_str::<Config>("[[syslog]]\nurl = \"udp://h\"\nport = 1\n").is_err());
    }

    #[test]
    fn zero_window_is_invalid() {
        let mut c = Config::default();
        c.proxyware.alert_window_seconds = 0;
        assert!(c.validate().is_err());
    }
}
