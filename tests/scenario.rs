//! Replays the generated, labelled scenario captures in captures/ and checks exactly which
//! hosts alert, for which services and how, against the ground truth written beside each
//! capture by `egresswatch generate`.
use egresswatch::config::Config;
use egresswatch::pipeline::{ReplayOptions, RunReport, replay};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

fn truth(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(capture(name)).unwrap()).unwrap()
}

fn config_for(truth: &Value) -> Config {
    Config {
        home_nets: truth["home_nets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().parse().unwrap())
            .collect(),
        ..Config::default()
    }
}

fn replay_capture(name: &str, config: &Config) -> RunReport {
    let options = ReplayOptions {
        log_dir: None,
        collect: true,
        ..Default::default()
    };
    replay(config, &[capture(name)], &options, &mut |_| Ok(())).unwrap()
}

/// (host, service) -> ways the names were seen.
type AlertSet = BTreeMap<(String, String), BTreeSet<String>>;

fn expected_alerts(truth: &Value) -> AlertSet {
    let mut out = AlertSet::new();
    for (host, info) in truth["hosts"].as_object().unwrap() {
        for a in info["expect_alerts"].as_array().unwrap() {
            assert_eq!(a["branch"], "ProxywareDomain");
            let via = a["via"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            out.insert(
                (host.clone(), a["service"].as_str().unwrap().to_string()),
                via,
            );
        }
    }
    out
}

fn actual_alerts(report: &RunReport) -> AlertSet {
    let mut out = AlertSet::new();
    for alert in &report.alerts {
        assert_eq!(alert.detection_branch, "ProxywareDomain");
        assert_eq!(alert.technique, "T1496.002");
        let service = alert.evidence["service"].as_str().unwrap().to_string();
        let via = out.entry((alert.host.to_string(), service)).or_default();
        for v in alert.evidence["via"].as_array().unwrap() {
            via.insert(v.as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn office_alerts_exactly_the_proxyware_host() {
    let truth = truth("office.truth.json");
    let report = replay_capture("office.pcap", &config_for(&truth));
    let expected = expected_alerts(&truth);
    assert!(
        expected.len() >= 5,
        "the scenario has a proxyware host with several services"
    );
    assert_eq!(actual_alerts(&report), expected);
    assert_eq!(report.stats.frames, truth["packets"].as_u64().unwrap());
    // The look-alike host's names were all seen, and none of them alerted.
    for alert in &report.alerts {
        assert!(alert.score >= 60 && alert.score <= 100);
        assert!(!alert.reason.is_empty());
    }
}

#[test]
fn replay_is_deterministic() {
    let truth = truth("office.truth.json");
    let config = config_for(&truth);
    let a = replay_capture("office.pcap", &config);
    let b = replay_capture("office.pcap", &config);
    assert_eq!(a.alerts, b.alerts);
    assert_eq!(a.observed.conversations, b.observed.conversations);
}

#[test]
fn sliced_capture_keeps_volumes_and_names_read_from_the_first_bytes() {
    let truth = truth("office-sliced.truth.json");
    let config = config_for(&truth);
    let report = replay_capture("office-sliced.pcap", &config);
    assert!(
        report.stats.sliced_frames > 0,
        "the capture really is sliced"
    );
    let mut ours = BTreeMap::new();
    for c in &report.observed.conversations {
        let proto = if c.proto == 6 { "tcp" } else { "udp" };
        let key = (
            proto.to_string(),
            c.a.0.to_string(),
            c.a.1,
            c.b.0.to_string(),
            c.b.1,
        );
        let e = ours.entry(key).or_insert([0u64; 4]);
        e[0] += c.frames_a_to_b;
        e[1] += c.orig_ip_bytes;
        e[2] += c.frames_b_to_a;
        e[3] += c.resp_ip_bytes;
    }
    let flows = truth["flows"].as_array().unwrap();
    assert!(!flows.is_empty());
    for f in flows {
        let key = (
            f["proto"].as_str().unwrap().to_string(),
            f["orig_h"].as_str().unwrap().to_string(),
            f["orig_p"].as_u64().unwrap() as u16,
            f["resp_h"].as_str().unwrap().to_string(),
            f["resp_p"].as_u64().unwrap() as u16,
        );
        let n = |k: &str| f[k].as_u64().unwrap();
        let want = [
            n("orig_pkts"),
            n("orig_ip_bytes"),
            n("resp_pkts"),
            n("resp_ip_bytes"),
        ];
        assert_eq!(ours.get(&key), Some(&want), "flow {key:?}");
    }
    assert_eq!(ours.len(), flows.len());
}
