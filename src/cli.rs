//! Command line: what was typed, validated; `run` builds the real objects and maps errors.
use crate::alert::syslog::{self, SyslogFormat, SyslogSinks, SyslogTarget};
use crate::alert::{Alert, sink};
use crate::config::{Cidr, Config};
use crate::metrics::MetricsServer;
use crate::pipeline::{self, ReplayOptions};
use crate::source::collector::Collector;
use crate::telemetry::Telemetry;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Debug, Parser)]
#[command(
    name = "egresswatch",
    version,
    about = "Finds hosts whose bandwidth is hijacked (MITRE ATT&CK T1496.002)",
    long_about = "Finds hosts whose bandwidth is hijacked (MITRE ATT&CK T1496.002): proxyware \
                  agents that resell the connection, flood bots, torrent seeding and scanning \
                  from inside. Reads capture files (replay), live interfaces (live) and \
                  NetFlow/IPFIX/sFlow (collect); raises explained alerts (a table, JSON lines, \
                  syslog) and writes Zeek-style logs; explain shows what is behind an alert."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay pcap/pcapng files (merged in timestamp order) and report alerts.
    ///
    /// Captures may hold NetFlow/IPFIX/sFlow export datagrams, which are decoded as flows;
    /// AWS VPC Flow Logs files (plain or gzip) are read as flows too.
    Replay {
        #[command(flatten)]
        common: RunArgs,
        /// Capture files (pcap, pcapng) and VPC flow log files.
        #[arg(required_unless_present = "endpoint_events", value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Sysmon events to read beside the captures (repeatable): Windows EVTX, Winlogbeat or
        /// Elastic Agent JSON lines, Splunk's XmlWinEventLog export, Sysmon for Linux syslog
        /// (the format is recognised from the content; gzip is fine). Endpoint hits raise
        /// their own alerts, network alerts gain the process behind their flows.
        #[arg(long = "endpoint-events", value_name = "FILE")]
        endpoint_events: Vec<PathBuf>,
        /// Instead of detecting, run the seed Splunk search on the --endpoint-events and print
        /// its result rows, false positives and all (compatibility mode; see the README).
        #[arg(long, requires = "endpoint_events", conflicts_with_all = ["files", "report"])]
        seed_search: bool,
        /// Packet-path worker threads (decode, flows, reassembly); the reading and detecting
        /// thread comes on top. 1 (default) runs everything on one thread; 0 one per core.
        /// Results do not depend on it.
        #[arg(long, default_value_t = 1, value_name = "N")]
        threads: usize,
        /// Also write an HTML report to FILE: the run summary, the alerts, each alerted host's
        /// egress timeline and top destinations, the top talkers. One self-contained file
        /// that opens offline; bounds in the config's [report] section.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Collect NetFlow v5/v9, IPFIX and sFlow v5 on UDP and report alerts until SIGINT or
    /// SIGTERM, which flush every flow and window and exit.
    Collect {
        /// UDP address to listen on (repeatable), e.g. 0.0.0.0:2055, [::]:4739, 0.0.0.0:6343.
        /// Port 0 picks a free port; the bound addresses are printed on stderr.
        #[arg(long, required = true, value_name = "ADDR")]
        listen: Vec<std::net::SocketAddr>,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        common: RunArgs,
    },
    /// Capture live on network interfaces (a span port or tap) and report alerts until SIGINT
    /// or SIGTERM, which flush every flow and window and exit; a second SIGINT exits at once.
    /// SIGHUP reloads the config.
    Live {
        /// Interface to capture on (repeatable), e.g. eth1.
        #[arg(long = "interface", required = true, value_name = "NAME")]
        interfaces: Vec<String>,
        /// BPF filter (tcpdump syntax) applied in the kernel on every interface.
        #[arg(long, value_name = "FILTER")]
        bpf: Option<String>,
        /// Bytes captured per frame.
        #[arg(long, default_value_t = 65_535)]
        snaplen: u32,
        /// Kernel capture buffer per interface, MiB.
        #[arg(long = "buffer-mib", default_value_t = 64)]
        buffer_mib: u32,
        /// Do not put the interfaces in promiscuous mode.
        #[arg(long)]
        no_promisc: bool,
        /// Started as root: switch to this user once the interfaces are open, dropping every
        /// capability (overrides [live] user).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Packet-path worker threads (decode, flows, reassembly) besides the capture threads
        /// and the detecting thread; 1 (default) runs the packet path on the detecting thread;
        /// 0 one per core.
        #[arg(long, default_value_t = 1, value_name = "N")]
        threads: usize,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        common: RunArgs,
    },
    /// Fleet mode: read the sensors' window summaries and alerts from NATS JetStream, publish
    /// each window's fleet baseline and raise fleet alerts, until SIGINT or SIGTERM.
    ///
    /// State is kept in a JetStream key-value bucket ([aggregate] state_bucket): a restart
    /// resumes where the durable consumer stopped, and aggregators sharing a durable name
    /// share the messages and agree. Fleet alerts go to stdout and the fleet alerts stream.
    Aggregate {
        /// Config file (TOML); built-in defaults when absent. [fleet] and [aggregate] apply.
        #[arg(long)]
        config: Option<PathBuf>,
        /// NATS server URL(s), comma-separated; overrides [fleet] url.
        #[arg(long, value_name = "URL")]
        fleet: Option<String>,
        /// Durable consumer name; overrides [aggregate] durable.
        #[arg(long, value_name = "NAME")]
        durable: Option<String>,
        /// Also write fleet alerts as JSON lines to this file (appended).
        #[arg(long, value_name = "FILE")]
        alerts: Option<PathBuf>,
        /// Fleet alerts on stdout: a table, or JSON lines. Default: table on a terminal.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Exit once no message came for this many seconds (batch runs, tests).
        #[arg(long, value_name = "SECONDS")]
        idle_exit: Option<u64>,
    },
    /// Validate a config file (and its proxyware list), print the effective config, and exit.
    CheckConfig {
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
    /// Explain one alert: its evidence laid out, and the run's log lines behind it.
    ///
    /// Reads the alert from a JSON alerts file; given the run's --log-dir, shows the
    /// conn/dns/ssl/http/quic.log lines of the flows its evidence names and of the host in
    /// the alert's window, those to its destinations first.
    Explain {
        /// The alert's `id`, or a unique prefix of it (at least 4 characters).
        #[arg(value_name = "ALERT_ID")]
        id: String,
        /// JSON lines alerts file of the run (written by --alerts or --format json).
        #[arg(long, value_name = "FILE")]
        alerts: PathBuf,
        /// The run's --log-dir.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
        /// Log lines shown per log, for the destinations and for the rest (earliest first);
        /// 0 shows all.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
        /// One JSON document (the alert, its log lines) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script made from these definitions, e.g.
    /// `egresswatch completions bash > /usr/share/bash-completion/completions/egresswatch`.
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page egresswatch(1) (roff); with --out-dir, write it and one page per
    /// subcommand (egresswatch-replay(1), ...) into that directory.
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Write a labelled scenario capture (test data and benchmarks).
    #[command(hide = true)]
    Generate {
        #[arg(long, default_value = "office")]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Target packet count (bench scenario); attack frames (hostile scenarios).
        #[arg(long, default_value_t = 2_500_000)]
        packets: u64,
        /// Live flows at once (concurrent scenario).
        #[arg(long, default_value_t = crate::generate::DEFAULT_CONCURRENT_FLOWS)]
        flows: u64,
        /// Cut every frame to this many captured bytes, keeping its wire length.
        #[arg(long)]
        snaplen: Option<u32>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        truth: Option<PathBuf>,
        /// Endpoint scenario: directory for the Sysmon files (default: endpoint/ beside --out).
        #[arg(long, value_name = "DIR")]
        endpoint_dir: Option<PathBuf>,
    },
    /// Benchmark floor: read captures, slice headers, count 5-tuples; nothing else.
    #[command(hide = true)]
    Floor {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Seed corpora for the fuzz targets (`fuzz/run.sh`), cut from captures and configs.
    #[command(hide = true)]
    FuzzSeeds {
        #[arg(long)]
        out: PathBuf,
        /// Config files: seeds of the `config` target.
        #[arg(long = "config-file")]
        configs: Vec<PathBuf>,
        #[arg(required = true, value_name = "CAPTURE")]
        captures: Vec<PathBuf>,
    },
}

/// Options shared by `replay`, `collect` and `live`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Config file (TOML); built-in defaults when absent.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Inside network (repeatable); replaces the config's home_nets.
    #[arg(long = "home-net", value_name = "CIDR")]
    home_nets: Vec<Cidr>,
    /// Alert output on stdout: a table, or JSON lines. Default: table on a terminal, else JSON.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Also write alerts as JSON lines to this file.
    #[arg(long, value_name = "FILE")]
    alerts: Option<PathBuf>,
    /// Write Zeek-style conn.log, dns.log, ssl.log, http.log (JSON lines) here.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Baselines: loaded from FILE when it exists, saved to it at the end, so a daily
    /// replay continues yesterday's history.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Also send alerts to this syslog collector (repeatable): udp://HOST[:PORT],
    /// tcp://HOST[:PORT] (octet counting) or tls://HOST[:PORT]; added to the config's [[syslog]].
    #[arg(long = "syslog", value_name = "URL")]
    syslog: Vec<String>,
    /// Message format of the --syslog targets.
    #[arg(long, value_enum, default_value = "rfc5424")]
    syslog_format: SyslogFormat,
    /// Fleet mode: publish window summaries and alerts to this NATS JetStream server
    /// (nats://HOST:PORT, comma-separated for a cluster) and score against the fleet's p90;
    /// overrides [fleet] url.
    #[arg(long = "fleet", value_name = "URL")]
    fleet_url: Option<String>,
    /// This sensor's site in fleet mode (letters, digits, '-', '_'); overrides [fleet] site.
    #[arg(long, value_name = "NAME")]
    site: Option<String>,
    /// This sensor's name in fleet mode; overrides [fleet] sensor (default: the host name).
    #[arg(long, value_name = "NAME")]
    sensor: Option<String>,
}

/// The metrics endpoint of `live` and `collect`.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /health, e.g.
    /// 127.0.0.1:9464 (port 0 picks a free port, printed on stderr); overrides [metrics] listen.
    #[arg(long = "metrics", id = "metrics", value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
}

impl MetricsArgs {
    /// Starts the endpoint when one is asked for: the telemetry the pipeline publishes to,
    /// and the server (stopped when dropped).
    fn start(&self, config: &Config) -> Result<Option<(Arc<Telemetry>, MetricsServer)>> {
        let addr = match (self.listen, config.metrics.listen.trim()) {
            (Some(addr), _) => addr,
            (None, "") => return Ok(None),
            (None, text) => text
                .parse()
                .with_context(|| format!("[metrics] listen: {text:?} is not an address"))?,
        };
        let telemetry = Arc::new(Telemetry::new());
        let stall = std::time::Duration::from_secs(config.metrics.stall_seconds.max(1));
        let server = MetricsServer::start(addr, telemetry.clone(), stall)?;
        eprintln!(
            "egresswatch: metrics on http://{}/metrics",
            server.local_addr()
        );
        Ok(Some((telemetry, server)))
    }
}

/// At exit, syslog targets get this long to deliver what is queued (SIGTERM gives services
/// about 90 s before SIGKILL; alerts are few). What is left is spooled or counted as dropped.
const SYSLOG_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// Where alerts go: stdout as JSON lines or a table, and optionally a JSON lines file.
struct AlertOutput {
    format: Format,
    file: Option<BufWriter<File>>,
    table_rows: Vec<Alert>,
    /// A live collector prints each window's table as it closes; replay prints one at the end.
    table_per_batch: bool,
    syslog: SyslogSinks,
}

impl AlertOutput {
    fn new(args: &RunArgs, config: &Config, table_per_batch: bool) -> Result<AlertOutput> {
        let format = args.format.unwrap_or(if io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        });
        let file = match &args.alerts {
            Some(path) => {
                Some(BufWriter::new(File::create(path).with_context(|| {
                    format!("cannot create {}", path.display())
                })?))
            }
            None => None,
        };
        let mut targets = config.syslog.clone();
        for url in &args.syslog {
            targets.push(SyslogTarget::from_url(url, args.syslog_format)?);
        }
        Ok(AlertOutput {
            format,
            file,
            table_rows: Vec::new(),
            table_per_batch,
            syslog: SyslogSinks::start(&targets)?,
        })
    }

    fn batch(&mut self, batch: &[Alert]) -> io::Result<()> {
        self.syslog.send(batch);
        let stdout = io::stdout();
        let mut out = stdout.lock();
        for alert in batch {
            if let Some(f) = self.file.as_mut() {
                sink::write_json_line(f, alert)?;
            }
            match self.format {
                Format::Json => sink::write_json_line(&mut out, alert)?,
                Format::Table => self.table_rows.push(alert.clone()),
            }
        }
        if self.table_per_batch && !self.table_rows.is_empty() {
            sink::write_table(
                &mut out,
                &std::mem::take(&mut self.table_rows),
                crate::alert::text::Style::for_stdout(),
            )?;
        }
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
        }
        out.flush()
    }

    /// The endpoint's telemetry, now also reporting these sinks' queues.
    fn watched_by(
        &self,
        endpoint: Option<&(Arc<Telemetry>, MetricsServer)>,
    ) -> Option<Arc<Telemetry>> {
        let (telemetry, _) = endpoint?;
        telemetry.watch_sinks(self.syslog.watcher());
        Some(telemetry.clone())
    }

    /// Returns the syslog summary lines (empty without targets) for the end-of-run report.
    fn finish(mut self) -> io::Result<String> {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        if self.format == Format::Table && (!self.table_per_batch || !self.table_rows.is_empty()) {
            sink::write_table(
                &mut out,
                &self.table_rows,
                crate::alert::text::Style::for_stdout(),
            )?;
        }
        out.flush()?;
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        Ok(syslog::summary(&self.syslog.finish(SYSLOG_FLUSH)))
    }
}

