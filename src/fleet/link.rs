//! The sensor's link to the fleet: each closed window's host summary and every alert go to
//! JetStream from a thread of their own, through a bounded buffer, so the packet path never
//! waits for the bus; the fleet baselines the aggregator sends back are kept for scoring.
use super::bus;
use super::schema::{
    Body, FleetBaseline, HostSummary, LongUpload, Message, SCHEMA, Subjects, WindowSummary,
};
use super::{FleetConfig, default_sensor_name};
use crate::alert::Alert;
use crate::detect::windows::{ClosedWindow, PopulationScope};
use async_nats::jetstream::{self, consumer, context::PublishAckFuture, message::PublishMessage};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Publishes awaiting their acknowledgement at once: enough to keep a LAN's round trip busy.
const MAX_IN_FLIGHT: usize = 256;
/// Fleet baselines kept (one per window; a day of 1-minute windows).
const MAX_BASELINES: usize = 1_440;
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What the link did so far (the run's summary and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Messages handed to the publisher (windows in parts, alerts).
    pub queued: u64,
    /// Stored by JetStream (acknowledged).
    pub acknowledged: u64,
    /// Not sent: the buffer was full (bus away or slow), or a message was too big for it.
    pub dropped: u64,
    /// Publishes tried again after a timeout or a lost connection.
    pub retried: u64,
    pub baselines_received: u64,
    /// Windows scored against the fleet's p90 and against the site's own.
    pub windows_fleet_scored: u64,
    pub windows_site_scored: u64,
    /// The bus answered at least once.
    pub connected: bool,
    /// Kafka export (`[fleet.kafka]`), when on.
    pub kafka: Option<super::KafkaCounters>,
}

#[derive(Default)]
struct Shared {
    acknowledged: AtomicU64,
    retried: AtomicU64,
    oversize: AtomicU64,
    baselines_received: AtomicU64,
    connected: AtomicBool,
    baselines: Mutex<BTreeMap<u64, FleetBaseline>>,
}

struct Outgoing {
    subject: String,
    msg_id: String,
    payload: Bytes,
}

pub struct FleetLink {
    site: String,
    sensor: String,
    run: u64,
    seq: u64,
    subjects: Subjects,
    config: FleetConfig,
    window_ns: u64,
    tx: Option<tokio::sync::mpsc::Sender<Outgoing>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    #[cfg(feature = "kafka")]
    kafka: Option<super::kafka::KafkaExport>,
    queued: u64,
    dropped: u64,
    windows_fleet_scored: u64,
    windows_site_scored: u64,
}

