//! Labelled scenario capture generator. HELPER-OWNED (placeholder until merged).
use std::path::Path;

pub enum Scenario {
    Office,
    Bench,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "office" => Ok(Scenario::Office),
            "bench" => Ok(Scenario::Bench),
            other => Err(format!("unknown scenario {other}")),
        }
    }
}

pub struct GenerateOptions {
    pub scenario: Scenario,
    pub seed: u64,
    pub packets: u64,
    pub snaplen: Option<u32>,
}

pub struct GenerateSummary {
    pub packets: u64,
    pub bytes: u64,
}

pub fn generate(_o: &GenerateOptions, _p: &Path, _t: Option<&Path>) -> std::io::Result<GenerateSummary> {
    Err(std::io::Error::other("generator not merged yet"))
}
