//! Hidden names (issue 8): encrypted DNS is marked, ECH hellos are flagged, HTTPS-record
//! hints name later connections, and hosts whose connections carry no name are reported.
//! Expectations come from the generator's truth file for captures/hidden-names.pcap.
mod common;

use common::TempDir;
use egresswatch::config::Config;
use egresswatch::pipeline::{ReplayOptions, RunReport, replay};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn truth() -> Value {
    serde_json::from_slice(&std::fs::read(repo("captures/hidden-names.truth.json")).unwrap())
        .unwrap()
}

/// Hosts with a `hidden` truth: (connections, unnamed, encrypted DNS by kind, ECH hellos).
type HiddenTruth = (u32, u32, BTreeMap<String, u64>, u64);

fn hidden_hosts(truth: &Value) -> BTreeMap<IpAddr, HiddenTruth> {
    let hosts = truth["hosts"].as_object().unwrap();
    hosts
        .iter()
        .filter_map(|(ip, h)| {
            let hidden = h.get("hidden")?;
            let n = |k: &str| hidden[k].as_u64().unwrap() as u32;
            let encrypted = hidden["encrypted_dns"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect();
            Some((
                ip.parse().unwrap(),
                (
                    n("connections"),
                    n("unnamed"),
                    encrypted,
                    u64::from(n("ech_hellos")),
                ),
            ))
        })
        .collect()
}

fn run(config_extra: &str, log_dir: Option<&Path>) -> RunReport {
    run_with(config_extra, log_dir, &mut |_| Ok(()))
}

fn run_with(
    config_extra: &str,
    log_dir: Option<&Path>,
    on_alerts: &mut dyn FnMut(&[egresswatch::alert::Alert]) -> std::io::Result<()>,
) -> RunReport {
    let home_nets = truth()["home_nets"].clone();
    let text = format!("home_nets = {home_nets}\n[dns]\n{config_extra}\n");
    let config: Config = toml::from_str(&text).unwrap();
    let options = ReplayOptions {
        log_dir: log_dir.map(Path::to_path_buf),
        ..Default::default()
    };
    replay(
        &config,
        &[repo("captures/hidden-names.pcap")],
        &options,
        on_alerts,
    )
    .unwrap()
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn name_blind_hosts_are_the_ones_the_truth_says() {
    let truth = truth();
    let hidden = hidden_hosts(&truth);
    // Shipped thresholds: half of at least ten connections without a name.
    let report = run("", None);
    let reported: BTreeMap<IpAddr, (u32, u32)> = report
        .stats
        .name_blind
        .iter()
        .map(|h| (h.host, (h.naming.connections, h.naming.unnamed)))
        .collect();
    let expected: BTreeMap<IpAddr, (u32, u32)> = hidden
        .iter()
        .filter(|(_, (c, u, _, _))| *c >= 10 && 2 * u >= *c)
        .map(|(ip, (c, u, _, _))| (*ip, (*c, *u)))
        .collect();
    assert_eq!(expected.len(), 2, "the DoH host and the bare-address host");
    assert_eq!(reported, expected);
    let doh = report
        .stats
        .name_blind
        .iter()
        .find(|h| h.naming.resolver.is_some())
        .expect("the DoH host names its resolver");
    assert!(doh.to_string().contains("encrypted DNS: doh via"), "{doh}");

    // With every threshold at its lowest, each host with any unnamed connection is listed
    // with exact counts; the HTTPS-hints host is not, because the DNS cache named all of
    // its connections from the hints.
    let report = run(
        "name_blind_share = 0.000001\nname_blind_min_connections = 1",
        None,
    );
    let unnamed: BTreeMap<IpAddr, (u32, u32)> = report
        .stats
        .name_blind
        .iter()
        .filter(|h| hidden.contains_key(&h.host))
        .map(|h| (h.host, (h.naming.connections, h.naming.unnamed)))
        .collect();
    let expected: BTreeMap<IpAddr, (u32, u32)> = hidden
        .iter()
        .filter(|(_, (_, u, _, _))| *u > 0)
        .map(|(ip, (c, u, _, _))| (*ip, (*c, *u)))
        .collect();
    assert_eq!(unnamed, expected);
    let hints: IpAddr = "10.20.3.13".parse().unwrap();
    assert_eq!(hidden[&hints].0, 12);
    assert!(!unnamed.contains_key(&hints));
}

#[test]
fn encrypted_dns_and_ech_are_marked_in_the_logs() {
    let truth = truth();
    let hidden = hidden_hosts(&truth);
    let dir = TempDir::new("hidden-names", "logs");
    let report = run("", Some(&dir.0));

    let mut encrypted: BTreeMap<IpAddr, BTreeMap<String, u64>> = BTreeMap::new();
    for line in json_lines(&dir.path("conn.log")) {
        if let Some(kind) = line["encrypted_dns"].as_str() {
            let host = line["id.orig_h"].as_str().unwrap().parse().unwrap();
            *encrypted
                .entry(host)
                .or_default()
                .entry(kind.to_string())
                .or_default() += 1;
        }
    }
    let expected: BTreeMap<IpAddr, BTreeMap<String, u64>> = hidden
        .iter()
        .filter(|(_, h)| !h.2.is_empty())
        .map(|(ip, h)| (*ip, h.2.clone()))
        .collect();
    assert_eq!(encrypted, expected);
    let flows: u64 = expected.values().flat_map(|m| m.values()).sum();
    assert_eq!(report.stats.encrypted_dns_flows, flows);
    // The summary lists the same hosts with the same kinds.
    let listed: BTreeMap<IpAddr, (Vec<String>, u64)> = report
        .stats
        .encrypted_dns_hosts
        .iter()
        .map(|h| {
            let mut kinds: Vec<String> = h.kinds.iter().map(|k| k.as_str().to_string()).collect();
            kinds.sort();
            (h.host, (kinds, u64::from(h.flows)))
        })
        .collect();
    let expected_listed: BTreeMap<IpAddr, (Vec<String>, u64)> = expected
        .iter()
        .map(|(ip, kinds)| (*ip, (kinds.keys().cloned().collect(), kinds.values().sum())))
        .collect();
    assert_eq!(listed, expected_listed);

    let mut ech: BTreeMap<IpAddr, u64> = BTreeMap::new();
    for line in json_lines(&dir.path("ssl.log")) {
        if line["ech"] == Value::Bool(true) {
            let host = line["id.orig_h"].as_str().unwrap().parse().unwrap();
            *ech.entry(host).or_default() += 1;
            // The outer name is what there is to log.
            assert_eq!(line["server_name"], "cloudflare-ech.com");
        }
    }
    let expected: BTreeMap<IpAddr, u64> = hidden
        .iter()
        .filter(|(_, h)| h.3 > 0)
        .map(|(ip, h)| (*ip, h.3))
        .collect();
    assert_eq!(ech, expected);
    assert_eq!(report.stats.ech_hellos, expected.values().sum::<u64>());

    // HTTPS answers show their parameters in dns.log, in RFC 9460 presentation format.
    let https: Vec<Value> = json_lines(&dir.path("dns.log"))
        .into_iter()
        .filter(|l| l["id.orig_h"] == "10.20.3.13" && l["qtype_name"] == "HTTPS")
        .collect();
    assert_eq!(https.len(), 12);
    for line in &https {
        let answer = line["answers"][0].as_str().unwrap();
        assert!(
            answer.starts_with("1 . alpn=h2,h3 ipv4hint=198.51.100."),
            "{answer}"
        );
        assert!(answer.contains(" ipv6hint=2001:db8:"), "{answer}");
    }
}

/// The host that reaches its proxyware service only over QUIC, with no plain DNS, is alerted
/// from the QUIC Initial's SNI alone; no other host is.
#[test]
fn quic_only_proxyware_host_is_alerted() {
    let truth = truth();
    let mut alerts = Vec::new();
    run_with("", None, &mut |batch| {
        alerts.extend(batch.iter().map(|a| serde_json::to_value(a).unwrap()));
        Ok(())
    });
    let ours: Vec<(String, String, String, Value, Value)> = alerts
        .iter()
        .map(|a| {
            (
                a["host"].as_str().unwrap().to_string(),
                a["DetectionBranch"].as_str().unwrap().to_string(),
                a["evidence"]["service"].as_str().unwrap_or("").to_string(),
                a["evidence"]["names"].clone(),
                a["evidence"]["via"].clone(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for (host, h) in truth["hosts"].as_object().unwrap() {
        for e in h["expect_alerts"].as_array().unwrap() {
            expected.push((
                host.clone(),
                e["branch"].as_str().unwrap().to_string(),
                e["service"].as_str().unwrap().to_string(),
                e["names"].clone(),
                e["via"].clone(),
            ));
        }
    }
    assert_eq!(
        expected.len(),
        1,
        "the truth expects the QUIC host's alert only"
    );
    assert_eq!(expected[0].0, "10.20.3.15");
    assert_eq!(ours, expected);
}
