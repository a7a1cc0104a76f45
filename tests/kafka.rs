//! Kafka export against a real Kafka-protocol broker (Tansu, from scripts/kafka-peer.sh) that the
//! test starts on loopback: what KafkaExport sends is read back by a librdkafka consumer and
//! compared (topic, key, bytes, per-key order); an unreachable broker and a broker that goes
//! away and comes back show the queue's bounds and counters.
#![cfg(feature = "kafka")]
use egresswatch::fleet::kafka::{KafkaConfig, KafkaCounters, KafkaExport};
use rdkafka::Message;
use rdkafka::TopicPartitionList;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
#[path = "common/syslog.rs"]
mod syslog_helpers;
use common::TempDir;
use syslog_helpers::{PATIENCE, free_tcp_port, repo, wait_for};

const PARTITIONS: i32 = 3;

fn peer_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-peer.sh")
}

fn peer(args: &[&str]) -> Command {
    let mut c = Command::new("bash");
    c.arg(peer_script()).args(args);
    c
}

/// A Tansu broker of the test's own, with in-memory storage, killed when dropped.
struct Broker {
    addr: String,
    child: Child,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_on(free_tcp_port())
    }

    fn start_on(port: u16) -> Broker {
        let addr = format!("127.0.0.1:{port}");
        Broker::start_advertising(&addr, &addr)
    }

    /// Listens on `addr`, telling clients to connect to `advertised` (a relay in front of it).
    fn start_advertising(addr: &str, advertised: &str) -> Broker {
        let status = peer(&["path"]).stdout(Stdio::null()).status().unwrap();
        assert!(
            status.success(),
            "no Kafka peer: run `bash scripts/kafka-peer.sh install` first"
        );
        let child = peer(&["start", addr, advertised])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut broker = Broker {
            addr: addr.to_string(),
            child,
        };
        wait_for("the broker to listen", || {
            assert!(broker.child.try_wait().unwrap().is_none(), "broker exited");
            TcpStream::connect(&broker.addr).is_ok()
        });
        broker
    }

    fn create_topics(&self, prefix: &str) {
        for kind in ["windows", "alerts"] {
            let topic = format!("{prefix}.{kind}");
            let out = peer(&["topic", &self.addr, &topic, &PARTITIONS.to_string()])
                .output()
                .unwrap();
            assert!(out.status.success(), "create {topic}: {out:?}");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Received {
    topic: String,
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    payload: Vec<u8>,
}

/// Reads `n` messages from every partition of `topics`, from the start, as an independent
/// librdkafka consumer (no consumer group: partitions assigned by hand).
fn consume(addr: &str, topics: &[String], n: usize) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "egresswatch-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for p in 0..PARTITIONS {
            assignment
                .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&assignment).unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < n {
        assert!(
            start.elapsed() < PATIENCE,
            "read {} of {n} messages",
            got.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        got.push(Received {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().unwrap_or_default().to_vec(),
            payload: m.payload().unwrap_or_default().to_vec(),
        });
    }
    // Nothing beyond what was sent.
    if let Some(m) = consumer.poll(Duration::from_millis(500)) {
        panic!("unexpected extra message: {:?}", m.map(|m| m.offset()));
    }
    got
}

fn config(addr: &str, prefix: &str) -> KafkaConfig {
    KafkaConfig {
        brokers: addr.to_string(),
        topic_prefix: prefix.to_string(),
        ..KafkaConfig::default()
    }
}

/// Payloads shaped like the fleet's messages but opaque to the export: JSON-like text for
/// windows, bytes that are not UTF-8 for alerts (the export must not care).
fn payload(kind: &str, site: &str, seq: usize) -> Vec<u8> {
    match kind {
        "windows" => format!(r#"{{"v":1,"site":"{site}","seq":{seq},"hosts":[]}}"#).into_bytes(),
        _ => {
            let mut p = format!("alert {site} {seq} ").into_bytes();
            p.extend([0xff, 0x00, 0xfe, (seq % 256) as u8]);
            p
        }
    }
}

/// Every message arrives once, on its kind's topic, under its site's key, byte for byte, and
/// one site's messages keep their order (one partition per key).
#[test]
fn messages_arrive_on_their_topics_keyed_by_site_in_order() {
    let broker = Broker::start();
    let prefix = "ew-roundtrip";
    broker.create_topics(prefix);
    let export = KafkaExport::start(&config(&broker.addr, prefix)).unwrap();
    let sites = ["site-a", "site-b", "site-c", "site-d"];
    let mut sent = Vec::new();
    for seq in 0..40 {
        for kind in ["windows", "alerts"] {
            let site = sites[seq % sites.len()];
            let p = payload(kind, site, seq);
            assert!(export.send(kind, site, &p));
            sent.push((format!("{prefix}.{kind}"), site.as_bytes().to_vec(), p));
        }
    }
    export.flush(PATIENCE);
    let n = sent.len() as u64;
    assert_eq!(
        export.counters(),
        KafkaCounters {
            queued: n,
            delivered: n,
            failed: 0,
            dropped: 0
        }
    );
    let topics = [format!("{prefix}.windows"), format!("{prefix}.alerts")];
    let mut got = consume(&broker.addr, &topics, sent.len());

    // Per (topic, key): one partition, and the offsets follow the send order.
    let mut by_key: BTreeMap<(String, Vec<u8>), Vec<Received>> = BTreeMap::new();
    got.sort_by_key(|r| (r.topic.clone(), r.partition, r.offset));
    for r in &got {
        by_key
            .entry((r.topic.clone(), r.key.clone()))
            .or_default()
            .push(r.clone());
    }
    let mut expected: BTreeMap<(String, Vec<u8>), Vec<Vec<u8>>> = BTreeMap::new();
    for (topic, key, p) in &sent {
        expected
            .entry((topic.clone(), key.clone()))
            .or_default()
            .push(p.clone());
    }
    assert_eq!(
        by_key.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, msgs) in &by_key {
        let partitions: Vec<i32> = msgs.iter().map(|r| r.partition).collect();
        assert!(partitions.iter().all(|&p| p == partitions[0]), "{k:?}");
        let payloads: Vec<Vec<u8>> = msgs.iter().map(|r| r.payload.clone()).collect();
        assert_eq!(&payloads, &expected[k], "{k:?}");
    }
}

/// Nothing listens: `send` only queues (the test would hang otherwise), the queue's bound
/// turns the rest into counted drops, `flush` gives up at its timeout, and librdkafka's
/// message timeout turns the queued ones into counted failures, after which the queue takes
/// messages again.
#[test]
fn unreachable_broker_never_blocks_and_counts() {
    let port = free_tcp_port(); // bound then released: connections are refused
    let mut cfg = config(&format!("127.0.0.1:{port}"), "ew-down");
    cfg.queue_messages = 10;
    cfg.properties
        .insert("message.timeout.ms".into(), "2000".into());
    let export = KafkaExport::start(&cfg).unwrap();
    let accepted = (0..25)
        .filter(|&i| export.send("alerts", "site-a", &payload("alerts", "site-a", i)))
        .count();
    assert_eq!(accepted, 10);
    assert_eq!(
        export.counters(),
        KafkaCounters {
            queued: 10,
            delivered: 0,
            failed: 0,
            dropped: 15
        }
    );
    // Returns with the messages still queued (well before their 2 s timeout).
    export.flush(Duration::from_millis(100));
    assert_eq!(export.counters().delivered, 0);
    // Waits for the message timeout: all ten fail.
    export.flush(PATIENCE);
    assert_eq!(
        export.counters(),
        KafkaCounters {
            queued: 10,
            delivered: 0,
            failed: 10,
            dropped: 15
        }
    );
    assert!(export.last_error().is_some());
    // Room again once they have failed.
    assert!(export.send("windows", "site-a", b"again"));
    assert_eq!(export.counters().queued, 11);
}

/// The broker goes away mid-run and comes back on the same address: what was queued
/// meanwhile (within the bound) is delivered after it returns, with nothing lost or doubled.
#[test]
fn catches_up_after_the_broker_returns() {
    // The outage is a relay in front of the broker going away: restarting Tansu would lose its
    // in-memory topics, and a producer retrying into a broker still creating them races it.
    let relay = Relay::start();
    let prefix = "ew-return";
    let broker = Broker::start_advertising(&format!("127.0.0.1:{}", free_tcp_port()), &relay.addr);
    relay.forward_to(&broker.addr);
    broker.create_topics(prefix);
    let export = KafkaExport::start(&config(&relay.addr, prefix)).unwrap();
    assert!(export.send("windows", "site-a", b"before"));
    export.flush(PATIENCE);
    assert_eq!(export.counters().delivered, 1);
    relay.cut();

    let outage: Vec<Vec<u8>> = (0..20).map(|i| payload("windows", "site-a", i)).collect();
    for p in &outage {
        assert!(export.send("windows", "site-a", p));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        export.counters().delivered,
        1,
        "delivered through a cut relay"
    );
    relay.forward_to(&broker.addr);
    export.flush(PATIENCE);
    assert_eq!(
        export.counters(),
        KafkaCounters {
            queued: 21,
            delivered: 21,
            failed: 0,
            dropped: 0
        }
    );
    let mut got = consume(
        &broker.addr,
        &[format!("{prefix}.windows")],
        outage.len() + 1,
    );
    got.sort_by_key(|r| (r.partition, r.offset));
    let payloads: Vec<Vec<u8>> = got.into_iter().map(|r| r.payload).collect();
    let mut expected = vec![b"before".to_vec()];
    expected.extend(outage);
    assert_eq!(payloads, expected);
}

/// A loopback TCP relay that can be cut (every connection closed, new ones refused at once)
/// and restored, to take a broker away from its clients without restarting it.
struct Relay {
    addr: String,
    /// Where accepted connections go; None: cut.
    upstream: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start() -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap().to_string(),
            upstream: Default::default(),
            open: Default::default(),
        };
        let (upstream, open) = (relay.upstream.clone(), relay.open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let target = upstream.lock().unwrap().clone();
                let Some(server) = target.and_then(|t| TcpStream::connect(t).ok()) else {
                    continue; // dropped: the client sees the connection close
                };
                let mut open = open.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        relay
    }

    fn forward_to(&self, addr: &str) {
        *self.upstream.lock().unwrap() = Some(addr.to_string());
    }

    fn cut(&self) {
        *self.upstream.lock().unwrap() = None;
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Throughput of ~1 KB messages into the broker, delivered (acks=all): run with
/// `cargo test --release --features kafka --test kafka -- --ignored --nocapture`.
/// KAFKA_BENCH_BROKERS=host:port measures against a broker of your own instead (topic
/// "ew-bench.windows" must exist there).
#[test]
#[ignore]
fn throughput() {
    let prefix = "ew-bench";
    let mut broker = None;
    let addr = std::env::var("KAFKA_BENCH_BROKERS").unwrap_or_else(|_| {
        let b = broker.insert(Broker::start());
        b.create_topics(prefix);
        b.addr.clone()
    });
    let export = KafkaExport::start(&config(&addr, prefix)).unwrap();
    let n: u64 = std::env::var("KAFKA_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let body = vec![b'x'; 1000];
    let sites = ["site-a", "site-b", "site-c", "site-d"];
    let start = Instant::now();
    let mut i = 0u64;
    while export.counters().queued < n {
        let site = sites[(i % 4) as usize];
        if !export.send("windows", site, &body) {
            // Queue full: the packet path would drop; the bench waits to measure delivery.
            std::thread::sleep(Duration::from_millis(1));
        }
        i += 1;
    }
    let queued_in = start.elapsed();
    export.flush(PATIENCE * 10);
    let total = start.elapsed();
    let c = export.counters();
    println!(
        "{} messages of {} B: queued in {:.2} s, delivered in {:.2} s = {:.0} msg/s, {:.1} MB/s; {:?}",
        n,
        body.len(),
        queued_in.as_secs_f64(),
        total.as_secs_f64(),
        c.delivered as f64 / total.as_secs_f64(),
        c.delivered as f64 * body.len() as f64 / total.as_secs_f64() / 1e6,
        c
    );
    assert_eq!(c.delivered, n);
}

/// What `send` costs the packet path, without a broker to drain the queue (unreachable, queue
/// large enough for all): run as `throughput` above, with `send_cost`.
#[test]
#[ignore]
fn send_cost() {
    let n = 200_000;
    let mut cfg = config(&format!("127.0.0.1:{}", free_tcp_port()), "ew-cost");
    cfg.queue_messages = n;
    let export = KafkaExport::start(&cfg).unwrap();
    let body = vec![b'x'; 1000];
    let start = Instant::now();
    for i in 0..n {
        export.send("windows", ["site-a", "site-b"][i % 2], &body);
    }
    let took = start.elapsed();
    println!(
        "{n} sends of {} B: {:.0} ns/send; {:?}",
        body.len(),
        took.as_nanos() as f64 / n as f64,
        export.counters()
    );
    assert_eq!(export.counters().queued, n as u64);
}

/// A sensor exporting to Kafka only (`[fleet.kafka]`, no NATS): every window summary and alert
/// arrives on its topic under the site's key, as the fleet schema's messages, and the alerts
/// are the ones the replay printed.
#[test]
fn sensor_exports_the_fleet_schema_to_kafka() {
    use egresswatch::fleet::schema::{Body, Message as FleetMessage, SCHEMA};
    let broker = Broker::start();
    broker.create_topics("egresswatch");
    let dir = TempDir::new("kafka", "fleet");
    let config = dir.path("kafka.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[fleet]\nsite = \"site-1\"\nsensor = \"span-1\"\n[fleet.kafka]\nbrokers = \"{}\"\n",
            std::fs::read_to_string(repo("captures/fleet.toml")).unwrap(),
            broker.addr
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .current_dir(repo(""))
        .args(["replay", "--format", "json", "--config"])
        .arg(&config)
        .arg(repo("captures/site-1.pcap"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("kafka: ")).unwrap();
    let queued: usize = line["kafka: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        line.ends_with(&format!("{queued} delivered, 0 failed, 0 dropped")),
        "{line}"
    );
    let printed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let topics = [
        "egresswatch.windows".to_string(),
        "egresswatch.alerts".to_string(),
    ];
    let mut received = consume(&broker.addr, &topics, queued);
    received
        .sort_by_key(|r| serde_json::from_slice::<FleetMessage>(&r.payload).map_or(0, |m| m.seq));
    let mut alerts = Vec::new();
    let mut windows = 0;
    for (i, r) in received.iter().enumerate() {
        assert_eq!(r.key, b"site-1");
        let m: FleetMessage = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(
            (m.schema.as_str(), m.site.as_str(), m.sensor.as_str()),
            (SCHEMA, "site-1", "span-1")
        );
        assert_eq!(m.seq, i as u64 + 1);
        match m.body {
            Body::Window(_) => {
                assert_eq!(r.topic, "egresswatch.windows");
                windows += 1;
            }
            Body::Alert { alert } => {
                assert_eq!(r.topic, "egresswatch.alerts");
                alerts.push(alert);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(windows, 12);
    assert_eq!(alerts, printed);
}
