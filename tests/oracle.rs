//! Acceptance test: on every packet capture in ../shared/captures/public, egresswatch reads the
//! same DNS names, TLS SNIs, HTTP hosts and TCP/UDP conversations as tshark 4.0 (the oracle
//! files beside each capture). NetFlow/IPFIX/sFlow export files belong to the flow-export work.
mod common;

use common::public_dir;
use egresswatch::config::Config;
use egresswatch::pipeline::{ReplayOptions, RunReport, replay};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

/// Captures where tshark is demonstrably wrong, with the field and the reason.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn run(path: &Path) -> RunReport {
    let options = ReplayOptions {
        log_dir: None,
        collect: true,
        ..Default::default()
    };
    replay(
        &Config::default(),
        &[path.to_path_buf()],
        &options,
        &mut |_| Ok(()),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn string_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

type ConvKey = (String, (IpAddr, u16), (IpAddr, u16));
/// frames and bytes from the lower endpoint to the higher, and back.
type ConvCounts = [u64; 4];

fn conv_key(
    proto: &str,
    a: (IpAddr, u16),
    b: (IpAddr, u16),
    counts: ConvCounts,
) -> (ConvKey, ConvCounts) {
    if a <= b {
        ((proto.to_string(), a, b), counts)
    } else {
        (
            (proto.to_string(), b, a),
            [counts[2], counts[3], counts[0], counts[1]],
        )
    }
}

fn add(map: &mut BTreeMap<ConvKey, ConvCounts>, (key, c): (ConvKey, ConvCounts)) {
    let e = map.entry(key).or_insert([0; 4]);
    for i in 0..4 {
        e[i] += c[i];
    }
}

fn check_capture(name: &str, oracle: &Value, failures: &mut Vec<String>) {
    let path = public_dir().join(name);
    let report = run(&path);
    let excepted = |field: &str| EXCEPTIONS.iter().any(|(f, k, _)| *f == name && *k == field);
    let mut compare = |field: &str, ours: &BTreeSet<String>, theirs: BTreeSet<String>| {
        if *ours != theirs && !excepted(field) {
            failures.push(format!("{name}: {field}: ours {ours:?} tshark {theirs:?}"));
        }
    };
    compare(
        "dns",
        &report.observed.dns_names,
        string_set(&oracle["dns"]["unique_query_names"]),
    );
    compare(
        "sni",
        &report.observed.snis,
        string_set(&oracle["tls_sni"]["unique"]),
    );
    compare(
        "http",
        &report.observed.http_hosts,
        string_set(&oracle["http"]["unique_hosts"]),
    );

    let mut ours = BTreeMap::new();
    for c in &report.observed.conversations {
        let proto = if c.proto == 6 { "tcp" } else { "udp" };
        add(
            &mut ours,
            conv_key(
                proto,
                c.a,
                c.b,
                [
                    c.frames_a_to_b,
                    c.bytes_a_to_b,
                    c.frames_b_to_a,
                    c.bytes_b_to_a,
                ],
            ),
        );
    }
    let mut theirs = BTreeMap::new();
    for c in oracle["conversations"]["exact"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let ep = |addr: &str, port: &str| -> (IpAddr, u16) {
            (
                c[addr]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("address"),
                c[port].as_u64().unwrap_or(0) as u16,
            )
        };
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        add(
            &mut theirs,
            conv_key(
                c["proto"].as_str().unwrap_or(""),
                ep("a_addr", "a_port"),
                ep("b_addr", "b_port"),
                [
                    n("frames_a_to_b"),
                    n("bytes_a_to_b"),
                    n("frames_b_to_a"),
                    n("bytes_b_to_a"),
                ],
            ),
        );
    }
    if ours != theirs && !excepted("conversations") {
        for (k, v) in &theirs {
            match ours.get(k) {
                Some(o) if o == v => {}
                other => failures.push(format!(
                    "{name}: conversation {k:?}: ours {other:?} tshark {v:?}"
                )),
            }
        }
        for (k, v) in &ours {
            if !theirs.contains_key(k) {
                failures.push(format!(
                    "{name}: conversation {k:?}: ours {v:?}, not in tshark"
                ));
            }
        }
    }
}

#[test]
fn decoders_agree_with_tshark_on_public_captures() {
    let mut checked = 0;
    let mut failures = Vec::new();
    let entries = common::oracle_files();
    for oracle_path in entries {
        let oracle: Value =
            serde_json::from_str(&std::fs::read_to_string(&oracle_path).unwrap()).unwrap();
        if oracle.get("flow_export").is_some() {
            continue;
        }
        let name = oracle_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".oracle.json")
            .to_string();
        check_capture(&name, &oracle, &mut failures);
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} captures checked");
    assert!(
        failures.is_empty(),
        "{} disagreements with tshark:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
