//! Combines one host's findings in one window into one scored, explained alert, with RITA-style
//! modifiers (prevalence of the destination across hosts, first-seen), segment policies and
//! suppression of repeats.
use super::allowlist::{SegmentConfig, apply_segment_policy};
use super::{Branch, Finding};
use crate::alert::{Alert, TECHNIQUE, alert_id, rfc3339, severity};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::IpAddr;

const NS: u64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Combined scores below this raise no alert (counted in the summary).
    pub min_alert_score: u8,
    /// Added for each further branch that fired for the host in the same window.
    pub extra_branch_bonus: u8,
    /// A destination contacted by at least this share of the window's active hosts (and at
    /// least `prevalence_min_hosts` of them) is common here: the score drops by `prevalence_penalty`.
    pub prevalence_share: f64,
    pub prevalence_min_hosts: u64,
    pub prevalence_penalty: u8,
    /// Added when no inside host had contacted the strongest finding's destination before.
    pub first_seen_bonus: u8,
    /// Another alert for the same host and branch within this long is folded into a count,
    /// unless its score is at least `repeat_score_step` higher.
    pub repeat_suppress_seconds: u64,
    pub repeat_score_step: u8,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        ScoringConfig {
            min_alert_score: 40,
            extra_branch_bonus: 5,
            prevalence_share: 0.25,
            prevalence_min_hosts: 3,
            prevalence_penalty: 15,
            first_seen_bonus: 5,
            repeat_suppress_seconds: 3600,
            repeat_score_step: 10,
        }
    }
}

/// What the engine knows about destinations, for the modifiers.
pub trait DestinationFacts {
    /// Inside hosts that contacted `dest` in the window, and hosts active in the window.
    fn prevalence(&self, dest: IpAddr) -> (u64, u64);
    /// True when `dest` had not been contacted by any inside host before this window.
    fn first_seen(&self, dest: IpAddr) -> bool;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScoreCounters {
    pub findings: u64,
    pub below_min_score: u64,
    pub suppressed_repeats: u64,
    pub suppressed_by_segment: u64,
}

#[derive(Debug, Clone, Copy)]
struct LastAlert {
    window_start_ns: u64,
    score: u8,
    folded: u64,
}

pub struct Scorer {
    config: ScoringConfig,
    segments: Vec<SegmentConfig>,
    last: BTreeMap<(IpAddr, Branch), LastAlert>,
    pub counters: ScoreCounters,
}

impl Scorer {
    /// Reloaded weights and segment policies; repeat suppression keeps its memory.
    pub fn reconfigure(&mut self, config: ScoringConfig, segments: Vec<SegmentConfig>) {
        self.config = config;
        self.segments = segments;
    }

    pub fn new(config: ScoringConfig, segments: Vec<SegmentConfig>) -> Scorer {
        Scorer {
            config,
            segments,
            last: BTreeMap::new(),
            counters: ScoreCounters::default(),
        }
    }

    /// Turns the window's findings into alerts, sorted by host then branch.
    pub fn close_window(
        &mut self,
        window_start_ns: u64,
        window_end_ns: u64,
        findings: Vec<Finding>,
        facts: &dyn DestinationFacts,
    ) -> Vec<Alert> {
        self.counters.findings += findings.len() as u64;
        let mut by_host: BTreeMap<IpAddr, Vec<Finding>> = BTreeMap::new();
        for f in findings {
            by_host.entry(f.host).or_default().push(f);
        }
        let mut alerts = Vec::new();
        for (host, mut list) in by_host {
            // Strongest first; ties broken by branch then time, so output is deterministic.
            list.sort_by(|a, b| {
                b.strength
                    .cmp(&a.strength)
                    .then(a.branch.cmp(&b.branch))
                    .then(a.ts_ns.cmp(&b.ts_ns))
            });
            if let Some(alert) = self.score_host(host, window_start_ns, window_end_ns, &list, facts)
            {
                alerts.push(alert);
            }
        }
        // Forget repeat state older than the suppression span, so it stays bounded.
        let horizon = window_start_ns.saturating_sub(self.config.repeat_suppress_seconds * NS);
        self.last.retain(|_, l| l.window_start_ns >= horizon);
        alerts
    }

