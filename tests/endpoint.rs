//! Endpoint evidence end to end, on the generator's `endpoint` scenario (captures/endpoint*):
//! every format reads to the same events; the default mode finds each of the seed test plan's
//! four behaviours with the branch the truth file names, from each format, and nothing on the
//! benign host or the look-alikes; with the capture, network alerts name their process and
//! rise; the seed search's rows equal the independent Python oracle's and the truth's.
use egresswatch::endpoint::SysmonEvent;
use egresswatch::endpoint::read::{ReadCounters, read_events};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The Windows events in each format; EVTX is one log per computer.
const EVTX: [&str; 4] = [
    "captures/endpoint/sysmon-WIN-DESK-07.evtx",
    "captures/endpoint/sysmon-WIN-DESK-08.evtx",
    "captures/endpoint/sysmon-WIN-LAB-03.evtx",
    "captures/endpoint/sysmon-WIN-SRV-12.evtx",
];
const WINLOGBEAT: &str = "captures/endpoint/winlogbeat.ndjson";
const SPLUNK: &str = "captures/endpoint/splunk.json";
const ELASTIC: &str = "captures/endpoint/elastic-agent.ndjson";
const WINDOWS_FORMATS: [&[&str]; 4] = [&EVTX, &[WINLOGBEAT], &[SPLUNK], &[ELASTIC]];

/// `--endpoint-events` for each file.
fn endpoint_args<'a>(files: &[&'a str]) -> Vec<&'a str> {
    files
        .iter()
        .flat_map(|f| ["--endpoint-events", f])
        .collect()
}
const LINUX: &str = "captures/endpoint/sysmon-linux.log";

fn truth() -> Value {
    let text = std::fs::read_to_string(repo("captures/endpoint.truth.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read(paths: &[&str]) -> Vec<SysmonEvent> {
    let mut events = Vec::new();
    for path in paths {
        let mut counters = ReadCounters::default();
        let mut problems = Vec::new();
        read_events(&repo(path), &mut counters, &mut problems, &mut |e| {
            events.push(e)
        })
        .unwrap();
        assert!(problems.is_empty(), "{path}: {problems:?}");
        assert_eq!(counters.malformed, 0, "{path}");
    }
    events
}

fn egresswatch(args: &[&str]) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(args)
        .current_dir(repo(""))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?}: {err}");
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, err)
}

/// An event as every full-fidelity format carries it: record id -> (id, ms, computer, fields).
type Seen = BTreeMap<u64, (u16, u64, String, BTreeSet<(String, String)>)>;

fn by_record(events: &[SysmonEvent]) -> Seen {
    events
        .iter()
        .map(|e| {
            (
                e.record_id.expect("record id"),
                (
                    e.event_id,
                    e.time_ns / 1_000_000,
                    e.computer.clone(),
                    e.data.iter().cloned().collect(),
                ),
            )
        })
        .collect()
}

#[test]
fn every_format_reads_to_the_same_events() {
    let truth = truth();
    let evtx = by_record(&read(&EVTX));
    assert_eq!(evtx.len() as u64, truth["windows_events"].as_u64().unwrap());
    for path in [WINLOGBEAT, SPLUNK] {
        assert_eq!(
            by_record(&read(&[path])),
            evtx,
            "{path} differs from the EVTX"
        );
    }
    // Elastic Agent keeps only the fields its ECS mapping names: each is the EVTX's value.
    let ecs = read(&[ELASTIC]);
    assert_eq!(ecs.len(), evtx.len());
    for e in &ecs {
        let (id, ms, computer, fields) = &evtx[&e.record_id.unwrap()];
        assert_eq!((e.event_id, e.time_ns / 1_000_000), (*id, *ms));
        assert_eq!(&e.computer, computer);
        for field in &e.data {
            assert!(
                fields.contains(field),
                "ECS {field:?} not in record {:?}",
                e.record_id
            );
        }
    }
    let linux = read(&[LINUX]);
    assert_eq!(linux.len() as u64, truth["linux_events"].as_u64().unwrap());
    assert!(
        linux
            .iter()
            .all(|e| e.platform == egresswatch::endpoint::Platform::Linux)
    );
}

/// (host, branch, service or key) of every alert, with the process Image.
fn findings(alerts: &[Value]) -> BTreeSet<(String, String, String)> {
    alerts
        .iter()
        .map(|a| {
            // Services tell names apart; fan-out is one finding per host and window.
            let key = a["evidence"]["service"]
                .as_str()
                .or(a["evidence"]["key"].as_str())
                .filter(|_| a["DetectionBranch"] != "FanOut")
                .unwrap_or("");
            (
                a["host"].as_str().unwrap().to_string(),
                a["DetectionBranch"].as_str().unwrap().to_string(),
                key.to_string(),
            )
        })
        .collect()
}

/// What the truth expects: (host, branch, service) per service; fan-out has none.
/// The truth's entry for one host and branch in `list`.
fn expectation<'a>(truth: &'a Value, list: &str, host: &str, branch: &str) -> &'a Value {
    truth["hosts"][host][list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["branch"] == branch)
        .unwrap_or_else(|| panic!("no {list} entry for {host} {branch}"))
}

