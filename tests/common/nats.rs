//! A real nats-server with JetStream, of the test's own, on loopback; and reading what its
//! streams hold. Test binaries mount it beside `common/syslog.rs` as `syslog_helpers`.
#![allow(dead_code)]
use crate::syslog_helpers::{free_tcp_port, wait_for};
use async_nats::jetstream::{self, consumer};
use egresswatch::fleet::schema::Message;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const INSTALL: &str = "apt-get install nats-server";

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    store: PathBuf,
    log: PathBuf,
}

impl NatsServer {
    /// Starts `nats-server -js` on a free loopback port with its store under `dir`.
    pub fn start(dir: &Path) -> NatsServer {
        NatsServer::start_on(dir, free_tcp_port())
    }

    pub fn start_on(dir: &Path, port: u16) -> NatsServer {
        let store = dir.join("jetstream");
        let log = dir.join("nats-server.log");
        let mut server = NatsServer {
            child: None,
            port,
            store,
            log,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("nats-server: {e} (install with `{INSTALL}`)"));
        self.child = Some(child);
        let log = self.log.clone();
        wait_for("nats-server to be ready", || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("Server is ready"))
        });
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
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
        let held = stream.info().await.unwrap().state.messages;
        let mut out = Vec::new();
        if held == 0 {
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
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next());
            let Ok(Some(Ok(m))) = next.await else { break };
            out.push(serde_json::from_slice::<Message>(&m.payload).unwrap());
            if m.info().unwrap().pending == 0 {
                break;
            }
        }
        out
    })
}
