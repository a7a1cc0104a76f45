//! UDP collector sockets for flow export. One thread per socket reads datagrams into batches
//! (one buffer holds several datagrams; processed batches come back for reuse, so there is no
//! allocation per datagram and one queue hand-over per batch) on a queue bounded in datagrams;
//! when the decoder falls behind, datagrams are dropped and counted per exporter rather than
//! blocking the socket (whose kernel buffer would overflow silently instead).
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError, TrySendError, channel,
    sync_channel,
};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Kernel receive buffer asked for (the kernel caps it at net.core.rmem_max): exporters send
/// their caches in bursts.
const SOCKET_BUFFER: usize = 32 << 20;
/// How often a socket thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// A batch goes to the decoder when the socket has nothing more to read, or at these sizes.
const BATCH_DATAGRAMS: usize = 64;
const BATCH_BYTES: usize = 256 << 10;

/// One received datagram, borrowed from its batch.
pub struct Datagram<'a> {
    pub exporter: SocketAddr,
    /// Arrival time, ns since the Unix epoch.
    pub recv_ns: u64,
    pub payload: &'a [u8],
}

/// Datagrams of one socket, in arrival order, in one buffer.
#[derive(Default)]
pub struct Batch {
    socket: usize,
    bytes: Vec<u8>,
    /// (exporter, arrival ns, end of its payload in `bytes`).
    datagrams: Vec<(SocketAddr, u64, usize)>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        let mut start = 0;
        self.datagrams.iter().map(move |&(exporter, recv_ns, end)| {
            let payload = self.bytes.get(start..end).unwrap_or_default();
            start = end;
            Datagram {
                exporter,
                recv_ns,
                payload,
            }
        })
    }

    fn push(&mut self, exporter: SocketAddr, recv_ns: u64, payload: &[u8]) {
        self.bytes.extend_from_slice(payload);
        self.datagrams.push((exporter, recv_ns, self.bytes.len()));
    }

    fn full(&self) -> bool {
        self.datagrams.len() >= BATCH_DATAGRAMS || self.bytes.len() >= BATCH_BYTES
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.datagrams.clear();
    }
}

pub enum Received {
    Batch(Batch),
    Nothing,
    /// Every socket thread has stopped and the queue is empty.
    Closed,
}

type Drops = Arc<Mutex<BTreeMap<IpAddr, u64>>>;

pub struct Collector {
    rx: Receiver<Batch>,
    /// Datagrams queued and not yet taken by `recv` (the queue's bound is in datagrams).
    queued: Arc<AtomicUsize>,
    /// Per socket thread: where processed batches go back.
    returns: Vec<Sender<Batch>>,
    threads: Vec<JoinHandle<()>>,
    local: Vec<SocketAddr>,
    drops: Drops,
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a larger buffer absorbs exporters' bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    // Read until the socket is empty, then hand the batch over and wait in poll(2).
    socket.set_nonblocking(true)?;
    Ok(socket)
}

impl Collector {
    /// Binds every address (port 0 picks a free port; see `local_addrs`) and starts reading.
    /// At most `queue` datagrams wait for the decoder.
    pub fn start(listen: &[SocketAddr], queue: usize, stop: Arc<AtomicBool>) -> io::Result<Self> {
        let queue = queue.max(1);
        let (tx, rx) = sync_channel(queue);
        let queued = Arc::new(AtomicUsize::new(0));
        let drops: Drops = Arc::default();
        let mut threads = Vec::new();
        let mut returns = Vec::new();
        let mut local = Vec::new();
        for (index, &addr) in listen.iter().enumerate() {
            let socket = bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            local.push(socket.local_addr()?);
            let (back_tx, back_rx) = channel();
            returns.push(back_tx);
            let reader = Reader {
                socket,
                index,
                queue,
                tx: tx.clone(),
                free: back_rx,
                queued: queued.clone(),
                stop: stop.clone(),
                drops: drops.clone(),
            };
            threads.push(std::thread::spawn(move || reader.run()));
        }
        Ok(Collector {
            rx,
            queued,
            returns,
            threads,
            local,
            drops,
        })
    }

    /// Datagrams waiting for the decoder now.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed) as u64
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The next batch of datagrams, waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Received {
        match self.rx.recv_timeout(timeout) {
            Ok(batch) => {
                self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
                Received::Batch(batch)
            }
            Err(RecvTimeoutError::Timeout) => Received::Nothing,
            Err(RecvTimeoutError::Disconnected) => Received::Closed,
        }
    }

    /// Gives a processed batch back to its socket thread for reuse.
    pub fn recycle(&self, mut batch: Batch) {
        batch.clear();
        if let Some(back) = self.returns.get(batch.socket) {
            // The thread may have ended; the batch is then simply freed.
            let _ = back.send(batch);
        }
    }

    /// Drops counted since the last call, per exporter address.
    pub fn take_drops(&self) -> BTreeMap<IpAddr, u64> {
        match self.drops.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => BTreeMap::new(),
        }
    }

    /// Waits for the socket threads (after the stop flag is set).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

struct Reader {
    socket: UdpSocket,
    index: usize,
    queue: usize,
    tx: SyncSender<Batch>,
    free: Receiver<Batch>,
    queued: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    drops: Drops,
}

impl Reader {
    fn run(self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut batch = self.fresh_batch();
        let poll_ms = u16::try_from(POLL.as_millis()).unwrap_or(u16::MAX);
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    // Room in the queue counts the datagrams of this batch too.
                    if self.queued.load(Ordering::Relaxed) + batch.len() < self.queue {
                        batch.push(
                            from,
                            super::wall_clock_ns(),
                            buf.get(..n).unwrap_or_default(),
                        );
                    } else {
                        self.count_drops(from.ip(), 1);
                    }
                    if batch.full() && !self.send(&mut batch) {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !batch.is_empty() && !self.send(&mut batch) {
                        break;
                    }
                    use nix::poll::{PollFd, PollFlags, poll};
                    let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
                    // After a stop the socket is read until it stays empty for a poll
                    // interval, so what the kernel already holds is not lost.
                    match poll(&mut fds, poll_ms) {
                        Ok(0) if self.stop.load(Ordering::Relaxed) => break,
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(_) => break,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            self.send(&mut batch);
        }
    }

    /// A processed batch back from the decoder, or a new one.
    fn fresh_batch(&self) -> Batch {
        match self.free.try_recv() {
            Ok(batch) => batch,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Batch {
                socket: self.index,
                ..Batch::default()
            },
        }
    }

    /// Queues the batch (replaced by a fresh one); false when the decoder is gone.
    fn send(&self, batch: &mut Batch) -> bool {
        let full = std::mem::replace(batch, self.fresh_batch());
        self.queued.fetch_add(full.len(), Ordering::Relaxed);
        match self.tx.try_send(full) {
            Ok(()) => true,
            // Cannot happen while batches hold a datagram or more (the channel holds as many
            // batches as the queue holds datagrams); counted all the same.
            Err(TrySendError::Full(full)) => {
                self.queued.fetch_sub(full.len(), Ordering::Relaxed);
                for d in full.iter() {
                    self.count_drops(d.exporter.ip(), 1);
                }
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn count_drops(&self, exporter: IpAddr, n: u64) {
        if let Ok(mut map) = self.drops.lock() {
            *map.entry(exporter).or_insert(0) += n;
        }
    }
}
