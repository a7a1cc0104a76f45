//! Fleet mode against a real nats-server (JetStream) on loopback: what a sensor publishes,
//! how it behaves when the bus is away or late, and (with `egresswatch aggregate`) three
//! sites sharing one baseline and fleet findings.
mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/syslog.rs"]
mod syslog_helpers;

use common::TempDir;
use egresswatch::fleet::schema::{Body, Message, Subjects};
use nats::{NatsServer, fleet_counts, published_alerts, stream_messages};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::{Command, Output};
use syslog_helpers::{free_tcp_port, repo};

const BIN: &str = env!("CARGO_BIN_EXE_egresswatch");

fn subjects() -> Subjects {
    Subjects {
        prefix: "egresswatch".into(),
    }
}

fn replay(args: &[&str]) -> Output {
    let out = Command::new(BIN).arg("replay").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "replay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn site_messages(url: &str) -> Vec<Message> {
    let s = subjects();
    stream_messages(url, &s.sites_stream(), &s.all_sites())
}

/// Inside hosts' egress per the generator's truth (IP bytes): what the originator sends, or
/// what an inside responder sends to an outside originator. (Egress is bytes to any other
/// address: a host's DNS queries to the inside resolver count.)
fn truth_egress(truth: &Value, inside: impl Fn(IpAddr) -> bool) -> BTreeMap<IpAddr, u64> {
    let mut out = BTreeMap::new();
    for f in truth["flows"].as_array().unwrap() {
        let orig: IpAddr = f["orig_h"].as_str().unwrap().parse().unwrap();
        let resp: IpAddr = f["resp_h"].as_str().unwrap().parse().unwrap();
        let (host, bytes) = match (inside(orig), inside(resp)) {
            (true, _) => (orig, f["orig_ip_bytes"].as_u64().unwrap()),
            (false, true) => (resp, f["resp_ip_bytes"].as_u64().unwrap()),
            _ => continue,
        };
        *out.entry(host).or_insert(0) += bytes;
    }
    out
}

#[test]
fn sensor_publishes_every_window_and_alert_and_detects_as_alone() {
    let dir = TempDir::new("fleet", "publish");
    let nats = NatsServer::start(&dir.path(""));
    let capture = repo("captures/office.pcap");
    let capture = capture.to_str().unwrap();
    let alone = replay(&[capture, "--format", "json"]);
    let linked = replay(&[
        capture,
        "--format",
        "json",
        "--fleet",
        &nats.url(),
        "--site",
        "hq",
        "--sensor",
        "span-1",
    ]);
    // The bus changes nothing a sensor finds on its own.
    let alerts = json_lines(&linked.stdout);
    assert_eq!(alerts, json_lines(&alone.stdout));
    assert!(!alerts.is_empty());
    let (queued, stored, dropped) = fleet_counts(&linked.stderr);
    assert_eq!((stored, dropped), (queued, 0));

    let messages = site_messages(&nats.url());
    assert_eq!(messages.len() as u64, queued);
    // One sensor run: sequence 1..N without a gap, all of site hq.
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=queued).collect::<Vec<_>>());
    assert!(
        messages
            .iter()
            .all(|m| m.site == "hq" && m.sensor == "span-1" && m.dropped == 0)
    );
    // Every alert went out as it was printed.
    assert_eq!(published_alerts(&messages), alerts);
    // The window summaries add up to each host's egress in the generator's truth.
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("captures/office.truth.json")).unwrap())
            .unwrap();
    let home_nets: Vec<egresswatch::config::Cidr> = truth["home_nets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().parse().unwrap())
        .collect();
    let inside = |ip: IpAddr| home_nets.iter().any(|n| n.contains(ip));
    let mut summed: BTreeMap<IpAddr, u64> = BTreeMap::new();
    let mut windows = 0;
    for m in &messages {
        if let Body::Window(w) = &m.body {
            windows += 1;
            assert_eq!((w.part, w.parts), (0, 1));
            assert_eq!(w.hosts.len() as u64, w.hosts_total);
            assert_eq!(w.scored_against, "site");
            assert_eq!(m.event_time_ns, w.window_end_ns);
            for h in &w.hosts {
                *summed.entry(h.host).or_insert(0) += h.bytes_out;
            }
        }
    }
    assert!(windows >= 1);
    assert_eq!(summed, truth_egress(&truth, inside));
}

