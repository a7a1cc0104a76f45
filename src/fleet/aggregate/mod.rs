//! `egresswatch aggregate`: reads what the sensors publish (a durable pull consumer on the
//! sites stream), keeps the fleet's state in a JetStream key-value bucket, publishes each
//! window's fleet baseline and raises fleet alerts.
//!
//! Nothing that matters lives in this process: every update is a read-modify-write of one
//! key with the revision read (compare-and-set, retried on conflict), and merging the same
//! message twice stores the same value, so a message redelivered after a crash (stored, not
//! yet acknowledged) counts once, a restart resumes from the durable consumer, and several
//! aggregators with the same durable name share the messages (JetStream's pull-consumer work
//! sharing, its queue group) and agree. A message is acknowledged only once its effects are
//! stored. Fleet alerts are raised once: an aggregator claims the key `alerted.<id>` by
//! compare-and-set, and only the claim still latest when the alert is published settles it.
pub mod state;

use crate::fleet::schema::{self, Body, FleetAlert, Message, Subjects};
use crate::fleet::{FleetConfig, bus};
use async_nats::jetstream::{self, consumer, kv};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use state::{Finding, SeenEntry, Sighting, WindowEntry};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// `[aggregate]`: `egresswatch aggregate`. The bus and stream settings are `[fleet]`'s.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AggregateConfig {
    /// This aggregator's name on its messages (the envelope's `sensor`); empty: host name.
    pub name: String,
    /// Durable consumer name: aggregators sharing it share the work.
    pub durable: String,
    /// Messages not acknowledged within this long are delivered again.
    pub ack_wait_seconds: u64,
    /// Messages delivered and not yet acknowledged, at most (over all aggregators).
    pub max_ack_pending: i64,
    /// Messages fetched and stored together (one update per key and batch).
    pub batch_messages: usize,
    pub state_bucket: String,
    pub state_max_age_hours: u64,
    /// Fewer hosts in a window over all sites: no fleet p90 (as a sensor's own).
    pub population_min_hosts: usize,
    /// Sightings at several sites count together within this span of event time.
    pub correlation_hours: u64,
    pub min_sites_endpoint: usize,
    pub min_sites_asn: usize,
    pub min_sites_proxyware: usize,
    /// ASNs whose endpoints are never fleet findings (big clouds many sites upload to).
    pub ignore_asns: Vec<u32>,
    pub shift_min_hosts: u64,
    pub shift_factor: f64,
    pub shift_min_bytes: u64,
    pub shift_min_fraction: f64,
    /// Hosts (and endpoints, names) kept per site of a finding; the rest are counted.
    pub max_hosts_per_finding: usize,
    /// Sites kept per finding; the oldest go first, counted.
    pub max_sites_per_finding: usize,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            name: String::new(),
            durable: "egresswatch-aggregate".into(),
            ack_wait_seconds: 60,
            max_ack_pending: 1000,
            batch_messages: 256,
            state_bucket: "egresswatch_fleet".into(),
            state_max_age_hours: 72,
            population_min_hosts: 5,
            correlation_hours: 24,
            min_sites_endpoint: 2,
            min_sites_asn: 3,
            min_sites_proxyware: 2,
            ignore_asns: Vec::new(),
            shift_min_hosts: 3,
            shift_factor: 3.0,
            shift_min_bytes: 1_000_000,
            shift_min_fraction: 0.5,
            max_hosts_per_finding: 20,
            max_sites_per_finding: 256,
        }
    }
}

impl AggregateConfig {
    pub fn correlation_ns(&self) -> u64 {
        self.correlation_hours.saturating_mul(3600 * 1_000_000_000)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !schema::valid_name(&self.durable) {
            return Err(format!(
                "aggregate.durable {:?}: letters, digits, '-' and '_' only",
                self.durable
            ));
        }
        if !self.name.is_empty() && !schema::valid_name(&self.name) {
            return Err(format!(
                "aggregate.name {:?}: letters, digits, '-' and '_' only",
                self.name
            ));
        }
        if !schema::valid_name(&self.state_bucket) {
            return Err(format!(
                "aggregate.state_bucket {:?}: letters, digits, '-' and '_' only",
                self.state_bucket
            ));
        }
        let positive = [
            ("ack_wait_seconds", self.ack_wait_seconds),
            ("max_ack_pending", self.max_ack_pending.max(0) as u64),
            ("batch_messages", self.batch_messages as u64),
            ("state_max_age_hours", self.state_max_age_hours),
            ("correlation_hours", self.correlation_hours),
            ("max_hosts_per_finding", self.max_hosts_per_finding as u64),
            ("max_sites_per_finding", self.max_sites_per_finding as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("aggregate.{key} must be greater than 0"));
        }
        if !(self.shift_factor > 0.0 && self.shift_factor.is_finite()) {
            return Err("aggregate.shift_factor must be a positive number".into());
        }
        if !(self.shift_min_fraction > 0.0 && self.shift_min_fraction <= 1.0) {
            return Err("aggregate.shift_min_fraction must be above 0 and at most 1".into());
        }
        Ok(())
    }
}