impl FleetLink {
    /// Starts the publisher thread and, up to `startup_sync_seconds`, waits for the bus and
    /// the baselines it holds. An unreachable bus is no error: the sensor detects locally and
    /// the link keeps trying.
    pub fn start(config: &FleetConfig, window_ns: u64) -> Result<FleetLink, bus::BusError> {
        config.validate().map_err(bus::BusError::Other)?;
        let sensor = if config.sensor.is_empty() {
            default_sensor_name()
        } else {
            config.sensor.clone()
        };
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let shared = Arc::new(Shared::default());
        let (tx, thread) = if config.enabled() {
            let (tx, rx) = tokio::sync::mpsc::channel(config.buffer_messages.max(1));
            let (ready_tx, ready_rx) = mpsc::channel();
            let thread = {
                let shared = shared.clone();
                let config = config.clone();
                let name = format!("egresswatch-{}-{sensor}", config.site);
                std::thread::Builder::new()
                    .name("fleet-link".into())
                    .spawn(move || publisher_thread(config, name, rx, shared, ready_tx))
                    .map_err(|e| bus::BusError::Other(format!("fleet link thread: {e}")))?
            };
            let wait = Duration::from_secs(config.startup_sync_seconds);
            if !wait.is_zero() && ready_rx.recv_timeout(wait).is_err() {
                eprintln!(
                    "egresswatch: fleet: {} not ready after {}s; detecting locally and publishing when it is",
                    config.url,
                    wait.as_secs()
                );
            }
            (Some(tx), Some(thread))
        } else {
            (None, None)
        };
        #[cfg(feature = "kafka")]
        let kafka = if config.kafka_enabled() {
            Some(
                super::kafka::KafkaExport::start(&config.kafka)
                    .map_err(|e| bus::BusError::Other(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(FleetLink {
            site: config.site.clone(),
            sensor,
            run,
            seq: 0,
            subjects: config.subjects(),
            config: config.clone(),
            window_ns,
            tx,
            shared,
            thread,
            #[cfg(feature = "kafka")]
            kafka,
            queued: 0,
            dropped: 0,
            windows_fleet_scored: 0,
            windows_site_scored: 0,
        })
    }

    pub fn sensor(&self) -> &str {
        &self.sensor
    }

    /// A window just closed: publishes its summary (with the site's own p90), then puts the
    /// fleet's p90 in its place when a fresh one is known, so the detectors score against it.
    pub fn window(&mut self, closed: &mut ClosedWindow) {
        let fleet = self.fresh_baseline(closed.start_ns);
        let scored_against = if fleet.is_some() { "fleet" } else { "site" };
        let population: Vec<&crate::detect::windows::HostWindow> =
            closed.hosts.iter().filter(|h| h.in_population).collect();
        let per_message = self.config.max_hosts_per_message.max(1);
        let parts = population.len().div_ceil(per_message).max(1);
        for part in 0..parts {
            let hosts = population
                .iter()
                .skip(part * per_message)
                .take(per_message)
                .map(|h| host_summary(h))
                .collect();
            let body = Body::Window(WindowSummary {
                window_start_ns: closed.start_ns,
                window_end_ns: closed.end_ns,
                part: part as u32,
                parts: parts as u32,
                hosts_total: population.len() as u64,
                site_p90_bytes_out: closed.population_p90_bytes_out,
                scored_against: scored_against.into(),
                hosts,
            });
            let subject = self.subjects.windows(&self.site);
            self.send("windows", subject, closed.end_ns, body);
        }
        match fleet {
            Some(b) => {
                self.windows_fleet_scored += 1;
                closed.population_p90_bytes_out = b.p90_bytes_out;
                closed.population_scope = PopulationScope::Fleet {
                    sites: b.sites.len() as u32,
                    hosts: b.hosts,
                };
            }
            None => self.windows_site_scored += 1,
        }
    }

    pub fn alerts(&mut self, alerts: &[Alert]) {
        for alert in alerts {
            let Ok(value) = serde_json::to_value(alert) else {
                continue;
            };
            let event_time = chrono::DateTime::parse_from_rfc3339(&alert.window_end)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .map_or(0, |ns| ns.max(0) as u64);
            let subject = self.subjects.alerts(&self.site);
            self.send("alerts", subject, event_time, Body::Alert { alert: value });
        }
    }

    /// The newest fleet baseline with a p90 for a window no later than `start_ns` and at most
    /// `baseline_max_age_windows` before it.
    fn fresh_baseline(&self, start_ns: u64) -> Option<FleetBaseline> {
        if !self.config.use_fleet_baseline {
            return None;
        }
        let max_age =
            u64::from(self.config.baseline_max_age_windows).saturating_mul(self.window_ns);
        let baselines = self.shared.baselines.lock().ok()?;
        baselines
            .range(..=start_ns)
            .rev()
            .take_while(|(s, _)| start_ns - **s <= max_age)
            .map(|(_, b)| b)
            .find(|b| b.p90_bytes_out.is_some())
            .cloned()
    }

    /// `kind` names the Kafka topic ("windows", "alerts").
    fn send(&mut self, kind: &str, subject: String, event_time_ns: u64, body: Body) {
        self.seq += 1;
        let message = Message {
            schema: SCHEMA.into(),
            site: self.site.clone(),
            sensor: self.sensor.clone(),
            run: self.run,
            seq: self.seq,
            event_time_ns,
            dropped: self.dropped,
            body,
        };
        let Ok(payload) = serde_json::to_vec(&message) else {
            self.dropped += 1;
            return;
        };
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &self.kafka {
            // Counted by the export itself (queued or dropped).
            kafka.send(kind, &self.site, &payload);
        }
        #[cfg(not(feature = "kafka"))]
        let _ = kind;
        let Some(tx) = &self.tx else { return };
        let outgoing = Outgoing {
            subject,
            msg_id: message.msg_id(),
            payload: Bytes::from(payload),
        };
        if tx.try_send(outgoing).is_ok() {
            self.queued += 1;
        } else {
            self.dropped += 1;
        }
    }

    pub fn counters(&self) -> LinkCounters {
        let s = &self.shared;
        LinkCounters {
            queued: self.queued,
            acknowledged: s.acknowledged.load(Ordering::Relaxed),
            dropped: self.dropped + s.oversize.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            baselines_received: s.baselines_received.load(Ordering::Relaxed),
            windows_fleet_scored: self.windows_fleet_scored,
            windows_site_scored: self.windows_site_scored,
            connected: s.connected.load(Ordering::Relaxed),
            kafka: self.kafka_totals(),
        }
    }

    #[cfg(feature = "kafka")]
    fn kafka_totals(&self) -> Option<super::KafkaCounters> {
        self.kafka.as_ref().map(|k| k.counters())
    }

    #[cfg(not(feature = "kafka"))]
    fn kafka_totals(&self) -> Option<super::KafkaCounters> {
        None
    }

    /// End of run: closes the buffer and waits (up to `flush_seconds`) for what it holds to be
    /// stored; what is left is counted as dropped.
    pub fn finish(&mut self) -> LinkCounters {
        self.tx = None;
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &self.kafka {
            kafka.flush(Duration::from_secs(self.config.flush_seconds));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mut counters = self.counters();
        // Whatever was queued and never stored did not reach the bus.
        counters.dropped = self.dropped + counters.queued.saturating_sub(counters.acknowledged);
        counters
    }
}

impl Drop for FleetLink {
    fn drop(&mut self) {
        self.tx = None;
    }
}

fn host_summary(h: &crate::detect::windows::HostWindow) -> HostSummary {
    HostSummary {
        host: h.host,
        bytes_out: h.bytes_out,
        bytes_in: h.bytes_in,
        flows_opened: h.flows_opened,
        distinct_destinations: h.distinct_destinations,
        baseline_bytes_out: h.baseline_bytes_out,
        long_uploads: h
            .long_sessions
            .iter()
            .filter(|s| s.bytes_out > s.bytes_in)
            .map(|s| LongUpload {
                ip: s.outside,
                port: s.outside_port,
                asn: s.asn,
                country: s.country.map(|c| c.to_string()),
                bytes_out: s.bytes_out,
                bytes_in: s.bytes_in,
                duration_s: s.duration_ns as f64 / 1e9,
            })
            .collect(),
    }
}

fn publisher_thread(
    config: FleetConfig,
    name: String,
    rx: tokio::sync::mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
    ready: mpsc::Sender<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("egresswatch: fleet: no runtime: {e}");
            return;
        }
    };
    runtime.block_on(publish_loop(config, name, rx, shared, ready));
}

async fn publish_loop(
    config: FleetConfig,
    name: String,
    mut rx: tokio::sync::mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
    ready: mpsc::Sender<()>,
) {
    let client = match bus::connect(&config.url, &name).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("egresswatch: fleet: {e}");
            return;
        }
    };
    let js = jetstream::new(client);
    let subjects = config.subjects();
    let flush = Duration::from_secs(config.flush_seconds);
    // Set when the run has ended (the buffer's sender is gone): from then on the link only
    // drains, until this deadline.
    let mut closed_at: Option<Instant> = None;
    let past_deadline =
        |closed_at: Option<Instant>| closed_at.is_some_and(|t| t.elapsed() >= flush);
    // Streams first (the bus may come later): until then messages wait in the buffer.
    loop {
        let attempt = tokio::time::timeout(
            PUBLISH_TIMEOUT,
            bus::ensure_streams(&js, &subjects, config.streams()),
        )
        .await;
        let e = match attempt {
            Ok(Ok(())) => break,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer".to_string(),
        };
        if closed_at.is_none() && rx.is_closed() {
            closed_at = Some(Instant::now());
        }
        if past_deadline(closed_at) {
            eprintln!("egresswatch: fleet: gave up at the end of the run: {e}");
            return;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
    shared.connected.store(true, Ordering::Relaxed);
    tokio::spawn(follow_baselines(
        js.clone(),
        subjects.clone(),
        shared.clone(),
        ready,
    ));
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    let mut in_flight: VecDeque<(Outgoing, PublishAckFuture)> = VecDeque::new();
    loop {
        if past_deadline(closed_at) {
            return;
        }
        // Fill the window of publishes awaiting acknowledgement.
        while in_flight.len() < MAX_IN_FLIGHT {
            let next = if let Some(m) = pending.pop_front() {
                Some(m)
            } else if in_flight.is_empty() && closed_at.is_none() {
                rx.recv().await
            } else {
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                    Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some(message) = next else {
                closed_at.get_or_insert_with(Instant::now);
                break;
            };
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .message_id(&message.msg_id);
            match tokio::time::timeout(
                PUBLISH_TIMEOUT,
                js.send_publish(message.subject.clone(), publish),
            )
            .await
            {
                Ok(Ok(ack)) => in_flight.push_back((message, ack)),
                Ok(Err(e))
                    if e.kind()
                        == async_nats::jetstream::context::PublishErrorKind::MaxPayloadExceeded =>
                {
                    shared.oversize.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    shared.retried.fetch_add(1, Ordering::Relaxed);
                    pending.push_front(message);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    break;
                }
            }
        }
        let Some((message, ack)) = in_flight.pop_front() else {
            if closed_at.is_some() && pending.is_empty() {
                return;
            }
            continue;
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, ack).await {
            Ok(Ok(_)) => {
                shared.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                // Lost or late: send it and everything after it again, in order (the
                // message id keeps a repeat from being stored twice).
                shared
                    .retried
                    .fetch_add(1 + in_flight.len() as u64, Ordering::Relaxed);
                let mut again: VecDeque<Outgoing> = in_flight.drain(..).map(|(m, _)| m).collect();
                again.push_front(message);
                again.append(&mut pending);
                pending = again;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Keeps the latest baseline per window: everything the baselines stream holds, then each
/// new one. Signals `ready` once the held ones are read.
async fn follow_baselines(
    js: jetstream::Context,
    subjects: Subjects,
    shared: Arc<Shared>,
    ready: mpsc::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut last_error: Option<String> = None;
    loop {
        let result = async {
            let mut stream = js.get_stream(subjects.baselines_stream()).await?;
            let held = stream.info().await?.state.messages;
            if held == 0
                && let Some(r) = ready.take()
            {
                let _ = r.send(());
            }
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: subjects.all_baselines(),
                    deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            while let Some(message) = messages.next().await {
                let message = message?;
                let caught_up = message.info().map(|i| i.pending == 0).unwrap_or(false);
                if let Ok(m) = serde_json::from_slice::<Message>(&message.payload)
                    && m.is_current()
                    && let Body::Baseline(b) = m.body
                {
                    shared.baselines_received.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut map) = shared.baselines.lock() {
                        map.insert(b.window_start_ns, b);
                        while map.len() > MAX_BASELINES {
                            map.pop_first();
                        }
                    }
                }
                if caught_up && let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok::<(), async_nats::Error>(())
        }
        .await;
        // Told once per kind of failure, not every retry of a long outage.
        if let Err(e) = result {
            let e = e.to_string();
            if last_error.as_deref() != Some(e.as_str()) {
                eprintln!("egresswatch: fleet: baselines: {e}; retrying");
                last_error = Some(e);
            }
        }
        tokio::time::sleep(RETRY_PAUSE * 4).await;
    }
}
