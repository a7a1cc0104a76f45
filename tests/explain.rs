//! Alert ids and `explain`: the binary replays the committed captures writing --alerts and
//! --log-dir, the alerts are checked against the generator's truth files, then every alert is
//! explained and the output checked against the alerts file and the logs of the same run.
mod common;
use common::TempDir;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const LOGS: [&str; 5] = ["conn.log", "dns.log", "ssl.log", "http.log", "quic.log"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn egresswatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(path: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| match serde_json::from_str(l).unwrap() {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        })
        .collect()
}

/// One replay's outputs.
struct Run {
    dir: TempDir,
    alerts: Vec<Map<String, Value>>,
}

impl Run {
    fn alerts_file(&self) -> PathBuf {
        self.dir.path("alerts.jsonl")
    }
    fn log_dir(&self) -> PathBuf {
        self.dir.path("logs")
    }
}

fn replay(pcap: &str, config: Option<&str>, threads: &str) -> Run {
    let dir = TempDir::new("explain", threads);
    let alerts = dir.path("alerts.jsonl");
    let logs = dir.path("logs");
    let pcap = repo(pcap);
    let mut args = vec![
        "replay".to_string(),
        "--format".into(),
        "json".into(),
        "--threads".into(),
        threads.into(),
        "--alerts".into(),
        alerts.display().to_string(),
        "--log-dir".into(),
        logs.display().to_string(),
    ];
    if let Some(c) = config {
        args.extend(["--config".into(), repo(c).display().to_string()]);
    }
    args.push(pcap.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = egresswatch(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let alerts = json_lines(&alerts);
    Run { dir, alerts }
}

fn ids(alerts: &[Map<String, Value>]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["id"].as_str().expect("every alert has an id").to_string())
        .collect()
}

/// The truth file's expectations are met by the alerts (so there is something to explain).
fn check_truth(run: &Run, truth: &str) {
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(repo(truth)).unwrap()).unwrap();
    for (host, info) in truth["hosts"].as_object().unwrap() {
        let of_host = || {
            run.alerts
                .iter()
                .filter(move |a| a["host"] == host.as_str())
        };
        if let Some(branch) = info["expect_branch"].as_str().filter(|b| *b != "none") {
            assert!(
                of_host().any(|a| a["DetectionBranch"] == branch),
                "{host}: no {branch} alert"
            );
        }
        for expected in info["expect_alerts"].as_array().into_iter().flatten() {
            assert!(
                of_host().any(|a| a["evidence"]["service"] == expected["service"]),
                "{host}: no alert for {}",
                expected["service"]
            );
        }
    }
}

/// Every string in the evidence that is the uid of a log line: the flows the alert names.
fn evidence_uids(value: &Value, uids: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if uids.contains(s) => {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| evidence_uids(v, uids, out)),
        Value::Object(map) => map.values().for_each(|v| evidence_uids(v, uids, out)),
        _ => {}
    }
}

fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_micros()
}

/// The lines explain must show for `alert`: the flows its evidence names, and the lines of
/// its host that overlap its window.
fn expected_lines(
    alert: &Map<String, Value>,
    logs: &BTreeMap<&str, Vec<Map<String, Value>>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let all_uids: BTreeSet<String> = logs
        .values()
        .flatten()
        .filter_map(|l| l.get("uid").and_then(Value::as_str).map(str::to_string))
        .collect();
    let mut named = BTreeSet::new();
    evidence_uids(&alert["evidence"], &all_uids, &mut named);
    let host = alert["host"].as_str().unwrap();
    let (start, end) = (
        micros(alert["window_start"].as_str().unwrap()),
        micros(alert["window_end"].as_str().unwrap()),
    );
    let mut out = BTreeMap::new();
    for (name, lines) in logs {
        let set = lines
            .iter()
            .filter(|l| {
                if l.get("uid")
                    .and_then(Value::as_str)
                    .is_some_and(|u| named.contains(u))
                {
                    return true;
                }
                let ts = (l["ts"].as_f64().unwrap() * 1e6).round() as i64;
                let duration =
                    (l.get("duration").and_then(Value::as_f64).unwrap_or(0.0) * 1e6).round() as i64;
                (l["id.orig_h"] == host || l["id.resp_h"] == host)
                    && ts < end
                    && ts + duration >= start
            })
            .map(|l| Value::Object(l.clone()).to_string())
            .collect();
        out.insert(name.to_string(), set);
    }
    out
}

