//! Endpoint evidence: Sysmon events (Windows EVTX, Winlogbeat/Elastic JSON lines, Splunk's
//! XmlWinEventLog rendering, Sysmon for Linux syslog) read beside the network, detected on
//! alone, correlated with network alerts, and the seed Splunk search reproduced.
pub mod binaries;
pub mod config;
pub mod detect;
pub mod event;
pub mod evidence;
pub mod read;
pub mod seed;

pub use config::EndpointConfig;
pub use event::{Platform, SysmonEvent};

use crate::config::Config;
use binaries::{BUILTIN_BINARIES, BinaryMatcher};
use evidence::{EndpointCounters, EndpointEvidence};
use read::{ReadCounters, ReadError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{}: {reason}", path.display())]
    BinaryList { path: PathBuf, reason: String },
    #[error("{0}")]
    Domains(String),
}

/// What the endpoint files gave, for the run summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Each file with the format it was read as.
    pub files: Vec<(String, String)>,
    pub read: ReadCounters,
    /// Sysmon events read, by event id.
    pub by_event_id: std::collections::BTreeMap<u16, u64>,
    /// Lines, records or bytes that could not be read, naming file and place (bounded).
    pub problems: Vec<String>,
    pub counters: EndpointCounters,
}

impl EndpointStats {
    /// The summary's `endpoint:` lines.
    pub fn summary(&self) -> String {
        let r = &self.read;
        let c = &self.counters;
        let formats: Vec<String> = self
            .files
            .iter()
            .map(|(f, k)| format!("{f} ({k})"))
            .collect();
        let ids: Vec<String> = self
            .by_event_id
            .iter()
            .map(|(id, n)| format!("{id}:{n}"))
            .collect();
        let mut s = format!(
            "endpoint: {} Sysmon events from {} (event ids {}); {} not Sysmon, {} unreadable, {} unsupported lines\n",
            r.events,
            formats.join(", "),
            if ids.is_empty() {
                "-".to_string()
            } else {
                ids.join(" ")
            },
            r.not_sysmon,
            r.malformed,
            r.unsupported_lines,
        );
        s.push_str(&format!(
            "endpoint: {} hits, {} endpoint alerts ({} told inside a network alert); network alerts with their process: {}, raised by an endpoint hit: {}\n",
            c.hits, c.alerts, c.merged, c.network_with_process, c.network_boosted
        ));
        if c.connections_dropped
            + c.processes_dropped
            + c.flows_dropped
            + c.computers_without_address
            > 0
        {
            s.push_str(&format!(
                "endpoint: dropped {} connections, {} processes, {} flows past their bounds; {} computers without an address (their alerts show 0.0.0.0)\n",
                c.connections_dropped, c.processes_dropped, c.flows_dropped, c.computers_without_address
            ));
        }
        for p in &self.problems {
            s.push_str(&format!("endpoint: {p}\n"));
        }
        s
    }
}

pub struct Loaded {
    pub evidence: EndpointEvidence,
    pub stats: EndpointStats,
}

/// The proxyware binary list the config names (or the built-in one).
pub fn binary_list(config: &Config) -> Result<BinaryMatcher, EndpointError> {
    let path = &config.endpoint.binaries_file;
    if path.as_os_str().is_empty() {
        return BinaryMatcher::parse(BUILTIN_BINARIES).map_err(|e| EndpointError::BinaryList {
            path: "built-in proxyware-binaries.txt".into(),
            reason: e.to_string(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| EndpointError::BinaryList {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    BinaryMatcher::parse(&text).map_err(|e| EndpointError::BinaryList {
        path: path.clone(),
        reason: e.to_string(),
    })
}

/// Reads every event of `paths` with `each`, filling the stats' file list and counters.
pub fn read_all(
    paths: &[PathBuf],
    stats: &mut EndpointStats,
    each: &mut dyn FnMut(SysmonEvent),
) -> Result<(), EndpointError> {
    let mut problems = Vec::new();
    let by_id = &mut stats.by_event_id;
    let mut count = |ev: SysmonEvent| {
        *by_id.entry(ev.event_id).or_insert(0) += 1;
        each(ev);
    };
    for path in paths {
        let format = read::read_events(path, &mut stats.read, &mut problems, &mut count)?;
        stats.files.push((display(path), format!("{format:?}")));
    }
    stats.problems = problems.iter().map(|p| p.to_string()).collect();
    Ok(())
}

/// Reads the endpoint files and runs default-mode detection over them.
pub fn load(config: &Arc<Config>, paths: &[PathBuf]) -> Result<Loaded, EndpointError> {
    let binaries = binary_list(config)?;
    let (domains, allow) =
        crate::pipeline::load_domains(config).map_err(|e| EndpointError::Domains(e.to_string()))?;
    let mut evidence = EndpointEvidence::new(config.clone(), binaries, domains, allow);
    let mut stats = EndpointStats::default();
    read_all(paths, &mut stats, &mut |ev| evidence.add(&ev))?;
    evidence.seal();
    stats.counters = evidence.counters.clone();
    Ok(Loaded { evidence, stats })
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
