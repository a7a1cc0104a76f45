//! The replay progress bar: drawn on stderr from the pipeline's telemetry snapshots, only
//! when stderr is a terminal and only once the run has lasted [`SHOW_AFTER`], so short runs
//! and redirected output print nothing extra.
use crate::telemetry::{PUBLISH_EVERY, Snapshot, Telemetry};
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs shorter than this show no bar at all.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);
/// Packets per second are measured over at least this long (steadier than per snapshot).
const RATE_SPAN: Duration = Duration::from_secs(1);

/// A running progress bar; dropping it clears the bar.
pub struct Progress {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts watching `telemetry` when stderr is a terminal; `None` otherwise.
    pub fn start(telemetry: &Arc<Telemetry>) -> Option<Progress> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (bar, stop, telemetry) = (bar.clone(), stop.clone(), telemetry.clone());
            std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || watch(&bar, &stop, &telemetry))
                .ok()?
        };
        Some(Progress {
            bar,
            stop,
            thread: Some(thread),
        })
    }

    /// Runs `f` with the bar off the screen (for output to the same terminal).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
        self.bar.finish_and_clear();
    }
}

/// The bar's thread: redraws from the latest snapshot until stopped.
fn watch(bar: &ProgressBar, stop: &AtomicBool, telemetry: &Telemetry) {
    let started = Instant::now();
    let mut rate = Rate::default();
    let mut shown_total: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(PUBLISH_EVERY);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let snapshot = telemetry.snapshot();
        if snapshot.finished {
            break;
        }
        let pps = rate.update(Instant::now(), snapshot.stats.frames);
        if started.elapsed() < SHOW_AFTER {
            continue;
        }
        draw(
            bar,
            &snapshot,
            pps,
            &mut shown_total,
            ProgressDrawTarget::stderr,
        );
    }
}

/// Shows `snapshot` on the bar; the first call puts the bar on `target`.
fn draw(
    bar: &ProgressBar,
    snapshot: &Snapshot,
    pps: u64,
    shown_total: &mut Option<u64>,
    target: impl FnOnce() -> ProgressDrawTarget,
) {
    if *shown_total != Some(snapshot.bytes_total) {
        // A pipe has no size: bytes read and the rate, no bar or ETA.
        bar.set_style(style(snapshot.bytes_total > 0));
        bar.set_length(snapshot.bytes_total);
        if shown_total.is_none() {
            bar.set_draw_target(target());
            bar.enable_steady_tick(PUBLISH_EVERY);
        }
        *shown_total = Some(snapshot.bytes_total);
    }
    bar.set_position(snapshot.bytes_read);
    bar.set_message(message(snapshot, pps));
}

/// "1,234,567 pkt/s, 3 alerts"
fn message(snapshot: &Snapshot, pps: u64) -> String {
    let alerts: u64 = snapshot.alerts_by_branch.values().sum();
    format!(
        "{} pkt/s, {} alert{}",
        HumanCount(pps),
        HumanCount(alerts),
        if alerts == 1 { "" } else { "s" }
    )
}

/// No colours: the bar reads the same with NO_COLOR.
fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{spinner} {elapsed:>4} [{wide_bar}] {bytes}/{total_bytes}, {msg}, ETA {eta}"
    } else {
        "{spinner} {elapsed:>4} {bytes} read, {msg}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Frames per second between samples at least [`RATE_SPAN`] apart, sampled when drawn (not
/// when published): a replay waiting on a pipe publishes nothing and its rate falls to 0.
#[derive(Default)]
struct Rate {
    sample: Option<(Instant, u64)>,
    per_second: u64,
}

impl Rate {
    fn update(&mut self, at: Instant, frames: u64) -> u64 {
        match self.sample {
            None => self.sample = Some((at, frames)),
            Some((then, before)) => {
                let span = at.saturating_duration_since(then);
                if span >= RATE_SPAN {
                    self.per_second =
                        (frames.saturating_sub(before) as f64 / span.as_secs_f64()) as u64;
                    self.sample = Some((at, frames));
                }
            }
        }
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_frames_per_second_over_a_second_or_more() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut rate = Rate::default();
        assert_eq!(rate.update(at(0), 0), 0);
        assert_eq!(rate.update(at(500), 1_000), 0);
        assert_eq!(rate.update(at(2_000), 6_000), 3_000);
        assert_eq!(rate.update(at(2_200), 9_000), 3_000);
        // Nothing new for a while: the rate falls.
        assert_eq!(rate.update(at(4_000), 9_000), 1_500);
        assert_eq!(rate.update(at(5_000), 9_000), 0);
    }

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn drawn(snapshot: &Snapshot, pps: u64) -> String {
        let screen = Screen::default();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        let target = || ProgressDrawTarget::term_like(Box::new(screen.clone()));
        draw(&bar, snapshot, pps, &mut None, target);
        bar.tick();
        bar.abandon();
        screen.0.lock().unwrap().clone()
    }

    #[test]
    fn a_file_shows_bytes_of_total_and_an_eta_a_pipe_bytes_read() {
        let mut file = Snapshot {
            bytes_read: 3 << 20,
            bytes_total: 12 << 20,
            ..Snapshot::default()
        };
        file.alerts_by_branch.insert("FanOut", 2);
        let text = drawn(&file, 25_000);
        assert!(
            text.contains("3.00 MiB/12.00 MiB, 25,000 pkt/s, 2 alerts, ETA"),
            "{text}"
        );
        assert!(text.contains("[="), "{text}");
        let pipe = Snapshot {
            bytes_read: 5 << 20,
            ..Snapshot::default()
        };
        let text = drawn(&pipe, 0);
        assert!(text.contains("5.00 MiB read, 0 pkt/s, 0 alerts"), "{text}");
        assert!(!text.contains("ETA"), "{text}");
    }

    #[test]
    fn message_counts_alerts_of_every_branch() {
        let mut s = Snapshot::default();
        s.alerts_by_branch.insert("FanOut", 2);
        s.alerts_by_branch.insert("ProxywareDomain", 1_000);
        assert_eq!(message(&s, 1_234_567), "1,234,567 pkt/s, 1,002 alerts");
        s.alerts_by_branch.clear();
        s.alerts_by_branch.insert("FanOut", 1);
        assert_eq!(message(&s, 0), "0 pkt/s, 1 alert");
    }
}
