//! Offline replay: files -> decode -> reassembly -> flow table -> names, logs, detection.
use crate::alert::Alert;
use crate::config::Config;
use crate::decode::dns;
use crate::decode::dns::{DnsMessage, DnsRdata};
use crate::decode::http::RequestHead;
use crate::decode::packet::{Decoded, Layer, Transport, decode_frame, decode_transport, ip_proto};
use crate::decode::socks::SocksRequest;
use crate::decode::tls::{ClientHelloInfo, ServerInfo};
use crate::detect::allowlist::apply_segment_policy;
use crate::detect::engine::{Engine, EngineError};
use crate::detect::proxyware::{NameObservation, ProxywareDetector};
use crate::enrich::dns_cache::DnsCache;
use crate::enrich::domains::DomainMatcher;
use crate::flow::defrag::{DefragOutcome, Defragmenter};
use crate::flow::key::Uid;
use crate::flow::table::{Flow, FlowTable};
use crate::flow::update::{FlowSink, FlowUpdate, NameSource, UpdateKind};
use crate::logs::ZeekLogs;
use crate::source::pcap_file::{CaptureReader, SourceError};
use crate::stats::Stats;
use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const NS: u64 = 1_000_000_000;
/// Expiry, fragment timeouts and alert windows are checked once per second of event time.
const TICK_NS: u64 = NS;

/// The proxyware list shipped in the repository, built into the binary.
pub const BUILTIN_DOMAINS: &str = include_str!("../config/proxyware-domains.txt");

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("log output: {0}")]
    Logs(io::Error),
    #[error("alert output: {0}")]
    Alerts(io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("proxyware domain list {path}: {reason}")]
    DomainList { path: String, reason: String },
}

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub log_dir: Option<PathBuf>,
    /// Baseline state loaded at the start (when the file exists) and saved at the end.
    pub state: Option<PathBuf>,
    /// Keep every name and finished flow in the report (tests and small captures only).
    pub collect: bool,
}

/// A finished flow as tshark's conversation table counts it; `a` is the originator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub proto: u8,
    pub a: (IpAddr, u16),
    pub b: (IpAddr, u16),
    pub frames_a_to_b: u64,
    pub bytes_a_to_b: u64,
    pub frames_b_to_a: u64,
    pub bytes_b_to_a: u64,
    pub orig_ip_bytes: u64,
    pub resp_ip_bytes: u64,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub dns_names: BTreeSet<String>,
    pub snis: BTreeSet<String>,
    pub http_hosts: BTreeSet<String>,
    pub conversations: Vec<Conversation>,
}

#[derive(Debug)]
pub struct RunReport {
    pub alerts: Vec<Alert>,
    pub stats: Stats,
    pub observed: Observed,
}

