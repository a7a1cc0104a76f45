//! Detectors: they see names and flow updates, never where they came from.
pub mod proxyware;
