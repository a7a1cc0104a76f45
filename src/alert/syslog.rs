//! Syslog export of alerts: formats, transports, and a queue per target that never blocks the
//! packet path.
//!
//! Threads, not tokio: each target gets one plain thread that owns its socket and does blocking
//! I/O with timeouts. Alerts are rare (a handful per window), targets are few, and blocking
//! rustls over `std::net` needs no runtime, no async TLS wrapper and no executor shutdown dance;
//! the caller only ever takes a short mutex (never held across network I/O) to hand messages
//! over.
//!
//! Flow per target: `send` formats each alert (with the wall clock of emission) and pushes the
//! bytes into a bounded memory queue (`queue_alerts`). When that is full, or while older
//! messages wait in the disk spool, messages are appended to the spool (`spool_dir`, at most
//! `spool_max_bytes`), so order is kept: the worker drains memory first, then the spool. Beyond
//! both bounds a message is dropped and counted with its reason. The worker reconnects with
//! exponential backoff (250 ms doubling to `reconnect_max_seconds`). Delivery over TCP/TLS is
//! what the syslog protocols give: written to the socket, no application acknowledgement.
pub mod format;
pub mod spool;
pub mod transport;

use crate::alert::Alert;
use format::Envelope;
use serde::{Deserialize, Serialize};
use spool::{AppendError, Spool};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use transport::{Connection, Endpoint, Scheme, TlsFiles};

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("syslog target {url}: {reason}")]
    Config { url: String, reason: String },
    #[error("syslog target {url}: cannot start its thread: {source}")]
    Thread { url: String, source: std::io::Error },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// RFC 5424 with every alert field as structured data.
    #[default]
    Rfc5424,
    /// BSD syslog with key=value pairs.
    Rfc3164,
    /// ArcSight CEF in an RFC 5424 envelope.
    Cef,
    /// Elastic Common Schema JSON in an RFC 5424 envelope.
    Json,
}

/// Syslog facility (RFC 5424 table 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    /// 13, "log audit".
    Audit,
    /// 14, "log alert".
    Alert,
    Clock,
    #[default]
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// One `[[syslog]]` table: where alerts go and how.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTarget {
    /// `udp://HOST[:PORT]`, `tcp://HOST[:PORT]` or `tls://HOST[:PORT]`.
    pub url: String,
    #[serde(default)]
    pub format: SyslogFormat,
    #[serde(default)]
    pub facility: Facility,
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME header field; absent: this machine's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// TLS: PEM file of the CA certificates that sign the collector's certificate; absent:
    /// Mozilla's root CAs built into the binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// TLS: client certificate chain (PEM) for mutual TLS; goes with `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM, PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// TLS: name the collector's certificate must carry; absent: the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Messages held in memory while the collector is down or slow.
    #[serde(default = "default_queue_alerts")]
    pub queue_alerts: usize,
    /// Overflow of the memory queue goes here (a folder per target below it); absent: dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Longer messages lose their `evidence` first, then are cut (counted as truncated).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Reconnect backoff doubles from 250 ms up to this.
    #[serde(default = "default_reconnect_max_seconds")]
    pub reconnect_max_seconds: u64,
}

fn default_app_name() -> String {
    "egresswatch".into()
}
fn default_queue_alerts() -> usize {
    10_000
}
fn default_spool_max_bytes() -> u64 {
    100 * 1024 * 1024
}
/// rsyslog's default maxMessageSize; RFC 5425 receivers SHOULD take 8192 octets.
fn default_max_message_bytes() -> usize {
    8192
}
fn default_reconnect_max_seconds() -> u64 {
    30
}

/// The smallest message limit: an RFC 5424 header and a cut sentence still fit.
const MIN_MESSAGE_BYTES: usize = 480;

impl SyslogTarget {
    /// A target with every default, as `--syslog URL` makes it.
    pub fn from_url(url: &str, format: SyslogFormat) -> Result<SyslogTarget, SyslogError> {
        Endpoint::parse(url).map_err(|reason| SyslogError::Config {
            url: url.to_string(),
            reason,
        })?;
        Ok(SyslogTarget {
            url: url.to_string(),
            format,
            facility: Facility::default(),
            app_name: default_app_name(),
            hostname: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            queue_alerts: default_queue_alerts(),
            spool_dir: None,
            spool_max_bytes: default_spool_max_bytes(),
            max_message_bytes: default_max_message_bytes(),
            reconnect_max_seconds: default_reconnect_max_seconds(),
        })
    }
}

