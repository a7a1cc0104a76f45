//! Offline replay: files -> decode -> reassembly -> flow table -> names, logs, detection.
use crate::alert::Alert;
use crate::config::Config;
use crate::decode::dns::DnsMessage;
use crate::decode::http::RequestHead;
use crate::decode::packet::ip_proto;
use crate::decode::quic::QuicInfo;
use crate::decode::socks::SocksRequest;
use crate::decode::tls::{ClientHelloInfo, ServerInfo};
use crate::detect::allowlist::apply_segment_policy;
use crate::detect::engine::{Engine, EngineError, FlowMemo};
use crate::detect::proxyware::{NameObservation, ProxywareDetector};
use crate::enrich::dns_cache::DnsCache;
use crate::enrich::domains::DomainMatcher;
use crate::enrich::naming::{EncryptedDns, EncryptedResolvers, NameCoverage};
use crate::export::netflow::NetflowDecoder;
use crate::export::reorder::ReorderBuffer;
use crate::export::sflow::SflowDecoder;
use crate::export::table::{ExportFlow, RecordSink, RecordTable};
use crate::export::vpc::{self, VpcCounters};
use crate::export::{self, DatagramKind, FlowRecord};
use crate::flow::key::Uid;
use crate::flow::table::Flow;
use crate::flow::update::{FlowSink, FlowUpdate, NameSource, UpdateKind, service};
use crate::logs::ZeekLogs;
use crate::shard::{
    Event, PacketPath, PacketSink, Round, Shards, TickEvents, checkpoint_due, next_tick,
};
use crate::source::collector::{Collector, Received};
use crate::source::live::{LiveCapture, OpenCaptures, Received as LiveReceived};
use crate::source::pcap_file::{CaptureReader, SharedFrame, SourceError};
use crate::source::{Packet, wall_clock_ns};
use crate::stats::{ExportStats, Stats};
use crate::telemetry::{PublishClock, Snapshot, Telemetry};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const NS: u64 = 1_000_000_000;
/// How long the collector waits for a datagram before it looks at the stop flag.
const COLLECTOR_POLL: std::time::Duration = std::time::Duration::from_millis(100);
/// How long live capture waits for a batch before it advances time on the wall clock.
const LIVE_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// How far ahead of a datagram's arrival its records may move event time.
const MAX_EXPORTER_CLOCK_AHEAD_NS: u64 = 3_600 * NS;

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
    #[error("starting worker threads: {0}")]
    Threads(io::Error),
    #[error("proxyware domain list {path}: {reason}")]
    DomainList { path: String, reason: String },
    #[error("fleet: {0}")]
    Fleet(#[from] crate::fleet::bus::BusError),
    #[error("{0}")]
    Endpoint(crate::endpoint::EndpointError),
}

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub log_dir: Option<PathBuf>,
    /// Baseline state loaded at the start (when the file exists) and saved at the end.
    pub state: Option<PathBuf>,
    /// Keep every name and finished flow in the report (tests and small captures only).
    pub collect: bool,
    /// Packet-path worker threads for capture files; 0 or 1 runs everything on one thread.
    pub threads: usize,
    /// Record per-host figures for the HTML report (`RunReport::report`).
    pub report: bool,
    /// Where the run publishes its counters while it goes (progress bar, metrics endpoint).
    pub telemetry: Option<Arc<Telemetry>>,
    /// Sysmon event files read before the captures (`--endpoint-events`).
    pub endpoint_events: Vec<PathBuf>,
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
    /// With `ReplayOptions::report`: what the HTML report shows.
    pub report: Option<crate::report::ReportData>,
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
struct Sensor {
    config: Arc<Config>,
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
    /// Sharded run: DNS-cache names of live flows, which the workers cannot look up.
    shard_names: rustc_hash::FxHashMap<Uid, Arc<str>>,
    /// Export datagrams seen in the capture, decoded by the run after the frame.
    exports: Vec<(u64, SocketAddr, Vec<u8>)>,
    encrypted_resolvers: EncryptedResolvers,
    naming: NameCoverage,
    /// Live flows whose ClientHello offered ECH (bounded by max_flows).
    ech_flows: rustc_hash::FxHashSet<Uid>,
    /// Sysmon evidence, when the run has endpoint events.
    endpoint: Option<Box<crate::endpoint::evidence::EndpointEvidence>>,
}

