//! Live capture with libpcap. One thread per interface reads frames into batches (a reusable
//! byte buffer plus per-frame entries) and hands them to the pipeline thread through one
//! bounded queue; the pipeline returns each batch through its interface's return channel, so
//! steady-state capture allocates nothing per packet. When the pipeline falls behind, frames
//! are dropped and counted per interface rather than blocking the capture thread (whose
//! kernel buffer would then overflow).
use crate::source::pcap_file::SharedFrame;
use crate::source::{Packet, wall_clock_ns};
use crate::stats::InterfaceStats;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `[live]`: the appliance (`egresswatch live`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Started as root: switch to this user once the capture handles are open (empty: stay).
    pub user: String,
    /// A stats line with each interface's drops goes to stderr this often.
    pub stats_interval_seconds: u64,
    /// Warn when more than this share of frames was dropped over a stats interval.
    pub drop_warn_percent: f64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            user: String::new(),
            stats_interval_seconds: 60,
            drop_warn_percent: 1.0,
        }
    }
}

/// How each interface is opened.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    pub interfaces: Vec<String>,
    /// BPF filter expression (tcpdump syntax) applied in the kernel.
    pub bpf: Option<String>,
    pub snaplen: u32,
    /// Kernel capture buffer per interface, MiB.
    pub buffer_mib: u32,
    pub promisc: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("interface {interface}: {reason}")]
    Open { interface: String, reason: String },
    #[error("interface {interface}: BPF filter '{filter}': {reason}")]
    Filter {
        interface: String,
        filter: String,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A capture thread wakes at least this often to see the stop flag and flush a partial batch.
/// Handles are non-blocking and the thread polls their descriptor with this timeout: libpcap's
/// own read timeout does not fire on a quiet Linux link.
const READ_TIMEOUT_MS: i32 = 100;
/// A partial batch waits this long for more frames when the kernel buffer runs empty.
const LINGER_MS: i32 = 2;
/// A partial batch is handed over once its first frame is this old (by capture time).
const BATCH_MAX_AGE_NS: u64 = 50_000_000;
const BATCH_BYTES: usize = 1 << 20;
const BATCH_FRAMES: usize = 4096;
/// Batches per interface; with BATCH_BYTES this bounds our buffering to 16 MiB per interface
/// (the kernel buffer, `--buffer-mib`, absorbs bursts before it).
const BATCHES_PER_INTERFACE: usize = 16;
/// libpcap's own ceiling; it also bounds a batch's buffer (two frames at least).
const MAX_SNAPLEN: i32 = 262_144;
/// pcap counters are read at most this often (a getsockopt each).
const STATS_REFRESH: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Entry {
    ts_ns: u64,
    orig_len: u32,
    start: u32,
    end: u32,
}

/// Frames of one interface, in capture order.
pub struct Batch {
    interface: usize,
    linktype: u32,
    /// Shared with the shard workers while they read the batch's frames; a batch is only
    /// refilled once every clone is gone.
    bytes: Arc<Vec<u8>>,
    entries: Vec<Entry>,
}

impl Batch {
    fn new(interface: usize, linktype: u32, snaplen: usize) -> Batch {
        Batch {
            interface,
            linktype,
            bytes: Arc::new(Vec::with_capacity(BATCH_BYTES.max(2 * snaplen))),
            entries: Vec::with_capacity(BATCH_FRAMES),
        }
    }

    fn clear(&mut self) {
        Arc::make_mut(&mut self.bytes).clear();
        self.entries.clear();
    }

    /// Whether shard workers still read from this batch (it must not be recycled yet).
    pub fn in_use(&self) -> bool {
        Arc::strong_count(&self.bytes) > 1
    }

    /// Whether a frame of `len` captured bytes fits without growing either buffer.
    fn fits(&self, len: usize) -> bool {
        self.entries.len() < self.entries.capacity()
            && self.bytes.len() + len <= self.bytes.capacity()
    }

    fn push(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) {
        let start = self.bytes.len() as u32;
        // Never shared while being filled (see `in_use`), so this does not copy.
        Arc::make_mut(&mut self.bytes).extend_from_slice(data);
        self.entries.push(Entry {
            ts_ns,
            orig_len,
            start,
            end: self.bytes.len() as u32,
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The frames, borrowed from the batch.
    pub fn packets(&self) -> impl Iterator<Item = Packet<'_>> + '_ {
        self.frames().map(|frame| frame.packet)
    }

    /// The frames with the buffer they lie in (for the shard workers) and the frame two
    /// ahead of each (for the look-ahead).
    pub fn frames(&self) -> impl Iterator<Item = SharedFrame<'_>> + '_ {
        let bytes = |i: usize| {
            let e = self.entries.get(i)?;
            self.bytes.get(e.start as usize..e.end as usize)
        };
        self.entries
            .iter()
            .enumerate()
            .map(move |(i, e)| SharedFrame {
                packet: Packet {
                    ts_ns: e.ts_ns,
                    linktype: self.linktype,
                    data: bytes(i).unwrap_or_default(),
                    orig_len: e.orig_len,
                },
                buffer: &self.bytes,
                start: e.start as usize,
                two_ahead: bytes(i + 2).unwrap_or_default(),
            })
    }
}

/// One interface's counters, written by its capture thread.
#[derive(Debug, Default)]
struct Counters {
    /// pcap: frames the kernel filter passed (Linux counts its drops in here too).
    received: AtomicU64,
    /// pcap: dropped because the kernel buffer was full.
    kernel_dropped: AtomicU64,
    /// pcap: dropped by the interface or its driver.
    if_dropped: AtomicU64,
    /// Ours: dropped because the pipeline was behind (queue full, no free batch).
    queue_dropped: AtomicU64,
    /// Handed to the pipeline.
    delivered: AtomicU64,
}

/// pcap's counters are 32-bit and wrap; this keeps 64-bit totals from successive readings.
#[derive(Default)]
struct PcapTotals {
    last: Option<pcap::Stat>,
}

impl PcapTotals {
    fn update(&mut self, now: pcap::Stat, counters: &Counters) {
        let prev = self.last.unwrap_or(pcap::Stat {
            received: 0,
            dropped: 0,
            if_dropped: 0,
        });
        let delta = |new: u32, old: u32| u64::from(new.wrapping_sub(old));
        counters
            .received
            .fetch_add(delta(now.received, prev.received), Ordering::Relaxed);
        counters
            .kernel_dropped
            .fetch_add(delta(now.dropped, prev.dropped), Ordering::Relaxed);
        counters
            .if_dropped
            .fetch_add(delta(now.if_dropped, prev.if_dropped), Ordering::Relaxed);
        self.last = Some(now);
    }
}

/// Handles opened (the privileged step), no thread started yet: privileges are dropped in
/// between, while the process still has a single thread (capabilities are per thread).
pub struct OpenCaptures {
    handles: Vec<(String, pcap::Capture<pcap::Active>)>,
    snaplen: usize,
}

impl OpenCaptures {
    pub fn open(options: &CaptureOptions) -> Result<OpenCaptures, LiveError> {
        if options.interfaces.is_empty() {
            return Err(LiveError::Invalid("no interface to capture on".into()));
        }
        let snaplen = i32::try_from(options.snaplen)
            .ok()
            .filter(|&s| s > 0 && s <= MAX_SNAPLEN)
            .ok_or_else(|| {
                LiveError::Invalid(format!(
                    "snaplen {} out of range (1 to {MAX_SNAPLEN})",
                    options.snaplen
                ))
            })?;
        let buffer = options
            .buffer_mib
            .checked_mul(1 << 20)
            .and_then(|b| i32::try_from(b).ok())
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                LiveError::Invalid(format!("buffer {} MiB out of range", options.buffer_mib))
            })?;
        let mut handles = Vec::new();
        for name in &options.interfaces {
            let open_error = |e: pcap::Error| {
                let mut reason = e.to_string();
                if reason.contains("not permitted") || reason.contains("permission") {
                    reason.push_str(
                        "; capture needs root or CAP_NET_RAW and CAP_NET_ADMIN \
                         (setcap cap_net_raw,cap_net_admin=eip on the binary, or the systemd \
                         unit's AmbientCapabilities)",
                    );
                }
                LiveError::Open {
                    interface: name.clone(),
                    reason,
                }
            };
            let mut handle = pcap::Capture::from_device(name.as_str())
                .map_err(open_error)?
                .immediate_mode(true)
                .buffer_size(buffer)
                .snaplen(snaplen)
                .promisc(options.promisc)
                .timeout(READ_TIMEOUT_MS)
                .open()
                .and_then(|h| h.setnonblock())
                .map_err(open_error)?;
            if let Some(filter) = &options.bpf {
                handle.filter(filter, true).map_err(|e| LiveError::Filter {
                    interface: name.clone(),
                    filter: filter.clone(),
                    reason: e.to_string(),
                })?;
            }
            handles.push((name.clone(), handle));
        }
        Ok(OpenCaptures {
            handles,
            snaplen: snaplen as usize,
        })
    }

    /// Each interface's name and LINKTYPE.
    pub fn interfaces(&self) -> Vec<(String, u32)> {
        self.handles
            .iter()
            .map(|(name, h)| (name.clone(), h.get_datalink().0 as u32))
            .collect()
    }

    /// Starts one capture thread per interface. After `stop` is set each thread reads what
    /// its kernel buffer still holds, hands it over, and ends; the queue closes after the last.
    pub fn start(self, stop: Arc<AtomicBool>) -> LiveCapture {
        let queue_batches = BATCHES_PER_INTERFACE * self.handles.len();
        let (tx, rx) = mpsc::sync_channel(queue_batches);
        let mut threads = Vec::new();
        let mut returns = Vec::new();
        let mut interfaces = Vec::new();
        for (index, (name, handle)) in self.handles.into_iter().enumerate() {
            let counters = Arc::new(Counters::default());
            let (back_tx, back_rx) = mpsc::channel();
            let linktype = handle.get_datalink().0 as u32;
            for _ in 0..BATCHES_PER_INTERFACE {
                let _ = back_tx.send(Batch::new(index, linktype, self.snaplen));
            }
            let reader = Reader {
                handle,
                queue: tx.clone(),
                free: back_rx,
                counters: counters.clone(),
                stop: stop.clone(),
                totals: PcapTotals::default(),
                stats_read: Instant::now(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("capture {name}"))
                .spawn(move || reader.run());
            match thread {
                Ok(t) => threads.push(t),
                // Without its thread the interface delivers nothing; say so and carry on with
                // the others rather than abort the sensor.
                Err(e) => eprintln!("egresswatch: cannot start capture thread for {name}: {e}"),
            }
            returns.push(back_tx);
            interfaces.push((name, counters));
        }
        LiveCapture {
            rx,
            returns,
            threads,
            interfaces,
        }
    }
}

/// What the pipeline thread got.
pub enum Received {
    Batch(Batch),
    /// Nothing within the timeout.
    Nothing,
    /// Every capture thread has ended and the queue is empty.
    Closed,
}

pub struct LiveCapture {
    rx: Receiver<Batch>,
    returns: Vec<mpsc::Sender<Batch>>,
    threads: Vec<JoinHandle<()>>,
    interfaces: Vec<(String, Arc<Counters>)>,
}

impl LiveCapture {
    pub fn recv(&self, timeout: Duration) -> Received {
        match self.rx.recv_timeout(timeout) {
            Ok(batch) => Received::Batch(batch),
            Err(RecvTimeoutError::Timeout) => Received::Nothing,
            Err(RecvTimeoutError::Disconnected) => Received::Closed,
        }
    }

    /// Gives a processed batch back to its capture thread.
    pub fn recycle(&self, mut batch: Batch) {
        batch.clear();
        if let Some(back) = self.returns.get(batch.interface) {
            // The thread may have ended; the batch is then simply freed.
            let _ = back.send(batch);
        }
    }

    /// Counters so far, per interface in command-line order.
    pub fn stats(&self) -> Vec<InterfaceStats> {
        self.interfaces
            .iter()
            .map(|(name, c)| InterfaceStats {
                interface: name.clone(),
                received: c.received.load(Ordering::Relaxed),
                kernel_dropped: c.kernel_dropped.load(Ordering::Relaxed),
                if_dropped: c.if_dropped.load(Ordering::Relaxed),
                queue_dropped: c.queue_dropped.load(Ordering::Relaxed),
                delivered: c.delivered.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Waits for the capture threads (they end once the stop flag is set).
    pub fn join(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Reader {
    handle: pcap::Capture<pcap::Active>,
    queue: SyncSender<Batch>,
    free: Receiver<Batch>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    totals: PcapTotals,
    stats_read: Instant,
}

impl Reader {
    fn run(mut self) {
        let mut current: Option<Batch> = None;
        // Once the stop flag is seen: frames captured up to this wall-clock time are still
        // read (they are in the kernel buffer), then the thread ends.
        let mut stop_at_ns: Option<u64> = None;
        loop {
            match self.handle.next_packet() {
                Ok(packet) => {
                    let header = *packet.header;
                    let ts_ns = (header.ts.tv_sec as u64)
                        .saturating_mul(1_000_000_000)
                        .saturating_add((header.ts.tv_usec as u64).saturating_mul(1_000));
                    let data = packet.data;
                    if stop_at_ns.is_some_and(|stop| ts_ns > stop) {
                        break;
                    }
                    Self::frame(
                        &mut current,
                        &self.free,
                        &self.queue,
                        &self.counters,
                        ts_ns,
                        header.len,
                        data,
                    );
                }
                // Nothing buffered (non-blocking read).
                Err(pcap::Error::TimeoutExpired) => {
                    if stop_at_ns.is_some() {
                        break;
                    }
                    if current.as_ref().is_some_and(|b| !b.is_empty()) {
                        // A burst may only have paused: fill the batch further rather than
                        // hand over many small ones.
                        if self.wait_readable(LINGER_MS) {
                            continue;
                        }
                        hand_over(&mut current, &self.queue, &self.counters, false);
                    }
                    self.refresh_stats(false);
                    self.wait_readable(READ_TIMEOUT_MS);
                }
                Err(e) => {
                    eprintln!("egresswatch: capture stopped: {e}");
                    break;
                }
            }
            if stop_at_ns.is_none() && self.stop.load(Ordering::Relaxed) {
                stop_at_ns = Some(wall_clock_ns());
            }
            self.refresh_stats(false);
        }
        hand_over(&mut current, &self.queue, &self.counters, true);
        self.refresh_stats(true);
    }

    fn frame(
        current: &mut Option<Batch>,
        free: &Receiver<Batch>,
        queue: &SyncSender<Batch>,
        counters: &Counters,
        ts_ns: u64,
        orig_len: u32,
        data: &[u8],
    ) {
        if current.as_ref().is_some_and(|b| {
            !b.fits(data.len())
                || b.entries
                    .first()
                    .is_some_and(|first| ts_ns.saturating_sub(first.ts_ns) > BATCH_MAX_AGE_NS)
        }) {
            hand_over(current, queue, counters, false);
        }
        if current.is_none() {
            *current = free.try_recv().ok();
        }
        match current {
            Some(batch) if batch.fits(data.len()) => batch.push(ts_ns, orig_len, data),
            // Every batch is queued or being processed: the pipeline is behind.
            _ => {
                counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sleeps until a frame is buffered (true) or `ms` pass (signals wake it too).
    fn wait_readable(&self, ms: i32) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.handle.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::ZERO);
        match poll(&mut fds, timeout) {
            Ok(n) => n > 0,
            Err(nix::errno::Errno::EINTR) => false,
            Err(_) => {
                // A broken descriptor: do not spin; the next read reports the error.
                std::thread::sleep(Duration::from_millis(ms.max(0) as u64));
                false
            }
        }
    }

    fn refresh_stats(&mut self, force: bool) {
        if !force && self.stats_read.elapsed() < STATS_REFRESH {
            return;
        }
        self.stats_read = Instant::now();
        if let Ok(stat) = self.handle.stats() {
            self.totals.update(stat, &self.counters);
        }
    }
}

/// Queues the current batch. Never blocks while capturing (a full queue drops the batch,
/// counted); at the end it waits, so a stop loses nothing already read.
fn hand_over(
    current: &mut Option<Batch>,
    queue: &SyncSender<Batch>,
    counters: &Counters,
    wait: bool,
) {
    let Some(batch) = current.take() else { return };
    if batch.is_empty() {
        *current = Some(batch);
        return;
    }
    let n = batch.len() as u64;
    let result = if wait {
        queue
            .send(batch)
            .map_err(|e| TrySendError::Disconnected(e.0))
    } else {
        queue.try_send(batch)
    };
    match result {
        Ok(()) => {
            counters.delivered.fetch_add(n, Ordering::Relaxed);
        }
        Err(TrySendError::Full(mut batch) | TrySendError::Disconnected(mut batch)) => {
            counters.queue_dropped.fetch_add(n, Ordering::Relaxed);
            batch.clear();
            *current = Some(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_holds_frames_without_growing() {
        let mut batch = Batch::new(0, 1, 65_535);
        let (bytes, entries) = (batch.bytes.capacity(), batch.entries.capacity());
        let frame = [7u8; 1514];
        let mut n = 0;
        while batch.fits(frame.len()) {
            batch.push(1_000 + n, 1514, &frame);
            n += 1;
        }
        assert_eq!(batch.bytes.capacity(), bytes);
        assert_eq!(batch.entries.capacity(), entries);
        assert_eq!(batch.len() as u64, n);
        let packets: Vec<_> = batch.packets().collect();
        assert_eq!(packets[3].ts_ns, 1_003);
        assert_eq!(packets[3].data, &frame[..]);
        assert_eq!(packets[3].linktype, 1);
        batch.clear();
        assert!(batch.is_empty() && batch.fits(frame.len()));
    }

    /// A pipeline that reads nothing: frames go into the queued batches until the queue and
    /// the pool are used up, then every further frame is counted as a queue drop.
    #[test]
    fn a_stalled_pipeline_costs_counted_drops_only() {
        let (queue, queued) = mpsc::sync_channel(1);
        let (back, free) = mpsc::channel();
        for _ in 0..2 {
            back.send(Batch::new(0, 1, 65_535)).unwrap();
        }
        let counters = Counters::default();
        let frame = vec![0u8; 60_000];
        let mut current = None;
        let sent = 200u64;
        for i in 0..sent {
            Reader::frame(&mut current, &free, &queue, &counters, i, 60_000, &frame);
        }
        hand_over(&mut current, &queue, &counters, false);
        let delivered = counters.delivered.load(Ordering::Relaxed);
        let dropped = counters.queue_dropped.load(Ordering::Relaxed);
        assert!(delivered > 0 && dropped > 0, "{delivered} {dropped}");
        assert_eq!(delivered + dropped, sent);
        let in_queue: usize = queued.try_iter().map(|b| b.len()).sum();
        assert_eq!(in_queue as u64, delivered);
    }

    #[test]
    fn pcap_counters_wrap_into_64_bits() {
        let counters = Counters::default();
        let mut totals = PcapTotals::default();
        let stat = |received, dropped| pcap::Stat {
            received,
            dropped,
            if_dropped: 0,
        };
        totals.update(stat(u32::MAX - 5, 1), &counters);
        totals.update(stat(10, 3), &counters);
        assert_eq!(
            counters.received.load(Ordering::Relaxed),
            u64::from(u32::MAX - 5) + 16
        );
        assert_eq!(counters.kernel_dropped.load(Ordering::Relaxed), 3);
    }
}