/// What `egresswatch aggregate` was asked on its command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub durable: String,
    /// Exit when no message came for this long (batch use, tests); None: until a signal.
    pub idle_exit: Option<Duration>,
}

/// Counters of a run (printed on stderr).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub messages: u64,
    pub windows: u64,
    pub sensor_alerts: u64,
    pub baselines: u64,
    pub fleet_alerts: u64,
    /// Messages delivered more than once (an aggregator stopped before acknowledging).
    pub redeliveries: u64,
    /// Other schema versions, unreadable messages, invalid names: acknowledged and skipped.
    pub schema_rejects: u64,
    /// Updates given up: a value over the server's max_payload (the window's baseline is
    /// not published; the message is acknowledged) or a stored value that did not parse.
    pub store_failures: u64,
    /// Batches left unacknowledged after an error of the bus (delivered again).
    pub retried_batches: u64,
    /// Compare-and-set conflicts (another aggregator updated the key first).
    pub conflicts: u64,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "{} messages ({} windows, {} sensor alerts), {} baselines published, {} fleet alerts \
             raised, {} redeliveries, {} schema rejects, {} store failures, {} retried batches, \
             {} conflicts",
            self.messages,
            self.windows,
            self.sensor_alerts,
            self.baselines,
            self.fleet_alerts,
            self.redeliveries,
            self.schema_rejects,
            self.store_failures,
            self.retried_batches,
            self.conflicts
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Will never succeed: counted, logged, the message acknowledged.
    #[error("{0}")]
    Permanent(String),
    /// The bus: leave the batch unacknowledged, it comes again.
    #[error("{0}")]
    Transient(String),
}

/// Header of a baseline message: the revision of the window's state it was computed from.
const STATE_REVISION: &str = "Egresswatch-State-Revision";

/// Waits for SIGINT or SIGTERM.
/// The bucket's record of a raised fleet alert.
#[derive(Default, Serialize, Deserialize)]
struct Alerted {
    /// False between claiming the alert and its publish being acknowledged.
    published: bool,
    alert: Option<FleetAlert>,
}

/// Claims the publishing of `alert` in the state bucket: the revision of the record that
/// names this aggregator its publisher, or None when it was published already. A record left
/// pending is taken over (its aggregator may have died; or it is publishing now, and then
/// the stream keeps one copy and only the latest claim settles, see [`settle_alert`]).
pub async fn claim_alert(
    kv: &kv::Store,
    alert: &FleetAlert,
    max_value: usize,
) -> Result<(Option<u64>, u64), StoreError> {
    let key = state::alerted_key(&alert.id);
    let (record, revision, conflicts) =
        read_modify_write(kv, &key, max_value, |record: &mut Alerted| {
            if record.published {
                return false;
            }
            record.alert = Some(alert.clone());
            true
        })
        .await?;
    Ok(((!record.published).then_some(revision), conflicts))
}

/// Marks `alert` published if the claim at `revision` is still the record's latest. False:
/// another aggregator took the claim over since and reports the alert itself, so each fleet
/// alert is reported by one aggregator, once.
pub async fn settle_alert(
    kv: &kv::Store,
    alert: &FleetAlert,
    revision: u64,
) -> Result<bool, StoreError> {
    let key = state::alerted_key(&alert.id);
    let record = serde_json::to_vec(&Alerted {
        published: true,
        alert: Some(alert.clone()),
    })
    .map_err(|e| StoreError::Permanent(e.to_string()))?;
    match kv.update(&key, record.into(), revision).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
        Err(e) => Err(StoreError::Transient(format!("{key}: {e}"))),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
        _ => std::future::pending().await,
    }
}

