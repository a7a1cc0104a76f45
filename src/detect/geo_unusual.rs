//! GeoUnusual (AN0080): destination country or ASN outside `allowed_countries` or never seen
//! from this host before, with volume.
//!
//! CONTRACT STUB: finds nothing until this detector lands.
use super::windows::ClosedWindow;
use super::{Detector, Finding, FlowView};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeoUnusualConfig {
    pub enabled: bool,
}

impl Default for GeoUnusualConfig {
    fn default() -> Self {
        GeoUnusualConfig { enabled: true }
    }
}

pub struct GeoUnusualDetector {
    _config: GeoUnusualConfig,
}

impl GeoUnusualDetector {
    pub fn new(config: GeoUnusualConfig) -> GeoUnusualDetector {
        GeoUnusualDetector { _config: config }
    }
}

impl Detector for GeoUnusualDetector {
    fn flow(&mut self, _view: &FlowView<'_>, _out: &mut Vec<Finding>) {}
    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {}
}
