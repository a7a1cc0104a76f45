//! UDP collector sockets for flow export. One thread per socket reads datagrams into a bounded
//! queue; when the decoder falls behind, datagrams are dropped and counted per exporter rather
//! than blocking the socket (whose kernel buffer would overflow silently instead).
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Kernel receive buffer asked for (the kernel caps it at net.core.rmem_max).
const SOCKET_BUFFER: usize = 8 << 20;
/// How often a socket thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

pub struct Datagram {
    pub exporter: SocketAddr,
    /// Arrival time, ns since the Unix epoch.
    pub recv_ns: u64,
    pub payload: Vec<u8>,
}

pub enum Received {
    Datagram(Datagram),
    Nothing,
    /// Every socket thread has stopped and the queue is empty.
    Closed,
}

type Drops = Arc<Mutex<BTreeMap<IpAddr, u64>>>;

pub struct Collector {
    rx: Receiver<Datagram>,
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
    socket.set_read_timeout(Some(POLL))?;
    Ok(socket)
}

impl Collector {
    /// Binds every address (port 0 picks a free port; see `local_addrs`) and starts reading.
    pub fn start(listen: &[SocketAddr], queue: usize, stop: Arc<AtomicBool>) -> io::Result<Self> {
        let (tx, rx) = sync_channel(queue.max(1));
        let drops: Drops = Arc::default();
        let mut threads = Vec::new();
        let mut local = Vec::new();
        for &addr in listen {
            let socket = bind(addr)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            local.push(socket.local_addr()?);
            let (tx, stop, drops) = (tx.clone(), stop.clone(), drops.clone());
            threads.push(std::thread::spawn(move || {
                read_loop(&socket, &tx, &stop, &drops)
            }));
        }
        Ok(Collector {
            rx,
            threads,
            local,
            drops,
        })
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The next datagram, waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Received {
        match self.rx.recv_timeout(timeout) {
            Ok(d) => Received::Datagram(d),
            Err(RecvTimeoutError::Timeout) => Received::Nothing,
            Err(RecvTimeoutError::Disconnected) => Received::Closed,
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

fn read_loop(socket: &UdpSocket, tx: &SyncSender<Datagram>, stop: &AtomicBool, drops: &Drops) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            // After a stop the socket is read until it stays empty for a poll interval, so
            // what the kernel already holds is not lost.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let datagram = Datagram {
            exporter: from,
            recv_ns: super::wall_clock_ns(),
            payload: buf.get(..n).unwrap_or_default().to_vec(),
        };
        match tx.try_send(datagram) {
            Ok(()) => {}
            Err(TrySendError::Full(d)) => {
                if let Ok(mut map) = drops.lock() {
                    *map.entry(d.exporter.ip()).or_insert(0) += 1;
                }
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
}
