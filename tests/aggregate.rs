//! `egresswatch aggregate` against a real nats-server: hand-built sensor messages in, fleet
//! baselines and fleet alerts out; raised once, across runs and redeliveries.
mod common;
#[path = "common/nats.rs"]
mod nats;

use common::TempDir;
use egresswatch::detect::windows::p90;
use egresswatch::fleet::FleetConfig;
use egresswatch::fleet::schema::{
    Body, FleetAlert, HostSummary, LongUpload, Message, SCHEMA, Subjects, WindowSummary,
};
use nats::NatsServer;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

const WINDOW_NS: u64 = 900_000_000_000;
/// 2024-03-04 08:00 UTC.
const W0: u64 = 1_709_539_200_000_000_000;

fn subjects() -> Subjects {
    FleetConfig::default().subjects()
}

fn host(ip: &str, bytes_out: u64, baseline: Option<f64>) -> HostSummary {
    HostSummary {
        host: ip.parse().unwrap(),
        bytes_out,
        bytes_in: bytes_out / 10,
        flows_opened: 3,
        distinct_destinations: 2,
        baseline_bytes_out: baseline,
        long_uploads: Vec::new(),
    }
}

fn upload(ip: &str, port: u16, asn: u32, bytes_out: u64) -> LongUpload {
    LongUpload {
        ip: ip.parse().unwrap(),
        port,
        asn: Some(asn),
        country: None,
        bytes_out,
        bytes_in: bytes_out / 100,
        duration_s: 1200.0,
    }
}

struct Sensor {
    site: String,
    seq: u64,
}

impl Sensor {
    fn new(site: &str) -> Sensor {
        Sensor {
            site: site.into(),
            seq: 0,
        }
    }

    fn message(&mut self, event_time_ns: u64, body: Body) -> Message {
        self.seq += 1;
        Message {
            schema: SCHEMA.into(),
            site: self.site.clone(),
            sensor: format!("{}-span", self.site),
            run: 1,
            seq: self.seq,
            event_time_ns,
            dropped: 0,
            body,
        }
    }

    /// The window's hosts in `parts` messages.
    fn window(&mut self, start: u64, hosts: &[HostSummary], parts: usize) -> Vec<Message> {
        let chunk = hosts.len().div_ceil(parts).max(1);
        hosts
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                self.message(
                    start + WINDOW_NS,
                    Body::Window(WindowSummary {
                        window_start_ns: start,
                        window_end_ns: start + WINDOW_NS,
                        part: i as u32,
                        parts: parts as u32,
                        hosts_total: hosts.len() as u64,
                        site_p90_bytes_out: None,
                        scored_against: "site".into(),
                        hosts: c.to_vec(),
                    }),
                )
            })
            .collect()
    }

    fn proxyware_alert(&mut self, host: &str, service: &str, name: &str) -> Message {
        let alert = serde_json::json!({
            "id": format!("{:016x}", self.seq),
            "time": "2024-03-04T08:03:00.000000Z",
            "host": host,
            "DestinationIp": null,
            "DestinationHostname": name,
            "DestinationPort": 443,
            "DetectionBranch": "ProxywareDomain",
            "technique": "T1496.002",
            "analytic": "AN0081",
            "score": 80,
            "severity": "high",
            "bytes_out": 12345,
            "bytes_in": 678,
            "window_start": "2024-03-04T08:00:00.000000Z",
            "window_end": "2024-03-04T08:15:00.000000Z",
            "count": 1,
            "reason": "looked up a proxyware name",
            "evidence": {"service": service},
        });
        self.message(W0 + WINDOW_NS, Body::Alert { alert })
    }
}

