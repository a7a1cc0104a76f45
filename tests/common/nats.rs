//! A real nats-server with JetStream of the test's own, on loopback and a free port, its
//! store in a temporary directory; killed when dropped. Installed by scripts/setup.sh --test.
//! Also reads what its streams hold.
#![allow(dead_code)]
use async_nats::jetstream::{self, consumer};
use egresswatch::fleet::schema::{Body, Message};
use futures_util::StreamExt;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const INSTALL: &str = "apt-get install nats-server";

pub struct NatsServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `nats-server -js` storing in `dir` and waits until it takes connections.
    pub fn start(dir: &Path) -> NatsServer {
        NatsServer::start_on(dir, crate::common::free_tcp_port())
    }

    /// On a given port (a test that starts its clients before the server).
    pub fn start_on(dir: &Path, port: u16) -> NatsServer {
        let mut server = NatsServer {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts it (again: same port and store).
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        std::fs::create_dir_all(self.dir.join("store")).unwrap();
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.join("store"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("nats-server.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server ({e}); install it: {INSTALL}"));
        self.child = Some(child);
        let start = Instant::now();
        while !self.ready() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nats-server exited ({status}): {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "nats-server did not get ready on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ready when its log says so for this port and a connection gets its INFO line. A
    /// bare TCP connect is not proof: CI once saw the client's first connection refused
    /// right after such a probe succeeded.
    fn ready(&self) -> bool {
        let log = self.log();
        let listening = format!(
            "Listening for client connections on 127.0.0.1:{}",
            self.port
        );
        if !log.contains(&listening) || !log.contains("Server is ready") {
            return false;
        }
        let Ok(mut probe) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = probe.set_read_timeout(Some(Duration::from_secs(2)));
        let mut info = [0u8; 5];
        probe.read_exact(&mut info).is_ok() && &info == b"INFO "
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats-server.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("nats-server log ({}):\n{}", self.dir.display(), self.log());
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every message a stream holds on subjects matching `filter`, in stream order.
pub fn stream_messages(url: &str, stream: &str, filter: &str) -> Vec<Message> {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = jetstream::new(client);
        let mut stream = js.get_stream(stream).await.unwrap();
        let mut out = Vec::new();
        if stream.info().await.unwrap().state.messages == 0 {
            return out;
        }
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(5), messages.next());
            let Ok(Some(Ok(m))) = next.await else { break };
            out.push(serde_json::from_slice::<Message>(&m.payload).unwrap());
            if m.info().unwrap().pending == 0 {
                break;
            }
        }
        out
    })
}

/// The summary's fleet line: "fleet: site S sensor N: Q messages queued, A stored by the
/// bus, D dropped, ..." as (queued, stored, dropped).
pub fn fleet_counts(stderr: &[u8]) -> (u64, u64, u64) {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("fleet: site"))
        .unwrap_or_else(|| panic!("no fleet line in:\n{text}"));
    let number_before = |what: &str| -> u64 {
        let at = line
            .find(what)
            .unwrap_or_else(|| panic!("{what} in {line}"));
        line[..at]
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        number_before(" messages queued"),
        number_before(" stored by the bus"),
        number_before(" dropped"),
    )
}

/// The alerts among a sensor's messages, as it printed them.
pub fn published_alerts(messages: &[Message]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .filter_map(|m| match &m.body {
            Body::Alert { alert } => Some(alert.clone()),
            _ => None,
        })
        .collect()
}
