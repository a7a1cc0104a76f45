//! Labelled scenario capture generator.
//!
//! Writes a classic pcap of synthetic but wire-correct traffic plus a JSON ground truth
//! describing every flow and the alerts each inside host should raise. Output is a pure
//! function of the options: the same seed gives the same bytes.
//!
//! * `office`: ten minutes of a small office with one proxyware host and one host using
//!   look-alike names; small enough to commit (`captures/`).
//! * `bench`: millions of packets across thousands of concurrent flows, streamed to disk,
//!   for throughput measurements. Never committed.
//! * `behaviour`: four hours with one host per behavioural detector and benign look-alikes;
//!   committed. Its truth names each host's role and expected `DetectionBranch`.
//! * `flood`: a UDP flood and a spoofed SYN flood among ordinary hosts; too many packets to
//!   commit, so tests generate it.
//! * `concurrent`: `flows` distinct live connections at once, streamed to disk, for flow
//!   table memory (bytes per flow, peak RSS). Never committed.
//! * `hidden-names`: ten minutes of hosts using DNS over HTTPS/TLS/QUIC, ECH, HTTPS-record
//!   hints, bare addresses and proxyware over QUIC only, each with what the sensor can and
//!   cannot name; committed.
//! * `quic-bench`: `bench` with its TLS sessions carried over QUIC v1 instead (every
//!   connection opens with an encrypted Initial), for the cost of reading QUIC. Never
//!   committed.
//! * `syn-flood`, `dns-flood`, `tiny-hello`, `fragment-flood`, `template-storm`: the office
//!   capture with an attack of `packets` frames laid over it (see `hostile`). Never committed.
//! * `site`: three hours of one of three sites of an organisation (`--seed` 1, 2 or 3 is the
//!   site), for fleet mode: what each site shows alone and what only the three together
//!   show (see `site`); committed as `captures/site-N.pcap`.
//! * `endpoint`: ten minutes of five hosts seen by Sysmon and on the wire on one clock (see
//!   `endpoint`). Besides the pcap and truth it writes the Sysmon events in every format the
//!   endpoint readers take — `sysmon-<host>.evtx` (one per Windows computer),
//!   `winlogbeat.ndjson`, `elastic-agent.ndjson`, `splunk.json` (Windows events) and
//!   `sysmon-linux.log` (Linux events) — into
//!   `--endpoint-dir DIR`, by default the directory `endpoint/` beside `--out`. Committed:
//!   `egresswatch generate --scenario endpoint --seed 1 --out captures/endpoint.pcap
//!   --truth captures/endpoint.truth.json` (files in `captures/endpoint/`).

mod behaviour;
mod bench;
mod blocks;
mod concurrent;
mod conv;
mod endpoint;
pub mod evtx;
mod frames;
mod hostile;
mod office;
pub(crate) mod proto;
pub(crate) mod rng;
mod site;
mod wire;

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use blocks::{FlowTruth, HostTruth};
pub use hostile::Attack;
use wire::PcapWriter;

/// Default `packets` target for the bench scenario.
pub const DEFAULT_BENCH_PACKETS: u64 = 2_500_000;
/// Default `flows` for the concurrent scenario.
pub const DEFAULT_CONCURRENT_FLOWS: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Office,
    Bench,
    QuicBench,
    Behaviour,
    Flood,
    Concurrent,
    HiddenNames,
    Hostile(Attack),
    Site,
    Endpoint,
}

