//! RelayBehaviour: proxyware with no known domain. A long-lived control connection plus many
//! short outbound flows whose downloads track the control connection's upload; and the inbound
//! variant, a planted proxy that accepts connections and relays them out.
//!
//! CONTRACT STUB: finds nothing until this detector lands.
use super::windows::ClosedWindow;
use super::{Detector, Finding, FlowView};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    pub enabled: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig { enabled: true }
    }
}

pub struct RelayDetector {
    _config: RelayConfig,
}

impl RelayDetector {
    pub fn new(config: RelayConfig) -> RelayDetector {
        RelayDetector { _config: config }
    }
}

impl Detector for RelayDetector {
    fn flow(&mut self, _view: &FlowView<'_>, _out: &mut Vec<Finding>) {}
    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {}
}
