//! `[endpoint]`: Sysmon evidence read with `replay --endpoint-events`.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointConfig {
    /// Proxyware binary list; empty means the one built in (config/proxyware-binaries.txt).
    /// A relative path is read from the config file's folder.
    pub binaries_file: PathBuf,
    /// A proxyware agent ran (Event 1: file name, original file name or SHA-256 listed).
    pub binary_score: u8,
    /// Added when it ran from a folder users can write to (AppData, Temp, Downloads, /tmp, /home).
    pub user_writable_bonus: u8,
    /// A Run/RunOnce value starts a proxyware agent (Event 13).
    pub persistence_score: u8,
    /// Added when that command line carries credentials (--token, --email, -password, ...).
    pub credentials_bonus: u8,
    /// A proxyware agent's file was written (Event 11).
    pub file_drop_score: u8,
    /// One process connecting to this many distinct outside addresses on one port in a window
    /// (Event 3) is scanning-like fan-out (DET0028 AN0081 TrafficRateThreshold).
    pub fanout_min_destinations: usize,
    pub fanout_score: u8,
    /// Added to a network alert when its host has an endpoint hit within `correlation_seconds`
    /// of the alert's window.
    pub network_boost: u8,
    pub correlation_seconds: u64,
    /// Clock difference allowed between Sysmon's and the capture's timestamps when a network
    /// flow is matched to an Event 3 by its 5-tuple.
    pub match_tolerance_seconds: u64,
    /// Computers whose address Sysmon never shows (no Event 3): name (as in Computer, case
    /// ignored) -> address. Addresses learned from Event 3 come first.
    pub hosts: BTreeMap<String, IpAddr>,
    /// Bounds: network connections kept for matching, processes, and flows of the capture
    /// remembered for matching; beyond them, counted drops.
    pub max_connections: usize,
    pub max_processes: usize,
    pub max_flows: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            binaries_file: PathBuf::new(),
            binary_score: 80,
            user_writable_bonus: 10,
            persistence_score: 75,
            credentials_bonus: 10,
            file_drop_score: 65,
            fanout_min_destinations: 50,
            fanout_score: 70,
            network_boost: 20,
            correlation_seconds: 3600,
            match_tolerance_seconds: 120,
            hosts: BTreeMap::new(),
            max_connections: 1_000_000,
            max_processes: 200_000,
            max_flows: 1_000_000,
        }
    }
}