impl Scenario {
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Office => "office",
            Scenario::Bench => "bench",
            Scenario::QuicBench => "quic-bench",
            Scenario::Behaviour => "behaviour",
            Scenario::Flood => "flood",
            Scenario::Concurrent => "concurrent",
            Scenario::HiddenNames => "hidden-names",
            Scenario::Hostile(Attack::SynFlood) => "syn-flood",
            Scenario::Hostile(Attack::DnsFlood) => "dns-flood",
            Scenario::Hostile(Attack::TinyHello) => "tiny-hello",
            Scenario::Hostile(Attack::FragmentFlood) => "fragment-flood",
            Scenario::Hostile(Attack::TemplateStorm) => "template-storm",
            Scenario::Site => "site",
            Scenario::Endpoint => "endpoint",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scenario {0:?} (expected office, bench, quic-bench, behaviour, flood, concurrent, \
     hidden-names, syn-flood, dns-flood, tiny-hello, fragment-flood, template-storm, site or \
     endpoint)"
)]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Scenario, UnknownScenario> {
        match s.trim().to_ascii_lowercase().as_str() {
            "office" => Ok(Scenario::Office),
            "bench" => Ok(Scenario::Bench),
            "quic-bench" => Ok(Scenario::QuicBench),
            "behaviour" | "behavior" => Ok(Scenario::Behaviour),
            "flood" => Ok(Scenario::Flood),
            "concurrent" => Ok(Scenario::Concurrent),
            "hidden-names" => Ok(Scenario::HiddenNames),
            "syn-flood" => Ok(Scenario::Hostile(Attack::SynFlood)),
            "dns-flood" => Ok(Scenario::Hostile(Attack::DnsFlood)),
            "tiny-hello" => Ok(Scenario::Hostile(Attack::TinyHello)),
            "fragment-flood" => Ok(Scenario::Hostile(Attack::FragmentFlood)),
            "template-storm" => Ok(Scenario::Hostile(Attack::TemplateStorm)),
            "site" => Ok(Scenario::Site),
            "endpoint" => Ok(Scenario::Endpoint),
            _ => Err(UnknownScenario(s.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    pub scenario: Scenario,
    pub seed: u64,
    /// Packet target for Bench (written exactly) and the hostile scenarios' attack frames
    /// (about); ignored by the other scenarios.
    pub packets: u64,
    /// Flows for Concurrent (all live at once); ignored by the other scenarios.
    pub flows: u64,
    /// Cut each captured frame to this many bytes, keeping the original length in the
    /// record header: a sliced capture whose volumes must still be measurable.
    pub snaplen: Option<u32>,
    /// Where the endpoint scenario writes its Sysmon files; None: `endpoint/` beside the
    /// pcap. Ignored by the other scenarios.
    pub endpoint_dir: Option<PathBuf>,
}

impl Default for GenerateOptions {
    fn default() -> GenerateOptions {
        GenerateOptions {
            scenario: Scenario::Office,
            seed: 1,
            packets: DEFAULT_BENCH_PACKETS,
            flows: DEFAULT_CONCURRENT_FLOWS,
            snaplen: None,
            endpoint_dir: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateSummary {
    /// Packets written.
    pub packets: u64,
    /// Size of the pcap file in bytes, headers included.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot write {}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("cannot encode ground truth: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid generate options: {0}")]
    InvalidOptions(String),
    #[error("generator bug: {0}")]
    Internal(String),
}

impl GenerateError {
    fn io(path: &Path, err: std::io::Error) -> GenerateError {
        GenerateError::Io {
            path: path.to_path_buf(),
            err,
        }
    }
}

/// The inside networks, as the sensor should be configured for these captures.
const HOME_NETS: [&str; 2] = ["10.20.0.0/16", "fd00:20::/64"];

/// What a scenario hands back for the ground truth file.
struct ScenarioTruth {
    hosts: Vec<(IpAddr, HostTruth)>,
    flows: Vec<FlowTruth>,
}

/// Hosts keyed by address text but kept in address order (a plain map would sort
/// "10.20.2.100" before "10.20.2.2").
struct HostMap<T>(Vec<(IpAddr, T)>);

impl<T: Serialize> Serialize for HostMap<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(ip, h)| (ip.to_string(), h)))
    }
}

#[derive(Serialize)]
struct Truth<'a> {
    scenario: &'static str,
    seed: u64,
    generator_command: String,
    packets: u64,
    home_nets: [&'static str; 2],
    hosts: HostMap<HostTruth>,
    flows: &'a [FlowTruth],
}

/// Ground truth of the behaviour scenarios: each host's role and expected alert branch.
#[derive(Serialize)]
struct RoleTruthDoc {
    scenario: &'static str,
    seed: u64,
    generator_command: String,
    packets: u64,
    home_nets: [&'static str; 2],
    /// The config to replay the capture with (home_nets, allowlists).
    config: &'static str,
    start: String,
    end: String,
    window_seconds: u64,
    business_hours: &'static str,
    hosts: HostMap<behaviour::RoleTruth>,
}

/// Ground truth of the hostile scenarios: the office hosts' expected alerts and what the
/// attack put in the capture.
#[derive(Serialize)]
struct HostileTruthDoc {
    scenario: &'static str,
    seed: u64,
    generator_command: String,
    packets: u64,
    home_nets: [&'static str; 2],
    attack: hostile::AttackTruth,
    hosts: HostMap<HostTruth>,
}

/// The committed config for the behaviour scenarios, relative to the crate root.
pub const BEHAVIOUR_CONFIG: &str = "captures/behaviour.toml";
/// The committed config for the three `site` captures, relative to the crate root.
pub const FLEET_CONFIG: &str = "captures/fleet.toml";

enum Output {
    Flows(ScenarioTruth),
    Roles(behaviour::RoleScenario),
    Hostile(ScenarioTruth, hostile::AttackTruth),
    Site(Box<site::SiteScenario>),
    Endpoint(Box<endpoint::EndpointScenario>, PathBuf),
}

/// The CLI invocation that reproduces these files (recorded in the truth file).
fn generator_command(opts: &GenerateOptions, pcap_out: &Path, truth_out: Option<&Path>) -> String {
    let mut cmd = format!(
        "egresswatch generate --scenario {} --seed {}",
        opts.scenario, opts.seed
    );
    if matches!(
        opts.scenario,
        Scenario::Bench | Scenario::QuicBench | Scenario::Hostile(_)
    ) {
        cmd.push_str(&format!(" --packets {}", opts.packets));
    }
    if opts.scenario == Scenario::Concurrent {
        cmd.push_str(&format!(" --flows {}", opts.flows));
    }
    cmd.push_str(&format!(" --out {}", pcap_out.display()));
    if let Some(t) = truth_out {
        cmd.push_str(&format!(" --truth {}", t.display()));
    }
    if let Some(s) = opts.snaplen {
        cmd.push_str(&format!(" --snaplen {s}"));
    }
    if let (Scenario::Endpoint, Some(dir)) = (opts.scenario, &opts.endpoint_dir) {
        cmd.push_str(&format!(" --endpoint-dir {}", dir.display()));
    }
    cmd
}

/// Where the endpoint scenario's Sysmon files go: `--endpoint-dir`, else `endpoint/` in the
/// pcap's directory.
pub fn endpoint_dir(opts: &GenerateOptions, pcap_out: &Path) -> PathBuf {
    match &opts.endpoint_dir {
        Some(dir) => dir.clone(),
        None => pcap_out.parent().unwrap_or(Path::new("")).join("endpoint"),
    }
}

/// The Sysmon events of the endpoint scenario for `seed`, in time order: the list every file
/// of the scenario is written from (the capture is built and discarded).
pub fn endpoint_events(seed: u64) -> Result<Vec<crate::endpoint::SysmonEvent>, GenerateError> {
    let mut w = PcapWriter::new(std::io::sink(), Path::new("(discarded capture)"), None)?;
    Ok(endpoint::run(seed, &mut w)?.events)
}

/// Generates the scenario into `pcap_out` and, when asked, its ground truth into
/// `truth_out` (pretty JSON).
pub fn generate(
    opts: &GenerateOptions,
    pcap_out: &Path,
    truth_out: Option<&Path>,
) -> Result<GenerateSummary, GenerateError> {
    if opts.snaplen == Some(0) {
        return Err(GenerateError::InvalidOptions(
            "snaplen must be at least 1".into(),
        ));
    }
    if matches!(
        opts.scenario,
        Scenario::Bench | Scenario::QuicBench | Scenario::Hostile(_)
    ) && opts.packets == 0
    {
        return Err(GenerateError::InvalidOptions(format!(
            "{} needs packets > 0",
            opts.scenario
        )));
    }
    if opts.scenario == Scenario::Concurrent && opts.flows == 0 {
        return Err(GenerateError::InvalidOptions(
            "concurrent needs flows > 0".into(),
        ));
    }
    if opts.scenario == Scenario::Site {
        site::check_seed(opts.seed)?;
    }
    let file = File::create(pcap_out).map_err(|e| GenerateError::io(pcap_out, e))?;
    let mut w = PcapWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        pcap_out,
        opts.snaplen,
    )?;
    let want_truth = truth_out.is_some();
    let truth = match opts.scenario {
        Scenario::Office => Output::Flows(office::run(opts.seed, &mut w)?),
        Scenario::HiddenNames => Output::Flows(office::run_hidden_names(opts.seed, &mut w)?),
        Scenario::Bench => Output::Flows(bench::run(
            opts.seed,
            opts.packets,
            want_truth,
            false,
            &mut w,
        )?),
        Scenario::QuicBench => Output::Flows(bench::run(
            opts.seed,
            opts.packets,
            want_truth,
            true,
            &mut w,
        )?),
        Scenario::Behaviour => Output::Roles(behaviour::run(opts.seed, &mut w)?),
        Scenario::Flood => Output::Roles(behaviour::run_flood(opts.seed, &mut w)?),
        Scenario::Concurrent => {
            Output::Flows(concurrent::run(opts.seed, opts.flows, want_truth, &mut w)?)
        }
        Scenario::Hostile(attack) => {
            let (office, attack) = hostile::run(attack, opts.seed, opts.packets, &mut w)?;
            Output::Hostile(office, attack)
        }
        Scenario::Site => Output::Site(Box::new(site::run(opts.seed, &mut w)?)),
        Scenario::Endpoint => {
            let dir = endpoint_dir(opts, pcap_out);
            let scenario = endpoint::run(opts.seed, &mut w)?;
            endpoint::write_files(&dir, &scenario.events)?;
            Output::Endpoint(Box::new(scenario), dir)
        }
    };
    let summary = GenerateSummary {
        packets: w.packets,
        bytes: w.bytes,
    };
    w.finish()?;

    if let Some(path) = truth_out {
        let file = File::create(path).map_err(|e| GenerateError::io(path, e))?;
        let mut out = BufWriter::new(file);
        let command = generator_command(opts, pcap_out, truth_out);
        match truth {
            Output::Flows(truth) => {
                let doc = Truth {
                    scenario: opts.scenario.as_str(),
                    seed: opts.seed,
                    generator_command: command,
                    packets: summary.packets,
                    home_nets: HOME_NETS,
                    hosts: HostMap(truth.hosts),
                    flows: &truth.flows,
                };
                serde_json::to_writer_pretty(&mut out, &doc)?;
            }
            Output::Roles(truth) => {
                let doc = RoleTruthDoc {
                    scenario: opts.scenario.as_str(),
                    seed: opts.seed,
                    generator_command: command,
                    packets: summary.packets,
                    home_nets: HOME_NETS,
                    config: BEHAVIOUR_CONFIG,
                    start: crate::alert::rfc3339(truth.start_us * 1000),
                    end: crate::alert::rfc3339(truth.end_us * 1000),
                    window_seconds: 900,
                    business_hours: "08:00-18:00 UTC, Monday to Friday",
                    hosts: HostMap(truth.hosts),
                };
                serde_json::to_writer_pretty(&mut out, &doc)?;
            }
            Output::Hostile(office, attack) => {
                let doc = HostileTruthDoc {
                    scenario: opts.scenario.as_str(),
                    seed: opts.seed,
                    generator_command: command,
                    packets: summary.packets,
                    home_nets: HOME_NETS,
                    attack,
                    hosts: HostMap(office.hosts),
                };
                serde_json::to_writer_pretty(&mut out, &doc)?;
            }
            Output::Site(site) => {
                serde_json::to_writer_pretty(&mut out, &site.into_doc(command, summary.packets))?;
            }
            Output::Endpoint(scenario, dir) => {
                let doc = scenario.into_doc(command, summary.packets, &dir);
                serde_json::to_writer_pretty(&mut out, &doc)?;
            }
        }
        out.write_all(b"\n")
            .and_then(|()| out.flush())
            .map_err(|e| GenerateError::io(path, e))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