impl Sensor {
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
        // SVCB/HTTPS hints count as answers: a client may connect to them without asking
        // for A/AAAA.
        for (answer, addr) in msg
            .answers
            .iter()
            .flat_map(|a| a.data.addresses().map(move |addr| (a, addr)))
        {
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
        if let Some(host) = self.inside_client(flow.orig().0) {
            self.name(NameObservation {
                ts_ns,
                host,
                destination: Some(flow.resp()),
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
        if own_name || !first_update || !self.config.is_inside(flow.orig().0) {
            return;
        }
        self.detector.observe(&NameObservation {
            ts_ns: flow.last_ns,
            host: flow.orig().0,
            destination: Some(flow.resp()),
            name,
            source: NameSource::DnsCache,
            flow: Some(flow.uid),
            is_answer: false,
        });
    }

    /// A hello of the flow (TLS or QUIC) offered ECH.
    fn offered_ech(&mut self, uid: Uid) {
        self.stats.ech_hellos += 1;
        self.ech_flows.insert(uid);
    }

    /// At a flow's end: whether it carried encrypted DNS, and the naming count of its inside
    /// host's outbound connections.
    fn count_naming(&mut self, flow: &Flow) -> Option<EncryptedDns> {
        let ech = self.ech_flows.remove(&flow.uid);
        let (client, server) = (flow.orig(), flow.resp());
        if !self.config.is_inside(client.0) || self.config.is_inside(server.0) {
            return None;
        }
        let names = flow.names();
        let sni = names.and_then(|n| n.sni.as_deref());
        let encrypted = self.encrypted_resolvers.classify(flow.proto, server, sni);
        if let Some(kind) = encrypted {
            self.stats.encrypted_dns_flows += 1;
            self.naming.encrypted_dns(client.0, kind, server.0);
        } else if flow.resp_pkts > 0
            && matches!(flow.proto, ip_proto::TCP | ip_proto::UDP)
            && flow.services & service::DNS == 0
        {
            let named = names.is_some_and(|n| n.best().is_some());
            self.naming.connection(client.0, named, ech);
        }
        encrypted
    }

    fn update_for<'f>(&self, flow: &'f Flow, kind: UpdateKind) -> FlowUpdate<'f> {
        flow_update(&self.config, flow, kind)
    }
}

/// The sensor-wide view of a flow, oriented inside -> outside by `config.home_nets`
/// (public for the per-stage benches).
pub fn flow_update<'f>(config: &Config, flow: &'f Flow, kind: UpdateKind) -> FlowUpdate<'f> {
    let orig_inside = config.is_inside(flow.orig().0) || !config.is_inside(flow.resp().0);
    let (inside, outside, out_b, in_b, out_p, in_p) = if orig_inside {
        (
            flow.orig(),
            flow.resp(),
            flow.orig_ip_bytes,
            flow.resp_ip_bytes,
            flow.orig_pkts,
            flow.resp_pkts,
        )
    } else {
        (
            flow.resp(),
            flow.orig(),
            flow.resp_ip_bytes,
            flow.orig_ip_bytes,
            flow.resp_pkts,
            flow.orig_pkts,
        )
    };
    let conn_state = if flow.proto == ip_proto::TCP {
        flow.tcp().conn_state()
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

impl FlowSink for Sensor {
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
        if let Some(endpoint) = self.endpoint.as_mut() {
            endpoint.flow(&update);
        }
        if kind == UpdateKind::Interim {
            return;
        }
        let encrypted_dns = self.count_naming(flow);
        if let Some(logs) = self.logs.as_mut() {
            let result = logs.conn(flow, encrypted_dns);
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
                a: flow.orig(),
                b: flow.resp(),
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
            (flow.orig().0, flow.resp().0)
        } else {
            (flow.resp().0, flow.orig().0)
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
        if hello.ech {
            self.offered_ech(flow.uid);
        }
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

    fn quic(&mut self, flow: &Flow, ts_ns: u64, info: &QuicInfo) {
        self.stats.count_quic(info);
        if info.ech() {
            self.offered_ech(flow.uid);
        }
        // The QUIC SNI names the connection exactly as a TLS one does.
        if let Some(sni) = info.sni() {
            self.connection_name(flow, ts_ns, sni, NameSource::TlsSni);
        }
        if let Some(logs) = self.logs.as_mut() {
            let result = logs.quic(flow, info);
            self.log(result);
        }
    }
}

impl PacketSink for Sensor {
    fn quoted_dns(&mut self, ts_ns: u64, client: IpAddr, msg: DnsMessage) {
        self.dns_names(ts_ns, client, None, &msg);
    }

    fn export_datagram(&mut self, ts_ns: u64, exporter: SocketAddr, payload: &[u8]) {
        self.exports.push((ts_ns, exporter, payload.to_vec()));
    }
}

impl Sensor {
    /// An event from a shard worker: what its packet path would have told this sensor.
    fn apply(&mut self, event: Event) {
        match event {
            Event::Created {
                uid,
                client,
                server,
                ts_ns,
            } => {
                if let Some(name) = self.resolved_name(uid, client, server, ts_ns) {
                    self.shard_names.insert(uid, name);
                }
            }
            Event::Flow { mut flow, kind } => {
                self.name_from_cache(&mut flow);
                if kind == UpdateKind::Final {
                    self.shard_names.remove(&flow.uid);
                }
                self.flow(&flow, kind);
            }
            Event::Dns {
                mut flow,
                ts_ns,
                from_orig,
                msg,
            } => {
                self.name_from_cache(&mut flow);
                self.dns(&flow, ts_ns, from_orig, &msg);
            }
            Event::Tls {
                mut flow,
                ts_ns,
                hello,
            } => {
                self.name_from_cache(&mut flow);
                self.tls(&flow, ts_ns, &hello);
            }
            Event::TlsServer {
                mut flow,
                ts_ns,
                info,
            } => {
                self.name_from_cache(&mut flow);
                self.tls_server(&flow, ts_ns, &info);
            }
            Event::Http {
                mut flow,
                ts_ns,
                request,
            } => {
                self.name_from_cache(&mut flow);
                self.http(&flow, ts_ns, &request);
            }
            Event::Socks {
                mut flow,
                ts_ns,
                request,
            } => {
                self.name_from_cache(&mut flow);
                self.socks(&flow, ts_ns, &request);
            }
            Event::Quic {
                mut flow,
                ts_ns,
                info,
            } => {
                self.name_from_cache(&mut flow);
                self.quic(&flow, ts_ns, &info);
            }
            Event::QuotedDns { ts_ns, client, msg } => self.quoted_dns(ts_ns, client, msg),
            Event::Export {
                ts_ns,
                exporter,
                payload,
            } => self.exports.push((ts_ns, exporter, payload)),
        }
    }

    /// The name the one-thread path would have put in the flow when it began.
    fn name_from_cache(&self, flow: &mut Flow) {
        if let Some(name) = self.shard_names.get(&flow.uid) {
            flow.names_mut().dns_name = Some(name.clone());
        }
    }
}

impl RecordSink for Sensor {
    fn export_flow(
        &mut self,
        flow: &ExportFlow,
        update: &FlowUpdate<'_>,
        memo: &mut Option<FlowMemo>,
    ) {
        let last = update.kind == UpdateKind::Final;
        self.detector.flow_update(update, last);
        self.engine.flow_update_with(update, memo);
        if let Some(endpoint) = self.endpoint.as_mut() {
            endpoint.flow(update);
        }
        if !last {
            return;
        }
        if let Some(logs) = self.logs.as_mut() {
            let result = logs.conn_export(flow);
            self.log(result);
        }
        if self.collect {
            self.observed.conversations.push(Conversation {
                proto: flow.proto,
                a: flow.orig,
                b: flow.resp,
                frames_a_to_b: flow.orig_pkts,
                bytes_a_to_b: flow.orig_bytes,
                frames_b_to_a: flow.resp_pkts,
                bytes_b_to_a: flow.resp_bytes,
                orig_ip_bytes: flow.orig_bytes,
                resp_ip_bytes: flow.resp_bytes,
                names: Vec::new(),
            });
        }
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

/// Where alerts go as their windows close.
pub type AlertHandler<'h> = dyn FnMut(&[Alert]) -> io::Result<()> + 'h;

/// Export datagrams and records on their way to the record table.
struct ExportIngest {
    held: ReorderBuffer,
    netflow: NetflowDecoder,
    sflow: SflowDecoder,
    table: RecordTable,
    records: Vec<FlowRecord>,
    errors: std::collections::BTreeMap<&'static str, u64>,
    vpc: VpcCounters,
    vpc_files: u64,
}

/// One run of the sensor over packets and flow export, in event time. Replay and the
/// collector both drive it.
pub struct Run {
    config: Arc<Config>,
    sensor: Sensor,
    /// The packet path when frames come here one by one (live capture, one-thread replay).
    path: PacketPath,
    /// Frames handed to `path`, numbering the flows they open.
    frame_no: u64,
    /// Sharded replay: what the workers did at the tick being applied.
    shard_tick: Option<TickEvents>,
    /// Sharded replay: the workers' paths once they are done, for their counters.
    shard_paths: Vec<PacketPath>,
    ingest: ExportIngest,
    alerts: Vec<Alert>,
    now_ns: u64,
    next_tick: u64,
    last_tick_ns: Option<u64>,
    state: Option<PathBuf>,
    /// Collector: (arrival clock, event time) when records last left the reorder buffer, so
    /// event time can follow the wall clock while exporters are silent.
    last_release: Option<(u64, u64)>,
    telemetry: Option<Arc<Telemetry>>,
    publish_clock: PublishClock,
    alerts_by_branch: BTreeMap<&'static str, u64>,
}

impl Run {
    pub fn new(config: &Config, options: &ReplayOptions) -> Result<Run, PipelineError> {
        let shared = Arc::new(config.clone());
        let (matcher, allow) = load_domains(config)?;
        let mut engine = Engine::new(config)?;
        if let Some(path) = &options.state {
            engine.load_state(path)?;
        }
        if options.report {
            engine.record_report(&config.report);
        }
        if config.fleet.linked() {
            let link =
                crate::fleet::link::FleetLink::start(&config.fleet, config.windows.window_ns())?;
            engine.link_fleet(link);
        }
        let logs = match &options.log_dir {
            Some(dir) => {
                Some(ZeekLogs::create(Path::new(dir), config).map_err(PipelineError::Logs)?)
            }
            None => None,
        };
        let sensor = Sensor {
            config: shared.clone(),
            dns_cache: DnsCache::new(
                config.dns.cache_max_entries,
                config.dns.cache_min_ttl_seconds,
                config.dns.cache_max_ttl_seconds,
            ),
            detector: ProxywareDetector::new(matcher, allow, config.proxyware.clone()),
            engine,
            logs,
            log_error: None,
            stats: Stats::default(),
            collect: options.collect,
            observed: Observed::default(),
            cache_reported: Default::default(),
            shard_names: Default::default(),
            exports: Vec::new(),
            encrypted_resolvers: EncryptedResolvers::new(&config.dns).map_err(|e| {
                PipelineError::DomainList {
                    path: "dns.encrypted_resolver_names".into(),
                    reason: e.to_string(),
                }
            })?,
            naming: NameCoverage::new(config.dns.max_naming_hosts),
            ech_flows: Default::default(),
            endpoint: None,
        };
        Ok(Run {
            config: shared,
            sensor,
            path: PacketPath::new(config, 1),
            frame_no: 0,
            shard_tick: None,
            shard_paths: Vec::new(),
            ingest: ExportIngest {
                held: Default::default(),
                netflow: NetflowDecoder::new(&config.export),
                sflow: SflowDecoder::new(&config.export),
                table: RecordTable::new(&config.export),
                records: Vec::new(),
                errors: Default::default(),
                vpc: VpcCounters::default(),
                vpc_files: 0,
            },
            alerts: Vec::new(),
            now_ns: 0,
            next_tick: 0,
            last_tick_ns: None,
            state: options.state.clone(),
            last_release: None,
            telemetry: options.telemetry.clone(),
            publish_clock: PublishClock::default(),
            alerts_by_branch: BTreeMap::new(),
        })
    }

    /// SIGHUP: applies a reloaded config without losing flows, windows or baselines. Domain
    /// lists, home nets, allowlists, segments, business hours, geo databases, scoring and
    /// detector thresholds change; sections that size or time state already held (`flow`,
    /// `reassembly`, `dns`, `windows`, `export`, `live`, `metrics`) and the syslog targets keep their
    /// running values until a restart,
    /// and their names are returned so the operator is told. On error nothing changes.
    pub fn reload(&mut self, mut config: Config) -> Result<Vec<&'static str>, PipelineError> {
        let running = &*self.config;
        let mut kept = Vec::new();
        keep_running("flow", &mut config.flow, &running.flow, &mut kept);
        keep_running(
            "reassembly",
            &mut config.reassembly,
            &running.reassembly,
            &mut kept,
        );
        keep_running("dns", &mut config.dns, &running.dns, &mut kept);
        keep_running("windows", &mut config.windows, &running.windows, &mut kept);
        keep_running("export", &mut config.export, &running.export, &mut kept);
        keep_running("live", &mut config.live, &running.live, &mut kept);
        keep_running("metrics", &mut config.metrics, &running.metrics, &mut kept);
        keep_running("fleet", &mut config.fleet, &running.fleet, &mut kept);
        // Syslog sinks are opened by the command, once.
        keep_running("syslog", &mut config.syslog, &running.syslog, &mut kept);
        let (matcher, allow) = load_domains(&config)?;
        self.sensor.engine.reconfigure(&config)?;
        self.sensor
            .detector
            .reconfigure(matcher, allow, config.proxyware.clone());
        let shared = Arc::new(config);
        self.config = shared.clone();
        self.sensor.config = shared;
        self.sensor.stats.config_reloads += 1;
        Ok(kept)
    }

    /// One frame from a reader, after starting to load the flow of the frame two ahead.
    pub fn frame(
        &mut self,
        frame: &SharedFrame<'_>,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        self.path.look_ahead(frame.packet.linktype, frame.two_ahead);
        self.packet(&frame.packet, on_alerts)
    }

    /// One captured frame.
    pub fn packet(
        &mut self,
        packet: &Packet<'_>,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        self.frame_no += 1;
        self.now_ns = self.now_ns.max(packet.ts_ns);
        self.path.packet(self.frame_no, packet, &mut self.sensor);
        self.decode_exports();
        if !self.ingest.held.is_empty() {
            self.release_held(packet.ts_ns, false, on_alerts)?;
        }
        self.advance(self.now_ns, on_alerts)
    }

    /// A round of frames from the shard workers, applied as the one-thread path would have
    /// handled its frames.
    fn apply_round(
        &mut self,
        round: Round,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        for event in round.events {
            self.sensor.apply(event);
        }
        self.decode_exports();
        self.now_ns = self.now_ns.max(round.last_ts_ns);
        if !self.ingest.held.is_empty() {
            self.release_held(round.last_ts_ns, false, on_alerts)?;
        }
        if let Some(tick) = round.tick {
            self.now_ns = self.now_ns.max(tick.now_ns);
            self.shard_tick = Some(tick);
            self.tick(on_alerts)?;
        }
        for event in round.flushed {
            self.sensor.apply(event);
        }
        Ok(())
    }

    /// Reads every frame through `threads` shard workers.
    fn replay_sharded(
        &mut self,
        reader: &mut CaptureReader,
        threads: usize,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        let mut shards = Shards::start(&self.config, threads).map_err(PipelineError::Threads)?;
        while let Some(frame) = reader.next_shared() {
            if let Some(round) = shards.frame(&frame) {
                self.apply_round(round, on_alerts)?;
            }
            if self.publish_clock.tick() {
                self.publish(Some(&shards), |s| reader.progress(s));
            }
        }
        self.finish_shards(shards, on_alerts)
    }

    /// Notes the memory and flows held as the input ends, before any flow is ended for it.
    fn note_input_end(&mut self) {
        let flows = self.path.active_flows() + self.ingest.table.len() as u64;
        self.sensor.stats.held_at_input_end =
            crate::stats::resident_kib().map(|resident_kib| crate::stats::HeldAtInputEnd {
                resident_kib,
                flows,
            });
    }

    /// End of input for the workers: their last rounds and final updates, and their counters.
    fn finish_shards(
        &mut self,
        shards: Shards,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        let (rounds, paths) = shards.finish();
        for round in rounds {
            self.apply_round(round, on_alerts)?;
        }
        self.shard_paths = paths;
        Ok(())
    }

    /// Export datagrams the packet path found in the capture: decoded as export too.
    #[inline]
    fn decode_exports(&mut self) {
        if !self.sensor.exports.is_empty() {
            self.decode_found_exports();
        }
    }

    #[cold]
    fn decode_found_exports(&mut self) {
        for (ts_ns, exporter, payload) in std::mem::take(&mut self.sensor.exports) {
            if let Some(kind) = export::classify(&payload) {
                self.decode_datagram(kind, exporter, ts_ns, &payload);
            }
        }
    }

    /// A datagram from a collector socket, received at `recv_ns` (wall clock). Event time
    /// comes from the records.
    pub fn datagram(
        &mut self,
        exporter: SocketAddr,
        recv_ns: u64,
        payload: &[u8],
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        match export::classify(payload) {
            Some(kind) => self.decode_datagram(kind, exporter, recv_ns, payload),
            None => *self.ingest.errors.entry("export_unrecognised").or_insert(0) += 1,
        }
        self.release_held(recv_ns, false, on_alerts)?;
        self.advance(self.now_ns, on_alerts)
    }

    fn decode_datagram(
        &mut self,
        kind: DatagramKind,
        exporter: SocketAddr,
        recv_ns: u64,
        payload: &[u8],
    ) {
        let mut records = std::mem::take(&mut self.ingest.records);
        records.clear();
        let result = match kind {
            DatagramKind::Netflow(_) => {
                self.ingest
                    .netflow
                    .decode(exporter, recv_ns, payload, &mut records)
            }
            DatagramKind::Sflow => {
                self.ingest
                    .sflow
                    .decode(exporter, recv_ns, payload, &mut records)
            }
        };
        if let Err(e) = result {
            *self.ingest.errors.entry(e.reason()).or_insert(0) += 1;
        }
        // An exporter clock far ahead of the datagram's arrival must not close every window.
        let horizon = recv_ns.saturating_add(MAX_EXPORTER_CLOCK_AHEAD_NS);
        self.ingest.held.extend(recv_ns, horizon, &mut records);
        self.ingest.records = records;
    }

    /// Releases held export records that arrived `reorder_seconds` before `arrival_ns` (all
    /// of them when `all`), or beyond `max_reorder_records`, in event-time order (see
    /// [`ReorderBuffer`]).
    fn release_held(
        &mut self,
        arrival_ns: u64,
        all: bool,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        let wait_ns = self.config.export.reorder_seconds.saturating_mul(NS);
        let cutoff = arrival_ns.saturating_sub(wait_ns);
        let over = self
            .ingest
            .held
            .len()
            .saturating_sub(self.config.export.max_reorder_records);
        // Out of `self` while its records go through `self.record`.
        let mut held = std::mem::take(&mut self.ingest.held);
        let mut batch = held.release(cutoff, all, over);
        let released = !batch.is_empty();
        let mut result = Ok(());
        while let Some((record, horizon)) = batch.next_record() {
            self.record(record, horizon);
            result = self.advance(self.now_ns, on_alerts);
            if result.is_err() {
                break;
            }
        }
        drop(batch);
        self.ingest.held = held;
        result?;
        if released {
            self.last_release = Some((arrival_ns, self.now_ns));
        }
        Ok(())
    }

    /// Collector: no datagram for a while (`now_ns` is the wall clock, as datagrams' arrival
    /// times are). Held records still leave on time, and once the reorder wait has passed
    /// with nothing new, event time runs on with the wall clock from where the last records
    /// left it, so windows close and alerts go out while exporters are silent.
    pub fn idle(
        &mut self,
        now_ns: u64,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        self.release_held(now_ns, false, on_alerts)?;
        let Some((released_at, event_ns)) = self.last_release else {
            return Ok(());
        };
        if !self.ingest.held.is_empty() {
            return Ok(());
        }
        let wait_ns = self.config.export.reorder_seconds.saturating_mul(NS);
        let quiet_ns = now_ns.saturating_sub(released_at).saturating_sub(wait_ns);
        if quiet_ns == 0 {
            return Ok(());
        }
        self.advance(event_ns.saturating_add(quiet_ns), on_alerts)
    }

    /// One flow record (from a datagram or a VPC flow log line). Exporter time is event
    /// time, up to `horizon`.
    pub fn record(&mut self, record: &FlowRecord, horizon: u64) {
        self.now_ns = self.now_ns.max(record.end_ns.min(horizon));
        let config = &self.config;
        self.ingest
            .table
            .record(record, &|ip| config.is_inside(ip), &mut self.sensor);
    }

    /// Reads an AWS VPC flow log file record by record.
    pub fn vpc_file(
        &mut self,
        path: &Path,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        self.ingest.vpc_files += 1;
        let mut records = Vec::new();
        let mut problems = Vec::new();
        let mut counters = std::mem::take(&mut self.ingest.vpc);
        let result = vpc::read_file(path, &mut counters, &mut |r| records.push(r), &mut |e| {
            problems.push(e.to_string())
        });
        self.ingest.vpc = counters;
        if let Err(e) = result {
            problems.push(e.to_string());
        }
        self.sensor.stats.file_problems.extend(problems);
        // A file holds a few minutes of an interface's traffic, not in time order.
        records.sort_by_key(|r| (r.end_ns, r.start_ns));
        for record in &records {
            self.record(record, u64::MAX);
            self.advance(self.now_ns, on_alerts)?;
        }
        Ok(())
    }

    /// Timeouts and windows up to event time `now_ns`, checked once per second of it.
    pub fn advance(
        &mut self,
        now_ns: u64,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        self.now_ns = self.now_ns.max(now_ns);
        if self.now_ns < self.next_tick {
            return Ok(());
        }
        self.tick(on_alerts)
    }

    fn tick(&mut self, on_alerts: &mut AlertHandler<'_>) -> Result<(), PipelineError> {
        let now_ns = self.now_ns;
        let checkpoint = checkpoint_due(self.last_tick_ns, now_ns, self.config.windows.window_ns());
        self.last_tick_ns = Some(now_ns);
        // Sharded: the workers expired and checkpointed at this tick already.
        let (expired, checkpointed) = match self.shard_tick.take() {
            Some(t) => (t.expired, t.checkpointed),
            None => {
                self.path.expire(now_ns, &mut self.sensor);
                Default::default()
            }
        };
        for event in expired {
            self.sensor.apply(event);
        }
        let config = &self.config;
        self.ingest
            .table
            .expire(now_ns, &|ip| config.is_inside(ip), &mut self.sensor);
        let mut batch = self.sensor.detector.close_windows(now_ns);
        self.sensor.segment_policy(&mut batch);
        // Counters up to now reach the windows before they close.
        if checkpoint {
            self.path.checkpoint(&mut self.sensor);
        }
        for event in checkpointed {
            self.sensor.apply(event);
        }
        if self.sensor.engine.window_due(now_ns).is_some() {
            batch.extend(self.sensor.engine.close_window());
        }
        let batch = self.with_endpoint(batch, Some(now_ns));
        self.emit(batch, on_alerts)?;
        self.next_tick = next_tick(now_ns);
        Ok(())
    }

    /// Endpoint alerts whose window ended by `now_ns` (all at the end: None) meet the network
    /// batch: merged where they are the same finding, the network alerts enriched.
    fn with_endpoint(&mut self, network: Vec<Alert>, now_ns: Option<u64>) -> Vec<Alert> {
        let Some(mut endpoint) = self.sensor.endpoint.take() else {
            return network;
        };
        let mut due = match now_ns {
            Some(now) => endpoint.due(now),
            None => endpoint.rest(),
        };
        self.sensor.segment_policy(&mut due);
        let batch = endpoint.combine(network, due);
        self.sensor.endpoint = Some(endpoint);
        batch
    }

    /// Attaches what was read from endpoint event files.
    pub fn attach_endpoint(&mut self, evidence: crate::endpoint::evidence::EndpointEvidence) {
        self.sensor.endpoint = Some(Box::new(evidence));
    }

    fn emit(
        &mut self,
        batch: Vec<Alert>,
        on_alerts: &mut AlertHandler<'_>,
    ) -> Result<(), PipelineError> {
        if !batch.is_empty() {
            if let Some(recorder) = self.sensor.engine.recorder_mut() {
                recorder.alerts(&batch);
            }
            on_alerts(&batch).map_err(PipelineError::Alerts)?;
            if let Some(link) = self.sensor.engine.fleet_mut() {
                link.alerts(&batch);
            }
            for alert in &batch {
                *self
                    .alerts_by_branch
                    .entry(alert.detection_branch)
                    .or_insert(0) += 1;
            }
            self.alerts.extend(batch);
        }
        Ok(())
    }

    /// Ends every flow and window, saves the state, and reports.
    pub fn finish(mut self, on_alerts: &mut AlertHandler<'_>) -> Result<RunReport, PipelineError> {
        self.release_held(u64::MAX, true, on_alerts)?;
        let config = &self.config;
        self.path.flush(&mut self.sensor);
        self.ingest
            .table
            .flush(&|ip| config.is_inside(ip), &mut self.sensor);
        let mut batch = self.sensor.detector.finish();
        self.sensor.segment_policy(&mut batch);
        batch.extend(self.sensor.engine.finish());
        let batch = self.with_endpoint(batch, None);
        self.emit(batch, on_alerts)?;
        if let Some(path) = &self.state {
            self.sensor.engine.save_state(path)?;
        }
        let report = self.sensor.engine.take_report();
        let fleet_end = self.sensor.engine.fleet_mut().map(|link| link.finish());
        if let Some(logs) = self.sensor.logs.as_mut() {
            let result = logs.finish();
            self.sensor.log(result);
        }
        if let Some(e) = self.sensor.log_error.take() {
            return Err(PipelineError::Logs(e));
        }
        let mut stats = self.stats_now();
        if let (Some(fleet), Some(counters)) = (stats.fleet.as_mut(), fleet_end) {
            fleet.counters = counters;
        }
        if let Some(telemetry) = &self.telemetry {
            telemetry.finish(&stats);
        }
        Ok(RunReport {
            alerts: self.alerts,
            stats,
            observed: self.sensor.observed,
            report,
        })
    }

    /// The run's counters as the summary reports them, as of now (sharded workers' counters
    /// come separately while they run: `Shards::add_totals_to`).
    fn stats_now(&self) -> Stats {
        let sensor = &self.sensor;
        let mut stats = sensor.stats.clone();
        for path in std::iter::once(&self.path).chain(&self.shard_paths) {
            path.add_to(&mut stats);
        }
        stats.dns_cache_evicted = sensor.dns_cache.evicted;
        let dns = &self.config.dns;
        stats.name_blind = sensor
            .naming
            .name_blind(dns.name_blind_share, dns.name_blind_min_connections);
        stats.encrypted_dns_hosts = sensor.naming.encrypted_dns_hosts();
        stats.naming_hosts = sensor.naming.hosts() as u64;
        stats.naming_untracked_hosts = sensor.naming.untracked_hosts;
        stats.proxyware_observations = sensor.detector.observations;
        let scored = &sensor.engine.scorer().counters;
        stats.findings = scored.findings;
        stats.below_min_score = scored.below_min_score;
        stats.suppressed_repeats = scored.suppressed_repeats;
        stats.suppressed_by_segment += scored.suppressed_by_segment;
        stats.windows_closed = sensor.engine.counters.windows_closed;
        stats.fleet = sensor.engine.fleet().map(|link| crate::stats::FleetStats {
            site: self.config.fleet.site.clone(),
            sensor: link.sensor().to_string(),
            counters: link.counters(),
        });
        stats.allowlisted_updates = sensor.engine.counters.allowlisted_updates;
        stats.hosts_evicted = sensor.engine.hosts_evicted();
        stats.geo = sensor.engine.geo().describe();
        stats.alerts = self.alerts.len() as u64;
        if let (Some(e), Some(endpoint)) = (stats.endpoint.as_mut(), &sensor.endpoint) {
            e.counters = endpoint.counters.clone();
        }
        let ingest = &self.ingest;
        let nf = &ingest.netflow.counters;
        let rt = &ingest.table.counters;
        stats.export = ExportStats {
            netflow_datagrams: nf.datagrams,
            sflow_datagrams: ingest.sflow.counters.datagrams,
            vpc_files: ingest.vpc_files,
            vpc_lines: ingest.vpc.lines,
            records: rt.records,
            flows: rt.flows_created,
            records_stitched: rt.records_stitched,
            flows_evicted: rt.flows_evicted,
            templates: nf.templates + nf.options_templates,
            templates_withdrawn: nf.templates_withdrawn,
            templates_evicted: nf.templates_evicted,
            templates_expired: nf.templates_expired,
            sets_pending: nf.sets_pending,
            pending_decoded: nf.pending_decoded,
            pending_dropped: nf.pending_dropped,
            sflow_counter_samples: ingest.sflow.counters.counter_samples,
            errors: ingest.errors.clone(),
            queue_drops: stats.export.queue_drops.clone(),
        };
        stats
    }

    /// Publishes a snapshot to the telemetry, if the run has one; `fill` adds what only the
    /// caller knows (bytes read, capture drops, queue depth).
    fn publish(&self, shards: Option<&Shards>, fill: impl FnOnce(&mut Snapshot)) {
        let Some(telemetry) = &self.telemetry else {
            return;
        };
        let mut stats = self.stats_now();
        let mut active_flows = self.path.active_flows() + self.ingest.table.len() as u64;
        if let Some(shards) = shards {
            active_flows += shards.add_totals_to(&mut stats);
        }
        let mut snapshot = Snapshot {
            stats,
            active_flows,
            hosts: self.sensor.engine.hosts() as u64,
            records_held: self.ingest.held.len() as u64,
            alerts_by_branch: self.alerts_by_branch.clone(),
            event_time_ns: self.now_ns,
            published: Some(std::time::Instant::now()),
            ..Snapshot::default()
        };
        fill(&mut snapshot);
        telemetry.publish(snapshot);
    }

    /// Collector: datagrams the socket threads dropped because the queue was full, per
    /// exporter; past `MAX_QUEUE_DROP_EXPORTERS` addresses (spoofed sources) under "other".
    pub fn count_queue_drops(&mut self, exporter: IpAddr, n: u64) {
        let drops = &mut self.sensor.stats.export.queue_drops;
        let mut key = exporter.to_string();
        if drops.len() >= MAX_QUEUE_DROP_EXPORTERS && !drops.contains_key(&key) {
            key = "other".to_string();
        }
        *drops.entry(key).or_insert(0) += n;
    }
}

/// Exporters whose collector queue drops are counted one by one.
const MAX_QUEUE_DROP_EXPORTERS: usize = 256;

/// Replays capture files (and AWS VPC flow log files). `on_alerts` receives each batch of
/// alerts as its window closes.
pub fn replay(
    config: &Config,
    paths: &[PathBuf],
    options: &ReplayOptions,
    on_alerts: &mut AlertHandler<'_>,
) -> Result<RunReport, PipelineError> {
    let (vpc_paths, capture_paths): (Vec<PathBuf>, Vec<PathBuf>) =
        paths.iter().cloned().partition(|p| vpc::is_vpc_flow_log(p));
    let mut run = Run::new(config, options)?;
    run.sensor.stats.files = paths.len() as u64;
    if !options.endpoint_events.is_empty() {
        let loaded = crate::endpoint::load(&run.config, &options.endpoint_events)
            .map_err(PipelineError::Endpoint)?;
        run.sensor.stats.endpoint = Some(loaded.stats);
        run.attach_endpoint(loaded.evidence);
    }
    let mut problems = Vec::new();
    let mut reader_counters = None;
    if !capture_paths.is_empty() {
        let mut reader = CaptureReader::open(&capture_paths)?;
        if options.threads > 1 {
            run.replay_sharded(&mut reader, options.threads, on_alerts)?;
        } else {
            while let Some(frame) = reader.next_shared() {
                run.frame(&frame, on_alerts)?;
                if run.publish_clock.tick() {
                    run.publish(None, |s| reader.progress(s));
                }
            }
        }
        problems = reader.problems().iter().map(|p| p.to_string()).collect();
        reader_counters = Some(reader.counters.clone());
    }
    for path in &vpc_paths {
        run.vpc_file(path, on_alerts)?;
    }
    // Sharded workers end their flows as their input ends, so only one thread can tell.
    if options.threads <= 1 {
        run.note_input_end();
    }
    let mut report = run.finish(on_alerts)?;
    let stats = &mut report.stats;
    stats.file_problems.extend(problems);
    if let Some(counters) = reader_counters {
        if counters.frames_on_unsupported_link > 0 {
            stats
                .drops
                .insert("unsupported_link_type", counters.frames_on_unsupported_link);
        }
        if counters.frames_on_unknown_interface > 0 {
            stats.drops.insert(
                "unknown_pcapng_interface",
                counters.frames_on_unknown_interface,
            );
        }
    }
    Ok(report)
}

/// A reloaded config section that cannot change mid-run gets its running value back, and
/// its name goes on the list the operator is shown.
fn keep_running<T: PartialEq + Clone>(
    name: &'static str,
    reloaded: &mut T,
    running: &T,
    kept: &mut Vec<&'static str>,
) {
    if reloaded != running {
        *reloaded = running.clone();
        kept.push(name);
    }
}

/// How a long-running command (collect, live) re-reads its config on SIGHUP.
pub struct Reloader<'a> {
    /// Set by the signal handler; cleared when the reload is done.
    pub requested: Arc<AtomicBool>,
    /// Reads the config again (file plus command-line overrides).
    pub load: &'a dyn Fn() -> anyhow::Result<Config>,
}

impl Reloader<'_> {
    /// Applies a requested reload to `run` and says on stderr what happened; a config that
    /// fails to load or apply leaves the running one in place.
    pub fn poll(&self, run: &mut Run) {
        if !self.requested.swap(false, Ordering::Relaxed) {
            return;
        }
        let applied = (self.load)().and_then(|c| run.reload(c).map_err(anyhow::Error::from));
        match applied {
            Ok(kept) if kept.is_empty() => eprintln!("egresswatch: config reloaded"),
            Ok(kept) => eprintln!(
                "egresswatch: config reloaded; [{}] changed but keep running values until a restart",
                kept.join("], [")
            ),
            Err(e) => {
                eprintln!("egresswatch: config reload failed, running config unchanged: {e:#}")
            }
        }
    }
}

/// Runs a flow-export collector until its sockets stop (the stop flag the collector was
/// started with: SIGINT/SIGTERM), then ends every flow and window, and reports.
pub fn collect(
    config: &Config,
    collector: &Collector,
    options: &ReplayOptions,
    reloader: Option<&Reloader<'_>>,
    on_alerts: &mut AlertHandler<'_>,
) -> Result<RunReport, PipelineError> {
    let mut run = Run::new(config, options)?;
    // After a stop the socket threads drain their sockets and exit; the queue closes when the
    // last one has.
    loop {
        let received = collector.recv(COLLECTOR_POLL);
        match &received {
            Received::Batch(batch) => {
                for d in batch.iter() {
                    run.datagram(d.exporter, d.recv_ns, d.payload, on_alerts)?;
                }
            }
            Received::Nothing => run.idle(wall_clock_ns(), on_alerts)?,
            Received::Closed => {}
        }
        for (exporter, n) in collector.take_drops() {
            run.count_queue_drops(exporter, n);
        }
        if let Some(reloader) = reloader {
            reloader.poll(&mut run);
        }
        if run.publish_clock.due() {
            run.publish(None, |s| s.collector_queue = collector.queued());
        }
        match received {
            Received::Batch(batch) => collector.recycle(batch),
            Received::Closed => break,
            Received::Nothing => {}
        }
    }
    run.finish(on_alerts)
}

/// Runs live capture until its capture threads end (the stop flag the capture was started
/// with: SIGINT/SIGTERM), then ends every flow and window, and reports. Packet timestamps are
/// the wall clock, so on a quiet link event time follows the wall clock and windows still
/// close. Every `[live] stats_interval_seconds` a line with each interface's drops goes to
/// stderr, with a warning when the interval's drop rate exceeds `drop_warn_percent`.
pub fn live(
    config: &Config,
    opened: OpenCaptures,
    stop: Arc<AtomicBool>,
    options: &ReplayOptions,
    reloader: Option<&Reloader<'_>>,
    on_alerts: &mut AlertHandler<'_>,
) -> Result<RunReport, PipelineError> {
    // Ready before the first frame is read, so no batch waits on the setup.
    let mut run = Run::new(config, options)?;
    let mut capture = opened.start(stop.clone());
    let result = live_loop(&mut run, &capture, options.threads, reloader, on_alerts);
    if result.is_err() {
        // The capture threads end only once the queue is read to its end.
        stop.store(true, Ordering::Relaxed);
        while !matches!(capture.recv(LIVE_POLL), LiveReceived::Closed) {}
    }
    capture.join();
    result?;
    eprintln!(
        "egresswatch: capture stopped; flushing flows and windows (signal again to exit at once)"
    );
    let mut report = run.finish(on_alerts)?;
    report.stats.live = capture.stats();
    Ok(report)
}

fn live_loop(
    run: &mut Run,
    capture: &LiveCapture,
    threads: usize,
    reloader: Option<&Reloader<'_>>,
    on_alerts: &mut AlertHandler<'_>,
) -> Result<(), PipelineError> {
    let interval = std::time::Duration::from_secs(run.config.live.stats_interval_seconds.max(1));
    let warn_percent = run.config.live.drop_warn_percent;
    let mut last_stats = capture.stats();
    let mut last_frames = 0u64;
    let mut next_stats = std::time::Instant::now() + interval;
    let mut shards = match threads {
        0 | 1 => None,
        n => Some(Shards::start(&run.config, n).map_err(PipelineError::Threads)?),
    };
    // Batches whose frames shard workers may still be reading.
    let mut lent: Vec<crate::source::live::Batch> = Vec::new();
    let result = loop {
        let step = match (capture.recv(LIVE_POLL), shards.as_mut()) {
            (LiveReceived::Batch(batch), None) => {
                let mut result = Ok(());
                for frame in batch.frames() {
                    result = run.frame(&frame, on_alerts);
                    if result.is_err() {
                        break;
                    }
                }
                capture.recycle(batch);
                result
            }
            (LiveReceived::Batch(batch), Some(shards)) => {
                let mut result = Ok(());
                for frame in batch.frames() {
                    if let Some(round) = shards.frame(&frame) {
                        result = run.apply_round(round, on_alerts);
                        if result.is_err() {
                            break;
                        }
                    }
                }
                lent.push(batch);
                result
            }
            (LiveReceived::Nothing, None) => run.advance(wall_clock_ns(), on_alerts),
            (LiveReceived::Nothing, Some(shards)) => {
                // A quiet link: what is in flight is applied now, not when traffic resumes.
                shards.advance(wall_clock_ns());
                shards
                    .drain()
                    .into_iter()
                    .try_for_each(|round| run.apply_round(round, on_alerts))
            }
            (LiveReceived::Closed, _) => break Ok(()),
        };
        if let Err(e) = step {
            break Err(e);
        }
        let (free, busy): (Vec<_>, Vec<_>) = lent.drain(..).partition(|b| !b.in_use());
        lent = busy;
        free.into_iter().for_each(|b| capture.recycle(b));
        if let Some(reloader) = reloader {
            reloader.poll(run);
        }
        if run.publish_clock.due() {
            run.publish(shards.as_ref(), |s| s.stats.live = capture.stats());
        }
        if std::time::Instant::now() >= next_stats {
            next_stats += interval;
            let now = capture.stats();
            let frames = match &shards {
                Some(shards) => shards.frames(),
                None => run.path.counters.frames,
            };
            report_live_interval(&last_stats, &now, frames - last_frames, warn_percent);
            (last_stats, last_frames) = (now, frames);
        }
    };
    if let Some(shards) = shards {
        run.finish_shards(shards, on_alerts)?;
    }
    result
}

/// The periodic live stats line, and a warning per interface that dropped too much.
fn report_live_interval(
    before: &[crate::stats::InterfaceStats],
    now: &[crate::stats::InterfaceStats],
    frames: u64,
    warn_percent: f64,
) {
    let mut line = format!("egresswatch: live: {frames} frames processed");
    let mut warnings = Vec::new();
    for (then, total) in before.iter().zip(now) {
        let delta = total.since(then);
        line.push_str(&format!(
            "; {} +{} received, drops kernel=+{} interface=+{} queue=+{} (totals {} {} {} {})",
            total.interface,
            delta.received,
            delta.kernel_dropped,
            delta.if_dropped,
            delta.queue_dropped,
            total.received,
            total.kernel_dropped,
            total.if_dropped,
            total.queue_dropped,
        ));
        let percent = delta.drop_percent();
        if delta.dropped() > 0 && percent > warn_percent {
            warnings.push(format!(
                "egresswatch: warning: {} dropped {:.2}% of its frames over the last interval \
                 (kernel {}, interface {}, queue {}); see README \"Drop statistics\"",
                total.interface,
                percent,
                delta.kernel_dropped,
                delta.if_dropped,
                delta.queue_dropped
            ));
        }
    }
    eprintln!("{line}");
    for w in warnings {
        eprintln!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows_closed(run: &Run) -> u64 {
        run.sensor.engine.counters.windows_closed
    }

    /// A live exporter that goes silent: its last records still reach a closed window, on
    /// the wall clock, not only when the next datagram arrives.
    #[test]
    fn collector_windows_close_while_exporters_are_silent() {
        let config = Config::default();
        let mut run = Run::new(&config, &ReplayOptions::default()).unwrap();
        let mut alerts = |_: &[Alert]| Ok(());
        let exporter: SocketAddr = "127.0.0.1:9995".parse().unwrap();
        let arrival = 1_700_000_001 * NS;
        let datagram = crate::export::netflow::v5_datagram(0, 2);
        run.datagram(exporter, arrival, &datagram, &mut alerts)
            .unwrap();
        let wait = config.export.reorder_seconds * NS;
        run.idle(arrival + wait, &mut alerts).unwrap();
        assert!(run.now_ns > 0, "the records left the reorder buffer");
        assert_eq!(windows_closed(&run), 0);
        let event = run.now_ns;
        let window = config.windows.window_seconds * NS;
        let to_boundary = (event / window + 1) * window - event;
        // Silence short of the window's end (after the reorder wait): still open.
        run.idle(arrival + 2 * wait + to_boundary - NS, &mut alerts)
            .unwrap();
        assert_eq!(windows_closed(&run), 0);
        run.idle(arrival + 2 * wait + to_boundary + NS, &mut alerts)
            .unwrap();
        assert_eq!(windows_closed(&run), 1);
    }

    /// A decoder that cannot keep up: the socket thread drops what the bounded queue cannot
    /// hold, counts it per exporter, and the run reports it; nothing is lost uncounted.
    #[test]
    fn collector_queue_overflow_is_counted_per_exporter() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut config = Config::default();
        config.export.queue_datagrams = 1;
        let stop = Arc::new(AtomicBool::new(false));
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let collector =
            Collector::start(&[listen], config.export.queue_datagrams, stop.clone()).unwrap();
        let exporter = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagram = crate::export::netflow::v5_datagram(0, 1);
        let sent = 100u64;
        for _ in 0..sent {
            exporter
                .send_to(&datagram, collector.local_addrs()[0])
                .unwrap();
        }
        // Nobody reads the queue yet; the socket thread meets a full queue.
        std::thread::sleep(std::time::Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let mut alerts = |_: &[Alert]| Ok(());
        let report = collect(
            &config,
            &collector,
            &ReplayOptions::default(),
            None,
            &mut alerts,
        )
        .unwrap();
        collector.join();
        let export = &report.stats.export;
        let drops = export.queue_drops.get("127.0.0.1").copied().unwrap_or(0);
        assert!(drops > 0, "a one-datagram queue overflowed");
        assert_eq!(export.netflow_datagrams + drops, sent);
        assert!(
            report
                .stats
                .summary()
                .contains(&format!("collector queue drops: 127.0.0.1={drops}"))
        );
    }

    #[test]
    fn queue_drops_from_many_spoofed_exporters_fold_into_other() {
        let mut run = Run::new(&Config::default(), &ReplayOptions::default()).unwrap();
        for i in 0..300u32 {
            run.count_queue_drops(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), 2);
        }
        let drops = &run.sensor.stats.export.queue_drops;
        assert_eq!(drops.len(), MAX_QUEUE_DROP_EXPORTERS + 1);
        assert_eq!(drops.get("other"), Some(&(2 * 44)));
        assert_eq!(drops.values().sum::<u64>(), 600);
    }

    /// Replays office.pcap, reloading `reloaded` after `at` packets; the report and what
    /// the reload said it kept.
    fn office_with_reload(at: usize, reloaded: Config) -> (RunReport, Vec<&'static str>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/office.pcap");
        let mut reader = CaptureReader::open(&[path]).unwrap();
        let mut run = Run::new(&Config::default(), &ReplayOptions::default()).unwrap();
        let mut alerts = |_: &[Alert]| Ok(());
        let mut kept = Vec::new();
        let mut seen = 0;
        while let Some(packet) = reader.next_packet() {
            if seen == at {
                kept = run.reload(reloaded.clone()).unwrap();
            }
            seen += 1;
            run.packet(&packet, &mut alerts).unwrap();
        }
        (run.finish(&mut alerts).unwrap(), kept)
    }

    fn services(report: &RunReport) -> BTreeSet<String> {
        report
            .alerts
            .iter()
            .filter_map(|a| a.destination_hostname.clone())
            .collect()
    }

    #[test]
    fn reload_applies_domain_lists_and_keeps_flow_state() {
        let (plain, kept) = office_with_reload(usize::MAX, Config::default());
        assert!(kept.is_empty());
        assert!(services(&plain).contains("api.honeygain.com"), "{plain:?}");

        let mut allow = Config::default();
        allow.proxyware.allow_domains = vec!["honeygain.com".into()];
        let (at_start, kept) = office_with_reload(0, allow.clone());
        assert!(kept.is_empty());
        assert!(!services(&at_start).contains("api.honeygain.com"));
        assert_eq!(at_start.stats.config_reloads, 1);

        // Half-way, with a window length change that must wait for a restart: flows and
        // windows carry on as if nothing happened.
        allow.windows.window_seconds = 300;
        let (midway, kept) = office_with_reload(500, allow);
        assert_eq!(kept, vec!["windows"]);
        assert_eq!(midway.stats.flows, plain.stats.flows);
        assert_eq!(midway.stats.windows_closed, plain.stats.windows_closed);
        // What was observed before the reload still alerts.
        assert!(services(&midway).contains("api.honeygain.com"));
        assert!(midway.stats.proxyware_observations < plain.stats.proxyware_observations);

        // A reload that cannot be applied changes nothing.
        let mut broken = Config::default();
        broken.proxyware.domains_file = "/nonexistent/domains.txt".into();
        let mut run = Run::new(&Config::default(), &ReplayOptions::default()).unwrap();
        assert!(run.reload(broken).is_err());
        assert_eq!(run.sensor.stats.config_reloads, 0);
    }

    #[test]
    fn authority_host() {
        assert_eq!(host_without_port("apache.org:443"), "apache.org");
        assert_eq!(host_without_port("apache.org"), "apache.org");
        assert_eq!(host_without_port("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(host_without_port("2001:db8::1"), "2001:db8::1");
    }
}
