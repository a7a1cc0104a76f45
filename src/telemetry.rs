//! What a running pipeline tells those watching it (the progress bar, the metrics endpoint):
//! a snapshot of its counters, published every `PUBLISH_EVERY` of wall time. The pipeline
//! never waits on its readers beyond one short lock.
use crate::alert::syslog::SinkWatcher;
use crate::stats::Stats;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Wall time between snapshots.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// The run's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Counters so far, as the end-of-run summary reports them.
    pub stats: Stats,
    /// Replay: capture bytes read, and the capture files' total size.
    pub bytes_read: u64,
    pub bytes_total: u64,
    /// Flows held now (packet path and flow-export table).
    pub active_flows: u64,
    /// Inside hosts with window state now.
    pub hosts: u64,
    pub alerts_by_branch: BTreeMap<&'static str, u64>,
    /// Event time, ns since the epoch.
    pub event_time_ns: u64,
    /// Collector: datagrams waiting in the queue between the sockets and the pipeline.
    pub collector_queue: u64,
    /// Flow export records held for reordering (`[export] reorder_seconds`).
    pub records_held: u64,
    /// When the pipeline published this; `None` before the first snapshot.
    pub published: Option<Instant>,
    /// The pipeline has ended (flushing is over).
    pub finished: bool,
}

pub struct Telemetry {
    latest: Mutex<Snapshot>,
    sinks: Mutex<Option<SinkWatcher>>,
    started: Instant,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        Telemetry {
            latest: Mutex::default(),
            sinks: Mutex::default(),
            started: Instant::now(),
        }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.latest).clone()
    }

    pub fn publish(&self, snapshot: Snapshot) {
        *lock(&self.latest) = snapshot;
    }

    /// Marks the run as ended, keeping the last counters.
    pub fn finish(&self, stats: &Stats) {
        let mut latest = lock(&self.latest);
        latest.stats = stats.clone();
        latest.finished = true;
        latest.published = Some(Instant::now());
    }

    /// The alert sinks whose queues the metrics report.
    pub fn watch_sinks(&self, watcher: SinkWatcher) {
        *lock(&self.sinks) = Some(watcher);
    }

    /// Each syslog target with its counters now (its queue depth among them).
    pub fn sinks(&self) -> Vec<(String, crate::alert::syslog::SinkCounters)> {
        lock(&self.sinks)
            .as_ref()
            .map(SinkWatcher::counters)
            .unwrap_or_default()
    }

    /// Time since the telemetry was made.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A poisoned lock still holds usable counters: a panicking reader must not stop the run.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decides when the next snapshot is due without reading the clock on every frame.
pub struct PublishClock {
    next: Instant,
    countdown: u32,
}

/// Frames between clock reads.
const FRAMES_PER_CLOCK_READ: u32 = 1024;

impl Default for PublishClock {
    fn default() -> Self {
        PublishClock {
            next: Instant::now(),
            countdown: 0,
        }
    }
}

impl PublishClock {
    /// One more frame (or batch); true when a snapshot is due.
    #[inline]
    pub fn tick(&mut self) -> bool {
        if self.countdown > 0 {
            self.countdown -= 1;
            return false;
        }
        self.countdown = FRAMES_PER_CLOCK_READ;
        self.due()
    }

    /// True when a snapshot is due (reads the clock).
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + PUBLISH_EVERY;
        true
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}