    fn score_host(
        &mut self,
        host: IpAddr,
        window_start_ns: u64,
        window_end_ns: u64,
        list: &[Finding],
        facts: &dyn DestinationFacts,
    ) -> Option<Alert> {
        let top = list.first()?;
        let mut branches: Vec<Branch> = list.iter().map(|f| f.branch).collect();
        branches.sort_unstable();
        branches.dedup();
        let mut score = u32::from(top.strength)
            + u32::from(self.config.extra_branch_bonus) * (branches.len() as u32 - 1);
        let mut modifiers = Vec::new();
        if let Some((dest, _)) = top.destination {
            let (hosts, active) = facts.prevalence(dest);
            if hosts >= self.config.prevalence_min_hosts
                && active > 0
                && hosts as f64 / active as f64 >= self.config.prevalence_share
            {
                score = score.saturating_sub(u32::from(self.config.prevalence_penalty));
                modifiers.push(json!({"modifier": "prevalent_destination", "hosts": hosts, "active_hosts": active, "change": -i32::from(self.config.prevalence_penalty)}));
            } else if contact_began_ns(top).saturating_add(NS) >= window_start_ns
                && facts.first_seen(dest)
            {
                score += u32::from(self.config.first_seen_bonus);
                modifiers.push(json!({"modifier": "first_seen_destination", "change": self.config.first_seen_bonus}));
            }
        }
        let first_ts = list
            .iter()
            .map(|f| f.ts_ns)
            .min()
            .unwrap_or(window_start_ns);
        let clauses: Vec<&str> = list.iter().map(|f| f.summary.as_str()).collect();
        let findings: Vec<serde_json::Value> = list
            .iter()
            .map(|f| {
                json!({
                    "branch": f.branch.as_str(),
                    "analytic": f.branch.analytic(),
                    "strength": f.strength,
                    "time": rfc3339(f.ts_ns),
                    "summary": f.summary,
                    "destination": f.destination.map(|(ip, port)| format!("{ip}:{port}")),
                    "destination_name": f.destination_name,
                    "bytes_out": f.bytes_out,
                    "bytes_in": f.bytes_in,
                    "duration_s": f.duration_s,
                    "details": f.evidence,
                })
            })
            .collect();
        let score = score.min(100) as u8;
        let destination = top
            .destination
            .map_or_else(|| "-".to_string(), |(ip, port)| format!("{ip}:{port}"));
        let mut alert = Alert {
            id: alert_id(top.branch.as_str(), host, window_start_ns, &destination),
            time: rfc3339(first_ts),
            host,
            destination_ip: top.destination.map(|d| d.0),
            destination_hostname: top.destination_name.clone(),
            destination_port: top.destination.map(|d| d.1),
            detection_branch: top.branch.as_str(),
            technique: TECHNIQUE,
            analytic: top.branch.analytic(),
            score,
            severity: severity(score),
            bytes_out: top.bytes_out,
            bytes_in: top.bytes_in,
            duration_s: top.duration_s,
            country: top.country.clone(),
            asn: top.asn,
            window_start: rfc3339(window_start_ns),
            window_end: rfc3339(window_end_ns),
            count: list.len() as u64,
            reason: format!("{host} {}", clauses.join("; ")),
            evidence: json!({
                "findings": findings,
                "modifiers": modifiers,
            }),
            process: None,
        };
        // Only alerts that would have been emitted count as suppressed; a lowered score may
        // fall below the minimum.
        if alert.score < self.config.min_alert_score {
            self.counters.below_min_score += 1;
            return None;
        }
        if !apply_segment_policy(&self.segments, &mut alert) {
            self.counters.suppressed_by_segment += 1;
            return None;
        }
        if alert.score < self.config.min_alert_score {
            self.counters.below_min_score += 1;
            return None;
        }
        let key = (host, top.branch);
        let mut folded = 0;
        if let Some(last) = self.last.get_mut(&key) {
            let recent =
                window_start_ns < last.window_start_ns + self.config.repeat_suppress_seconds * NS;
            if recent && alert.score < last.score.saturating_add(self.config.repeat_score_step) {
                last.folded += 1;
                self.counters.suppressed_repeats += 1;
                return None;
            }
            folded = last.folded;
        }
        self.last.insert(
            key,
            LastAlert {
                window_start_ns,
                score: alert.score,
                folded: 0,
            },
        );
        if let Some(map) = alert.evidence.as_object_mut() {
            map.insert("repeats_folded_since_last_alert".into(), json!(folded));
        }
        Some(alert)
    }
}

/// When the finding's contact with its destination began: a session open since an earlier
/// window has made its destination known, however late its finding comes (flow export
/// reports a session only when a record arrives). Compared with a second's slack: findings
/// stamped at a window's last instant round their start to just before it.
fn contact_began_ns(finding: &Finding) -> u64 {
    finding
        .ts_ns
        .saturating_sub((finding.duration_s.max(0.0) * 1e9) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cidr, SegmentPolicy};

    struct Facts {
        prevalent: Option<IpAddr>,
        known: Vec<IpAddr>,
    }

    impl DestinationFacts for Facts {
        fn prevalence(&self, dest: IpAddr) -> (u64, u64) {
            if self.prevalent == Some(dest) {
                (8, 20)
            } else {
                (1, 20)
            }
        }
        fn first_seen(&self, dest: IpAddr) -> bool {
            !self.known.contains(&dest)
        }
    }

    const HOST: [u8; 4] = [10, 0, 0, 7];
    const DEST: [u8; 4] = [198, 51, 100, 7];
    const START: u64 = 1_700_000_100 * NS;

    fn finding(branch: Branch, strength: u8, summary: &str) -> Finding {
        Finding {
            branch,
            host: IpAddr::from(HOST),
            ts_ns: START + 60 * NS,
            strength,
            destination: Some((IpAddr::from(DEST), 443)),
            destination_name: None,
            bytes_out: 5_000_000_000,
            bytes_in: 100_000_000,
            duration_s: 32_400.0,
            country: None,
            asn: None,
            summary: summary.into(),
            evidence: json!({}),
        }
    }

    fn known() -> Facts {
        Facts {
            prevalent: None,
            known: vec![IpAddr::from(DEST)],
        }
    }

    fn close(scorer: &mut Scorer, start: u64, findings: Vec<Finding>, facts: &Facts) -> Vec<Alert> {
        scorer.close_window(start, start + 900 * NS, findings, facts)
    }

    #[test]
    fn strongest_branch_leads_and_others_add_a_bonus() {
        let mut scorer = Scorer::new(ScoringConfig::default(), Vec::new());
        let alerts = close(
            &mut scorer,
            START,
            vec![
                finding(Branch::LongLivedSession, 65, "kept a session open 9 h"),
                finding(Branch::SustainedEgress, 75, "sent 4.1 GB, 11x its baseline"),
                finding(
                    Branch::LongLivedSession,
                    50,
                    "kept another session open 4 h",
                ),
            ],
            &known(),
        );
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.detection_branch, "SustainedEgress");
        assert_eq!(a.analytic, "AN0081,AN0084");
        // 75 + 5 for the one further branch.
        assert_eq!(a.score, 80);
        assert_eq!(a.severity, "high");
        assert_eq!(a.count, 3);
        assert_eq!(
            a.reason,
            "10.0.0.7 sent 4.1 GB, 11x its baseline; kept a session open 9 h; kept another session open 4 h"
        );
        assert_eq!(a.evidence["findings"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn prevalent_destinations_lower_and_new_ones_raise_the_score() {
        let mut scorer = Scorer::new(ScoringConfig::default(), Vec::new());
        let prevalent = Facts {
            prevalent: Some(IpAddr::from(DEST)),
            known: vec![IpAddr::from(DEST)],
        };
        let a = close(
            &mut scorer,
            START,
            vec![finding(Branch::FanOut, 70, "scanned")],
            &prevalent,
        );
        assert_eq!(a[0].score, 55);
        let new = Facts {
            prevalent: None,
            known: Vec::new(),
        };
        let burst = Finding {
            ts_ns: START + 7260 * NS,
            duration_s: 50.0,
            ..finding(Branch::FanOut, 70, "scanned")
        };
        let b = close(&mut scorer, START + 7200 * NS, vec![burst], &new);
        assert_eq!(b[0].score, 75);
        assert_eq!(
            b[0].evidence["modifiers"][0]["modifier"],
            "first_seen_destination"
        );
        // A 9-hour session reported now has known its destination since it began.
        let session = Finding {
            ts_ns: START + 14_460 * NS,
            ..finding(Branch::LongLivedSession, 65, "kept a session open 9 h")
        };
        let c = close(&mut scorer, START + 14_400 * NS, vec![session], &new);
        assert_eq!(c[0].score, 65);
    }

    #[test]
    fn weak_findings_raise_nothing() {
        let mut scorer = Scorer::new(ScoringConfig::default(), Vec::new());
        let a = close(
            &mut scorer,
            START,
            vec![finding(Branch::LongLivedSession, 35, "call")],
            &known(),
        );
        assert!(a.is_empty());
        assert_eq!(scorer.counters.below_min_score, 1);
    }

    #[test]
    fn repeats_fold_until_the_span_passes_or_the_score_rises() {
        let mut scorer = Scorer::new(ScoringConfig::default(), Vec::new());
        let window = 900 * NS;
        let f = || vec![finding(Branch::SustainedEgress, 60, "sent")];
        assert_eq!(close(&mut scorer, START, f(), &known()).len(), 1);
        assert!(close(&mut scorer, START + window, f(), &known()).is_empty());
        assert!(close(&mut scorer, START + 2 * window, f(), &known()).is_empty());
        assert_eq!(scorer.counters.suppressed_repeats, 2);
        // A clearly stronger finding is news even inside the span.
        let stronger = vec![finding(Branch::SustainedEgress, 70, "sent more")];
        let a = close(&mut scorer, START + 3 * window, stronger, &known());
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].evidence["repeats_folded_since_last_alert"], 2);
        // An hour after the last alert the same finding alerts again.
        assert_eq!(
            close(&mut scorer, START + 7 * window, f(), &known()).len(),
            1
        );
    }

    #[test]
    fn segment_policies_suppress_or_lower() {
        let segment = |policy| SegmentConfig {
            name: "lab".into(),
            cidrs: vec!["10.0.0.0/24".parse::<Cidr>().unwrap()],
            policy,
            score_penalty: 30,
            branches: Vec::new(),
        };
        let mut suppress = Scorer::new(
            ScoringConfig::default(),
            vec![segment(SegmentPolicy::Suppress)],
        );
        assert!(
            close(
                &mut suppress,
                START,
                vec![finding(Branch::TorrentSeeding, 90, "seeded")],
                &known()
            )
            .is_empty()
        );
        assert_eq!(suppress.counters.suppressed_by_segment, 1);
        let mut lower = Scorer::new(
            ScoringConfig::default(),
            vec![segment(SegmentPolicy::Lower)],
        );
        let a = close(
            &mut lower,
            START,
            vec![finding(Branch::TorrentSeeding, 90, "seeded")],
            &known(),
        );
        assert_eq!(a[0].score, 60);
        assert_eq!(a[0].severity, "medium");
        let only_fanout = SegmentConfig {
            branches: vec!["FanOut".into()],
            ..segment(SegmentPolicy::Suppress)
        };
        let mut scoped = Scorer::new(ScoringConfig::default(), vec![only_fanout]);
        assert_eq!(
            close(
                &mut scoped,
                START,
                vec![finding(Branch::TorrentSeeding, 90, "seeded")],
                &known()
            )
            .len(),
            1
        );
    }
}
