//! egresswatch: a network sensor for bandwidth hijacking (MITRE ATT&CK T1496.002).
//!
//! Data flow: source -> decode -> flow table -> FlowUpdate -> enrich -> detect -> alert -> sinks.
#![forbid(unsafe_code)]

pub mod alert;
pub mod cli;
pub mod config;
pub mod decode;
pub mod detect;
pub mod docs;
pub mod endpoint;
pub mod enrich;
pub mod export;
pub mod fleet;
pub mod floor;
pub mod flow;
pub mod fuzz_seeds;
pub mod generate;
pub mod logs;
pub mod metrics;
pub mod pipeline;
pub mod privileges;
pub mod progress;
pub mod report;
pub mod shard;
pub mod source;
pub mod stats;
pub mod telemetry;
#[cfg(test)]
mod testing;
