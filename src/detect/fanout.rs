//! FanOut (AN0081): many distinct outside destinations per port, or ports per destination, in a
//! window, mostly unanswered: scanning from inside.
//!
//! CONTRACT STUB: finds nothing until this detector lands.
use super::windows::ClosedWindow;
use super::{Detector, Finding, FlowView};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanOutConfig {
    pub enabled: bool,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        FanOutConfig { enabled: true }
    }
}

pub struct FanOutDetector {
    _config: FanOutConfig,
}

impl FanOutDetector {
    pub fn new(config: FanOutConfig) -> FanOutDetector {
        FanOutDetector { _config: config }
    }
}

impl Detector for FanOutDetector {
    fn flow(&mut self, _view: &FlowView<'_>, _out: &mut Vec<Finding>) {}
    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {}
}
