//! FloodParticipation (T1496.002 botnets): outbound packet or bit rate to one outside target
//! over a threshold, spoofed sources included.
//!
//! CONTRACT STUB: finds nothing until this detector lands.
use super::windows::ClosedWindow;
use super::{Detector, Finding, FlowView};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FloodConfig {
    pub enabled: bool,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig { enabled: true }
    }
}

pub struct FloodDetector {
    _config: FloodConfig,
}

impl FloodDetector {
    pub fn new(config: FloodConfig) -> FloodDetector {
        FloodDetector { _config: config }
    }
}

impl Detector for FloodDetector {
    fn flow(&mut self, _view: &FlowView<'_>, _out: &mut Vec<Finding>) {}
    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {}
}