/// Loads the proxyware list named in the config, or the built-in one.
pub fn load_domains(config: &Config) -> Result<(DomainMatcher, DomainMatcher), PipelineError> {
    let path = &config.proxyware.domains_file;
    let (text, shown) = if path.as_os_str().is_empty() {
        (BUILTIN_DOMAINS.to_string(), "(built-in)".to_string())
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineError::DomainList {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        (text, path.display().to_string())
    };
    let matcher = DomainMatcher::parse(&text).map_err(|e| PipelineError::DomainList {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let allow =
        DomainMatcher::from_list("allowlist", &config.proxyware.allow_domains).map_err(|e| {
            PipelineError::DomainList {
                path: "proxyware.allow_domains".into(),
                reason: e.to_string(),
            }
        })?;
    Ok((matcher, allow))
}

/// Everything downstream of the flow table.
struct Sensor<'c> {
    config: &'c Config,
    dns_cache: DnsCache,
    detector: ProxywareDetector,
    engine: Engine,
    logs: Option<ZeekLogs>,
    log_error: Option<io::Error>,
    stats: Stats,
    collect: bool,
    observed: Observed,
    /// Flows already named by the DNS cache at an interim update (bounded by max_flows).
    cache_reported: rustc_hash::FxHashSet<Uid>,
}

impl Sensor<'_> {
    /// The inside host of a client-server pair, if the client is inside.
    fn inside_client(&self, client: IpAddr) -> Option<IpAddr> {
        self.config.is_inside(client).then_some(client)
    }

    /// Segment policies for ProxywareDomain alerts (behavioural ones get them in the scorer).
    fn segment_policy(&mut self, alerts: &mut Vec<Alert>) {
        let before = alerts.len();
        alerts.retain_mut(|a| apply_segment_policy(&self.config.segments, a));
        self.stats.suppressed_by_segment += (before - alerts.len()) as u64;
    }

    fn log(&mut self, result: io::Result<()>) {
        if let Err(e) = result {
            self.log_error.get_or_insert(e);
        }
    }

    fn name(&mut self, obs: NameObservation<'_>) {
        if self.config.is_inside(obs.host) {
            self.detector.observe(&obs);
        }
    }

    /// Names in a DNS message: questions from the asking host, answers into its cache.
    fn dns_names(&mut self, ts_ns: u64, client: IpAddr, uid: Option<Uid>, msg: &DnsMessage) {
        for q in &msg.questions {
            if self.collect {
                self.observed.dns_names.insert(q.name.clone());
            }
            if !msg.is_response {
                self.name(NameObservation {
                    ts_ns,
                    host: client,
                    destination: None,
                    name: &q.name,
                    source: NameSource::DnsQuery,
                    flow: uid,
                    is_answer: false,
                });
            }
        }
        if !msg.is_response {
            return;
        }
        let Some(question) = msg.questions.first() else {
            return;
        };
        let name: Arc<str> = Arc::from(question.name.as_str());
        for answer in &msg.answers {
            let addr = match answer.data {
                DnsRdata::A(a) => IpAddr::V4(a),
                DnsRdata::Aaaa(a) => IpAddr::V6(a),
                _ => continue,
            };
            self.dns_cache
                .insert(client, addr, name.clone(), answer.ttl, ts_ns);
            self.name(NameObservation {
                ts_ns,
                host: client,
                destination: Some((addr, 0)),
                name: &name,
                source: NameSource::DnsQuery,
                flow: uid,
                is_answer: true,
            });
        }
    }

    fn connection_name(&mut self, flow: &Flow, ts_ns: u64, name: &str, source: NameSource) {
        if let Some(host) = self.inside_client(flow.orig.0) {
            self.name(NameObservation {
                ts_ns,
                host,
                destination: Some(flow.resp),
                name,
                source,
                flow: Some(flow.uid),
                is_answer: false,
            });
        }
    }

    /// A flow with no name of its own (no SNI, Host, CONNECT or SOCKS target) to an address the
    /// host resolved is named by the DNS cache. Decided at its first update, once the first
    /// bytes have been read, so a flow that names itself is not reported twice.
    fn cache_named_flow(&mut self, flow: &Flow, kind: UpdateKind) {
        let Some(names) = flow.names() else { return };
        let Some(name) = names.dns_name.as_deref() else {
            return;
        };
        let own_name = names.sni.is_some()
            || names.http_host.is_some()
            || names.connect_target.is_some()
            || names.socks_target.is_some();
        let first_update = self.cache_reported.insert(flow.uid);
        if kind == UpdateKind::Final {
            self.cache_reported.remove(&flow.uid);
        }
        if own_name || !first_update || !self.config.is_inside(flow.orig.0) {
            return;
        }
        self.detector.observe(&NameObservation {
            ts_ns: flow.last_ns,
            host: flow.orig.0,
            destination: Some(flow.resp),
            name,
            source: NameSource::DnsCache,
            flow: Some(flow.uid),
            is_answer: false,
        });
    }

    fn update_for<'f>(&self, flow: &'f Flow, kind: UpdateKind) -> FlowUpdate<'f> {
        let orig_inside = self.config.is_inside(flow.orig.0) || !self.config.is_inside(flow.resp.0);
        let (inside, outside, out_b, in_b, out_p, in_p) = if orig_inside {
            (
                flow.orig,
                flow.resp,
                flow.orig_ip_bytes,
                flow.resp_ip_bytes,
                flow.orig_pkts,
                flow.resp_pkts,
            )
        } else {
            (
                flow.resp,
                flow.orig,
                flow.resp_ip_bytes,
                flow.orig_ip_bytes,
                flow.resp_pkts,
                flow.orig_pkts,
            )
        };
        let conn_state = if flow.proto == ip_proto::TCP {
            flow.tcp.conn_state()
        } else {
            crate::flow::tcp_state::udp_conn_state(flow.orig_pkts, flow.resp_pkts)
        };
        FlowUpdate {
            uid: flow.uid,
            kind,
            proto: flow.proto,
            inside: inside.0,
            inside_port: inside.1,
            outside: outside.0,
            outside_port: outside.1,
            inbound: !orig_inside,
            first_ns: flow.first_ns,
            last_ns: flow.last_ns,
            bytes_out: out_b,
            bytes_in: in_b,
            pkts_out: out_p,
            pkts_in: in_p,
            answered: flow.resp_pkts > 0,
            conn_state,
            services: flow.services,
            names: flow.names(),
        }
    }
}

