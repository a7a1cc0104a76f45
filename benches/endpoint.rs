//! Endpoint evidence: Sysmon events read per input format, and default-mode detection over
//! them. Inputs are the generator's committed files (`captures/endpoint/`), repeated to a
//! few megabytes so a pass is not dominated by one-off setup: JSON lines and syslog by
//! concatenation, EVTX by writing the events of the four logs again, `REPEAT` times, into
//! one log with the project's EVTX writer. Everything is built before anything is timed.
//!
//! With `EGRESSWATCH_ENDPOINT_BENCH_OUT=DIR` the repeated inputs are also written there, so
//! `benches/bench-endpoint.sh` can time the release binary and EVTX peers on the same bytes.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use egresswatch::config::Config;
use egresswatch::endpoint::SysmonEvent;
use egresswatch::endpoint::evidence::EndpointEvidence;
use egresswatch::endpoint::read::{ReadCounters, read_bytes};
use egresswatch::generate::evtx::write_evtx;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const REPEAT: usize = 100;

fn endpoint_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/endpoint")
}

fn read_all_events(name: &Path, bytes: &[u8]) -> Vec<SysmonEvent> {
    let mut events = Vec::new();
    let mut counters = ReadCounters::default();
    let mut problems = Vec::new();
    read_bytes(name, bytes, &mut counters, &mut problems, &mut |e| {
        events.push(e)
    })
    .unwrap_or_else(|e| panic!("{}: {e}", name.display()));
    assert!(problems.is_empty(), "{}: {problems:?}", name.display());
    events
}

/// (input name, bytes) of every format, repeated.
fn inputs() -> Vec<(String, Vec<u8>)> {
    let dir = endpoint_dir();
    let mut out = Vec::new();
    for name in [
        "winlogbeat.ndjson",
        "elastic-agent.ndjson",
        "splunk.json",
        "sysmon-linux.log",
    ] {
        let bytes = std::fs::read(dir.join(name)).expect("committed endpoint file");
        out.push((name.to_string(), bytes.repeat(REPEAT)));
    }
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("captures/endpoint")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "evtx"))
        .collect();
    logs.sort();
    let mut windows = Vec::new();
    for log in &logs {
        let bytes = std::fs::read(log).expect("committed EVTX");
        windows.extend(read_all_events(log, &bytes));
    }
    let mut evtx = Vec::new();
    // One log of its own: the writer numbers the records 1, 2, ...
    let repeated: Vec<SysmonEvent> = (0..REPEAT)
        .flat_map(|_| windows.iter().cloned())
        .map(|e| SysmonEvent {
            record_id: None,
            ..e
        })
        .collect();
    write_evtx(&mut evtx, &repeated).expect("EVTX of the repeated events");
    out.push(("sysmon.evtx".to_string(), evtx));
    if let Some(dir) = std::env::var_os("EGRESSWATCH_ENDPOINT_BENCH_OUT") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("bench output directory");
        for (name, bytes) in &out {
            std::fs::write(dir.join(name), bytes).expect("write a bench input");
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let inputs = inputs();
    let mut group = c.benchmark_group("endpoint_read");
    group.sample_size(10);
    let mut all_events = Vec::new();
    for (name, bytes) in &inputs {
        let path = PathBuf::from(name);
        let events = read_all_events(&path, bytes);
        println!(
            "{name}: {} events, {} bytes ({} bytes/event)",
            events.len(),
            bytes.len(),
            bytes.len() / events.len().max(1)
        );
        group.throughput(Throughput::Elements(events.len() as u64));
        group.bench_function(name.as_str(), |b| {
            b.iter(|| {
                let mut kept = 0usize;
                let mut counters = ReadCounters::default();
                let mut problems = Vec::new();
                let _ = read_bytes(&path, bytes, &mut counters, &mut problems, &mut |e| {
                    kept += e.data.len();
                });
                black_box(kept)
            })
        });
        all_events.extend(events);
    }
    group.finish();

    let config = Arc::new(Config::default());
    let binaries = egresswatch::endpoint::binary_list(&config).expect("built-in binary list");
    let (domains, allow) =
        egresswatch::pipeline::load_domains(&config).expect("built-in domain list");
    let mut group = c.benchmark_group("endpoint_detect");
    group.sample_size(10);
    group.throughput(Throughput::Elements(all_events.len() as u64));
    group.bench_function("every_format_default_mode", |b| {
        b.iter(|| {
            let mut evidence = EndpointEvidence::new(
                config.clone(),
                binaries.clone(),
                domains.clone(),
                allow.clone(),
            );
            for e in &all_events {
                evidence.add(e);
            }
            evidence.seal();
            black_box(evidence.counters.clone())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