fn read_logs(dir: &Path) -> BTreeMap<&'static str, Vec<Map<String, Value>>> {
    LOGS.iter()
        .map(|n| (*n, json_lines(&dir.join(n))))
        .collect()
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn check_explain(run: &Run) {
    let logs = read_logs(&run.log_dir());
    let alerts_file = run.alerts_file().display().to_string();
    let log_dir = run.log_dir().display().to_string();
    for alert in &run.alerts {
        let id = alert["id"].as_str().unwrap();
        // JSON: the alert as written, and exactly the log lines behind it.
        let o = egresswatch(&[
            "explain",
            id,
            "--alerts",
            &alerts_file,
            "--log-dir",
            &log_dir,
            "--limit",
            "0",
            "--json",
        ]);
        assert!(o.status.success(), "{id}: {}", text(&o.stderr));
        let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["alert"], Value::Object(alert.clone()), "{id}");
        let expected = expected_lines(alert, &logs);
        let destination = alert["DestinationIp"].as_str();
        for (name, want) in &expected {
            let entry = &doc["logs"][name];
            let group = |g: &str| -> Vec<Map<String, Value>> {
                entry[g]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_object().unwrap().clone())
                    .collect()
            };
            let (related, other) = (group("related"), group("other"));
            let got: BTreeSet<String> = related
                .iter()
                .chain(&other)
                .map(|l| Value::Object(l.clone()).to_string())
                .collect();
            assert_eq!(&got, want, "{id} {name}");
            assert_eq!(got.len(), related.len() + other.len(), "{id} {name}: twice");
            assert_eq!(entry["related_total"], related.len(), "{id} {name}");
            assert_eq!(entry["other_total"], other.len(), "{id} {name}");
            // Lines to the alert's destination come first, never among the others.
            if let Some(dest) = destination {
                for l in &other {
                    assert!(
                        l["id.resp_h"] != dest && l["id.orig_h"] != dest,
                        "{id} {name}: a line to {dest} among the others: {l:?}"
                    );
                }
            }
            for pair in related.windows(2).chain(other.windows(2)) {
                assert!(
                    pair[0]["ts"].as_f64() <= pair[1]["ts"].as_f64(),
                    "{id} {name}"
                );
            }
        }
        // Every flow the evidence names is shown.
        let mut named = BTreeSet::new();
        let all: BTreeSet<String> = logs
            .values()
            .flatten()
            .filter_map(|l| l.get("uid").and_then(Value::as_str).map(str::to_string))
            .collect();
        evidence_uids(&alert["evidence"], &all, &mut named);
        for uid in &named {
            let related_uids: BTreeSet<&str> = LOGS
                .iter()
                .flat_map(|n| doc["logs"][n]["related"].as_array().unwrap())
                .filter_map(|l| l["uid"].as_str())
                .collect();
            assert!(related_uids.contains(uid.as_str()), "{id}: {uid} not shown");
        }

        // Text, piped: no colour, 100 columns, the alert's words and the lines' uids.
        let o = egresswatch(&[
            "explain",
            id,
            "--alerts",
            &alerts_file,
            "--log-dir",
            &log_dir,
        ]);
        assert!(o.status.success(), "{id}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(!out.contains('\u{1b}'), "{id}: colour when piped");
        for line in out.lines() {
            assert!(line.chars().count() <= 100, "{id}: too wide: {line}");
        }
        let flat = collapse(&out);
        for field in ["id", "host", "DetectionBranch", "severity", "window_start"] {
            let v = alert[field].as_str().unwrap();
            assert!(flat.contains(v), "{id}: {field} {v} missing");
        }
        assert!(
            flat.contains(&collapse(alert["reason"].as_str().unwrap())),
            "{id}"
        );
        for f in alert["evidence"]["findings"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let summary = collapse(f["summary"].as_str().unwrap());
            assert!(flat.contains(&summary), "{id}: finding {summary} missing");
        }
        for name in LOGS {
            let entry = &doc["logs"][name];
            let shown = |g: &str| {
                entry[g]
                    .as_array()
                    .unwrap()
                    .iter()
                    .take(50)
                    .filter_map(|l| l["uid"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            };
            for uid in shown("related").iter().chain(&shown("other")) {
                assert!(out.contains(uid.as_str()), "{id} {name}: {uid} not shown");
            }
            let summary = format!(
                "{name}: {} to the alert's destinations or named in its evidence, {} other",
                entry["related_total"], entry["other_total"]
            );
            assert!(out.contains(&summary), "{id}: {summary}");
        }
        // A unique prefix names the alert too.
        let o = egresswatch(&["explain", &id[..8], "--alerts", &alerts_file, "--json"]);
        assert!(o.status.success(), "{id}: {}", text(&o.stderr));
        let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["alert"]["id"], id);
    }
}