fn expected(truth: &Value, list: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (host, h) in truth["hosts"].as_object().unwrap() {
        for e in h[list].as_array().into_iter().flatten() {
            let branch = e["branch"].as_str().unwrap().to_string();
            let services: Vec<&str> = e["services"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            if services.is_empty() {
                out.insert((host.clone(), branch.clone(), String::new()));
            }
            for s in services {
                out.insert((host.clone(), branch.clone(), s.to_string()));
            }
        }
    }
    out
}

#[test]
fn default_mode_finds_each_behaviour_from_every_format() {
    let truth = truth();
    let want = expected(&truth, "expect_endpoint");
    assert!(want.iter().any(|f| f.1 == "ProxywarePersistence"));
    for files in WINDOWS_FORMATS {
        let path = files[0];
        let mut args = vec!["replay", "--format", "json"];
        args.extend(endpoint_args(files));
        args.extend(endpoint_args(&[LINUX]));
        let (alerts, err) = egresswatch(&args);
        assert_eq!(findings(&alerts), want, "{path}\n{err}");
        for a in &alerts {
            let host = a["host"].as_str().unwrap();
            let branch = a["DetectionBranch"].as_str().unwrap();
            let expect = expectation(&truth, "expect_endpoint", host, branch);
            assert_eq!(
                a["process"]["Image"], expect["process"],
                "{path}: {host} {branch}"
            );
            assert!(a["reason"].as_str().unwrap().contains("(Sysmon)"));
        }
        let text = serde_json::to_string(&alerts).unwrap();
        assert!(
            !text.contains("mysterium-notes") && !text.contains("notpawns"),
            "{path}"
        );
        assert!(err.contains("endpoint: "), "{err}");
    }
}

#[test]
fn with_the_capture_network_alerts_name_their_process_and_rise() {
    let truth = truth();
    let (alone, _) = egresswatch(&["replay", "captures/endpoint.pcap", "--format", "json"]);
    let mut args = vec!["replay", "captures/endpoint.pcap", "--format", "json"];
    args.extend(endpoint_args(&EVTX));
    args.extend(endpoint_args(&[LINUX]));
    let (both, err) = egresswatch(&args);
    let (threaded, _) = egresswatch(&[&args[..], &["--threads", "2"]].concat());
    assert_eq!(both, threaded, "results depend on --threads");
    let network = expected(&truth, "expect_network");
    let endpoint = expected(&truth, "expect_endpoint");
    assert_eq!(findings(&alone), network);
    // Same findings from both sides are told once.
    assert_eq!(findings(&both), &network | &endpoint, "{err}");
    for a in &alone {
        let host = a["host"].as_str().unwrap();
        let branch = a["DetectionBranch"].as_str().unwrap();
        let with = both
            .iter()
            .find(|b| b["id"] == a["id"])
            .unwrap_or_else(|| panic!("{host} {branch} lost its id"));
        let expect = expectation(&truth, "expect_network", host, branch);
        assert_eq!(
            with["process"]["Image"], expect["process"],
            "{host} {branch}"
        );
        assert!(
            with["score"].as_u64() > a["score"].as_u64() || with["score"] == 100,
            "{host} {branch}: {} -> {}",
            a["score"],
            with["score"]
        );
        assert!(with["evidence"]["endpoint"]["merged"].is_object(), "{with}");
    }
    let honeygain = both
        .iter()
        .find(|a| a["host"] == "10.20.0.17" && a["DetectionBranch"] == "ProxywareDomain")
        .unwrap();
    assert_eq!(
        honeygain["evidence"]["endpoint"]["process_matched_by"],
        "5-tuple"
    );
    assert_eq!(honeygain["evidence"]["endpoint"]["connections_matched"], 3);
}

/// Rows as parsed JSON objects, keys in order (Splunk's export bytes are not specified).
fn rows(text: &str) -> Vec<Vec<(String, Value)>> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            order_of_keys(l)
                .into_iter()
                .map(|k| {
                    let value = v[&k].clone();
                    (k, value)
                })
                .collect()
        })
        .collect()
}

/// Keys of a flat JSON object in the order they are written.
fn order_of_keys(line: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(line).unwrap();
    let mut keys: Vec<(usize, String)> = v
        .as_object()
        .unwrap()
        .keys()
        .map(|k| {
            (
                line.find(&format!("{}:", Value::from(k.as_str()))).unwrap(),
                k.clone(),
            )
        })
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn seed_search_returns_what_the_seed_would() {
    let truth = truth();
    let splunk = SPLUNK;
    let oracle = Command::new("python3")
        .arg(repo("tests/data/seed_search.py"))
        .arg(repo(splunk))
        .output()
        .expect("python3 runs the seed oracle");
    assert!(
        oracle.status.success(),
        "{}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    let oracle = rows(&String::from_utf8(oracle.stdout).unwrap());
    let ours = |files: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
            .args(["replay", "--seed-search", "--format", "json"])
            .args(endpoint_args(files))
            .current_dir(repo(""))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        rows(&String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(ours(&[splunk]), oracle);
    // The truth's rows: the generator's own account of what the seed keeps.
    let truth_rows: Vec<Vec<(String, Value)>> = truth["seed_search"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| rows(&r.to_string()).remove(0))
        .map(|r| {
            r.into_iter()
                .filter(|(k, _)| k != "computer" && k != "record_id")
                .collect()
        })
        .collect();
    assert_eq!(oracle, truth_rows);
    // The look-alikes are among them: the seed's substring matching, kept on purpose.
    let text = format!("{oracle:?}");
    assert!(text.contains("mysterium-notes") && text.contains("notpawns.app.example.net"));
    // Other formats carry no Splunk host; everything else is the same.
    let without_host = |r: Vec<Vec<(String, Value)>>| -> Vec<Vec<(String, Value)>> {
        r.into_iter()
            .map(|row| row.into_iter().filter(|(k, _)| k != "host").collect())
            .collect()
    };
    for files in [&EVTX[..], &[WINLOGBEAT]] {
        assert_eq!(
            without_host(ours(files)),
            without_host(oracle.clone()),
            "{files:?}"
        );
    }
    assert!(
        ours(&[LINUX]).is_empty(),
        "the seed's sourcetype is Windows Sysmon's"
    );
}