impl FlowSink for Sensor<'_> {
    fn resolved_name(
        &mut self,
        _uid: Uid,
        client: IpAddr,
        server: (IpAddr, u16),
        ts_ns: u64,
    ) -> Option<Arc<str>> {
        self.dns_cache.lookup(client, server.0, ts_ns)
    }

    fn flow(&mut self, flow: &Flow, kind: UpdateKind) {
        self.cache_named_flow(flow, kind);
        let update = self.update_for(flow, kind);
        self.detector
            .flow_update(&update, kind == UpdateKind::Final);
        self.engine.flow_update(&update);
        if kind == UpdateKind::Interim {
            return;
        }
        if let Some(logs) = self.logs.as_mut() {
            let result = logs.conn(flow);
            self.log(result);
        }
        if self.collect && matches!(flow.proto, ip_proto::TCP | ip_proto::UDP) {
            let names = flow
                .names()
                .and_then(|n| n.best())
                .map(|n| vec![n.to_string()])
                .unwrap_or_default();
            self.observed.conversations.push(Conversation {
                proto: flow.proto,
                a: flow.orig,
                b: flow.resp,
                frames_a_to_b: flow.orig_pkts,
                bytes_a_to_b: flow.orig_wire_bytes,
                frames_b_to_a: flow.resp_pkts,
                bytes_b_to_a: flow.resp_wire_bytes,
                orig_ip_bytes: flow.orig_ip_bytes,
                resp_ip_bytes: flow.resp_ip_bytes,
                names,
            });
        }
    }

    fn dns(&mut self, flow: &Flow, ts_ns: u64, from_orig: bool, msg: &DnsMessage) {
        self.stats.dns_messages += 1;
        // The asking host sends queries and receives responses.
        let (sender, receiver) = if from_orig {
            (flow.orig.0, flow.resp.0)
        } else {
            (flow.resp.0, flow.orig.0)
        };
        let client = if msg.is_response { receiver } else { sender };
        self.dns_names(ts_ns, client, Some(flow.uid), msg);
        if let Some(logs) = self.logs.as_mut() {
            let result = logs.dns(flow, ts_ns, msg);
            self.log(result);
        }
    }

    fn tls(&mut self, flow: &Flow, ts_ns: u64, hello: &ClientHelloInfo) {
        self.stats.tls_client_hellos += 1;
        if let Some(sni) = &hello.sni {
            if self.collect {
                self.observed.snis.insert(sni.clone());
            }
            self.connection_name(flow, ts_ns, sni, NameSource::TlsSni);
        }
        if let Some(logs) = self.logs.as_mut() {
            let result = logs.ssl(flow, ts_ns, hello);
            self.log(result);
        }
    }

    fn tls_server(&mut self, flow: &Flow, _ts_ns: u64, info: &ServerInfo) {
        if let Some(logs) = self.logs.as_mut() {
            let result = logs.ssl_server(flow, info);
            self.log(result);
        }
    }

    fn http(&mut self, flow: &Flow, ts_ns: u64, request: &RequestHead) {
        self.stats.http_requests += 1;
        if let Some(host) = &request.host {
            if self.collect {
                self.observed.http_hosts.insert(host.clone());
            }
            self.connection_name(flow, ts_ns, host_without_port(host), NameSource::HttpHost);
        }
        if request.method.eq_ignore_ascii_case("CONNECT") {
            self.connection_name(
                flow,
                ts_ns,
                host_without_port(&request.uri),
                NameSource::HttpConnect,
            );
        }
        if let Some(logs) = self.logs.as_mut() {
            let result = logs.http(flow, ts_ns, request);
            self.log(result);
        }
    }

    fn socks(&mut self, flow: &Flow, ts_ns: u64, request: &SocksRequest) {
        self.stats.socks_requests += 1;
        self.connection_name(flow, ts_ns, &request.target, NameSource::Socks);
    }
}

