//! Command line: what was typed, validated; `run` builds the real objects and maps errors.
use crate::alert::{Alert, sink};
use crate::config::{Cidr, Config};
use crate::pipeline::{self, ReplayOptions};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "egresswatch",
    version,
    about = "Finds hosts whose bandwidth is hijacked (MITRE ATT&CK T1496.002)"
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
    Replay {
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
        /// Capture files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Validate a config file (and its proxyware list), print the effective config, and exit.
    CheckConfig {
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
    /// Write a labelled scenario capture (test data and benchmarks).
    #[command(hide = true)]
    Generate {
        #[arg(long, default_value = "office")]
        scenario: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Target packet count (bench scenario).
        #[arg(long, default_value_t = 2_500_000)]
        packets: u64,
        /// Cut every frame to this many captured bytes, keeping its wire length.
        #[arg(long)]
        snaplen: Option<u32>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        truth: Option<PathBuf>,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(anyhow::Error::from),
        None => Ok(Config::default()),
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Replay {
            config,
            home_nets,
            format,
            alerts,
            log_dir,
            state,
            files,
        } => {
            let mut config = load_config(config.as_ref())?;
            if !home_nets.is_empty() {
                config.home_nets = home_nets;
            }
            let stdout_is_terminal = io::stdout().is_terminal();
            let format = format.unwrap_or(if stdout_is_terminal {
                Format::Table
            } else {
                Format::Json
            });
            let mut alert_file = match &alerts {
                Some(path) => {
                    Some(BufWriter::new(File::create(path).with_context(|| {
                        format!("cannot create {}", path.display())
                    })?))
                }
                None => None,
            };
            let stdout = io::stdout();
            let mut out = stdout.lock();
            let mut table_rows: Vec<Alert> = Vec::new();
            let options = ReplayOptions {
                log_dir,
                state,
                collect: false,
            };
            let report = pipeline::replay(&config, &files, &options, &mut |batch| {
                for alert in batch {
                    if let Some(f) = alert_file.as_mut() {
                        sink::write_json_line(f, alert)?;
                    }
                    match format {
                        Format::Json => sink::write_json_line(&mut out, alert)?,
                        Format::Table => table_rows.push(alert.clone()),
                    }
                }
                out.flush()
            })?;
            if format == Format::Table {
                sink::write_table(&mut out, &table_rows)?;
            }
            out.flush()?;
            if let Some(mut f) = alert_file {
                f.flush()?;
            }
            eprint!("{}", report.stats.summary());
            Ok(())
        }
        Command::CheckConfig { config } => {
            let config = Config::load(&config)?;
            let (matcher, _) = pipeline::load_domains(&config)?;
            let text = toml::to_string_pretty(&config).context("cannot render config")?;
            // Business hours, allowlists and geo databases are checked by building the engine.
            let engine = crate::detect::engine::Engine::new(&config)?;
            println!("{text}");
            eprintln!(
                "config ok: {} home nets, {} proxyware services ({} domains); {}",
                config.home_nets.len(),
                matcher.service_count(),
                matcher.domain_count(),
                engine.geo().describe()
            );
            Ok(())
        }
        Command::Generate {
            scenario,
            seed,
            packets,
            snaplen,
            out,
            truth,
        } => {
            let scenario = scenario.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let options = crate::generate::GenerateOptions {
                scenario,
                seed,
                packets,
                snaplen,
            };
            let summary = crate::generate::generate(&options, &out, truth.as_deref())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote {}: {} packets, {} bytes",
                out.display(),
                summary.packets,
                summary.bytes
            );
            Ok(())
        }
    }
}
