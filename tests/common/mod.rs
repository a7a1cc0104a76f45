//! Helpers shared by integration tests.
// Each test binary uses a part of them.
#![allow(dead_code)]
use std::collections::BTreeSet;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory removed when dropped. Tests run in parallel in one process: each directory
/// gets its own number.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str, tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!(
            "egresswatch-{prefix}-{}-{n}-{tag}",
            std::process::id()
        ));
        // A test that panicked in an earlier run whose process had the same id left it.
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port the kernel says is free and no other test of this process was given.
/// Tests run in parallel, and one that stops its server and starts it again on the same port
/// (a bus that comes late) must not find another test's server there: the kernel hands a
/// freed port out again, so each port is given once per process.
fn unused_port(bound_port: impl Fn() -> std::io::Result<u16>) -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = bound_port().expect("a loopback port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

pub fn free_tcp_port() -> u16 {
    unused_port(|| Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()))
}

pub fn free_udp_port() -> u16 {
    unused_port(|| Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port()))
}

/// The public captures with their tshark oracles.
pub fn public_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/captures/public")
}

/// Every `*.oracle.json` in [`public_dir`], sorted.
pub fn oracle_files() -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(public_dir())
        .expect("../shared/captures/public exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".oracle.json"))
        .collect();
    entries.sort();
    entries
}

/// An HTTP response as text (status line, headers, body), split: (status code, body).
pub fn http_status_and_body(response: &str) -> (u16, String) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// `GET path` from a server on this machine's loopback (HTTP/1.0: the server closes).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint connects");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    http_status_and_body(&response)
}

/// Prometheus text: each sample line as `series -> value` (comments skipped).
pub fn metric_samples(body: &str) -> std::collections::BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            (
                series.to_string(),
                value.parse().unwrap_or_else(|_| panic!("{l}")),
            )
        })
        .collect()
}
