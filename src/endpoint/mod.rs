//! Endpoint evidence: Sysmon events (Windows EVTX, Winlogbeat/Elastic JSON lines, Splunk's
//! XmlWinEventLog rendering, Sysmon for Linux syslog) read beside the network, detected on
//! alone, correlated with network alerts, and the seed Splunk search reproduced.
pub mod event;
pub mod read;

pub use event::{Platform, SysmonEvent};