/// What one target did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Messages written to the socket (UDP: handed to the kernel).
    pub sent: u64,
    /// Messages put in the memory queue.
    pub queued: u64,
    /// Messages written to the disk spool.
    pub spooled: u64,
    /// Messages given up on, per reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Connections made after the first one.
    pub reconnects: u64,
    pub connect_errors: u64,
    /// Connections the collector closed (found before a write, so nothing is written into them).
    pub closed_by_peer: u64,
    /// Failed writes (the message is retried on TCP/TLS, dropped on UDP).
    pub send_errors: u64,
    /// Messages shortened to `max_message_bytes`.
    pub truncated: u64,
    /// Messages in memory now.
    pub pending: u64,
    /// Bytes in the spool now.
    pub spool_bytes: u64,
    /// Last connect or send error, for the summary.
    pub last_error: Option<String>,
}

impl SinkCounters {
    fn drop(&mut self, reason: &'static str) {
        *self.dropped.entry(reason).or_insert(0) += 1;
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// `syslog tcp://127.0.0.1:6514: 5 sent, 0 spooled, 0 dropped, ...` (one line, no newline).
pub fn summary_line(url: &str, c: &SinkCounters) -> String {
    let mut s = format!(
        "syslog {url}: {} sent, {} spooled, {} dropped",
        c.sent,
        c.spooled,
        c.dropped_total()
    );
    if !c.dropped.is_empty() {
        let list: Vec<String> = c.dropped.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!(" ({})", list.join(" ")));
    }
    s.push_str(&format!(
        ", {} reconnects, {} connect errors, {} closed by peer, {} send errors, {} truncated, \
         {} left in memory, {} bytes left in spool",
        c.reconnects,
        c.connect_errors,
        c.closed_by_peer,
        c.send_errors,
        c.truncated,
        c.pending,
        c.spool_bytes
    ));
    if let Some(e) = &c.last_error {
        s.push_str(&format!("; last error: {e}"));
    }
    s
}

/// The summary lines of all targets, each ending in a newline.
pub fn summary(counters: &[(String, SinkCounters)]) -> String {
    counters
        .iter()
        .map(|(url, c)| summary_line(url, c) + "\n")
        .collect()
}

struct State {
    queue: VecDeque<Vec<u8>>,
    spool: Option<Spool>,
    counters: SinkCounters,
    /// Set by `finish`: deliver what is left until then, then stop.
    deadline: Option<Instant>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicked worker leaves consistent data (every update is a single step).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Sink {
    url: String,
    envelope: Envelope,
    format: SyslogFormat,
    max_bytes: usize,
    queue_max: usize,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

/// Reads the targets' counters; outlives nothing it watches (the workers stop with the sinks).
#[derive(Clone)]
pub struct SinkWatcher {
    sinks: Vec<(String, Arc<Shared>)>,
}

impl SinkWatcher {
    pub fn counters(&self) -> Vec<(String, SinkCounters)> {
        self.sinks
            .iter()
            .map(|(url, shared)| (url.clone(), snapshot(&shared.lock())))
            .collect()
    }
}

/// Every configured target with its worker thread.
pub struct SyslogSinks {
    sinks: Vec<Sink>,
}

/// This machine's host name (Linux), else NILVALUE.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A folder name for a target's spool: the URL with anything but [A-Za-z0-9.-] as `_`.
fn spool_folder(url: &str) -> String {
    url.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl SyslogSinks {
    /// Validates every target and starts its worker. A collector that cannot be reached is not
    /// an error: messages queue and the worker keeps trying.
    pub fn start(targets: &[SyslogTarget]) -> Result<SyslogSinks, SyslogError> {
        let mut sinks = Vec::new();
        for t in targets {
            let bad = |reason: String| SyslogError::Config {
                url: t.url.clone(),
                reason,
            };
            let endpoint = Endpoint::parse(&t.url).map_err(bad)?;
            if t.queue_alerts == 0 {
                return Err(bad("queue_alerts must be greater than 0".into()));
            }
            if t.max_message_bytes < MIN_MESSAGE_BYTES {
                return Err(bad(format!(
                    "max_message_bytes must be at least {MIN_MESSAGE_BYTES}"
                )));
            }
            if t.reconnect_max_seconds == 0 {
                return Err(bad("reconnect_max_seconds must be greater than 0".into()));
            }
            let tls = if endpoint.scheme == Scheme::Tls {
                let config = transport::tls_config(&TlsFiles {
                    ca_file: t.ca_file.as_deref(),
                    cert_file: t.cert_file.as_deref(),
                    key_file: t.key_file.as_deref(),
                })
                .map_err(bad)?;
                let name = t
                    .server_name
                    .clone()
                    .unwrap_or_else(|| endpoint.host.clone());
                let name = rustls_pki_types::ServerName::try_from(name.clone())
                    .map_err(|_| bad(format!("invalid TLS server name '{name}'")))?;
                Some((config, name))
            } else {
                if t.ca_file.is_some() || t.cert_file.is_some() || t.key_file.is_some() {
                    return Err(bad(
                        "ca_file, cert_file and key_file need a tls:// URL".into()
                    ));
                }
                None
            };
            let spool =
                match &t.spool_dir {
                    Some(dir) => {
                        let dir = dir.join(spool_folder(&t.url));
                        Some(Spool::open(&dir, t.spool_max_bytes).map_err(|e| {
                            bad(format!("cannot open spool {}: {e}", dir.display()))
                        })?)
                    }
                    None => None,
                };
            let counters = SinkCounters {
                spool_bytes: spool.as_ref().map_or(0, Spool::bytes),
                ..SinkCounters::default()
            };
            let shared = Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    spool,
                    counters,
                    deadline: None,
                }),
                wake: Condvar::new(),
            });
            let worker = Worker {
                endpoint,
                tls,
                backoff_max: Duration::from_secs(t.reconnect_max_seconds),
                shared: shared.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("syslog {}", t.url))
                .spawn(move || worker.run())
                .map_err(|source| SyslogError::Thread {
                    url: t.url.clone(),
                    source,
                })?;
            sinks.push(Sink {
                url: t.url.clone(),
                envelope: Envelope::new(
                    t.facility.code(),
                    &t.hostname.clone().unwrap_or_else(system_hostname),
                    &t.app_name,
                    &std::process::id().to_string(),
                ),
                format: t.format,
                max_bytes: t.max_message_bytes,
                queue_max: t.queue_alerts,
                shared,
                worker: Some(handle),
            });
        }
        Ok(SyslogSinks { sinks })
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Formats and queues; never waits for the network. A full queue spills to the spool (a
    /// buffered file append), then drops (counted).
    pub fn send(&self, alerts: &[Alert]) {
        if alerts.is_empty() {
            return;
        }
        let now = now_ns();
        for sink in &self.sinks {
            let messages: Vec<(Vec<u8>, bool)> = alerts
                .iter()
                .map(|a| render(sink.format, &sink.envelope, a, now, sink.max_bytes))
                .collect();
            let mut st = sink.shared.lock();
            let mut spooled = false;
            for (message, truncated) in messages {
                if truncated {
                    st.counters.truncated += 1;
                }
                let spool_busy = st.spool.as_ref().is_some_and(|s| !s.is_empty());
                if st.queue.len() < sink.queue_max && !spool_busy {
                    st.queue.push_back(message);
                    st.counters.queued += 1;
                    continue;
                }
                let State {
                    spool, counters, ..
                } = &mut *st;
                match spool.as_mut().map(|s| s.append(&message)) {
                    Some(Ok(())) => {
                        counters.spooled += 1;
                        spooled = true;
                    }
                    Some(Err(AppendError::Full)) => counters.drop("spool_full"),
                    Some(Err(AppendError::Io)) => counters.drop("spool_error"),
                    None => counters.drop("queue_full"),
                }
            }
            if spooled && let Some(s) = st.spool.as_mut() {
                s.flush();
            }
            sink.shared.wake.notify_one();
        }
    }

    pub fn counters(&self) -> Vec<(String, SinkCounters)> {
        self.watcher().counters()
    }

    /// A handle that reads every target's counters from another thread (the metrics endpoint).
    pub fn watcher(&self) -> SinkWatcher {
        SinkWatcher {
            sinks: self
                .sinks
                .iter()
                .map(|s| (s.url.clone(), s.shared.clone()))
                .collect(),
        }
    }

    /// Delivers what it can within `timeout` (all targets in parallel), then stops the workers.
    /// Whatever is left goes to the spool when there is one (sent after the next start), else
    /// is dropped as `shutdown`.
    pub fn finish(mut self, timeout: Duration) -> Vec<(String, SinkCounters)> {
        let deadline = Instant::now() + timeout;
        for sink in &self.sinks {
            sink.shared.lock().deadline = Some(deadline);
            sink.shared.wake.notify_one();
        }
        for sink in &mut self.sinks {
            if let Some(h) = sink.worker.take() {
                let _ = h.join();
            }
        }
        self.counters()
    }
}

impl Drop for SyslogSinks {
    /// Stops workers that `finish` did not (an error path): no waiting for the network.
    fn drop(&mut self) {
        for sink in &self.sinks {
            sink.shared.lock().deadline = Some(Instant::now());
            sink.shared.wake.notify_one();
        }
        for sink in &mut self.sinks {
            if let Some(h) = sink.worker.take() {
                let _ = h.join();
            }
        }
    }
}

fn snapshot(st: &State) -> SinkCounters {
    let mut c = st.counters.clone();
    c.pending = st.queue.len() as u64;
    c.spool_bytes = st.spool.as_ref().map_or(0, Spool::bytes);
    c
}

/// One message within `max`: whole, else without evidence, else cut at a character boundary.
/// Returns the bytes and whether they were shortened.
pub fn render(
    format: SyslogFormat,
    env: &Envelope,
    alert: &Alert,
    now_ns: u64,
    max: usize,
) -> (Vec<u8>, bool) {
    let write = |evidence: bool| {
        let mut out = Vec::with_capacity(1024);
        match format {
            SyslogFormat::Rfc5424 => format::rfc5424(&mut out, env, alert, now_ns, evidence),
            SyslogFormat::Rfc3164 => format::rfc3164(&mut out, env, alert, now_ns, evidence),
            SyslogFormat::Cef => format::cef(&mut out, env, alert, now_ns, evidence),
            SyslogFormat::Json => format::json(&mut out, env, alert, now_ns, evidence),
        }
        out
    };
    let full = write(true);
    if full.len() <= max {
        return (full, false);
    }
    let mut lean = write(false);
    if lean.len() > max {
        let mut cut = max;
        // Step back over UTF-8 continuation bytes so the message stays valid UTF-8.
        while cut > 0 && (lean[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        lean.truncate(cut);
    }
    (lean, true)
}

struct Worker {
    endpoint: Endpoint,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    backoff_max: Duration,
    shared: Arc<Shared>,
}

const BACKOFF_START: Duration = Duration::from_millis(250);

/// A spool segment being delivered.
struct Segment {
    path: PathBuf,
    messages: VecDeque<Vec<u8>>,
}

impl Worker {
    fn run(self) {
        let mut conn: Option<Connection> = None;
        let mut connected_before = false;
        let mut backoff = BACKOFF_START;
        let mut next_attempt = Instant::now();
        // Taken from the memory queue, not yet written.
        let mut held: Option<Vec<u8>> = None;
        let mut segment: Option<Segment> = None;
        loop {
            if held.is_none() && segment.as_ref().is_none_or(|s| s.messages.is_empty()) {
                if let Some(done) = segment.take() {
                    let mut st = self.shared.lock();
                    if let Some(s) = st.spool.as_mut() {
                        s.segment_done(&done.path);
                    }
                }
                let mut st = self.shared.lock();
                loop {
                    if let Some(m) = st.queue.pop_front() {
                        held = Some(m);
                        break;
                    }
                    if let Some(path) = st.spool.as_mut().and_then(Spool::take_segment) {
                        drop(st);
                        segment = Some(self.load(&path));
                        break;
                    }
                    if st.deadline.is_some() {
                        drop(st);
                        return self.stop(conn, held, segment);
                    }
                    st = self.shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if segment.as_ref().is_some_and(|s| s.messages.is_empty()) {
                    continue; // An empty or unreadable segment: `load` counted it.
                }
            }
            let deadline = self.shared.lock().deadline;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.stop(conn, held, segment);
            }
            if conn.as_mut().is_some_and(Connection::peer_closed) {
                if let Some(c) = conn.take() {
                    c.close();
                }
                let mut st = self.shared.lock();
                st.counters.closed_by_peer += 1;
                st.counters.last_error = Some("the collector closed the connection".into());
                drop(st);
                next_attempt = Instant::now() + backoff;
                backoff = (backoff * 2).min(self.backoff_max);
            }
            if conn.is_none() {
                let now = Instant::now();
                if now < next_attempt {
                    let until = deadline.map_or(next_attempt, |d| d.min(next_attempt));
                    let st = self.shared.lock();
                    // Woken early by `finish` (or new messages, harmlessly).
                    let _ = self
                        .shared
                        .wake
                        .wait_timeout(st, until.saturating_duration_since(now));
                    continue;
                }
                let tls = self.tls.as_ref().map(|(c, n)| (c, n));
                match Connection::open(&self.endpoint, tls) {
                    Ok(c) => {
                        // Backoff resets on a successful write, not here: a collector that
                        // accepts and then rejects (TLS client auth) must not be hammered.
                        conn = Some(c);
                        let mut st = self.shared.lock();
                        if connected_before {
                            st.counters.reconnects += 1;
                        }
                        connected_before = true;
                    }
                    Err(e) => {
                        let mut st = self.shared.lock();
                        st.counters.connect_errors += 1;
                        st.counters.last_error = Some(format!("connect: {e}"));
                        next_attempt = Instant::now() + backoff;
                        backoff = (backoff * 2).min(self.backoff_max);
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let message = match (&held, &segment) {
                (Some(m), _) => m,
                (None, Some(s)) => match s.messages.front() {
                    Some(m) => m,
                    None => continue,
                },
                (None, None) => continue,
            };
            match c.send(message) {
                Ok(()) => {
                    backoff = BACKOFF_START;
                    self.shared.lock().counters.sent += 1;
                    if held.take().is_none()
                        && let Some(s) = segment.as_mut()
                    {
                        s.messages.pop_front();
                    }
                }
                Err(e) => {
                    let udp = self.endpoint.scheme == Scheme::Udp;
                    let mut st = self.shared.lock();
                    st.counters.send_errors += 1;
                    st.counters.last_error = Some(format!("send: {e}"));
                    if udp {
                        // Fire and forget: an ICMP error reported on this send is not about
                        // this message, but resending would not make UDP reliable either.
                        st.counters.drop("udp_send_error");
                        if held.take().is_none()
                            && let Some(s) = segment.as_mut()
                        {
                            s.messages.pop_front();
                        }
                    } else {
                        drop(st);
                        if let Some(c) = conn.take() {
                            c.close();
                        }
                        // Reconnect at once after a connection that worked, then back off.
                        next_attempt = Instant::now();
                    }
                }
            }
        }
    }

    fn load(&self, path: &Path) -> Segment {
        let messages = match spool::read_segment(path) {
            Ok(m) => m,
            Err(e) => {
                let mut st = self.shared.lock();
                st.counters.drop("spool_error");
                st.counters.last_error = Some(format!("spool {}: {e}", path.display()));
                Vec::new()
            }
        };
        Segment {
            path: path.to_path_buf(),
            messages: messages.into(),
        }
    }

    /// After the deadline: what is undelivered goes to the front of the spool (sent first,
    /// in order, after the next start), else counts as dropped.
    fn stop(&self, conn: Option<Connection>, held: Option<Vec<u8>>, segment: Option<Segment>) {
        if let Some(c) = conn {
            c.close();
        }
        let mut st = self.shared.lock();
        let State {
            queue,
            spool,
            counters,
            ..
        } = &mut *st;
        // Memory holds only messages older than anything spooled (see `send`), and a segment
        // is taken only once memory is empty: this order is the order they were made in.
        let from_memory: Vec<Vec<u8>> = held.into_iter().chain(queue.drain(..)).collect();
        let (taken, rest) = match segment {
            Some(s) => (Some(s.path), Vec::from(s.messages)),
            None => (None, Vec::new()),
        };
        let Some(spool) = spool.as_mut() else {
            let n = (from_memory.len() + rest.len()) as u64;
            if n > 0 {
                *counters.dropped.entry("shutdown").or_insert(0) += n;
            }
            return;
        };
        let memory_count = from_memory.len();
        let all: Vec<Vec<u8>> = from_memory.into_iter().chain(rest).collect();
        let stored = spool.put_back(taken.as_deref(), &all);
        counters.spooled += stored.min(memory_count) as u64;
        let lost = all.len() - stored;
        if lost > 0 {
            *counters.dropped.entry("spool_full").or_insert(0) += lost as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, UdpSocket};

    fn alert(n: u64) -> Alert {
        Alert {
            id: format!("{n:016x}"),
            time: "2024-03-04T09:00:16.000000Z".into(),
            host: "10.20.1.66".parse().unwrap(),
            destination_ip: None,
            destination_hostname: None,
            destination_port: None,
            detection_branch: "ProxywareDomain",
            technique: "T1496.002",
            analytic: "AN0081",
            score: 60,
            severity: "medium",
            bytes_out: n,
            bytes_in: 0,
            duration_s: 1.5,
            country: None,
            asn: None,
            window_start: "2024-03-04T09:00:00.000000Z".into(),
            window_end: "2024-03-04T09:15:00.000000Z".into(),
            count: 1,
            reason: format!("alert {n}"),
            evidence: serde_json::json!({"pad": "x".repeat(3000)}),
            process: None,
        }
    }

    #[test]
    fn config_keys_and_defaults() {
        let t: SyslogTarget = toml::from_str("url = \"tcp://127.0.0.1:601\"").unwrap();
        assert_eq!(
            t,
            SyslogTarget::from_url("tcp://127.0.0.1:601", SyslogFormat::Rfc5424).unwrap()
        );
        let t: SyslogTarget =
            toml::from_str("url = \"udp://h\"\nformat = \"cef\"\nfacility = \"audit\"").unwrap();
        assert_eq!((t.format, t.facility.code()), (SyslogFormat::Cef, 13));
        assert!(toml::from_str::<SyslogTarget>("url = \"udp://h\"\nqueue = 3").is_err());
        assert_eq!(Facility::Local7.code(), 23);
        assert!(SyslogTarget::from_url("syslog://h", SyslogFormat::Json).is_err());
    }

    #[test]
    fn bad_targets_are_errors_unreachable_ones_are_not() {
        let mut t = SyslogTarget::from_url("tls://127.0.0.1:1", SyslogFormat::Rfc5424).unwrap();
        t.ca_file = Some("/nonexistent/ca.pem".into());
        let err = SyslogSinks::start(&[t]).err().unwrap().to_string();
        assert!(
            err.contains("tls://127.0.0.1:1") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        let mut t = SyslogTarget::from_url("tcp://127.0.0.1:1", SyslogFormat::Rfc5424).unwrap();
        t.ca_file = Some("/x".into());
        assert!(SyslogSinks::start(&[t]).is_err());
        // Port 1 on loopback refuses: queued, then dropped at shutdown (no spool), all counted.
        let t = SyslogTarget::from_url("tcp://127.0.0.1:1", SyslogFormat::Rfc5424).unwrap();
        let sinks = SyslogSinks::start(&[t]).unwrap();
        sinks.send(&[alert(1), alert(2)]);
        let c = sinks.finish(Duration::ZERO);
        assert_eq!(c[0].1.queued, 2);
        assert_eq!(c[0].1.sent, 0);
        assert_eq!(c[0].1.dropped.get("shutdown"), Some(&2));
    }

    #[test]
    fn long_messages_lose_evidence_then_are_cut() {
        let env = Envelope::new(16, "h", "egresswatch", "1");
        let a = alert(1);
        let (m, cut) = render(SyslogFormat::Rfc5424, &env, &a, 0, 8192);
        assert!(!cut && String::from_utf8(m).unwrap().contains("evidence="));
        let (m, cut) = render(SyslogFormat::Rfc5424, &env, &a, 0, 2048);
        let s = String::from_utf8(m).unwrap();
        assert!(
            cut && !s.contains("evidence=") && s.ends_with("ProxywareDomain)"),
            "{s}"
        );
        let mut a = alert(1);
        a.reason = "é".repeat(1000);
        let (m, cut) = render(SyslogFormat::Json, &env, &a, 0, 600);
        assert!(cut && m.len() <= 600);
        assert!(String::from_utf8(m).is_ok());
    }

    #[test]
    fn queue_bound_without_spool_drops_counted() {
        let mut t = SyslogTarget::from_url("tcp://127.0.0.1:1", SyslogFormat::Rfc5424).unwrap();
        t.queue_alerts = 3;
        let sinks = SyslogSinks::start(&[t]).unwrap();
        let alerts: Vec<Alert> = (0..10).map(alert).collect();
        sinks.send(&alerts);
        let c = sinks.finish(Duration::ZERO);
        let c = &c[0].1;
        // The worker may hold one message out of the queue, which makes room for one more.
        assert!(c.queued == 3 || c.queued == 4, "{c:?}");
        assert_eq!(c.dropped["queue_full"] + c.queued, 10);
        assert_eq!(c.dropped["shutdown"], c.queued);
        assert_eq!(c.truncated, 0);
    }

    #[test]
    fn spool_takes_the_overflow_and_replays_it_in_order_after_a_restart() {
        let tmp = crate::testing::TempDir::new("syslog-spool");
        let dir = tmp.path("spool");
        // Bind to learn a free port, then close it: connects are refused until we listen again.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut t = SyslogTarget::from_url(&url, SyslogFormat::Rfc5424).unwrap();
        t.queue_alerts = 2;
        t.spool_dir = Some(dir.clone());
        t.reconnect_max_seconds = 1;
        let sinks = SyslogSinks::start(std::slice::from_ref(&t)).unwrap();
        let alerts: Vec<Alert> = (0..6).map(alert).collect();
        sinks.send(&alerts);
        let c = sinks.finish(Duration::ZERO);
        assert_eq!(c[0].1.dropped_total(), 0, "{:?}", c[0].1);
        // Everything is on disk now: what overflowed, plus the queue moved there at shutdown.
        assert!(c[0].1.spool_bytes > 0);
        // A second run delivers it all, in order, to a collector that is now up.
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let sinks = SyslogSinks::start(&[t]).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while got.len() < 6 {
            let mut chunk = [0u8; 65536];
            let n = conn.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed after {} messages", got.len());
            buf.extend_from_slice(&chunk[..n]);
            // Octet-counted frames.
            while let Some(sp) = buf.iter().position(|&b| b == b' ') {
                let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
                if buf.len() < sp + 1 + len {
                    break;
                }
                let msg = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
                got.push(msg);
                buf.drain(..sp + 1 + len);
            }
        }
        let c = sinks.finish(Duration::from_secs(60));
        for (i, msg) in got.iter().enumerate() {
            assert!(msg.contains(&format!("reason=\"alert {i}\"")), "{i}: {msg}");
        }
        assert_eq!(c[0].1.sent, 6);
        assert_eq!(c[0].1.spool_bytes, 0);
    }

    #[test]
    fn udp_is_one_datagram_per_message() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!("udp://{}", rx.local_addr().unwrap());
        let sinks =
            SyslogSinks::start(&[SyslogTarget::from_url(&url, SyslogFormat::Rfc3164).unwrap()])
                .unwrap();
        sinks.send(&[alert(7), alert(8)]);
        let mut buf = [0u8; 65536];
        for n in [7, 8] {
            let len = rx.recv(&mut buf).unwrap();
            let s = std::str::from_utf8(&buf[..len]).unwrap();
            assert!(
                s.starts_with("<132>") && s.contains(&format!("alert {n} (score 60")),
                "{s}"
            );
        }
        let c = sinks.finish(Duration::from_secs(60));
        assert_eq!(c[0].1.sent, 2);
        assert!(summary(&c).starts_with(&format!("syslog {url}: 2 sent, 0 spooled, 0 dropped, ")));
    }
}