/// Runs until a signal (or `idle_exit`), calling `on_alert` for each fleet alert raised here.
pub fn run(
    fleet: &FleetConfig,
    config: &AggregateConfig,
    options: &Options,
    on_alert: &mut dyn FnMut(&FleetAlert) -> std::io::Result<()>,
) -> anyhow::Result<Summary> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(fleet, config, options, on_alert))
}

struct Aggregator<'a> {
    config: &'a AggregateConfig,
    js: jetstream::Context,
    kv: kv::Store,
    /// The baselines stream: read for the revision of the latest figure of a window.
    baselines: jetstream::stream::Stream,
    subjects: Subjects,
    name: String,
    /// Largest value written to the bucket (the server's max_payload less room for headers).
    max_value: usize,
    summary: Summary,
    logged: BTreeSet<String>,
    seq: u64,
    run: u64,
}

async fn run_async(
    fleet: &FleetConfig,
    config: &AggregateConfig,
    options: &Options,
    on_alert: &mut dyn FnMut(&FleetAlert) -> std::io::Result<()>,
) -> anyhow::Result<Summary> {
    let name = if config.name.is_empty() {
        crate::fleet::default_sensor_name()
    } else {
        config.name.clone()
    };
    if !schema::valid_name(&options.durable) {
        anyhow::bail!(
            "--durable {:?}: letters, digits, '-' and '_' only",
            options.durable
        );
    }
    let subjects = fleet.subjects();
    let client = bus::connect(&options.url, &format!("egresswatch-aggregate-{name}")).await?;
    let js = jetstream::new(client.clone());
    let Bound {
        kv,
        consumer,
        baselines,
    } = bind_with_retries(&js, &subjects, config, fleet, options).await?;
    eprintln!(
        "egresswatch: aggregating {} (durable consumer {}, state bucket {}) as {name}",
        subjects.sites_stream(),
        options.durable,
        config.state_bucket
    );
    let max_payload = client.server_info().max_payload;
    let mut agg = Aggregator {
        config,
        js,
        kv,
        baselines,
        subjects,
        name,
        max_value: max_payload.saturating_sub(4096).max(1024),
        summary: Summary::default(),
        logged: BTreeSet::new(),
        seq: 0,
        run: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let mut last_message = Instant::now();
    let mut last_progress = Instant::now();
    let poll = options
        .idle_exit
        .map_or(Duration::from_secs(1), |d| {
            (d / 2).min(Duration::from_secs(1))
        })
        .max(Duration::from_millis(100));
    loop {
        if options
            .idle_exit
            .is_some_and(|d| last_message.elapsed() >= d)
        {
            break;
        }
        let fetched = tokio::select! {
            _ = &mut shutdown => break,
            b = fetch(&consumer, config.batch_messages, poll) => b,
        };
        let batch = match fetched {
            Ok(b) => b,
            Err(e) => {
                eprintln!("egresswatch: aggregate: fetching: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        last_message = Instant::now();
        let raised = agg.process(&batch).await;
        match raised {
            Ok(alerts) => {
                for a in &alerts {
                    on_alert(a)?;
                }
                // Everything the batch changed is stored: acknowledge it.
                for m in &batch {
                    if let Err(e) = m.ack().await {
                        eprintln!("egresswatch: aggregate: ack: {e}");
                    }
                }
            }
            Err(e) => {
                // Not acknowledged: delivered again after ack_wait, and merged again as if new
                // (merging is idempotent).
                agg.summary.retried_batches += 1;
                eprintln!(
                    "egresswatch: aggregate: {e}; {} messages left for redelivery",
                    batch.len()
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if last_progress.elapsed() >= Duration::from_secs(10) {
            last_progress = Instant::now();
            eprintln!("egresswatch: aggregate: {}", agg.summary.line());
        }
    }
    // Acknowledgements are sent without waiting for replies: make sure they left.
    if let Err(e) = client.flush().await {
        eprintln!("egresswatch: aggregate: flushing acknowledgements: {e}");
    }
    Ok(agg.summary)
}

async fn fetch(
    consumer: &consumer::PullConsumer,
    max: usize,
    expires: Duration,
) -> Result<Vec<jetstream::Message>, String> {
    let mut messages = consumer
        .batch()
        .max_messages(max.max(1))
        .expires(expires)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(m) = messages.next().await {
        match m {
            Ok(m) => out.push(m),
            // What came before the error is processed; the rest comes with the next fetch.
            Err(e) => {
                if out.is_empty() {
                    return Err(e.to_string());
                }
                break;
            }
        }
    }
    Ok(out)
}

/// What the aggregator works on once bound to the bus.
struct Bound {
    kv: kv::Store,
    consumer: consumer::PullConsumer,
    baselines: jetstream::stream::Stream,
}

/// How long start-up keeps trying to declare its streams, bucket and consumer.
const BIND_PATIENCE: Duration = Duration::from_secs(60);

/// Binds to the bus, retrying: a JetStream API request can time out on a busy server, and
/// aggregators and sensors starting together race to declare the same streams. Told once;
/// gives up after [`BIND_PATIENCE`] with the last error.
async fn bind_with_retries(
    js: &jetstream::Context,
    subjects: &Subjects,
    config: &AggregateConfig,
    fleet: &FleetConfig,
    options: &Options,
) -> anyhow::Result<Bound> {
    let started = Instant::now();
    let mut told = false;
    loop {
        match bind(js, subjects, config, fleet, options).await {
            Ok(bound) => return Ok(bound),
            Err(e) if started.elapsed() >= BIND_PATIENCE => return Err(e),
            Err(e) => {
                if !told {
                    eprintln!("egresswatch: aggregate: setting up on the bus: {e}; retrying");
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn bind(
    js: &jetstream::Context,
    subjects: &Subjects,
    config: &AggregateConfig,
    fleet: &FleetConfig,
    options: &Options,
) -> anyhow::Result<Bound> {
    bus::ensure_streams(js, subjects, fleet.streams()).await?;
    let kv = open_bucket(js, config, fleet).await?;
    let stream = js
        .get_stream(subjects.sites_stream())
        .await
        .map_err(|e| anyhow::anyhow!("stream {}: {e}", subjects.sites_stream()))?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &options.durable,
            consumer::pull::Config {
                durable_name: Some(options.durable.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(config.ack_wait_seconds.max(1)),
                max_ack_pending: config.max_ack_pending.max(1),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("consumer {}: {e}", options.durable))?;
    let baselines = js
        .get_stream(subjects.baselines_stream())
        .await
        .map_err(|e| anyhow::anyhow!("stream {}: {e}", subjects.baselines_stream()))?;
    Ok(Bound {
        kv,
        consumer,
        baselines,
    })
}

/// The state bucket, created if missing. Its stream is declared here as a KV bucket's is
/// (`KV_<bucket>`, one message per key): async-nats's `create_key_value` first asks for the
/// account's limits in a form nats-server 2.9 does not send.
pub async fn open_bucket(
    js: &jetstream::Context,
    config: &AggregateConfig,
    fleet: &FleetConfig,
) -> anyhow::Result<kv::Store> {
    use jetstream::stream;
    let bucket = &config.state_bucket;
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("egresswatch aggregate: fleet state".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: Duration::from_secs(config.state_max_age_hours.max(1) * 3600),
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: fleet.stream_replicas.max(1),
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("state bucket {bucket}: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| anyhow::anyhow!("state bucket {bucket}: {e}"))
}

/// What one batch asks to update, grouped by key.
#[derive(Default)]
struct Work<'m> {
    windows: BTreeMap<String, Vec<(&'m str, &'m str, &'m schema::WindowSummary)>>,
    endpoints: BTreeMap<String, (IpAddr, u16, Option<u32>, Vec<Sighting>)>,
    asns: BTreeMap<String, (u32, Vec<Sighting>)>,
    services: BTreeMap<String, (String, Vec<Sighting>)>,
}

impl Aggregator<'_> {
    /// Logged once per kind of problem (the first message's stream sequence).
    fn log_once(&mut self, kind: &str, text: impl FnOnce() -> String) {
        if self.logged.insert(kind.to_string()) {
            eprintln!("egresswatch: aggregate: {} (logged once; counted)", text());
        }
    }

    async fn process(
        &mut self,
        batch: &[jetstream::Message],
    ) -> Result<Vec<FleetAlert>, StoreError> {
        let mut parsed: Vec<Message> = Vec::with_capacity(batch.len());
        for m in batch {
            self.summary.messages += 1;
            let sequence = m.info().map(|i| {
                if i.delivered > 1 {
                    self.summary.redeliveries += 1;
                }
                i.stream_sequence
            });
            let sequence = sequence.map_or("?".to_string(), |s| s.to_string());
            match read_message(&m.payload) {
                Ok(msg) => parsed.push(msg),
                Err((kind, why)) => {
                    self.summary.schema_rejects += 1;
                    self.log_once(&kind, || {
                        format!("message at stream sequence {sequence} skipped: {why}")
                    });
                    // Never delivered again.
                    if let Err(e) = m.ack_with(jetstream::AckKind::Term).await {
                        eprintln!("egresswatch: aggregate: ack: {e}");
                    }
                }
            }
        }
        let mut work = Work::default();
        for msg in &parsed {
            match &msg.body {
                Body::Window(w) => {
                    self.summary.windows += 1;
                    work.windows
                        .entry(state::window_key(w.window_start_ns))
                        .or_default()
                        .push((&msg.site, &msg.sensor, w));
                    let (eps, asns) = state::upload_sightings(&msg.site, w, self.config);
                    for ((ip, port), (asn, list)) in eps {
                        let e = work
                            .endpoints
                            .entry(state::endpoint_key(ip, port))
                            .or_insert((ip, port, asn, Vec::new()));
                        e.2 = e.2.or(asn);
                        e.3.extend(list);
                    }
                    for (asn, list) in asns {
                        work.asns
                            .entry(state::asn_key(asn))
                            .or_insert((asn, Vec::new()))
                            .1
                            .extend(list);
                    }
                }
                Body::Alert { alert } => {
                    self.summary.sensor_alerts += 1;
                    if let Some((service, s)) =
                        state::proxyware_sighting(&msg.site, alert, msg.event_time_ns)
                        && let Some(key) = state::service_key(&service)
                    {
                        work.services
                            .entry(key)
                            .or_insert((service, Vec::new()))
                            .1
                            .push(s);
                    }
                }
                // Filtered out by read_message.
                Body::Baseline(_) | Body::FleetAlert { .. } => {}
            }
        }
        let mut raised = Vec::new();
        for (key, parts) in &work.windows {
            self.window(key, parts, &mut raised).await?;
        }
        for (key, (ip, port, asn, list)) in work.endpoints {
            let alert = self
                .seen(&key, Finding::Endpoint, &list, |e| {
                    e.ip = Some(ip);
                    e.port = Some(port);
                    e.asn = e.asn.or(asn);
                })
                .await?;
            self.raise(alert, &mut raised).await?;
        }
        for (key, (asn, list)) in work.asns {
            let alert = self
                .seen(&key, Finding::Asn, &list, |e| e.asn = Some(asn))
                .await?;
            self.raise(alert, &mut raised).await?;
        }
        for (key, (service, list)) in work.services {
            let alert = self
                .seen(&key, Finding::Service, &list, |e| {
                    e.service.get_or_insert(service.clone());
                })
                .await?;
            self.raise(alert, &mut raised).await?;
        }
        Ok(raised)
    }

    async fn window(
        &mut self,
        key: &str,
        parts: &[(&str, &str, &schema::WindowSummary)],
        raised: &mut Vec<FleetAlert>,
    ) -> Result<(), StoreError> {
        let config = self.config;
        let stored: Option<(WindowEntry, u64)> = match self
            .read_modify_write(key, |entry: &mut WindowEntry| {
                for (site, sensor, w) in parts {
                    state::merge_part(entry, site, sensor, w, config);
                }
                true
            })
            .await
        {
            Ok(entry) => Some(entry),
            Err(StoreError::Permanent(why)) => {
                self.summary.store_failures += 1;
                self.log_once(&format!("store {key}"), || {
                    format!("{key}: {why}; its baseline is not published")
                });
                None
            }
            Err(e) => return Err(e),
        };
        let Some((entry, revision)) = stored else {
            return Ok(());
        };
        let baseline = state::window_baseline(&entry, config.population_min_hosts);
        if self.publish_baseline(baseline, revision).await? {
            self.summary.baselines += 1;
        }
        // The sites this batch touched: a site's shift is judged when its parts arrive.
        let touched: BTreeSet<&str> = parts.iter().map(|p| p.0).collect();
        let shifts = state::shifted_sites(&entry, config);
        for shift in shifts.iter().filter(|s| touched.contains(s.site.as_str())) {
            let together: Vec<&state::SiteShift> =
                shifts.iter().filter(|s| s.site != shift.site).collect();
            let alert = state::shift_alert(&entry, shift, &together, config);
            self.raise(Some(alert), raised).await?;
        }
        Ok(())
    }

    /// Merges sightings into `key`'s entry; the alert it calls for now, if any.
    async fn seen(
        &mut self,
        key: &str,
        finding: Finding,
        sightings: &[Sighting],
        identity: impl Fn(&mut SeenEntry),
    ) -> Result<Option<FleetAlert>, StoreError> {
        let config = self.config;
        let result = self
            .read_modify_write(key, |entry: &mut SeenEntry| {
                let before = entry.clone();
                identity(entry);
                for s in sightings {
                    state::record(entry, s, config);
                }
                *entry != before
            })
            .await;
        match result {
            Ok((entry, _)) => Ok(state::seen_alert(&entry, finding, config)),
            Err(StoreError::Permanent(why)) => {
                self.summary.store_failures += 1;
                self.log_once(&format!("store {key}"), || format!("{key}: {why}"));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes the alert unless some aggregator raised it before: claims it in the bucket
    /// (`alerted.<id>`), publishes it (its id is the message id, so a repeat within the
    /// stream's duplicate window is stored once), then settles the claim. An aggregator killed
    /// in between leaves the claim pending: the batch comes again and the next one publishes
    /// it. Reported here only if the claim settles: never lost, never reported twice.
    async fn raise(
        &mut self,
        alert: Option<FleetAlert>,
        raised: &mut Vec<FleetAlert>,
    ) -> Result<(), StoreError> {
        let Some(alert) = alert else { return Ok(()) };
        let revision = match claim_alert(&self.kv, &alert, self.max_value).await {
            Ok((revision, conflicts)) => {
                self.summary.conflicts += conflicts;
                match revision {
                    Some(r) => r,
                    None => return Ok(()),
                }
            }
            Err(StoreError::Permanent(why)) => {
                self.summary.store_failures += 1;
                let key = state::alerted_key(&alert.id);
                self.log_once(&format!("store {key}"), || {
                    format!("{key}: {why}; the alert is not raised")
                });
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let subject = self.subjects.fleet_alerts();
        let event_time = chrono::DateTime::parse_from_rfc3339(&alert.time)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .map_or(0, |t| t.max(0) as u64);
        self.publish(
            subject,
            &alert.id.clone(),
            event_time,
            Body::FleetAlert {
                alert: Box::new(alert.clone()),
            },
        )
        .await?;
        if !settle_alert(&self.kv, &alert, revision).await? {
            self.summary.conflicts += 1;
            return Ok(());
        }
        self.summary.fleet_alerts += 1;
        raised.push(alert);
        Ok(())
    }

    async fn publish(
        &mut self,
        subject: String,
        msg_id: &str,
        event_time_ns: u64,
        body: Body,
    ) -> Result<(), StoreError> {
        self.publish_with(
            subject,
            async_nats::HeaderMap::new(),
            msg_id,
            event_time_ns,
            body,
        )
        .await
        .map_err(|e| StoreError::Transient(e.to_string()))
    }

    async fn publish_with(
        &mut self,
        subject: String,
        mut headers: async_nats::HeaderMap,
        msg_id: &str,
        event_time_ns: u64,
        body: Body,
    ) -> Result<(), jetstream::context::PublishError> {
        self.seq += 1;
        let message = Message {
            schema: schema::SCHEMA.into(),
            site: "fleet".into(),
            sensor: self.name.clone(),
            run: self.run,
            seq: self.seq,
            event_time_ns,
            dropped: 0,
            body,
        };
        // Plain data: serialising cannot fail.
        let payload = serde_json::to_vec(&message).unwrap_or_default();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
        self.js
            .publish_with_headers(subject, headers, payload.into())
            .await?
            .await?;
        Ok(())
    }

    /// Publishes a window's figure unless a figure from the same or a later state of the
    /// window is there already: with several aggregators, publishes may arrive out of order,
    /// and the stream keeps the last one. The state's revision goes in a header; the publish
    /// expects the subject's last message to be the one read (else reads again).
    async fn publish_baseline(
        &mut self,
        baseline: schema::FleetBaseline,
        revision: u64,
    ) -> Result<bool, StoreError> {
        const ATTEMPTS: usize = 20;
        let subject = self.subjects.baseline(baseline.window_start_ns);
        let msg_id = state::baseline_msg_id(&baseline);
        for _ in 0..ATTEMPTS {
            let (last_seq, last_revision) = match self
                .baselines
                .get_last_raw_message_by_subject(&subject)
                .await
            {
                Ok(m) => (
                    m.sequence,
                    m.headers
                        .get(STATE_REVISION)
                        .and_then(|v| v.as_str().parse::<u64>().ok()),
                ),
                Err(e)
                    if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    (0, None)
                }
                Err(e) => return Err(StoreError::Transient(format!("{subject}: {e}"))),
            };
            if last_revision.is_some_and(|r| r >= revision) {
                return Ok(false);
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(STATE_REVISION, revision.to_string().as_str());
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                last_seq.to_string().as_str(),
            );
            let event_time = baseline.window_end_ns;
            match self
                .publish_with(
                    subject.clone(),
                    headers,
                    &msg_id,
                    event_time,
                    Body::Baseline(baseline.clone()),
                )
                .await
            {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    self.summary.conflicts += 1;
                }
                Err(e) => return Err(StoreError::Transient(format!("{subject}: {e}"))),
            }
        }
        Err(StoreError::Transient(format!(
            "{subject}: still conflicting after {ATTEMPTS} attempts"
        )))
    }

    /// [`read_modify_write`] on this aggregator's bucket, its conflicts counted.
    async fn read_modify_write<T>(
        &mut self,
        key: &str,
        change: impl FnMut(&mut T) -> bool,
    ) -> Result<(T, u64), StoreError>
    where
        T: Default + Serialize + serde::de::DeserializeOwned,
    {
        let (value, revision, conflicts) =
            read_modify_write(&self.kv, key, self.max_value, change).await?;
        self.summary.conflicts += conflicts;
        Ok((value, revision))
    }
}

/// Reads `key` (absent: the default), applies `change` (false: nothing changed, nothing
/// written) and writes it back if the key is still at the revision read; on a conflict reads
/// again. Returns the value stored, its revision and the conflicts met.
async fn read_modify_write<T>(
    kv: &kv::Store,
    key: &str,
    max_value: usize,
    mut change: impl FnMut(&mut T) -> bool,
) -> Result<(T, u64, u64), StoreError>
where
    T: Default + Serialize + serde::de::DeserializeOwned,
{
    const ATTEMPTS: usize = 50;
    let mut conflicts = 0;
    for _ in 0..ATTEMPTS {
        let entry = kv
            .entry(key)
            .await
            .map_err(|e| StoreError::Transient(format!("{key}: {e}")))?;
        let (mut value, revision) = match entry {
            Some(e) if e.operation == kv::Operation::Put => (
                serde_json::from_slice::<T>(&e.value).map_err(|err| {
                    StoreError::Permanent(format!("stored value does not parse: {err}"))
                })?,
                e.revision,
            ),
            Some(e) => (T::default(), e.revision),
            None => (T::default(), 0),
        };
        if !change(&mut value) {
            return Ok((value, revision, conflicts));
        }
        let bytes = serde_json::to_vec(&value).map_err(|e| StoreError::Permanent(e.to_string()))?;
        if bytes.len() > max_value {
            return Err(StoreError::Permanent(format!(
                "value of {} bytes over the server's max_payload ({} bytes usable)",
                bytes.len(),
                max_value
            )));
        }
        match kv.update(key, bytes.into(), revision).await {
            Ok(written) => return Ok((value, written, conflicts)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => conflicts += 1,
            Err(e) => return Err(StoreError::Transient(format!("{key}: {e}"))),
        }
    }
    Err(StoreError::Transient(format!(
        "{key}: still conflicting after {ATTEMPTS} attempts"
    )))
}

/// A sensor's message, or why it is skipped (kind for logging once, text).
fn read_message(payload: &[u8]) -> Result<Message, (String, String)> {
    let value: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|e| ("json".to_string(), format!("not JSON: {e}")))?;
    let version = value.get("schema").and_then(|s| s.as_str()).unwrap_or("");
    if version != schema::SCHEMA {
        return Err((
            format!("schema {version}"),
            format!("schema {version:?}, this build reads {}", schema::SCHEMA),
        ));
    }
    let message: Message = serde_json::from_value(value)
        .map_err(|e| ("parse".to_string(), format!("does not parse: {e}")))?;
    if !schema::valid_name(&message.site) || !schema::valid_name(&message.sensor) {
        return Err(("name".into(), "invalid site or sensor name".into()));
    }
    match message.body {
        Body::Window(_) | Body::Alert { .. } => Ok(message),
        _ => Err(("kind".into(), "a fleet message on a site subject".into())),
    }
}

/// Fleet alerts for a person: a header, then per alert a row (time, kind, score, severity,
/// what, sites) and its id and reason under it, each line within `style.width` columns.
pub fn write_table_rows(
    out: &mut dyn std::io::Write,
    alerts: &[FleetAlert],
    style: crate::alert::text::Style,
    header: bool,
) -> std::io::Result<()> {
    use crate::alert::text;
    const FIXED: [usize; 4] = [19, 20, 5, 6];
    let rest = style.width.saturating_sub(FIXED.iter().sum::<usize>() + 5);
    let what_w = (rest / 2).max(8);
    let sites_w = rest.saturating_sub(what_w).max(8);
    let line = |cells: [&str; 6]| {
        let widths = [FIXED[0], FIXED[1], FIXED[2], FIXED[3], what_w, sites_w];
        let row: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| text::pad(&text::clean(c), w, i == 2))
            .collect();
        text::cut(row.join(" ").trim_end(), style.width)
    };
    if header {
        writeln!(
            out,
            "{}",
            line(["TIME (UTC)", "KIND", "SCORE", "SEV", "WHAT", "SITES"])
        )?;
    }
    for a in alerts {
        let time = a.time.get(..19).unwrap_or(&a.time).replace('T', " ");
        let what = match (a.destination_ip, a.destination_port, a.asn, &a.service) {
            (Some(ip), Some(port), _, _) => std::net::SocketAddr::new(ip, port).to_string(),
            (_, _, _, Some(service)) => service.clone(),
            (_, _, Some(asn), _) => format!("AS{asn}"),
            _ => a.sites.join(","),
        };
        let sites = format!("{}: {}", a.sites.len(), a.sites.join(", "));
        let score = a.score.to_string();
        let row = line([&time, &a.kind, &score, &a.severity, &what, &sites]);
        // Colour only the severity: escape sequences must not be cut.
        let painted = match row.find(&format!(" {} ", a.severity)) {
            Some(_) if style.colour => row.replacen(
                &format!(" {} ", text::pad(&a.severity, FIXED[3], false)),
                &format!(
                    " {} ",
                    text::paint_severity(
                        style,
                        &a.severity,
                        &text::pad(&a.severity, FIXED[3], false)
                    )
                ),
                1,
            ),
            _ => row,
        };
        writeln!(out, "{painted}")?;
        let indent = "    ";
        writeln!(
            out,
            "{indent}{}",
            text::cut(&a.id, style.width.saturating_sub(4))
        )?;
        for l in text::wrap_cut(&text::clean(&a.reason), style.width.saturating_sub(4), 3) {
            writeln!(out, "{indent}{l}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::text::{Style, strip_ansi, width};

    #[test]
    fn table_rows_fit_the_width() {
        let config = AggregateConfig::default();
        let mut entry = state::SeenEntry {
            ip: Some("198.51.100.7".parse().unwrap()),
            port: Some(443),
            ..Default::default()
        };
        for (site, n) in [("site-north", 1u8), ("site-south", 2)] {
            let s = Sighting {
                site: site.into(),
                host: IpAddr::from([10, 0, 0, n]),
                window_start_ns: 1_709_539_200_000_000_000,
                window_end_ns: 1_709_539_200_000_000_000 + 900_000_000_000,
                bytes_out: 5_000_000,
                via: Vec::new(),
            };
            state::record(&mut entry, &s, &config);
        }
        let alert = state::seen_alert(&entry, Finding::Endpoint, &config).unwrap();
        for style in [
            Style::plain(100),
            Style::plain(60),
            Style {
                width: 80,
                colour: true,
            },
        ] {
            let mut out = Vec::new();
            write_table_rows(&mut out, std::slice::from_ref(&alert), style, true).unwrap();
            let text = String::from_utf8(out).unwrap();
            let plain = strip_ansi(&text);
            assert!(plain.lines().all(|l| width(l) <= style.width), "{plain}");
            assert!(plain.starts_with("TIME (UTC)"), "{plain}");
            assert!(plain.contains(&alert.id), "{plain}");
            assert!(plain.contains("SharedRelayEndpoint"), "{plain}");
            assert_eq!(text != plain, style.colour, "{text}");
            if style.width == 100 {
                assert!(plain.contains("198.51.100.7:443"), "{plain}");
            }
        }
    }
}