impl RunArgs {
    fn config(&self) -> Result<Config> {
        let mut config = load_config(self.config.as_ref())?;
        if !self.home_nets.is_empty() {
            config.home_nets = self.home_nets.clone().into();
        }
        if let Some(url) = &self.fleet_url {
            config.fleet.url = url.clone();
        }
        if let Some(site) = &self.site {
            config.fleet.site = site.clone();
        }
        if let Some(sensor) = &self.sensor {
            config.fleet.sensor = sensor.clone();
        }
        config.fleet.validate().map_err(|e| anyhow::anyhow!(e))?;
        Ok(config)
    }

    fn options(&self) -> ReplayOptions {
        ReplayOptions {
            log_dir: self.log_dir.clone(),
            state: self.state.clone(),
            collect: false,
            threads: 1,
            report: false,
            telemetry: None,
            endpoint_events: Vec::new(),
        }
    }
}

/// `--threads`: 0 means one worker per core (one thread in all on a single core).
/// The end-of-run summary on stderr: counters, the peak memory, then the syslog targets'.
/// Returns it (the HTML report shows the same).
/// `replay --seed-search`: the seed search's rows, newest first, as Splunk's JSON export
/// writes them or as a table.
fn run_seed_search(paths: &[PathBuf], format: Option<Format>) -> Result<()> {
    use crate::endpoint::seed;
    let mut rows = Vec::new();
    let mut order = 0u64;
    let mut stats = crate::endpoint::EndpointStats::default();
    crate::endpoint::read_all(paths, &mut stats, &mut |ev| {
        rows.extend(seed::evaluate(&ev, order));
        order += 1;
    })?;
    seed::sort(&mut rows);
    let format = format.unwrap_or(if io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    });
    let mut out = io::stdout().lock();
    match format {
        Format::Json => {
            for row in &rows {
                writeln!(out, "{}", row.to_json())?;
            }
        }
        Format::Table => {
            let columns = ["_time", "host", "EventCode", "DetectionBranch", "User"];
            writeln!(out, "{}  Image / DestinationHostname", columns.join("  "))?;
            for row in &rows {
                let cells: Vec<&str> = columns.iter().map(|c| row.get(c).unwrap_or("-")).collect();
                let what = row
                    .get("DestinationHostname")
                    .filter(|_| row.get("EventCode") == Some("3"))
                    .or(row.get("Image"))
                    .unwrap_or("-");
                writeln!(out, "{}  {what}", cells.join("  "))?;
            }
        }
    }
    out.flush()?;
    let mut summary = stats.summary();
    // Detection did not run: only the reading lines apply.
    summary = summary
        .lines()
        .filter(|l| !l.contains(" hits, "))
        .map(|l| format!("{l}\n"))
        .collect();
    eprintln!(
        "{summary}seed search: {} rows from {} events",
        rows.len(),
        order
    );
    Ok(())
}