/// "host:port" or "[v6]:port" to the host part.
fn host_without_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}

/// Replays capture files. `on_alerts` receives each batch of alerts as its window closes.
pub fn replay(
    config: &Config,
    paths: &[PathBuf],
    options: &ReplayOptions,
    on_alerts: &mut dyn FnMut(&[Alert]) -> io::Result<()>,
) -> Result<RunReport, PipelineError> {
    let (matcher, allow) = load_domains(config)?;
    let mut engine = Engine::new(config)?;
    if let Some(path) = &options.state {
        engine.load_state(path)?;
    }
    let mut reader = CaptureReader::open(paths)?;
    let logs = match &options.log_dir {
        Some(dir) => Some(ZeekLogs::create(Path::new(dir), config).map_err(PipelineError::Logs)?),
        None => None,
    };
    let mut sensor = Sensor {
        config,
        dns_cache: DnsCache::new(
            config.dns.cache_max_entries,
            config.dns.cache_min_ttl_seconds,
            config.dns.cache_max_ttl_seconds,
        ),
        detector: ProxywareDetector::new(matcher, allow, config.proxyware.clone()),
        engine,
        logs,
        log_error: None,
        stats: Stats {
            files: paths.len() as u64,
            ..Stats::default()
        },
        collect: options.collect,
        observed: Observed::default(),
        cache_reported: Default::default(),
    };
    let mut table = FlowTable::new(
        config.flow.clone(),
        config.reassembly.max_out_of_order_bytes,
    );
    let mut defrag = Defragmenter::new(
        config.reassembly.max_fragmented_datagrams,
        config.reassembly.fragment_timeout_seconds * NS,
    );
    let mut alerts = Vec::new();
    let mut now_ns = 0u64;
    let mut next_tick = 0u64;

    while let Some(packet) = reader.next_packet() {
        let stats = &mut sensor.stats;
        stats.frames += 1;
        stats.wire_bytes += u64::from(packet.orig_len);
        if (packet.data.len() as u32) < packet.orig_len {
            stats.sliced_frames += 1;
        }
        now_ns = now_ns.max(packet.ts_ns);
        let mut decoded = Decoded::default();
        decode_frame(packet.linktype, packet.data, &mut decoded);
        if let Some(reason) = decoded.drop {
            stats.drop(reason.name());
        }
        if let Some(quote) = decoded.icmp_quote {
            quoted_dns(&mut sensor, packet.ts_ns, &quote);
        }
        for layer in &decoded.layers {
            match layer {
                Layer::Transport(t) => table.packet(packet.ts_ns, packet.orig_len, t, &mut sensor),
                Layer::Fragment(frag) => match defrag.add(packet.ts_ns, frag) {
                    DefragOutcome::Pending => {}
                    DefragOutcome::Dropped(reason) => sensor.stats.drop(reason.name()),
                    DefragOutcome::Complete(datagram) => {
                        sensor.stats.fragments_reassembled += 1;
                        let mut inner = Decoded::default();
                        let len = datagram.payload.len() as u32;
                        decode_transport(
                            datagram.src,
                            datagram.dst,
                            datagram.proto,
                            datagram.ip_len_sum,
                            &datagram.payload,
                            len,
                            1,
                            &mut inner,
                        );
                        if let Some(reason) = inner.drop {
                            sensor.stats.drop(reason.name());
                        }
                        for layer in &inner.layers {
                            if let Layer::Transport(t) = layer {
                                table.packet(packet.ts_ns, packet.orig_len, t, &mut sensor);
                            }
                        }
                    }
                },
            }
        }
        if now_ns >= next_tick {
            table.expire(now_ns, &mut sensor);
            for _ in 0..defrag.expire(now_ns) {
                sensor
                    .stats
                    .drop(crate::decode::packet::DropReason::FragmentTimeout.name());
            }
            let mut batch = sensor.detector.close_windows(now_ns);
            sensor.segment_policy(&mut batch);
            if !batch.is_empty() {
                on_alerts(&batch).map_err(PipelineError::Alerts)?;
                alerts.extend(batch);
            }
            if sensor.engine.window_due(now_ns).is_some() {
                // Counters up to now reach the windows before they close.
                table.checkpoint(&mut sensor);
                let batch = sensor.engine.close_window();
                if !batch.is_empty() {
                    on_alerts(&batch).map_err(PipelineError::Alerts)?;
                    alerts.extend(batch);
                }
            }
            next_tick = now_ns - now_ns % TICK_NS + TICK_NS;
        }
    }
    table.flush(&mut sensor);
    let mut batch = sensor.detector.finish();
    sensor.segment_policy(&mut batch);
    batch.extend(sensor.engine.finish());
    if !batch.is_empty() {
        on_alerts(&batch).map_err(PipelineError::Alerts)?;
        alerts.extend(batch);
    }
    if let Some(path) = &options.state {
        sensor.engine.save_state(path)?;
    }
    if let Some(logs) = sensor.logs.as_mut() {
        let result = logs.finish();
        sensor.log(result);
    }
    if let Some(e) = sensor.log_error.take() {
        return Err(PipelineError::Logs(e));
    }
    let mut stats = sensor.stats;
    stats.flows = table.counters.flows_created;
    stats.flows_evicted = table.counters.flows_evicted;
    stats.interim_updates = table.counters.interim_updates;
    stats.connections_reused = table.counters.connections_reused;
    stats.dns_cache_evicted = sensor.dns_cache.evicted;
    stats.proxyware_observations = sensor.detector.observations;
    let scored = &sensor.engine.scorer().counters;
    stats.findings = scored.findings;
    stats.below_min_score = scored.below_min_score;
    stats.suppressed_repeats = scored.suppressed_repeats;
    stats.suppressed_by_segment += scored.suppressed_by_segment;
    stats.windows_closed = sensor.engine.counters.windows_closed;
    stats.allowlisted_updates = sensor.engine.counters.allowlisted_updates;
    stats.hosts_evicted = sensor.engine.hosts_evicted();
    stats.geo = sensor.engine.geo().describe();
    stats.alerts = alerts.len() as u64;
    stats.file_problems = reader.problems().iter().map(|p| p.to_string()).collect();
    if reader.counters.frames_on_unsupported_link > 0 {
        stats.drops.insert(
            "unsupported_link_type",
            reader.counters.frames_on_unsupported_link,
        );
    }
    if reader.counters.frames_on_unknown_interface > 0 {
        stats.drops.insert(
            "unknown_pcapng_interface",
            reader.counters.frames_on_unknown_interface,
        );
    }
    Ok(RunReport {
        alerts,
        stats,
        observed: sensor.observed,
    })
}

/// A DNS message quoted in an ICMP error: the original sender did ask for the name.
fn quoted_dns(sensor: &mut Sensor<'_>, ts_ns: u64, quote: &Transport<'_>) {
    if quote.proto != ip_proto::UDP || (quote.sport != 53 && quote.dport != 53) {
        return;
    }
    if let Ok(msg) = dns::parse_message(quote.payload) {
        let client = if msg.is_response {
            quote.dst
        } else {
            quote.src
        };
        sensor.dns_names(ts_ns, client, None, &msg);
    }
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn authority_host() {
        assert_eq!(host_without_port("apache.org:443"), "apache.org");
        assert_eq!(host_without_port("apache.org"), "apache.org");
        assert_eq!(host_without_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(host_without_port("2001:db8::1"), "2001:db8::1");
    }
}
