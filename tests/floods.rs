//! Floods (issue 7): each hostile scenario of the generator (the office capture with an attack
//! laid over it) streams through a pipe into `egresswatch replay /dev/stdin`, with bounds set
//! low so that the attack overflows them. Each test checks that what overflowed was counted,
//! that what the attack hid was still decoded, that the peak memory stayed within a budget
//! that only bounded state can meet, and that the office's proxyware host still raises
//! exactly its expected alerts. Throughput is measured by benches/floods.sh, not here.
mod common;
use common::TempDir;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_egresswatch");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

struct Replayed {
    summary: String,
    alerts: Vec<Value>,
    truth: Value,
}

impl Replayed {
    /// The number just after `label` in the summary ("flows: 12 (...").
    fn after(&self, label: &str) -> u64 {
        let at = self
            .summary
            .find(label)
            .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{}", self.summary));
        let digits: String = self.summary[at + label.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("no number after {label:?}:\n{}", self.summary))
    }

    /// The number just before `label` in the summary ("... 12 evicted at ...").
    fn count(&self, label: &str) -> u64 {
        let at = self
            .summary
            .find(label)
            .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{}", self.summary));
        let digits: String = self.summary[..at]
            .trim_end()
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .chars()
            .rev()
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("no number before {label:?}:\n{}", self.summary))
    }

    /// A counter of the "drops:" line (0 when absent).
    fn drop_count(&self, reason: &str) -> u64 {
        let line = self
            .summary
            .lines()
            .find(|l| l.starts_with("drops: "))
            .unwrap_or_else(|| panic!("no drops line:\n{}", self.summary));
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == reason)
            .map_or(0, |(_, v)| v.parse().unwrap())
    }

    fn peak_mib(&self) -> f64 {
        let line = self
            .summary
            .lines()
            .find_map(|l| l.strip_prefix("memory: peak resident "))
            .unwrap_or_else(|| panic!("no memory line:\n{}", self.summary));
        line.trim_end_matches(" MiB").parse().unwrap()
    }

    fn attack(&self, key: &str) -> u64 {
        self.truth["attack"]["counts"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("truth has no attack count {key}"))
    }

    /// Alerts on the office's hosts, as (host, detection branch, destination name).
    fn office_alerts(&self) -> BTreeSet<(String, String, String)> {
        let hosts = self.truth["hosts"].as_object().unwrap();
        self.alerts
            .iter()
            .filter(|a| hosts.contains_key(a["host"].as_str().unwrap()))
            .map(|a| {
                (
                    a["host"].as_str().unwrap().to_string(),
                    a["DetectionBranch"].as_str().unwrap().to_string(),
                    a["evidence"]["service"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// What the truth file expects of the office hosts, in `office_alerts`' form.
    fn expected_office_alerts(&self) -> BTreeSet<(String, String, String)> {
        let mut want = BTreeSet::new();
        for (host, h) in self.truth["hosts"].as_object().unwrap() {
            for a in h["expect_alerts"].as_array().unwrap() {
                want.insert((
                    host.clone(),
                    a["branch"].as_str().unwrap().to_string(),
                    a["service"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        want
    }

    /// The office's proxyware host is found as it is without the attack, and no office host
    /// raises anything else.
    fn assert_office_detected(&self) {
        let want = self.expected_office_alerts();
        assert!(!want.is_empty());
        assert_eq!(self.office_alerts(), want, "summary:\n{}", self.summary);
    }
}

/// Generates `scenario` with `packets` attack frames into a pipe read by `replay` with
/// `config` (TOML; what it leaves out keeps the built-in defaults); the truth file goes to a
/// temporary directory.
fn flood(scenario: &str, packets: u64, config: &str) -> Replayed {
    let dir = TempDir::new("floods", scenario);
    let config_path = dir.path("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let truth_path = dir.path("truth.json");
    let mut generator = Command::new(BIN)
        .args([
            "generate",
            "--scenario",
            scenario,
            "--seed",
            "1",
            "--packets",
        ])
        .arg(packets.to_string())
        .args(["--out", "/dev/stdout", "--truth"])
        .arg(&truth_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut replay = Command::new(BIN)
        .args(["replay", "--format", "json", "--config"])
        .arg(&config_path)
        .arg("/dev/stdin")
        .stdin(generator.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    replay
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut summary = String::new();
    replay
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut summary)
        .unwrap();
    assert!(
        generator.wait().unwrap().success(),
        "generate {scenario} failed"
    );
    assert!(
        replay.wait().unwrap().success(),
        "replay failed:\n{summary}"
    );
    let alerts = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let truth = serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    Replayed {
        summary,
        alerts,
        truth,
    }
}

/// The committed office capture (seed 1, the background of every flood) on its own.
fn office_alone() -> Replayed {
    let out = Command::new(BIN)
        .args(["replay", "--format", "json"])
        .arg(repo("captures/office.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("captures/office.truth.json")).unwrap())
            .unwrap();
    assert!(
        truth["generator_command"]
            .as_str()
            .unwrap()
            .contains("--seed 1 ")
    );
    Replayed {
        summary: String::from_utf8(out.stderr).unwrap(),
        alerts: Vec::new(),
        truth,
    }
}

#[test]
fn ten_million_spoofed_syns_keep_the_flow_table_at_its_bound() {
    const SYNS: u64 = 10_000_000;
    const MAX_FLOWS: u64 = 100_000;
    let config = format!(
        "[flow]\nmax_flows = {MAX_FLOWS}\n\
         [detectors.flood]\nmax_sources = 100000\n"
    );
    let office = office_alone();
    let small = flood("syn-flood", SYNS / 10, &config);
    let r = flood("syn-flood", SYNS, &config);
    assert_eq!(r.attack("flows"), SYNS);
    let flows = r.after("\nflows: ");
    assert_eq!(flows, office.after("\nflows: ") + SYNS, "{}", r.summary);
    // Unanswered SYNs stay until evicted (the idle timeout is longer than the table's turnover).
    let evicted = r.count("evicted at the max_flows bound");
    assert!(
        evicted >= SYNS - MAX_FLOWS && evicted <= flows,
        "{}",
        r.summary
    );
    // 100 k flows take about 60 MiB; holding the 10 M would take gigabytes. And the peak does
    // not grow with the flood: ten times the SYNs, the same memory.
    assert!(r.peak_mib() < 128.0, "{}", r.summary);
    assert!(
        r.peak_mib() < small.peak_mib() * 1.1 + 4.0,
        "1 M SYNs: {} MiB, 10 M: {} MiB",
        small.peak_mib(),
        r.peak_mib()
    );
    r.assert_office_detected();
}

#[test]
fn a_random_name_dns_flood_keeps_the_answer_cache_at_its_bound() {
    const PACKETS: u64 = 400_000;
    let office = office_alone();
    let r = flood("dns-flood", PACKETS, "[dns]\ncache_max_entries = 5000\n");
    assert_eq!(
        r.count("DNS messages"),
        office.count("DNS messages") + r.attack("dns_messages"),
        "{}",
        r.summary
    );
    let answered = r.attack("answered_with_address");
    let evicted = r.count("answer cache entries evicted");
    // Every answer is a new (client, address) entry; all but the last 5000 must have gone.
    assert!(
        evicted >= answered - 5000 && evicted <= answered + office.count("DNS messages"),
        "{}",
        r.summary
    );
    assert!(r.peak_mib() < 256.0, "{}", r.summary);
    r.assert_office_detected();
}

#[test]
fn client_hellos_in_thousands_of_tiny_segments_are_still_read() {
    let office = office_alone();
    let r = flood("tiny-hello", 300_000, "");
    let connections = r.attack("connections");
    assert!(connections >= 90);
    assert!(r.attack("segments") / connections > 2000);
    // In order and with neighbours swapped: read. With a segment missing: never complete.
    assert_eq!(
        r.count("TLS ClientHellos"),
        office.count("TLS ClientHellos") + r.attack("hellos_complete"),
        "{}",
        r.summary
    );
    assert!(r.attack("hellos_with_hole") > 0);
    assert!(r.peak_mib() < 128.0, "{}", r.summary);
    r.assert_office_detected();
}

#[test]
fn a_fragment_flood_with_holes_cannot_crowd_out_datagrams_that_complete() {
    const MAX_DATAGRAMS: u64 = 512;
    let r = flood(
        "fragment-flood",
        400_000,
        &format!(
            "[reassembly]\nmax_fragmented_datagrams = {MAX_DATAGRAMS}\nmax_fragment_bytes = 1048576\n"
        ),
    );
    let complete = r.attack("complete");
    assert!(complete > 20_000);
    assert_eq!(r.count("datagrams reassembled"), complete, "{}", r.summary);
    // Every incomplete datagram was evicted, timed out, or is among those held at the end.
    let incomplete = r.attack("with_hole") + r.attack("far_fragment_only");
    let gone = r.drop_count("fragment_evicted") + r.drop_count("fragment_timeout");
    assert!(
        gone <= incomplete && gone + MAX_DATAGRAMS >= incomplete,
        "{}",
        r.summary
    );
    assert!(r.drop_count("fragment_evicted") > 0);
    assert_eq!(r.drop_count("fragment_table_full"), 0, "{}", r.summary);
    // The far fragments (offset ~64 KB) would take 3 GB if each reserved its whole datagram.
    assert!(r.peak_mib() < 128.0, "{}", r.summary);
    r.assert_office_detected();
}

#[test]
fn an_ipfix_template_storm_keeps_templates_and_pending_sets_at_their_bounds() {
    const MESSAGES: u64 = 20_000;
    let r = flood(
        "template-storm",
        MESSAGES,
        "[export]\nmax_templates = 1000\nmax_pending_sets = 16\n",
    );
    assert_eq!(r.count("NetFlow/IPFIX"), MESSAGES, "{}", r.summary);
    // Redefined ids decode in their new layout: a stale layout would misread the records.
    assert!(r.attack("redefinitions") > MESSAGES / 2);
    assert_eq!(r.count("records ->"), r.attack("records"), "{}", r.summary);
    assert_eq!(r.count("templates ("), r.attack("template_records"));
    assert_eq!(r.count("withdrawn"), r.attack("withdrawals"));
    // Most definitions are of ids new to their exporter and domain (a few replace one held).
    let evicted = r.count("evicted at max_templates");
    assert!(evicted > r.attack("template_records") / 2, "{}", r.summary);
    // Data for ids never defined waits, 16 sets per exporter (16 exporters), then is dropped.
    let undefined = r.attack("sets_for_undefined_templates");
    assert_eq!(r.count("data sets before their template"), undefined);
    assert_eq!(r.count("decoded later"), 0);
    assert!(r.count("dropped);") >= undefined - 16 * 16, "{}", r.summary);
    assert!(!r.summary.contains("export errors"), "{}", r.summary);
    assert!(r.peak_mib() < 256.0, "{}", r.summary);
    r.assert_office_detected();
}