fn print_summary(stats: &crate::stats::Stats, syslog: &str) -> String {
    let text = format!(
        "{}{}{syslog}",
        stats.summary(),
        crate::stats::memory_lines(stats.held_at_input_end)
    );
    eprint!("{text}");
    text
}

fn worker_threads(requested: usize) -> usize {
    match requested {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// A flag SIGHUP sets: long-running commands re-read their config when they see it.
fn reload_on_sighup() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, flag.clone())
        .context("cannot install the SIGHUP handler")?;
    Ok(flag)
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        Some(p) => {
            let config = Config::load(p)?;
            warn_ignored_keys(p, &config);
            Ok(config)
        }
        None => Ok(Config::default()),
    }
}

fn warn_ignored_keys(path: &Path, config: &Config) {
    for key in config.ignored_keys() {
        eprintln!(
            "egresswatch: warning: {}: {key} is no longer used and is ignored",
            path.display()
        );
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Replay {
            common,
            files,
            endpoint_events,
            seed_search,
            threads,
            report: report_path,
        } => {
            if seed_search {
                return run_seed_search(&endpoint_events, common.format);
            }
            let config = common.config()?;
            let mut output = AlertOutput::new(&common, &config, false)?;
            // A progress bar only on a terminal: otherwise the run publishes nothing.
            let telemetry = io::stderr()
                .is_terminal()
                .then(|| Arc::new(Telemetry::new()));
            let progress = telemetry
                .as_ref()
                .and_then(crate::progress::Progress::start);
            // Created first, so a path that cannot be written fails before the replay.
            let report_file = match &report_path {
                Some(path) => Some(
                    File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                ),
                None => None,
            };
            let options = ReplayOptions {
                threads: worker_threads(threads),
                telemetry,
                report: report_file.is_some(),
                endpoint_events,
                ..common.options()
            };
            let report = pipeline::replay(&config, &files, &options, &mut |b| match &progress {
                Some(p) => p.suspend(|| output.batch(b)),
                None => output.batch(b),
            });
            drop(progress);
            let report = report?;
            let syslog = output.finish()?;
            let stats = &report.stats;
            let summary = print_summary(stats, &syslog);
            if let (Some(file), Some(path), Some(data)) =
                (report_file, &report_path, &report.report)
            {
                let inputs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                let html = crate::report::html::render(&crate::report::html::ReportInput {
                    inputs: &inputs,
                    summary: &summary,
                    stats,
                    alerts: &report.alerts,
                    data,
                    business_hours: &config.business_hours,
                });
                let mut w = BufWriter::new(file);
                w.write_all(html.as_bytes())
                    .and_then(|()| w.flush())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            // Problems with nothing read at all: every file was unusable (the summary above
            // names each with its offset).
            if stats.frames == 0
                && stats.export.vpc_lines == 0
                && !files.is_empty()
                && !stats.file_problems.is_empty()
            {
                anyhow::bail!("nothing could be read from {} file(s)", files.len());
            }
            Ok(())
        }
        Command::Collect {
            listen,
            metrics,
            common,
        } => {
            let config = common.config()?;
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, stop.clone())
                    .context("cannot install signal handlers")?;
            }
            // Before "listening" is printed: whoever reads it may signal at once.
            let reloader = pipeline::Reloader {
                requested: reload_on_sighup()?,
                load: &|| common.config(),
            };
            let endpoint = metrics.start(&config)?;
            let collector = Collector::start(&listen, config.export.queue_datagrams, stop.clone())?;
            for addr in collector.local_addrs() {
                eprintln!("egresswatch: listening on udp {addr}");
            }
            let mut output = AlertOutput::new(&common, &config, true)?;
            let report = pipeline::collect(
                &config,
                &collector,
                &ReplayOptions {
                    telemetry: output.watched_by(endpoint.as_ref()),
                    ..common.options()
                },
                Some(&reloader),
                &mut |b| output.batch(b),
            )?;
            collector.join();
            let syslog = output.finish()?;
            print_summary(&report.stats, &syslog);
            Ok(())
        }
        Command::Live {
            interfaces,
            bpf,
            snaplen,
            buffer_mib,
            no_promisc,
            user,
            threads,
            metrics,
            common,
        } => {
            let config = common.config()?;
            let stop = Arc::new(AtomicBool::new(false));
            // A second SIGINT or SIGTERM exits at once (128 + signal), skipping the flush.
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register_conditional_shutdown(
                    signal,
                    128 + signal,
                    stop.clone(),
                )
                .context("cannot install signal handlers")?;
                signal_hook::flag::register(signal, stop.clone())
                    .context("cannot install signal handlers")?;
            }
            let reload = reload_on_sighup()?;
            let options = crate::source::live::CaptureOptions {
                interfaces,
                bpf,
                snaplen,
                buffer_mib,
                promisc: !no_promisc,
            };
            let opened = crate::source::live::OpenCaptures::open(&options)?;
            // Bound before privileges are dropped, like the capture handles.
            let endpoint = metrics.start(&config)?;
            let user = user.or_else(|| Some(config.live.user.clone()).filter(|u| !u.is_empty()));
            let dropped = crate::privileges::drop_privileges(user.as_deref())?;
            eprintln!("egresswatch: {dropped}");
            for (name, linktype) in opened.interfaces() {
                eprintln!("egresswatch: capturing on {name} (linktype {linktype})");
            }
            // Alert and log files are created as the user the sensor now runs as.
            let mut output = AlertOutput::new(&common, &config, true)?;
            let reloader = pipeline::Reloader {
                requested: reload,
                load: &|| common.config(),
            };
            let result = pipeline::live(
                &config,
                opened,
                stop,
                &ReplayOptions {
                    threads: worker_threads(threads),
                    telemetry: output.watched_by(endpoint.as_ref()),
                    ..common.options()
                },
                Some(&reloader),
                &mut |b| output.batch(b),
            );
            let report = result?;
            let syslog = output.finish()?;
            print_summary(&report.stats, &syslog);
            Ok(())
        }
        Command::Aggregate {
            config,
            fleet,
            durable,
            alerts,
            format,
            idle_exit,
        } => {
            let config = load_config(config.as_ref())?;
            let url = fleet.unwrap_or_else(|| config.fleet.url.clone());
            if url.trim().is_empty() {
                anyhow::bail!("no NATS server: give --fleet URL or [fleet] url");
            }
            let format = format.unwrap_or(if io::stdout().is_terminal() {
                Format::Table
            } else {
                Format::Json
            });
            // Appended: a restarted aggregator adds to what the earlier run wrote.
            let mut file = match &alerts {
                Some(path) => Some(BufWriter::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("cannot open {}", path.display()))?,
                )),
                None => None,
            };
            let options = crate::fleet::aggregate::Options {
                url,
                durable: durable.unwrap_or_else(|| config.aggregate.durable.clone()),
                idle_exit: idle_exit.map(std::time::Duration::from_secs),
            };
            let style = crate::alert::text::Style::for_stdout();
            let mut rows = 0usize;
            let summary = crate::fleet::aggregate::run(
                &config.fleet,
                &config.aggregate,
                &options,
                &mut |alert| {
                    let stdout = io::stdout();
                    let mut out = stdout.lock();
                    if let Some(f) = file.as_mut() {
                        serde_json::to_writer(&mut *f, alert)?;
                        f.write_all(b"\n")?;
                        f.flush()?;
                    }
                    match format {
                        Format::Json => {
                            serde_json::to_writer(&mut out, alert)?;
                            out.write_all(b"\n")?;
                        }
                        Format::Table => crate::fleet::aggregate::write_table_rows(
                            &mut out,
                            std::slice::from_ref(alert),
                            style,
                            rows == 0,
                        )?,
                    }
                    rows += 1;
                    out.flush()
                },
            )?;
            if format == Format::Table && rows == 0 {
                println!("No fleet alerts.");
            }
            eprintln!("egresswatch: aggregate: {}", summary.line());
            Ok(())
        }
        Command::CheckConfig { config } => {
            let path = config;
            let config = Config::load(&path)?;
            warn_ignored_keys(&path, &config);
            let (matcher, _) = pipeline::load_domains(&config)?;
            let binaries = crate::endpoint::binary_list(&config)?;
            let text = toml::to_string_pretty(&config).context("cannot render config")?;
            // Business hours, allowlists and geo databases are checked by building the engine.
            let engine = crate::detect::engine::Engine::new(&config)?;
            println!("{text}");
            eprintln!(
                "config ok: {} home nets, {} proxyware services ({} domains, {} binary entries); {}",
                config.home_nets.len(),
                matcher.service_count(),
                matcher.domain_count(),
                binaries.entries(),
                engine.geo().describe()
            );
            Ok(())
        }
        Command::Generate {
            scenario,
            seed,
            packets,
            flows,
            snaplen,
            out,
            truth,
            endpoint_dir,
        } => {
            let scenario = scenario.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let options = crate::generate::GenerateOptions {
                scenario,
                seed,
                packets,
                flows,
                snaplen,
                endpoint_dir,
            };
            let summary = crate::generate::generate(&options, &out, truth.as_deref())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote {}: {} packets, {} bytes",
                out.display(),
                summary.packets,
                summary.bytes
            );
            if options.scenario == crate::generate::Scenario::Endpoint {
                let dir = crate::generate::endpoint_dir(&options, &out);
                eprintln!("wrote the Sysmon files into {}", dir.display());
            }
            Ok(())
        }
        Command::Explain {
            id,
            alerts,
            log_dir,
            limit,
            json,
        } => {
            let args = crate::alert::explain::ExplainArgs {
                id,
                alerts,
                log_dir,
                limit,
                json,
            };
            crate::alert::explain::run(
                &args,
                crate::alert::text::Style::for_stdout(),
                &mut io::stdout().lock(),
                &mut |warning| eprintln!("egresswatch: warning: {warning}"),
            )
        }
        Command::Completions { shell } => {
            crate::docs::completions(shell, &mut io::stdout().lock());
            Ok(())
        }
        Command::Man { out_dir } => match out_dir {
            Some(dir) => crate::docs::write_man_pages(&dir)
                .with_context(|| format!("cannot write man pages to {}", dir.display())),
            None => Ok(crate::docs::main_page(&mut io::stdout().lock())?),
        },
        Command::Floor { files } => {
            println!("{}", crate::floor::run(&files)?);
            Ok(())
        }
        Command::FuzzSeeds {
            out,
            configs,
            captures,
        } => {
            print!("{}", crate::fuzz_seeds::write(&out, &captures, &configs)?);
            Ok(())
        }
    }
}
