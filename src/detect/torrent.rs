//! TorrentSeeding (AN0081): BitTorrent peer wire, DHT or uTP with many peers and upload at
//! least download.
//!
//! CONTRACT STUB: finds nothing until this detector lands.
use super::windows::ClosedWindow;
use super::{Detector, Finding, FlowView};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TorrentConfig {
    pub enabled: bool,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig { enabled: true }
    }
}

pub struct TorrentDetector {
    _config: TorrentConfig,
}

impl TorrentDetector {
    pub fn new(config: TorrentConfig) -> TorrentDetector {
        TorrentDetector { _config: config }
    }
}

impl Detector for TorrentDetector {
    fn flow(&mut self, _view: &FlowView<'_>, _out: &mut Vec<Finding>) {}
    fn window(&mut self, _closed: &ClosedWindow, _out: &mut Vec<Finding>) {}
}
