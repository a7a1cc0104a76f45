//! SustainedEgress (AN0081, AN0084): a host's egress over both its own baseline and the
//! population's 90th percentile for consecutive windows, weighted by off-hours and upload ratio.
//!
//! CONTRACT STUB: finds nothing until this detector lands.
use super::windows::ClosedWindow;
use super::{Detector, Finding, FlowView};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SustainedConfig {
    pub enabled: bool,
}

impl Default for SustainedConfig {
    fn default() -> Self {
        SustainedConfig { enabled: true }
    }
}

pub struct SustainedDetector {
    _config: SustainedConfig,
}

impl SustainedDetector {
    pub fn new(config: SustainedConfig) -> SustainedDetector {
        SustainedDetector { _config: config }
    }
}

impl Detector for SustainedDetector {
    fn flow(&mut self, _view: &FlowView<'_>, _out: &mut Vec<Finding>) {}
    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {}
}