/// What the test publishes: three sites' first window (one in two parts), a second window of
/// one site (too few hosts for a p90), long uploads from two sites to one endpoint and from a
/// third to another endpoint of the same ASN, two sites' proxyware alerts, and a site whose
/// hosts with a baseline mostly sent several times it.
struct Fleet {
    messages: Vec<Message>,
    /// Window start -> every host's bytes_out published for it.
    populations: BTreeMap<u64, Vec<u64>>,
    shared_endpoint: (IpAddr, u16, BTreeSet<String>),
    asn: (u32, BTreeSet<String>),
    proxyware: (String, BTreeSet<String>),
    shifted: (String, BTreeSet<IpAddr>),
}

fn fleet() -> Fleet {
    let (relay, other_relay, asn) = ("198.51.100.200", "198.51.100.201", 64_500);
    let mut s1 = Sensor::new("site-1");
    let mut s2 = Sensor::new("site-2");
    let mut s3 = Sensor::new("site-3");
    let mut h1: Vec<HostSummary> = (1..=4)
        .map(|i| host(&format!("10.1.0.{i}"), 100_000 * i, None))
        .collect();
    h1[0].long_uploads.push(upload(relay, 443, asn, 5_000_000));
    let mut h2: Vec<HostSummary> = (1..=6)
        .map(|i| host(&format!("10.2.0.{i}"), 50_000 * (i * i + 1), None))
        .collect();
    h2[2].long_uploads.push(upload(relay, 443, asn, 7_000_000));
    // Site 3: four hosts with a baseline of 200 kB, three of them sent 2-4 MB.
    let mut h3: Vec<HostSummary> = (1..=7)
        .map(|i| {
            let (bytes, baseline) = match i {
                1..=3 => (1_000_000 + 1_000_000 * i, Some(200_000.0)),
                4 => (150_000, Some(200_000.0)),
                _ => (30_000 * i, None),
            };
            host(&format!("10.3.0.{i}"), bytes, baseline)
        })
        .collect();
    h3[6]
        .long_uploads
        .push(upload(other_relay, 8443, asn, 3_000_000));
    let second: Vec<HostSummary> = (1..=4)
        .map(|i| host(&format!("10.1.0.{i}"), 70_000 * i, None))
        .collect();
    let mut populations: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for h in h1.iter().chain(&h2).chain(&h3) {
        populations.entry(W0).or_default().push(h.bytes_out);
    }
    for h in &second {
        populations
            .entry(W0 + WINDOW_NS)
            .or_default()
            .push(h.bytes_out);
    }
    let mut messages = Vec::new();
    messages.extend(s1.window(W0, &h1, 1));
    messages.extend(s2.window(W0, &h2, 2));
    messages.extend(s3.window(W0, &h3, 1));
    messages.extend(s1.window(W0 + WINDOW_NS, &second, 1));
    messages.push(s1.proxyware_alert("10.1.0.2", "Honeygain", "api.honeygain.com"));
    messages.push(s2.proxyware_alert("10.2.0.5", "Honeygain", "dash.honeygain.com"));
    let shifted = h3
        .iter()
        .filter(|h| {
            h.baseline_bytes_out
                .is_some_and(|b| h.bytes_out as f64 >= 3.0 * b)
        })
        .map(|h| h.host)
        .collect();
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    Fleet {
        messages,
        populations,
        shared_endpoint: (relay.parse().unwrap(), 443, names(&["site-1", "site-2"])),
        asn: (asn, names(&["site-1", "site-2", "site-3"])),
        proxyware: ("Honeygain".into(), names(&["site-1", "site-2"])),
        shifted: ("site-3".into(), shifted),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    egresswatch::fleet::bus::ensure_streams(&js, &subjects(), FleetConfig::default().streams())
        .await
        .unwrap();
    js
}

fn subject_of(m: &Message) -> String {
    match m.body {
        Body::Window(_) => subjects().windows(&m.site),
        _ => subjects().alerts(&m.site),
    }
}

async fn publish_raw(
    js: &async_nats::jetstream::Context,
    subject: String,
    id: &str,
    payload: Vec<u8>,
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    js.publish_with_headers(subject, headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn publish(js: &async_nats::jetstream::Context, messages: &[Message]) {
    for m in messages {
        publish_raw(
            js,
            subject_of(m),
            &m.msg_id(),
            serde_json::to_vec(m).unwrap(),
        )
        .await;
    }
}

struct Run {
    alerts: Vec<FleetAlert>,
    stderr: String,
}

fn aggregate(dir: &Path, url: &str, durable: &str) -> Run {
    let config = dir.join("aggregate.toml");
    std::fs::write(&config, "[aggregate]\nname = \"agg-test\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .arg("aggregate")
        .arg("--config")
        .arg(&config)
        .args(["--fleet", url, "--durable", durable, "--format", "json"])
        .args(["--idle-exit", "2"])
        .arg("--alerts")
        .arg(dir.join("fleet-alerts.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "aggregate failed: {stderr}");
    let alerts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    Run { alerts, stderr }
}

/// The summary's counter named `what` ("schema rejects", "fleet alerts raised", ...).
fn counter(stderr: &str, what: &str) -> u64 {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains(" messages ("))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    line.split([',', '(', ')'])
        .find_map(|part| {
            let before = part.trim().strip_suffix(what)?;
            before.split_whitespace().next_back()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {what:?} in {line}"))
}

async fn baseline(
    js: &async_nats::jetstream::Context,
    window_start_ns: u64,
) -> egresswatch::fleet::schema::FleetBaseline {
    let stream = js.get_stream(subjects().baselines_stream()).await.unwrap();
    let raw = stream
        .get_last_raw_message_by_subject(&subjects().baseline(window_start_ns))
        .await
        .unwrap();
    let m: Message = serde_json::from_slice(&raw.payload).unwrap();
    assert_eq!(m.site, "fleet");
    assert_eq!(m.sensor, "agg-test");
    match m.body {
        Body::Baseline(b) => b,
        other => panic!("not a baseline: {other:?}"),
    }
}

async fn stream_alerts(js: &async_nats::jetstream::Context) -> Vec<FleetAlert> {
    let mut stream = js
        .get_stream(subjects().fleet_alerts_stream())
        .await
        .unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        if state.messages == 0 {
            break;
        }
        let raw = stream.get_raw_message(seq).await.unwrap();
        let m: Message = serde_json::from_slice(&raw.payload).unwrap();
        match m.body {
            Body::FleetAlert { alert } => out.push(*alert),
            other => panic!("not a fleet alert: {other:?}"),
        }
    }
    out
}

fn by_kind(alerts: &[FleetAlert]) -> BTreeMap<String, Vec<&FleetAlert>> {
    let mut map: BTreeMap<String, Vec<&FleetAlert>> = BTreeMap::new();
    for a in alerts {
        map.entry(a.kind.clone()).or_default().push(a);
    }
    map
}

#[test]
fn fleet_baselines_and_alerts_once_across_runs_and_redeliveries() {
    let dir = TempDir::new("aggregate", "fleet");
    let server = NatsServer::start(&dir.0);
    let rt = runtime();
    let js = rt.block_on(jetstream(&server.url()));
    let fleet = fleet();
    rt.block_on(async {
        publish(&js, &fleet.messages).await;
        // Another version and a message that is not JSON: skipped, counted.
        let mut old = serde_json::to_value(&fleet.messages[0]).unwrap();
        old["schema"] = "egresswatch.fleet.v0".into();
        let subject = subjects().windows("site-1");
        publish_raw(
            &js,
            subject.clone(),
            "old",
            serde_json::to_vec(&old).unwrap(),
        )
        .await;
        publish_raw(&js, subject, "junk", b"\x00not json".to_vec()).await;
    });

    let first = aggregate(&dir.0, &server.url(), "agg");
    assert_eq!(
        counter(&first.stderr, "schema rejects"),
        2,
        "{}",
        first.stderr
    );
    assert_eq!(
        counter(&first.stderr, "messages"),
        fleet.messages.len() as u64 + 2,
        "{}",
        first.stderr
    );

    // Baselines: the p90 of every host published for the window, over the sites that sent it.
    for (&start, values) in &fleet.populations {
        let b = rt.block_on(baseline(&js, start));
        let mut values = values.clone();
        assert_eq!(b.hosts, values.len() as u64);
        assert_eq!(b.p90_bytes_out, p90(&mut values, 5), "window {start}");
        assert_eq!(b.window_end_ns, start + WINDOW_NS);
    }
    let b0 = rt.block_on(baseline(&js, W0));
    assert_eq!(b0.sites, ["site-1", "site-2", "site-3"]);
    assert!(b0.p90_bytes_out.is_some());
    assert_eq!(
        rt.block_on(baseline(&js, W0 + WINDOW_NS)).p90_bytes_out,
        None
    );

    // Fleet alerts: each finding exactly once, on stdout, in the file and in the stream.
    let kinds = by_kind(&first.alerts);
    assert_eq!(
        kinds.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "ProxywareAcrossSites",
            "SharedRelayAsn",
            "SharedRelayEndpoint",
            "SiteEgressShift"
        ],
        "{:#?}",
        first.alerts
    );
    assert!(kinds.values().all(|v| v.len() == 1), "{:#?}", first.alerts);
    let sites = |a: &FleetAlert| a.sites.iter().cloned().collect::<BTreeSet<_>>();
    let ep = kinds["SharedRelayEndpoint"][0];
    assert_eq!(ep.destination_ip, Some(fleet.shared_endpoint.0));
    assert_eq!(ep.destination_port, Some(fleet.shared_endpoint.1));
    assert_eq!(sites(ep), fleet.shared_endpoint.2);
    let asn = kinds["SharedRelayAsn"][0];
    assert_eq!(asn.asn, Some(fleet.asn.0));
    assert_eq!(sites(asn), fleet.asn.1);
    let pw = kinds["ProxywareAcrossSites"][0];
    assert_eq!(pw.service.as_deref(), Some(fleet.proxyware.0.as_str()));
    assert_eq!(sites(pw), fleet.proxyware.1);
    let shift = kinds["SiteEgressShift"][0];
    assert_eq!(shift.sites, std::slice::from_ref(&fleet.shifted.0));
    let shifted_hosts: BTreeSet<IpAddr> = shift.hosts.iter().map(|h| h.host).collect();
    assert_eq!(shifted_hosts, fleet.shifted.1);
    for a in &first.alerts {
        assert_eq!(a.technique, "T1496.002");
        assert_eq!(a.id.len(), 16);
    }
    let ids = |alerts: &[FleetAlert]| alerts.iter().map(|a| a.id.clone()).collect::<BTreeSet<_>>();
    let in_stream = rt.block_on(stream_alerts(&js));
    assert_eq!(in_stream.len(), first.alerts.len());
    assert_eq!(ids(&in_stream), ids(&first.alerts));
    let file = std::fs::read_to_string(dir.path("fleet-alerts.jsonl")).unwrap();
    assert_eq!(file.lines().count(), first.alerts.len());

    // Again over the same durable: nothing new, nothing raised.
    let second = aggregate(&dir.0, &server.url(), "agg");
    assert!(second.alerts.is_empty(), "{:#?}", second.alerts);
    assert_eq!(counter(&second.stderr, "messages"), 0, "{}", second.stderr);

    // Every message once more, as a redelivery would bring it (an aggregator killed after
    // storing, before acknowledging): a new durable reads the stream from the start against
    // the same state. Nothing changes, nothing is raised again.
    let replay = aggregate(&dir.0, &server.url(), "agg-replay");
    assert!(replay.alerts.is_empty(), "{:#?}", replay.alerts);
    assert_eq!(
        counter(&replay.stderr, "messages"),
        fleet.messages.len() as u64 + 2
    );
    for (&start, values) in &fleet.populations {
        assert_eq!(rt.block_on(baseline(&js, start)).hosts, values.len() as u64);
    }
    // A sensor sending a stored part again (a retry with a new sequence number): the same.
    let mut again = Sensor::new("site-1");
    again.seq = 1000;
    let repeat = match &fleet.messages[0].body {
        Body::Window(w) => again.message(w.window_end_ns, Body::Window(w.clone())),
        _ => unreachable!(),
    };
    rt.block_on(publish(&js, &[repeat]));
    let third = aggregate(&dir.0, &server.url(), "agg");
    assert_eq!(counter(&third.stderr, "messages"), 1);
    assert!(third.alerts.is_empty(), "{:#?}", third.alerts);
    assert_eq!(rt.block_on(baseline(&js, W0)).hosts, b0.hosts);
    assert_eq!(rt.block_on(stream_alerts(&js)).len(), first.alerts.len());

    // A third site joining the shared endpoint: a new, bigger alert.
    let mut s3 = Sensor::new("site-3");
    s3.seq = 1000;
    let mut h = host("10.3.0.9", 4_000_000, None);
    h.long_uploads.push(upload(
        &fleet.shared_endpoint.0.to_string(),
        fleet.shared_endpoint.1,
        fleet.asn.0,
        4_000_000,
    ));
    let late = s3.window(W0 + WINDOW_NS, &[h], 1);
    rt.block_on(publish(&js, &late));
    let fourth = aggregate(&dir.0, &server.url(), "agg");
    let kinds = by_kind(&fourth.alerts);
    assert_eq!(kinds.len(), 1, "{:#?}", fourth.alerts);
    let bigger = kinds["SharedRelayEndpoint"][0];
    assert_eq!(bigger.sites, ["site-1", "site-2", "site-3"]);
    assert_ne!(bigger.id, ep.id);
}

/// Throughput of `aggregate` (not a check: run by hand, numbers in the notes):
/// `cargo test --release --test aggregate -- --ignored --nocapture throughput`.
/// 200 sites x 100 windows of 50 hosts each (one long upload per message), then 10 000
/// sensor alerts (a fifth ProxywareDomain); end-to-end time of `aggregate --idle-exit 1`
/// less the idle second.
#[test]
#[ignore]
fn throughput() {
    let dir = TempDir::new("aggregate", "throughput");
    let server = NatsServer::start(&dir.0);
    let rt = runtime();
    let js = rt.block_on(jetstream(&server.url()));
    let (sites, windows, hosts_per) = (200u64, 100u64, 50u64);
    let mut sensors: Vec<Sensor> = (0..sites)
        .map(|s| Sensor::new(&format!("site-{s}")))
        .collect();
    let mut messages = Vec::new();
    for w in 0..windows {
        for (s, sensor) in sensors.iter_mut().enumerate() {
            let mut hosts: Vec<HostSummary> = (0..hosts_per)
                .map(|h| {
                    let bytes =
                        10_000 + (h * 7919 + w * 104_729 + s as u64 * 1_299_709) % 5_000_000;
                    host(
                        &format!("10.{}.{}.{}", s / 250, s % 250, h + 1),
                        bytes,
                        Some(bytes as f64),
                    )
                })
                .collect();
            hosts[0].long_uploads.push(upload(
                &format!("198.51.{}.{}", s % 200, w % 250),
                443,
                64_500 + s as u32 % 7,
                1_000_000,
            ));
            messages.extend(sensor.window(W0 + w * WINDOW_NS, &hosts, 1));
        }
    }
    let window_messages = messages.len();
    let mut alerts = Vec::new();
    for i in 0..10_000u64 {
        let sensor = &mut sensors[(i % sites) as usize];
        let mut m = sensor.proxyware_alert(
            &format!("10.9.0.{}", i % 250 + 1),
            "Honeygain",
            "api.honeygain.com",
        );
        if i % 5 != 0
            && let Body::Alert { alert } = &mut m.body
        {
            alert["DetectionBranch"] = "FanOut".into();
        }
        alerts.push(m);
    }
    let publish_all = |list: &[Message]| {
        rt.block_on(async {
            for chunk in list.chunks(1000) {
                let mut acks = Vec::new();
                for m in chunk {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(async_nats::header::NATS_MESSAGE_ID, m.msg_id().as_str());
                    acks.push(
                        js.publish_with_headers(
                            subject_of(m),
                            headers,
                            serde_json::to_vec(m).unwrap().into(),
                        )
                        .await
                        .unwrap(),
                    );
                }
                for a in acks {
                    a.await.unwrap();
                }
            }
        })
    };
    let timed = |durable: &str| {
        let start = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
            .args(["aggregate", "--fleet", &server.url(), "--durable", durable])
            .args(["--format", "json", "--idle-exit", "1"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (start.elapsed().as_secs_f64() - 1.0, stderr)
    };
    publish_all(&messages);
    let (secs, stderr) = timed("bench");
    assert_eq!(
        counter(&stderr, "messages"),
        window_messages as u64,
        "{stderr}"
    );
    eprintln!(
        "windows: {window_messages} messages of {hosts_per} hosts in {secs:.2} s: {:.0} windows/s, {:.0} host records/s\n{stderr}",
        window_messages as f64 / secs,
        (window_messages as u64 * hosts_per) as f64 / secs
    );
    publish_all(&alerts);
    let (secs, stderr) = timed("bench");
    assert_eq!(
        counter(&stderr, "messages"),
        alerts.len() as u64,
        "{stderr}"
    );
    eprintln!(
        "alerts: {} sensor alerts in {secs:.2} s: {:.0} alerts/s\n{stderr}",
        alerts.len(),
        alerts.len() as f64 / secs
    );
}

/// SIGTERM: the aggregator stops after storing and acknowledging what it took; a restart on
/// the same durable finds nothing left and raises nothing again.
#[test]
fn sigterm_acknowledges_what_was_processed() {
    use std::io::BufRead;
    let dir = TempDir::new("aggregate", "sigterm");
    let server = NatsServer::start(&dir.0);
    let rt = runtime();
    let js = rt.block_on(jetstream(&server.url()));
    let fleet = fleet();
    rt.block_on(publish(&js, &fleet.messages));
    let config = dir.path("aggregate.toml");
    std::fs::write(&config, "[aggregate]\nname = \"agg-test\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .arg("aggregate")
        .arg("--config")
        .arg(&config)
        .args(["--fleet", &server.url(), "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The four findings of `fleet()`, read as they are raised.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut raised = Vec::new();
    while raised.len() < 4 {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "aggregate ended early"
        );
        raised.push(serde_json::from_str::<FleetAlert>(&line).unwrap());
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(counter(&stderr, "fleet alerts raised"), 4, "{stderr}");
    let again = aggregate(&dir.0, &server.url(), "egresswatch-aggregate");
    assert_eq!(counter(&again.stderr, "messages"), 0, "{}", again.stderr);
    assert!(again.alerts.is_empty());
}

/// Two aggregators on one durable share the messages and agree: each finding raised once
/// over both, the baselines those of all the messages.
#[test]
fn two_aggregators_share_the_work() {
    let dir = TempDir::new("aggregate", "shared");
    let server = NatsServer::start(&dir.0);
    let rt = runtime();
    let js = rt.block_on(jetstream(&server.url()));
    let fleet = fleet();
    // Created before the aggregators start, so both pull from the first message.
    let a = TempDir::new("aggregate", "shared-a");
    let b = TempDir::new("aggregate", "shared-b");
    let url = server.url();
    let (ra, rb) = std::thread::scope(|scope| {
        let first = scope.spawn(|| aggregate(&a.0, &url, "shared"));
        let second = scope.spawn(|| aggregate(&b.0, &url, "shared"));
        // Published while both run, a few messages at a time.
        std::thread::sleep(std::time::Duration::from_millis(300));
        for chunk in fleet.messages.chunks(2) {
            rt.block_on(publish(&js, chunk));
        }
        (first.join().unwrap(), second.join().unwrap())
    });
    let total = counter(&ra.stderr, "messages") + counter(&rb.stderr, "messages");
    assert_eq!(
        total,
        fleet.messages.len() as u64,
        "{}\n{}",
        ra.stderr,
        rb.stderr
    );
    let mut all = ra.alerts.clone();
    all.extend(rb.alerts.clone());
    let kinds = by_kind(&all);
    assert_eq!(kinds.len(), 4, "{all:#?}");
    assert!(kinds.values().all(|v| v.len() == 1), "{all:#?}");
    for (&start, values) in &fleet.populations {
        let mut values = values.clone();
        let got = rt.block_on(baseline(&js, start));
        assert_eq!(got.hosts, values.len() as u64);
        assert_eq!(got.p90_bytes_out, p90(&mut values, 5));
    }
}

/// Two aggregators raising the same fleet alert at once, step by step on a real bucket: the
/// second takes over the first's pending claim, and only the claim that is still the latest
/// settles, so the alert is reported by one of them, once. A claim settled is final.
#[test]
fn a_pending_claim_taken_over_settles_for_one_aggregator() {
    use egresswatch::fleet::aggregate::{claim_alert, settle_alert};
    let dir = TempDir::new("aggregate", "claims");
    let server = NatsServer::start(&dir.0);
    let rt = runtime();
    rt.block_on(async {
        let js = jetstream(&server.url()).await;
        let kv = egresswatch::fleet::aggregate::open_bucket(
            &js,
            &egresswatch::fleet::aggregate::AggregateConfig::default(),
            &FleetConfig::default(),
        )
        .await
        .unwrap();
        let alert = |id: &str| FleetAlert {
            id: id.into(),
            time: "2024-03-04T08:15:00Z".into(),
            kind: "SharedRelayEndpoint".into(),
            technique: "T1496.002".into(),
            score: 80,
            severity: "high".into(),
            sites: vec!["site-1".into(), "site-2".into()],
            hosts: Vec::new(),
            destination_ip: Some("198.51.100.200".parse().unwrap()),
            destination_port: Some(443),
            asn: None,
            service: None,
            window_start: "2024-03-04T08:00:00Z".into(),
            window_end: "2024-03-04T08:15:00Z".into(),
            reason: "one relay, two sites".into(),
            evidence: serde_json::Value::Null,
        };
        const MAX: usize = 1 << 20;

        // A claims and is publishing when B comes to the same alert and takes the claim over.
        let raced = alert("00000000000000a1");
        let (a, _) = claim_alert(&kv, &raced, MAX).await.unwrap();
        let (b, _) = claim_alert(&kv, &raced, MAX).await.unwrap();
        let (a, b) = (a.expect("A claims"), b.expect("B takes over"));
        assert!(b > a);
        assert!(
            !settle_alert(&kv, &raced, a).await.unwrap(),
            "A reports it too"
        );
        assert!(settle_alert(&kv, &raced, b).await.unwrap());
        assert_eq!(claim_alert(&kv, &raced, MAX).await.unwrap().0, None);

        // Settled first: the later claim finds it published and raises nothing.
        let settled = alert("00000000000000b2");
        let (a, _) = claim_alert(&kv, &settled, MAX).await.unwrap();
        assert!(settle_alert(&kv, &settled, a.unwrap()).await.unwrap());
        assert_eq!(claim_alert(&kv, &settled, MAX).await.unwrap().0, None);
        // A stale claim can never settle it again.
        assert!(!settle_alert(&kv, &settled, a.unwrap()).await.unwrap());
    });
}
