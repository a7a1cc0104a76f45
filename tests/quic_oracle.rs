//! Acceptance test for QUIC: on every packet capture in ../shared/captures/public, the server
//! names in quic.log are the ones tshark 4.0 decrypts from the client Initials
//! (`quic.unique_sni`) and reads from gQUIC CHLOs (`quic.gquic_unique_sni`), and each one
//! names its flow as a TLS SNI does.
mod common;
use common::{TempDir, public_dir};
use egresswatch::config::Config;
use egresswatch::pipeline::{ReplayOptions, replay};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::IpAddr;

fn string_set(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Google QUIC as tshark's `gquic` dissector tells it apart: a "Q0xx" version tag.
fn is_gquic(version: &str) -> bool {
    let b = version.as_bytes();
    b.len() == 4 && b[0] == b'Q' && b[1..].iter().all(u8::is_ascii_digit)
}

struct Seen {
    quic: BTreeSet<String>,
    gquic: BTreeSet<String>,
    lines: usize,
}

fn check_capture(name: &str, oracle: &Value, failures: &mut Vec<String>) -> Seen {
    let dir = TempDir::new("quic-oracle", name);
    let options = ReplayOptions {
        log_dir: Some(dir.0.clone()),
        collect: true,
        ..Default::default()
    };
    let path = public_dir().join(name);
    let report = replay(&Config::default(), &[path], &options, &mut |_| Ok(()))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let text = std::fs::read_to_string(dir.path("quic.log")).unwrap();
    let mut seen = Seen {
        quic: BTreeSet::new(),
        gquic: BTreeSet::new(),
        lines: 0,
    };
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        seen.lines += 1;
        let version = v["version"].as_str().unwrap_or_default();
        let Some(sni) = v["server_name"].as_str() else {
            continue;
        };
        if is_gquic(version) {
            seen.gquic.insert(sni.to_string());
        } else {
            seen.quic.insert(sni.to_string());
        }
        // The name is the flow's, as a TLS SNI would make it.
        let orig: (IpAddr, u16) = (
            v["id.orig_h"].as_str().unwrap().parse().unwrap(),
            v["id.orig_p"].as_u64().unwrap() as u16,
        );
        let named = report.observed.conversations.iter().any(|c| {
            c.a == orig && c.names.iter().any(|n| n == sni)
                || c.b == orig && c.names.iter().any(|n| n == sni)
        });
        if !named {
            failures.push(format!("{name}: the flow from {orig:?} is not named {sni}"));
        }
    }
    let quic = oracle.get("quic");
    let expect = string_set(quic.and_then(|q| q.get("unique_sni")));
    let expect_g = string_set(quic.and_then(|q| q.get("gquic_unique_sni")));
    if seen.quic != expect {
        failures.push(format!(
            "{name}: QUIC SNIs {:?}, tshark {expect:?}",
            seen.quic
        ));
    }
    if seen.gquic != expect_g {
        failures.push(format!(
            "{name}: gQUIC SNIs {:?}, tshark {expect_g:?}",
            seen.gquic
        ));
    }
    seen
}

#[test]
fn quic_names_agree_with_tshark_on_public_captures() {
    let entries = common::oracle_files();
    let (mut checked, mut with_quic, mut names) = (0, 0, 0);
    let mut failures = Vec::new();
    for oracle_path in entries {
        let oracle: Value =
            serde_json::from_str(&std::fs::read_to_string(&oracle_path).unwrap()).unwrap();
        let name = oracle_path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".oracle.json")
            .to_string();
        let seen = check_capture(&name, &oracle, &mut failures);
        checked += 1;
        with_quic += usize::from(seen.lines > 0);
        names += seen.quic.len() + seen.gquic.len();
    }
    assert!(checked >= 50, "only {checked} captures checked");
    // The oracles' QUIC captures must actually have been read, not skipped.
    assert!(with_quic > 0 && names > 0, "no QUIC name read at all");
    assert!(
        failures.is_empty(),
        "{} disagreements with tshark:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
