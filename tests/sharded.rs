//! `replay --threads N` must not change what the sensor finds: the same alerts, the same log
//! lines and the same counts for any number of packet-path workers, on the committed captures,
//! the generated flood scenario (many short flows, eviction pressure) and every public capture.
mod common;
use common::TempDir;
use egresswatch::alert::Alert;
use egresswatch::config::Config;
use egresswatch::generate::{GenerateOptions, Scenario, generate};
use egresswatch::pipeline::{ReplayOptions, replay};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Everything a run produced that must not depend on the thread count.
#[derive(Debug, PartialEq)]
struct Outcome {
    alerts: Vec<String>,
    /// Each log's lines, sorted: flows that end at the same tick may be written in another
    /// order.
    logs: BTreeMap<String, Vec<String>>,
    summary: String,
}

fn outcome(files: &[PathBuf], config: &Config, threads: usize) -> Outcome {
    let dir = TempDir::new("sharded", &format!("t{threads}"));
    let options = ReplayOptions {
        log_dir: Some(dir.0.clone()),
        threads,
        ..Default::default()
    };
    let mut alerts: Vec<Alert> = Vec::new();
    let report = replay(config, files, &options, &mut |batch| {
        alerts.extend_from_slice(batch);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{files:?} with {threads} threads: {e}"));
    assert_eq!(report.alerts.len(), alerts.len());
    let mut logs = BTreeMap::new();
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        let path = entry.unwrap().path();
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        logs.insert(path.file_name().unwrap().to_string_lossy().into(), lines);
    }
    Outcome {
        alerts: alerts
            .iter()
            .map(|a| serde_json::to_string(a).unwrap())
            .collect(),
        logs,
        summary: report.stats.summary(),
    }
}

fn assert_thread_count_does_not_matter(files: &[PathBuf], config: &Config) {
    let one = outcome(files, config, 1);
    assert!(
        one.logs.get("conn.log").is_some_and(|l| !l.is_empty()),
        "{files:?}: no flows at all"
    );
    for threads in [2, 3] {
        let many = outcome(files, config, threads);
        assert_eq!(
            one.alerts, many.alerts,
            "{files:?}: alerts with 1 and {threads} threads"
        );
        for (name, lines) in &one.logs {
            assert_eq!(
                Some(lines),
                many.logs.get(name),
                "{files:?}: {name} with 1 and {threads} threads"
            );
        }
        assert_eq!(one.logs.len(), many.logs.len());
        assert_eq!(
            one.summary, many.summary,
            "{files:?}: summary with 1 and {threads} threads"
        );
    }
}

#[test]
fn committed_captures_give_the_same_results_on_any_thread_count() {
    let behaviour = Config::load(&repo("captures/behaviour.toml")).unwrap();
    assert_thread_count_does_not_matter(&[repo("captures/behaviour.pcap")], &behaviour);
    let default = Config::default();
    for name in ["captures/office.pcap", "captures/office-sliced.pcap"] {
        assert_thread_count_does_not_matter(&[repo(name)], &default);
    }
    // Two files merged in timestamp order, read from two buffers at once.
    assert_thread_count_does_not_matter(
        &[
            repo("captures/office.pcap"),
            repo("captures/behaviour.pcap"),
        ],
        &behaviour,
    );
}

#[test]
fn flood_scenario_gives_the_same_results_on_any_thread_count() {
    let dir = TempDir::new("sharded", "flood");
    let pcap = dir.path("flood.pcap");
    let opts = GenerateOptions {
        scenario: Scenario::Flood,
        seed: 3,
        ..Default::default()
    };
    generate(&opts, &pcap, None).unwrap();
    let config = Config::load(&repo("captures/behaviour.toml")).unwrap();
    assert_thread_count_does_not_matter(&[pcap], &config);
}

#[test]
fn public_captures_give_the_same_results_on_any_thread_count() {
    let dir = repo("../shared/captures/public");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "pcap" || x == "pcapng" || x == "cap")
        })
        .collect();
    files.sort();
    assert!(files.len() > 10, "public captures missing");
    let config = Config::default();
    for file in &files {
        let one = outcome(std::slice::from_ref(file), &config, 1);
        let many = outcome(std::slice::from_ref(file), &config, 3);
        assert_eq!(one, many, "{}", file.display());
    }
}