#[test]
fn alert_ids_are_unique_and_the_same_on_every_run_and_thread_count() {
    for (pcap, config) in [
        ("captures/behaviour.pcap", Some("captures/behaviour.toml")),
        ("captures/office.pcap", None),
        ("captures/hidden-names.pcap", None),
    ] {
        let one = replay(pcap, config, "1");
        let ids_one = ids(&one.alerts);
        assert!(!ids_one.is_empty(), "{pcap}: no alerts");
        let unique: BTreeSet<&String> = ids_one.iter().collect();
        assert_eq!(
            unique.len(),
            ids_one.len(),
            "{pcap}: ids repeat: {ids_one:?}"
        );
        assert_eq!(ids(&replay(pcap, config, "1").alerts), ids_one, "{pcap}");
        assert_eq!(ids(&replay(pcap, config, "2").alerts), ids_one, "{pcap}");
    }
}

#[test]
fn every_behavioural_alert_is_explained_from_the_alerts_file_and_logs() {
    let run = replay(
        "captures/behaviour.pcap",
        Some("captures/behaviour.toml"),
        "1",
    );
    check_truth(&run, "captures/behaviour.truth.json");
    check_explain(&run);
}

#[test]
fn every_proxyware_alert_is_explained_from_the_alerts_file_and_logs() {
    let run = replay("captures/office.pcap", None, "1");
    check_truth(&run, "captures/office.truth.json");
    check_explain(&run);
}

#[test]
fn explain_errors_name_the_file_and_line() {
    let run = replay("captures/office.pcap", None, "1");
    let alerts_file = run.alerts_file();
    let file = alerts_file.display().to_string();
    let id = run.alerts[0]["id"].as_str().unwrap().to_string();

    let o = egresswatch(&["explain", "0123456789abcdef", "--alerts", &file]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("no alert with id 0123456789abcdef") && err.contains(&file),
        "{err}"
    );

    let missing = run.dir.path("missing.jsonl").display().to_string();
    let o = egresswatch(&["explain", &id, "--alerts", &missing]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains(&format!("cannot read {missing}")));

    // A broken third line: an error naming file and line, not a panic.
    let lines: Vec<String> = std::fs::read_to_string(&alerts_file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let broken = run.dir.path("broken.jsonl");
    let mut text_broken = lines[..2].join("\n");
    text_broken.push_str("\n{\"id\": \"cut\n");
    text_broken.push_str(&lines[2..].join("\n"));
    std::fs::write(&broken, text_broken).unwrap();
    let o = egresswatch(&["explain", &id, "--alerts", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!("{}:3: not a JSON alert", broken.display())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Two ids sharing a prefix: ambiguous, both named.
    let mut a = run.alerts[0].clone();
    let mut b = run.alerts[0].clone();
    a.insert("id".into(), "abcd1111".into());
    b.insert("id".into(), "abcd2222".into());
    let twins = run.dir.path("twins.jsonl");
    std::fs::write(
        &twins,
        format!("{}\n{}\n", Value::Object(a), Value::Object(b)),
    )
    .unwrap();
    let o = egresswatch(&["explain", "abcd", "--alerts", twins.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("ambiguous") && err.contains("abcd1111") && err.contains("abcd2222"));

    // A bad line in a log is named and skipped; the rest is still shown.
    let conn = run.log_dir().join("conn.log");
    let mut log = std::fs::read_to_string(&conn).unwrap();
    log.push_str("{\"ts\": 1.0, \"uid\": \n");
    std::fs::write(&conn, &log).unwrap();
    let bad_line = log.lines().count();
    let o = egresswatch(&[
        "explain",
        &id,
        "--alerts",
        &file,
        "--log-dir",
        run.log_dir().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}:{bad_line}: not a JSON log line",
            conn.display()
        )),
        "{err}"
    );
    assert!(text(&o.stdout).contains("conn.log: "));
}
