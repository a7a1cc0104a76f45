//! LongLivedSession (AN0080): a session to an outside address still open past duration
//! thresholds, with meaningful upload; raised while the session is open.
//!
//! CONTRACT STUB: finds nothing until this detector lands.
use super::windows::ClosedWindow;
use super::{Detector, Finding, FlowView};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LongLivedConfig {
    pub enabled: bool,
}

impl Default for LongLivedConfig {
    fn default() -> Self {
        LongLivedConfig { enabled: true }
    }
}

pub struct LongLivedDetector {
    _config: LongLivedConfig,
}

impl LongLivedDetector {
    pub fn new(config: LongLivedConfig) -> LongLivedDetector {
        LongLivedDetector { _config: config }
    }
}

impl Detector for LongLivedDetector {
    fn flow(&mut self, _view: &FlowView<'_>, _out: &mut Vec<Finding>) {}
    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {}
}