/// The bus is down when the sensor starts and comes up while it flushes: everything held in
/// the buffer reaches it. With a buffer smaller than the run, the rest is counted as dropped.
#[test]
fn sensor_catches_up_when_the_bus_comes_late_and_counts_what_did_not_fit() {
    let dir = TempDir::new("fleet", "late");
    let port = free_tcp_port();
    let url = format!("nats://127.0.0.1:{port}");
    let capture = repo("captures/behaviour.pcap");
    let config_text = format!(
        "{}\n[fleet]\nstartup_sync_seconds = 0\nflush_seconds = 60\n",
        std::fs::read_to_string(repo("captures/behaviour.toml")).unwrap()
    );
    let config = dir.path("late.toml");
    std::fs::write(&config, &config_text).unwrap();
    let small = dir.path("small.toml");
    std::fs::write(
        &small,
        config_text.replace("[fleet]\n", "[fleet]\nbuffer_messages = 4\n"),
    )
    .unwrap();
    let run = |config: &std::path::Path, site: &str| {
        Command::new(BIN)
            .current_dir(repo(""))
            .args([
                "replay", "--format", "json", "--fleet", &url, "--site", site,
            ])
            .arg("--config")
            .arg(config)
            .arg(&capture)
            .output()
    };
    let (full, small_run) = std::thread::scope(|scope| {
        let full = scope.spawn(|| run(&config, "late"));
        let small_run = scope.spawn(|| run(&small, "small"));
        // Both replays are done long before this; they wait for the bus to flush.
        std::thread::sleep(std::time::Duration::from_secs(2));
        let nats = NatsServer::start_on(&dir.path(""), port);
        let out = (
            full.join().unwrap().unwrap(),
            small_run.join().unwrap().unwrap(),
        );
        drop(nats);
        out
    });
    for out in [&full, &small_run] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (queued, stored, dropped) = fleet_counts(&full.stderr);
    assert!(queued > 4, "{queued}");
    assert_eq!((stored, dropped), (queued, 0));
    // The small buffer took the first 4 while the bus was away and dropped the rest.
    let (small_queued, small_stored, small_dropped) = fleet_counts(&small_run.stderr);
    assert_eq!((small_queued, small_stored), (4, 4));
    assert_eq!(small_dropped, queued - 4);
    assert_eq!(json_lines(&full.stdout), json_lines(&small_run.stdout));
    // The stream holds what was stored, and a later message tells how many were dropped.
    let nats = NatsServer::start_on(&dir.path(""), port);
    let messages = site_messages(&nats.url());
    let of = |site: &str| messages.iter().filter(|m| m.site == site).count() as u64;
    assert_eq!((of("late"), of("small")), (queued, 4));
}

