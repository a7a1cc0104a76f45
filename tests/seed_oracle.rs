//! The seed-search oracle (tests/data/seed_search.py) against rows derived by hand from the SPL
//! for tests/data/seed_search_sample.json. The oracle is what egresswatch's Splunk-compatibility
//! mode is compared with, so it is itself pinned here on events chosen to exercise each clause.
mod common;

use common::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn run_oracle(input: &Path) -> Output {
    Command::new("python3")
        .arg(data("seed_search.py"))
        .arg(input)
        .output()
        .unwrap_or_else(|e| panic!("python3 runs the seed oracle: {e}"))
}

#[test]
fn oracle_returns_the_hand_derived_rows_for_the_sample() {
    let out = run_oracle(&data("seed_search_sample.json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "oracle failed: {stderr}");
    assert!(stderr.is_empty(), "unexpected stderr: {stderr}");
    let ours = String::from_utf8(out.stdout).expect("oracle writes UTF-8");
    let expected = std::fs::read_to_string(data("seed_search_sample.expected.ndjson")).unwrap();
    let ours: Vec<&str> = ours.lines().collect();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(
        expected.len(),
        6,
        "the expected file holds the six hand-derived rows"
    );
    for (i, (o, e)) in ours.iter().zip(&expected).enumerate() {
        assert_eq!(o, e, "row {}", i + 1);
    }
    assert_eq!(ours.len(), expected.len(), "row count");
}

#[test]
fn oracle_names_the_file_and_line_of_a_line_that_is_not_json() {
    let dir = TempDir::new("seed-oracle", "bad-json");
    let path = dir.path("export.json");
    let first = std::fs::read_to_string(data("seed_search_sample.json"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(&path, format!("{first}\n{{\"preview\":false,\"result\":\n")).unwrap();
    let out = run_oracle(&path);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: not JSON", path.display())),
        "stderr: {stderr}"
    );
    assert!(out.stdout.is_empty(), "no rows on error");
}
