//! Against a real exporter: softflowd (Debian package; `.ci/run` installs it) reads the
//! behaviour scenario capture and exports NetFlow v5, v9 and IPFIX (unidirectional and
//! biflow) to `egresswatch collect` on loopback. The alerts from the flows must name the same
//! hosts and branches as the alerts from the packets, except TorrentSeeding: it needs the
//! BitTorrent handshake, DHT or uTP payload, which flow export does not carry.
mod common;
#[path = "common/nats.rs"]
mod nats;

use common::TempDir;
use egresswatch::config::Config;
use egresswatch::pipeline::{ReplayOptions, replay};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};

/// Branches flow export cannot show.
const PAYLOAD_BRANCHES: [&str; 2] = ["TorrentSeeding", "ProxywareDomain"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

type AlertSet = BTreeSet<(String, String)>;

fn from_packets() -> AlertSet {
    let config = Config::load(&repo("captures/behaviour.toml")).unwrap();
    let report = replay(
        &config,
        &[repo("captures/behaviour.pcap")],
        &ReplayOptions::default(),
        &mut |_| Ok(()),
    )
    .unwrap();
    report
        .alerts
        .iter()
        .map(|a| (a.host.to_string(), a.detection_branch.to_string()))
        .collect()
}

struct Collector {
    child: Child,
    stderr: BufReader<ChildStderr>,
    addrs: Vec<String>,
    /// The metrics endpoint, when `--metrics` was given.
    metrics: Option<String>,
}

/// Starts `egresswatch collect` on `sockets` free loopback ports; returns once it listens.
fn start_collector(dir: &Path, sockets: usize) -> Collector {
    start_collector_with(dir, sockets, &[])
}

fn start_collector_with(dir: &Path, sockets: usize, extra: &[&str]) -> Collector {
    let mut command = Command::new(env!("CARGO_BIN_EXE_egresswatch"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["collect", "--format", "json"])
        .args(extra);
    for _ in 0..sockets {
        command.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = command
        .args(["--config", "captures/behaviour.toml"])
        .arg("--alerts")
        .arg(dir.join("alerts.jsonl"))
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("egresswatch collect starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addrs = Vec::new();
    let mut metrics = None;
    while addrs.len() < sockets {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let line = line.trim();
        if let Some(url) = line.strip_prefix("egresswatch: metrics on http://") {
            metrics = url.strip_suffix("/metrics").map(str::to_string);
            continue;
        }
        let addr = line
            .strip_prefix("egresswatch: listening on udp ")
            .unwrap_or_else(|| panic!("unexpected line: {line}"));
        addrs.push(addr.to_string());
    }
    Collector {
        child,
        stderr,
        addrs,
        metrics,
    }
}

impl Collector {
    /// SIGTERM, then the run's summary and alerts.
    fn stop(mut self, dir: &Path) -> (String, AlertSet, Vec<Value>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        let mut summary = String::new();
        self.stderr.read_to_string(&mut summary).unwrap();
        assert!(exit.success(), "collector failed: {summary}");
        let text = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
        let alerts: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let set = alerts
            .iter()
            .map(|a| {
                (
                    a["host"].as_str().unwrap().to_string(),
                    a["DetectionBranch"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (summary, set, alerts)
    }
}

fn softflowd_command(capture: &Path, to: &str, args: &[&str], pid_file: &Path) -> Command {
    let mut command = Command::new("softflowd");
    command
        .arg("-r")
        .arg(capture)
        .args(["-n", to, "-d", "-a", "-c", "none", "-m", "2000000"])
        .arg("-p")
        .arg(pid_file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn assert_exited(child: Child) {
    let out = child
        .wait_with_output()
        .expect("softflowd is installed (apt-get install -y softflowd; .ci/run does)");
    assert!(
        out.status.success(),
        "softflowd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn softflowd(capture: &Path, to: &str, args: &[&str], dir: &Path) {
    let child = softflowd_command(capture, to, args, &dir.join("softflowd.pid"))
        .spawn()
        .expect("softflowd is installed (apt-get install -y softflowd; .ci/run does)");
    assert_exited(child);
}

/// Where flows and packets differ, and why.
/// - 10.20.3.60's speed tests are allowlisted by domain (the default speed-test names); flow
///   records carry no names, so from flows it raises SustainedEgress. With flow export,
///   allowlist such targets by CIDR or ASN.
/// - 10.20.2.50's relay: softflowd reading a file exports each session once, at its end (its
///   active timeout runs on the wall clock, and the file is read in milliseconds), so the
///   control session's upload is not seen window by window and RelayBehaviour cannot match it
///   against the fetches; the host is still flagged, by LongLivedSession.
const FLOW_ONLY: [(&str, &str); 2] = [
    ("10.20.3.60", "SustainedEgress"),
    ("10.20.2.50", "LongLivedSession"),
];
const PACKETS_ONLY: [(&str, &str); 1] = [("10.20.2.50", "RelayBehaviour")];

/// The packet replay's alerts, as flow export should show them.
fn expected_from_flows() -> AlertSet {
    let mut want = without_payload_branches(from_packets());
    for (h, b) in PACKETS_ONLY {
        assert!(want.remove(&(h.to_string(), b.to_string())), "{h} {b}");
    }
    for (h, b) in FLOW_ONLY {
        want.insert((h.to_string(), b.to_string()));
    }
    assert!(want.len() >= 8, "{want:?}");
    want
}

fn without_payload_branches(alerts: AlertSet) -> AlertSet {
    alerts
        .into_iter()
        .filter(|(_, b)| !PAYLOAD_BRANCHES.contains(&b.as_str()))
        .collect()
}

#[test]
fn softflowd_exports_raise_the_same_alerts_as_the_packets() {
    let want = expected_from_flows();
    // maxlife 300 s makes softflowd cut long sessions into 5-minute records, as a router's
    // active timeout does; the record table stitches them back together.
    let cases: [(&str, &[&str]); 4] = [
        ("v5", &["-v", "5", "-t", "maxlife=300"]),
        ("v9", &["-v", "9", "-t", "maxlife=300"]),
        ("ipfix", &["-v", "10", "-t", "maxlife=300"]),
        ("ipfix-biflow", &["-v", "10", "-b", "-t", "maxlife=300"]),
    ];
    for (tag, args) in cases {
        let dir = TempDir::new("softflowd", tag);
        let collector = start_collector(&dir.0, 1);
        let addr = collector.addrs[0].clone();
        softflowd(&repo("captures/behaviour.pcap"), &addr, args, &dir.0);
        let (summary, got, alerts) = collector.stop(&dir.0);
        let listing: Vec<String> = alerts
            .iter()
            .map(|a| format!("  {} {} {}", a["host"], a["DetectionBranch"], a["reason"]))
            .collect();
        let listing = listing.join("\n");
        assert!(
            summary.contains("export: ") && !summary.contains("export errors"),
            "{tag}: {summary}"
        );
        let got = without_payload_branches(got);
        assert_eq!(got, want, "{tag}:\n{listing}\n{summary}");
        // conn.log has the exported flows, with what export knows and nothing invented.
        let conn = std::fs::read_to_string(dir.path("logs/conn.log")).unwrap();
        let first: Value = serde_json::from_str(conn.lines().next().unwrap()).unwrap();
        assert!(first.get("orig_ip_bytes").is_some(), "{first}");
        assert!(first.get("history").is_none(), "{first}");
        assert!(first.get("orig_bytes").is_none(), "{first}");
        assert_eq!(first["exporter"], "127.0.0.1");
    }
}

/// Two routers at once, each exporting its half of the site (split by inside subnet, so every
/// connection is in exactly one half) in a different protocol to a different collector
/// socket: one collector puts them together and finds what the single exporter found.
#[test]
fn two_exporters_at_once_make_one_picture() {
    let want = expected_from_flows();
    let dir = TempDir::new("softflowd", "two-exporters");
    let whole = repo("captures/behaviour.pcap");
    let halves = [
        ("net 10.20.2.0/24", dir.path("branch2.pcap")),
        ("not net 10.20.2.0/24", dir.path("rest.pcap")),
    ];
    for (filter, out) in &halves {
        let status = Command::new("tcpdump")
            .arg("-r")
            .arg(&whole)
            .arg("-w")
            .arg(out)
            .arg(filter)
            .stderr(Stdio::null())
            .status()
            .expect("tcpdump is installed (.ci/run installs it)");
        assert!(status.success(), "tcpdump {filter}");
    }
    let collector = start_collector(&dir.0, 2);
    let versions = [["-v", "9"], ["-v", "10"]];
    let exporters: Vec<Child> = halves
        .iter()
        .zip(&collector.addrs)
        .zip(versions)
        .enumerate()
        .map(|(i, (((_, capture), to), version))| {
            let args = [version[0], version[1], "-t", "maxlife=300"];
            softflowd_command(capture, to, &args, &dir.path(&format!("softflowd{i}.pid")))
                .spawn()
                .expect("softflowd is installed (apt-get install -y softflowd; .ci/run does)")
        })
        .collect();
    for child in exporters {
        assert_exited(child);
    }
    let (summary, got, _) = collector.stop(&dir.0);
    assert!(
        summary.contains("export: ") && !summary.contains("export errors"),
        "{summary}"
    );
    assert_eq!(without_payload_branches(got), want, "{summary}");
    let conn = std::fs::read_to_string(dir.path("logs/conn.log")).unwrap();
    let sources: BTreeSet<String> = conn
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["flow_source"].to_string())
        .collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
}

/// The metrics endpoint during a collector run fed by softflowd: it answers while records
/// arrive, its counters settle on what the exit summary reports, and the syslog target's
/// queue is there.
#[test]
fn metrics_follow_a_softflowd_export() {
    let dir = TempDir::new("softflowd", "metrics");
    // A syslog receiver on loopback: alerts go to it as they would to a SIEM.
    let syslog = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("udp://{}", syslog.local_addr().unwrap());
    let collector = start_collector_with(
        &dir.0,
        1,
        &["--metrics", "127.0.0.1:0", "--syslog", &target],
    );
    let endpoint = collector.metrics.clone().expect("metrics address printed");
    let (status, health) = common::http_get(&endpoint, "/health");
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert!(
        ["ok", "starting"].contains(&health["status"].as_str().unwrap()),
        "{health}"
    );

    softflowd(
        &repo("captures/behaviour.pcap"),
        &collector.addrs[0],
        &["-v", "9", "-t", "maxlife=300"],
        &dir.0,
    );
    // softflowd has sent everything; wait until the pipeline has decoded it all (two scrapes a
    // publishing interval apart agree, and something arrived).
    let datagrams = "egresswatch_export_datagrams_total";
    let start = std::time::Instant::now();
    let mut last = common::metric_samples(&common::http_get(&endpoint, "/metrics").1);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = common::metric_samples(&common::http_get(&endpoint, "/metrics").1);
        // Records leave the reorder buffer `reorder_seconds` after they arrive.
        let settled = now[datagrams] > 0.0
            && now[datagrams] == last[datagrams]
            && now["egresswatch_export_records_held"] == 0.0;
        if settled {
            last = now;
            break;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "no datagrams counted: {now:?}"
        );
        last = now;
    }
    let sink = format!("egresswatch_sink_queue_depth{{target=\"{target}\"}}");
    assert!(last.contains_key(&sink), "{last:?}");
    assert!(
        last.contains_key("egresswatch_collector_queue_depth"),
        "{last:?}"
    );
    assert!(last["egresswatch_export_records_total"] > 0.0, "{last:?}");
    assert!(last["egresswatch_hosts"] > 0.0, "{last:?}");
    assert_eq!(common::http_get(&endpoint, "/health").0, 200);

    let (summary, _, alerts) = collector.stop(&dir.0);
    let export_line = summary
        .lines()
        .find_map(|l| l.strip_prefix("export: "))
        .unwrap_or_else(|| panic!("{summary}"));
    let summary_datagrams: f64 = export_line.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(last[datagrams], summary_datagrams, "{summary}");
    let summary_records: f64 = export_line
        .split("; ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(
        last["egresswatch_export_records_total"], summary_records,
        "{summary}"
    );
    // Alerts counted while running were raised; the flush at exit can only add to them.
    let mut final_by_branch = std::collections::BTreeMap::<String, f64>::new();
    for a in &alerts {
        *final_by_branch
            .entry(a["DetectionBranch"].as_str().unwrap().to_string())
            .or_default() += 1.0;
    }
    for (series, n) in &last {
        if let Some(branch) = series
            .strip_prefix("egresswatch_alerts_total{branch=\"")
            .and_then(|b| b.strip_suffix("\"}"))
        {
            assert!(
                final_by_branch.get(branch).copied().unwrap_or(0.0) >= *n,
                "{series} {n}"
            );
        }
    }
}

/// `collect` in fleet mode: the windows and every alert of a softflowd export reach a real
/// nats-server, the alerts exactly as the collector wrote them, all stored at the stop.
#[test]
fn collector_publishes_to_the_fleet() {
    use egresswatch::fleet::schema::{Body, Subjects};
    let dir = TempDir::new("softflowd", "fleet");
    let server = nats::NatsServer::start(&dir.0);
    let collector = start_collector_with(
        &dir.0,
        1,
        &[
            "--fleet",
            &server.url(),
            "--site",
            "branch",
            "--sensor",
            "router-1",
        ],
    );
    softflowd(
        &repo("captures/behaviour.pcap"),
        &collector.addrs[0],
        &["-v", "9", "-t", "maxlife=300"],
        &dir.0,
    );
    let (summary, _, alerts) = collector.stop(&dir.0);
    assert!(
        summary.contains("fleet: site branch sensor router-1: "),
        "{summary}"
    );
    let (queued, stored, dropped) = nats::fleet_counts(summary.as_bytes());
    assert_eq!((stored, dropped), (queued, 0));
    let subjects = Subjects {
        prefix: "egresswatch".into(),
    };
    let messages = nats::stream_messages(
        &server.url(),
        &subjects.sites_stream(),
        &subjects.all_sites(),
    );
    assert_eq!(messages.len() as u64, queued);
    assert!(!alerts.is_empty());
    assert_eq!(nats::published_alerts(&messages), alerts);
    let windows = messages
        .iter()
        .filter(|m| matches!(m.body, Body::Window(_)))
        .count();
    assert!(windows > 1, "{windows}");
    drop(server);
}