fn truth(site: u32) -> Value {
    let path = repo(&format!("captures/site-{site}.truth.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The summary's "windows scored against the fleet p90: N".
fn fleet_scored(stderr: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(stderr);
    let what = "windows scored against the fleet p90: ";
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("no fleet line in:\n{text}"))
        + what.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The aggregator's default durable consumer.
const AGGREGATE_DURABLE: &str = "egresswatch-aggregate";

/// The aggregator's durable consumer: messages acknowledged so far (its ack floor).
fn acknowledged_by(url: &str, durable: &str) -> u64 {
    consumer_info(url, durable).map_or(0, |i| i.ack_floor.stream_sequence)
}

/// The aggregators' durable consumer as the server sees it (None before one has bound it).
fn consumer_info(url: &str, durable: &str) -> Option<async_nats::jetstream::consumer::Info> {
    use async_nats::jetstream::{self, consumer};
    nats::runtime().block_on(async {
        let client = async_nats::connect(url).await.ok()?;
        let js = jetstream::new(client);
        let stream = js.get_stream(subjects().sites_stream()).await.ok()?;
        let mut c = stream
            .get_consumer::<consumer::pull::Config>(durable)
            .await
            .ok()?;
        c.info().await.ok().cloned()
    })
}

fn aggregate(
    config: &std::path::Path,
    url: &str,
    alerts: &std::path::Path,
    idle_exit: Option<u64>,
) -> std::process::Child {
    let mut command = Command::new(BIN);
    command
        .current_dir(repo(""))
        .args(["aggregate", "--format", "json", "--fleet", url])
        .arg("--config")
        .arg(config)
        .arg("--alerts")
        .arg(alerts)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(s) = idle_exit {
        command.args(["--idle-exit", &s.to_string()]);
    }
    command.spawn().unwrap()
}

/// The fleet test config: captures/fleet.toml with small aggregator batches (so a kill lands
/// between batches and two aggregators both get some) and a short ack wait (so what a killed
/// aggregator fetched but did not acknowledge comes again soon).
fn fleet_config(dir: &TempDir) -> std::path::PathBuf {
    let config = dir.path("fleet.toml");
    std::fs::write(
        &config,
        std::fs::read_to_string(repo("captures/fleet.toml"))
            .unwrap()
            .replace(
                "[aggregate]\n",
                "[aggregate]\nbatch_messages = 4\nack_wait_seconds = 2\n",
            ),
    )
    .unwrap();
    config
}

/// Replays site N's capture as sensor-N of site-N into the bus.
fn site_sensor(config: &std::path::Path, url: &str, n: u32) -> Output {
    let capture = repo(&format!("captures/site-{n}.pcap"));
    let out = Command::new(BIN)
        .current_dir(repo(""))
        .args(["replay", "--format", "json", "--fleet", url])
        .args([
            "--site",
            &format!("site-{n}"),
            "--sensor",
            &format!("sensor-{n}"),
        ])
        .arg("--config")
        .arg(config)
        .arg(capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Messages the sensors' runs stored, each run having stored all it queued.
fn stored_by(outputs: &[Output]) -> u64 {
    outputs
        .iter()
        .map(|out| {
            let (queued, stored, dropped) = fleet_counts(&out.stderr);
            assert_eq!((stored, dropped), (queued, 0));
            stored
        })
        .sum()
}

type Baselines = BTreeMap<u64, egresswatch::fleet::schema::FleetBaseline>;

fn baselines_of(url: &str) -> Baselines {
    let s = subjects();
    stream_messages(url, &s.baselines_stream(), &s.all_baselines())
        .into_iter()
        .filter_map(|m| match m.body {
            Body::Baseline(b) => Some((b.window_start_ns, b)),
            _ => None,
        })
        .collect()
}

/// What the aggregators must have made of the three sites, whatever the order, kills and
/// sharing: every window's baseline is the p90 over exactly what the sensors published (none
/// lost, none counted twice), and the fleet alerts the sites' truth calls for, each raised
/// once over all `alert_files` and once in the fleet alerts stream. Returns the baselines.
fn check_fleet_outcome(url: &str, alert_files: &[&std::path::Path], published: u64) -> Baselines {
    let s = subjects();
    let sent = stream_messages(url, &s.sites_stream(), &s.all_sites());
    assert_eq!(sent.len() as u64, published);
    let mut expected: BTreeMap<u64, (Vec<u64>, std::collections::BTreeSet<String>)> =
        BTreeMap::new();
    for m in &sent {
        if let Body::Window(w) = &m.body {
            let entry = expected.entry(w.window_start_ns).or_default();
            entry.0.extend(w.hosts.iter().map(|h| h.bytes_out));
            entry.1.insert(m.site.clone());
        }
    }
    let baselines = baselines_of(url);
    assert_eq!(baselines.len(), 12);
    assert_eq!(
        baselines.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (start, (values, sites)) in &mut expected {
        let b = &baselines[start];
        assert_eq!(b.hosts, values.len() as u64, "window {start}");
        assert_eq!(b.sites, sites.iter().cloned().collect::<Vec<_>>());
        assert_eq!(
            b.p90_bytes_out,
            egresswatch::detect::windows::p90(values, 5)
        );
    }

    // The fleet alerts stream is the record: each alert once. What the aggregators printed
    // is in it, never twice (a kill between publishing and printing loses only the print).
    let mut raised: Vec<Value> = stream_messages(url, &s.fleet_alerts_stream(), &s.fleet_alerts())
        .into_iter()
        .filter_map(|m| match m.body {
            Body::FleetAlert { alert } => Some(serde_json::to_value(*alert).unwrap()),
            _ => None,
        })
        .collect();
    let ids: std::collections::BTreeSet<String> = raised
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids.len(),
        raised.len(),
        "a fleet alert raised twice: {raised:#?}"
    );
    let printed: Vec<String> = alert_files
        .iter()
        .flat_map(|p| json_lines(&std::fs::read(p).unwrap_or_default()))
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    let printed_once: std::collections::BTreeSet<String> = printed.iter().cloned().collect();
    assert_eq!(
        printed_once.len(),
        printed.len(),
        "printed twice: {printed:?}"
    );
    assert!(printed_once.is_subset(&ids), "{printed:?} not in {ids:?}");
    raised.sort_by_key(|a| a["kind"].as_str().unwrap().to_string());
    let truths: Vec<Value> = (1..=3).map(|n| truth(n)["fleet"].clone()).collect();
    let sites_where = |pred: &dyn Fn(&Value) -> bool| -> Vec<String> {
        truths
            .iter()
            .filter(|t| pred(t))
            .map(|t| t["site"].as_str().unwrap().to_string())
            .collect()
    };
    let kinds: Vec<&str> = raised.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ProxywareAcrossSites",
            "SharedRelayAsn",
            "SharedRelayEndpoint",
            "SiteEgressShift"
        ],
        "{raised:#?}"
    );
    let of = |kind: &str| raised.iter().find(|a| a["kind"] == kind).unwrap();
    let endpoint = "198.51.100.200:443";
    let relay = of("SharedRelayEndpoint");
    assert_eq!(
        format!(
            "{}:{}",
            relay["DestinationIp"].as_str().unwrap(),
            relay["DestinationPort"]
        ),
        endpoint
    );
    assert_eq!(
        relay["sites"],
        json!(sites_where(&|t| t["relay_endpoint"] == endpoint))
    );
    let asn = of("SharedRelayAsn");
    assert_eq!(asn["asn"], truths[0]["relay_asn"]);
    assert_eq!(asn["sites"], json!(sites_where(&|_| true)));
    let proxyware = of("ProxywareAcrossSites");
    assert_eq!(proxyware["service"], truths[0]["proxyware_service"]);
    assert_eq!(
        proxyware["sites"],
        json!(sites_where(&|t| !t["proxyware_service"].is_null()))
    );
    let shift = of("SiteEgressShift");
    let shifted = truths
        .iter()
        .find(|t| t["shifted_hosts"].as_array().is_some_and(|h| !h.is_empty()))
        .unwrap();
    assert_eq!(shift["sites"], json!([shifted["site"]]));
    assert_eq!(shift["window_start"], shifted["shift_window_start"]);
    let hosts: Vec<&Value> = shift["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["host"])
        .collect();
    let expected_hosts: Vec<&Value> = shifted["shifted_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(hosts, expected_hosts);
    baselines
}

/// Three sensors replay three sites' captures in parallel into one nats-server while an
/// aggregator consumes; the aggregator is killed mid-stream (SIGKILL) and restarted. Nothing
/// is lost or counted twice, each fleet alert comes once, and a sensor that replays again
/// scores every window against the fleet's baselines.
#[test]
fn three_sites_share_a_baseline_and_fleet_alerts_through_an_aggregator_restart() {
    let dir = TempDir::new("fleet", "sites");
    let nats = NatsServer::start(&dir.path(""));
    let url = nats.url();
    let config = fleet_config(&dir);
    let first_alerts = dir.path("fleet-alerts-1.jsonl");
    let mut first = aggregate(&config, &url, &first_alerts, None);
    let durable = AGGREGATE_DURABLE;
    let (outputs, acked_at_kill) = std::thread::scope(|scope| {
        let sensors: Vec<_> = (1..=3)
            .map(|n| {
                let (config, url) = (&config, &url);
                scope.spawn(move || site_sensor(config, url, n))
            })
            .collect();
        let started = std::time::Instant::now();
        while acknowledged_by(&url, durable) == 0 {
            if let Ok(Some(status)) = first.try_wait() {
                let mut stderr = String::new();
                let _ = std::io::Read::read_to_string(first.stderr.as_mut().unwrap(), &mut stderr);
                panic!("the aggregator exited ({status}) before acknowledging: {stderr}");
            }
            assert!(
                started.elapsed().as_secs() < 60,
                "the aggregator acknowledged nothing"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        first.kill().unwrap();
        first.wait().unwrap();
        let acked = acknowledged_by(&url, durable);
        let outputs: Vec<Output> = sensors.into_iter().map(|s| s.join().unwrap()).collect();
        (outputs, acked)
    });
    let published = stored_by(&outputs);
    assert!(
        acked_at_kill < published,
        "the aggregator finished before it was killed ({acked_at_kill} of {published})"
    );
    let second_alerts = dir.path("fleet-alerts-2.jsonl");
    let second = aggregate(&config, &url, &second_alerts, Some(4))
        .wait_with_output()
        .unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(acknowledged_by(&url, durable), published);
    let baselines = check_fleet_outcome(&url, &[&first_alerts, &second_alerts], published);

    // Site 1 again (yesterday's capture replayed): every window is scored against the fleet's
    // p90, and publishing it again changes no baseline and raises nothing new.
    let again = site_sensor(&config, &url, 1);
    assert_eq!(fleet_scored(&again.stderr), 12);
    let third_alerts = dir.path("fleet-alerts-3.jsonl");
    let third = aggregate(&config, &url, &third_alerts, Some(3))
        .wait_with_output()
        .unwrap();
    assert!(third.status.success());
    assert!(json_lines(&std::fs::read(&third_alerts).unwrap_or_default()).is_empty());
    assert_eq!(baselines_of(&url), baselines);
}

/// Two aggregators on one durable consumer (JetStream's pull-consumer work sharing, its queue
/// group) split the three sites' messages and together make the same fleet picture as one.
#[test]
fn two_aggregators_share_the_work_and_agree() {
    let dir = TempDir::new("fleet", "shared");
    let nats = NatsServer::start(&dir.path(""));
    let url = nats.url();
    let config = fleet_config(&dir);
    // Both aggregators wait on the consumer before anything is published: had the messages
    // been there first, the aggregator that bound first could take all 60 before the other
    // had started (seen in CI on a loaded machine).
    let files = [dir.path("a.jsonl"), dir.path("b.jsonl")];
    let runs: Vec<_> = files
        .iter()
        .map(|f| aggregate(&config, &url, f, Some(8)))
        .collect();
    let started = std::time::Instant::now();
    while consumer_info(&url, AGGREGATE_DURABLE).is_none_or(|i| i.num_waiting < 2) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the two aggregators never both waited on the consumer"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let outputs: Vec<Output> = (1..=3).map(|n| site_sensor(&config, &url, n)).collect();
    let published = stored_by(&outputs);
    let mut processed = Vec::new();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let summary = stderr
            .lines()
            .rev()
            .find(|l| l.contains(" messages ("))
            .unwrap_or_else(|| panic!("no summary in {stderr}"));
        let n: u64 = summary
            .split("aggregate: ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{summary}"));
        processed.push(n);
    }
    assert!(
        processed.iter().all(|&n| n > 0),
        "{processed:?} of {published}"
    );
    assert_eq!(processed.iter().sum::<u64>(), published);
    let [a, b] = &files;
    check_fleet_outcome(&url, &[a, b], published);
}

/// Throughput of the sensor's link into a real nats-server: window summaries (50 hosts each)
/// and alerts per second, from the first message queued to the last one stored.
/// `cargo test --release --test fleet -- --ignored --nocapture link_throughput`
#[test]
#[ignore]
fn link_throughput() {
    use egresswatch::detect::windows::{ClosedWindow, HostWindow, PopulationScope};
    use egresswatch::fleet::FleetConfig;
    use egresswatch::fleet::link::FleetLink;
    let dir = TempDir::new("fleet", "throughput");
    let nats = NatsServer::start(&dir.path(""));
    const WINDOW_NS: u64 = 900_000_000_000;
    let windows: u64 = std::env::var("FLEET_BENCH_WINDOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let hosts: Vec<HostWindow> = (0..50u32)
        .map(|i| HostWindow {
            host: IpAddr::from([10, 31, (i / 250) as u8, (i % 250) as u8]),
            bytes_out: 1_000_000 + u64::from(i) * 7_919,
            bytes_in: 3_000_000,
            pkts_out: 2_000,
            pkts_in: 3_000,
            allowlisted_bytes_out: 0,
            flows_opened: 40,
            distinct_destinations: 12,
            distinct_ports: 3,
            unanswered_tcp: 0,
            long_sessions_open: 0,
            countries: Vec::new(),
            asns: Vec::new(),
            off_hours_bytes_out: 0,
            baseline_bytes_out: Some(900_000.0),
            history_windows: 20,
            in_population: true,
            long_sessions: Vec::new(),
        })
        .collect();
    let alert = egresswatch::pipeline::replay(
        &egresswatch::config::Config::default(),
        &[repo("captures/office.pcap")],
        &Default::default(),
        &mut |_| Ok(()),
    )
    .unwrap()
    .alerts
    .remove(0);
    let config = FleetConfig {
        url: nats.url(),
        site: "bench".into(),
        sensor: "bench".into(),
        buffer_messages: 2 * windows as usize,
        flush_seconds: 600,
        ..FleetConfig::default()
    };
    for (what, one_alert) in [("window summaries (50 hosts)", false), ("alerts", true)] {
        let mut link = FleetLink::start(&config, WINDOW_NS).unwrap();
        let started = std::time::Instant::now();
        for i in 0..windows {
            if one_alert {
                link.alerts(std::slice::from_ref(&alert));
            } else {
                let mut closed = ClosedWindow {
                    start_ns: i * WINDOW_NS,
                    end_ns: (i + 1) * WINDOW_NS,
                    population_p90_bytes_out: Some(1_300_000),
                    population_scope: PopulationScope::Site,
                    hosts: hosts.clone(),
                };
                link.window(&mut closed);
            }
        }
        let queued_in = started.elapsed();
        let counters = link.finish();
        let took = started.elapsed();
        assert_eq!(counters.acknowledged, windows);
        println!(
            "{what}: {windows} stored in {:.2} s ({:.0}/s; queueing on the caller's thread took {:.3} s)",
            took.as_secs_f64(),
            windows as f64 / took.as_secs_f64(),
            queued_in.as_secs_f64(),
        );
    }
}
