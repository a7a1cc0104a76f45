//! A host's egress timeline as hand-built inline SVG: bytes out (bars) and in (line) per
//! window, the host's baseline and the population p90, alert windows and off-hours shaded.
use super::html::escape;
use super::{Point, RunWindow};
use crate::detect::human_bytes;
use std::fmt::Write;

pub const WIDTH: f64 = 960.0;
pub const HEIGHT: f64 = 240.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 28.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 28.0;
/// Horizontal grid lines (about; the step is rounded to 1, 2, 2.5 or 5 times a power of ten).
const Y_TICKS: f64 = 4.0;
/// Time labels at most.
const X_TICKS: u64 = 8;
const NS: u64 = 1_000_000_000;
/// Time tick steps, seconds: from a minute to four weeks.
const TIME_STEPS: [u64; 13] = [
    60, 300, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800, 2_419_200,
];

/// Everything one chart shows.
pub struct Timeline<'a> {
    /// The x axis: the run's first window start to its last window end.
    pub start_ns: u64,
    pub end_ns: u64,
    pub window_ns: u64,
    /// The host's windows (sorted by start); windows missing are windows it was silent in.
    pub points: &'a [Point],
    /// The run's windows, for the population p90.
    pub windows: &'a [RunWindow],
    /// The host's alert windows.
    pub alerts: &'a [(u64, u64)],
    pub off_hours: &'a [(u64, u64)],
    pub host: &'a str,
}

/// A linear value axis from 0: `max` is a multiple of `step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    pub max: f64,
    pub step: f64,
}

/// The axis for values up to `highest` (0, negative or not finite: a unit axis).
pub fn value_axis(highest: f64) -> Axis {
    let highest = if highest.is_finite() && highest > 0.0 {
        highest
    } else {
        1.0
    };
    let raw = highest / Y_TICKS;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    Axis {
        max: (highest / step).ceil() * step,
        step,
    }
}

/// The time step for a span of `span_s` seconds: the finest with at most `X_TICKS` ticks.
pub fn time_step(span_s: u64) -> u64 {
    TIME_STEPS
        .iter()
        .copied()
        .find(|s| span_s / s <= X_TICKS)
        .unwrap_or_else(|| span_s.div_ceil(X_TICKS).max(1))
}

/// Maps event time and bytes to the plot area.
struct Scale {
    start_ns: u64,
    end_ns: u64,
    axis: Axis,
}

impl Scale {
    fn x(&self, ns: u64) -> f64 {
        let span = self.end_ns.saturating_sub(self.start_ns).max(1) as f64;
        let at = ns
            .clamp(self.start_ns, self.end_ns)
            .saturating_sub(self.start_ns) as f64;
        LEFT + at / span * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        let v = if value.is_finite() {
            value.max(0.0)
        } else {
            0.0
        };
        let bottom = HEIGHT - BOTTOM;
        bottom - (v / self.axis.max).min(1.0) * (bottom - TOP)
    }
}

/// "16:30" within a day, else "03-04 16:30" (UTC).
fn time_label(ns: u64, span_s: u64) -> String {
    let text = crate::alert::rfc3339(ns);
    let from = if span_s <= 86_400 { 11 } else { 5 };
    text.get(from..16).unwrap_or(&text).replace('T', " ")
}

/// A step line through `(start, end, value)` segments; a gap between segments drops to
/// `gap` (Some(0) for traffic: the host was silent) or breaks the line (None).
fn step_path(scale: &Scale, segments: &[(u64, u64, f64)], gap: Option<f64>) -> String {
    let mut d = String::new();
    let mut last_end: Option<u64> = None;
    for &(start, end, value) in segments {
        let (x0, x1, y) = (scale.x(start), scale.x(end), scale.y(value));
        match (last_end, gap) {
            (Some(e), _) if e == start => {
                let _ = write!(d, "L{x0:.1},{y:.1}");
            }
            (Some(e), Some(g)) => {
                let yg = scale.y(g);
                let _ = write!(
                    d,
                    "L{:.1},{yg:.1}L{x0:.1},{yg:.1}L{x0:.1},{y:.1}",
                    scale.x(e)
                );
            }
            _ => {
                let _ = write!(d, "M{x0:.1},{y:.1}");
            }
        }
        let _ = write!(d, "L{x1:.1},{y:.1}");
        last_end = Some(end);
    }
    d
}

fn rects(out: &mut String, scale: &Scale, spans: &[(u64, u64)], class: &str) {
    for &(a, b) in spans {
        if b <= scale.start_ns || a >= scale.end_ns {
            continue;
        }
        let (x0, x1) = (scale.x(a), scale.x(b));
        let _ = write!(
            out,
            r#"<rect class="{class}" x="{x0:.1}" y="{TOP:.1}" width="{:.1}" height="{:.1}"/>"#,
            (x1 - x0).max(0.5),
            HEIGHT - BOTTOM - TOP
        );
    }
}

/// The chart as an `<svg>` element.
pub fn timeline(t: &Timeline<'_>) -> String {
    let window_ns = t.window_ns.max(1);
    let end_ns = t.end_ns.max(t.start_ns.saturating_add(window_ns));
    let in_range = |w: &&RunWindow| w.end_ns > t.start_ns && w.start_ns < end_ns;
    let highest = t
        .points
        .iter()
        .flat_map(|p| {
            [
                p.bytes_out as f64,
                p.bytes_in as f64,
                p.baseline().unwrap_or(0.0),
            ]
        })
        .chain(
            t.windows
                .iter()
                .filter(in_range)
                .filter_map(|w| w.population_p90_bytes_out.map(|v| v as f64)),
        )
        .fold(0.0, f64::max);
    let scale = Scale {
        start_ns: t.start_ns,
        end_ns,
        axis: value_axis(highest),
    };
    let host = escape(t.host);
    let mut s = String::with_capacity(2048 + t.points.len() * 160);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" data-host="{host}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="egress timeline of {host}"><title>Egress of {host} per window</title>"#
    );
    rects(&mut s, &scale, t.off_hours, "off");
    rects(&mut s, &scale, t.alerts, "alert");
    // Grid and value labels.
    let mut v = 0.0;
    while v <= scale.axis.max * 1.000_001 {
        let y = scale.y(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="ylabel" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            human_bytes(v as u64)
        );
        v += scale.axis.step;
    }
    // Time labels on whole steps (UTC).
    let span_s = (end_ns - t.start_ns) / NS;
    let step_ns = time_step(span_s).saturating_mul(NS);
    let mut tick = t.start_ns.div_ceil(step_ns).saturating_mul(step_ns);
    while tick <= end_ns {
        let x = scale.x(tick);
        let _ = write!(
            s,
            r#"<line class="tick" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}"/><text class="xlabel" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 4.0,
            HEIGHT - 10.0,
            time_label(tick, span_s)
        );
        tick = tick.saturating_add(step_ns);
        if step_ns == 0 || tick == u64::MAX {
            break;
        }
    }
    // Bytes out as bars, with the window's figures on hover.
    for p in t.points {
        let end = p.start_ns.saturating_add(window_ns);
        let (x0, x1) = (scale.x(p.start_ns), scale.x(end));
        let y = scale.y(p.bytes_out as f64);
        let baseline = p
            .baseline()
            .map_or_else(|| "none yet".to_string(), |b| human_bytes(b as u64));
        let _ = write!(
            s,
            r#"<rect class="out" x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"><title>{} UTC: out {}, in {}, baseline {baseline}</title></rect>"#,
            (x1 - x0 - 1.0).max(0.5),
            (HEIGHT - BOTTOM - y).max(0.0),
            time_label(p.start_ns, u64::MAX),
            human_bytes(p.bytes_out),
            human_bytes(p.bytes_in),
        );
    }
    let seg = |p: &Point, v: f64| (p.start_ns, p.start_ns.saturating_add(window_ns), v);
    let bytes_in: Vec<_> = t.points.iter().map(|p| seg(p, p.bytes_in as f64)).collect();
    let baseline: Vec<_> = t
        .points
        .iter()
        .filter_map(|p| Some(seg(p, p.baseline()?)))
        .collect();
    let p90: Vec<_> = t
        .windows
        .iter()
        .filter(in_range)
        .filter_map(|w| Some((w.start_ns, w.end_ns, w.population_p90_bytes_out? as f64)))
        .collect();
    for (class, segments, gap) in [
        ("in", &bytes_in, Some(0.0)),
        ("baseline", &baseline, None),
        ("p90", &p90, None),
    ] {
        if !segments.is_empty() {
            let _ = write!(
                s,
                r#"<path class="{class}" d="{}"/>"#,
                step_path(&scale, segments, gap)
            );
        }
    }
    if t.points.is_empty() {
        let _ = write!(
            s,
            r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">no traffic recorded for this host</text>"#,
            (LEFT + WIDTH - RIGHT) / 2.0,
            (TOP + HEIGHT - BOTTOM) / 2.0
        );
    }
    let _ = write!(
        s,
        r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{:.1}"/><line class="axis" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/></svg>"#,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 900 * NS;
    /// 2024-03-04 16:30 UTC, the behaviour scenario's start.
    const T0: u64 = 1_709_569_800 * NS;

    fn point(i: u64, out: u64, inb: u64, baseline: Option<f64>) -> Point {
        Point {
            start_ns: T0 + i * W,
            bytes_out: out,
            bytes_in: inb,
            baseline_bytes_out: baseline.map_or(f32::NAN, |b| b as f32),
        }
    }

    fn chart(points: &[Point], windows: &[RunWindow], end_windows: u64) -> String {
        timeline(&Timeline {
            start_ns: T0,
            end_ns: T0 + end_windows * W,
            window_ns: W,
            points,
            windows,
            alerts: &[(T0 + W, T0 + 2 * W)],
            off_hours: &[(T0 + 3 * W / 2, T0 + end_windows * W)],
            host: "10.20.1.66",
        })
    }

    /// Every number in attributes of the chart, which must all be finite and inside the view.
    fn coordinates(svg: &str) -> Vec<f64> {
        let mut out = Vec::new();
        for attr in [
            " x=\"",
            " y=\"",
            " x1=\"",
            " x2=\"",
            " y1=\"",
            " y2=\"",
            " width=\"",
            " height=\"",
        ] {
            for part in svg.split(attr).skip(1) {
                let v = part.split('"').next().unwrap();
                out.push(v.parse::<f64>().unwrap_or_else(|_| panic!("{attr}{v}")));
            }
        }
        for part in svg.split(" d=\"").skip(1) {
            let d = part.split('"').next().unwrap();
            for n in d.split(['M', 'L', ',']).filter(|n| !n.is_empty()) {
                out.push(n.parse::<f64>().unwrap_or_else(|_| panic!("path {d}")));
            }
        }
        out
    }

    fn assert_inside(svg: &str) {
        let c = coordinates(svg);
        assert!(!c.is_empty());
        for v in c {
            assert!(v.is_finite() && (0.0..=WIDTH).contains(&v), "{v} in {svg}");
        }
    }

    /// The bar heights of bytes out, in pixels.
    fn bar_heights(svg: &str) -> Vec<f64> {
        svg.split(r#"<rect class="out""#)
            .skip(1)
            .map(|r| {
                let h = r.split("height=\"").nth(1).unwrap();
                h.split('"').next().unwrap().parse().unwrap()
            })
            .collect()
    }

    #[test]
    fn value_axis_rounds_to_nice_steps_above_the_highest_value() {
        for (highest, max, step) in [
            (0.0, 1.0, 0.25),
            (-5.0, 1.0, 0.25),
            (f64::NAN, 1.0, 0.25),
            (7.0, 8.0, 2.0),
            (1234.0, 1500.0, 500.0),
            (50e6, 60e6, 20e6),
            (99e6, 100e6, 25e6),
        ] {
            let a = value_axis(highest);
            assert!((a.max - max).abs() < 1e-6 * max, "{highest}: {a:?}");
            assert!((a.step - step).abs() < 1e-6 * step, "{highest}: {a:?}");
        }
        // Any value: the axis covers it with at most 4 steps (5 with rounding up), a whole number of them.
        for highest in [3.0, 999.0, 1e9, 4.1e12, u64::MAX as f64] {
            let a = value_axis(highest);
            let steps = a.max / a.step;
            assert!(a.max >= highest && (steps - steps.round()).abs() < 1e-9 && steps <= 5.0);
        }
    }

    #[test]
    fn time_steps_keep_at_most_eight_labels() {
        assert_eq!(time_step(4 * 3600), 1800);
        assert_eq!(time_step(900), 300);
        assert_eq!(time_step(7 * 86_400), 86_400);
        // Beyond the table: evenly divided.
        assert_eq!(time_step(400 * 86_400), 400 * 86_400 / 8);
    }

    #[test]
    fn bars_scale_with_the_axis() {
        // 50 MB and 100 MB on a 0-100 MB axis: the first bar is half the second.
        let pts = [
            point(0, 50_000_000, 1, None),
            point(1, 100_000_000, 1, None),
        ];
        let svg = chart(&pts, &[], 4);
        let h = bar_heights(&svg);
        assert_eq!(h.len(), 2);
        assert!((h[1] - (HEIGHT - BOTTOM - TOP)).abs() < 0.11, "{h:?}");
        assert!((h[0] * 2.0 - h[1]).abs() < 0.2, "{h:?}");
        assert!(svg.contains(">100.0 MB</text>"));
        assert_inside(&svg);
    }

    #[test]
    fn empty_series_draws_axes_and_says_so() {
        let svg = chart(&[], &[], 4);
        assert!(svg.contains("no traffic recorded"));
        assert!(bar_heights(&svg).is_empty());
        assert!(!svg.contains("<path"));
        assert_inside(&svg);
        // No windows at all: a one-window axis, still valid.
        let svg = timeline(&Timeline {
            start_ns: 0,
            end_ns: 0,
            window_ns: 0,
            points: &[],
            windows: &[],
            alerts: &[],
            off_hours: &[],
            host: "",
        });
        assert_inside(&svg);
    }

    #[test]
    fn one_window_fills_the_plot() {
        let pts = [point(0, 10, 20, Some(5.0))];
        let windows = [RunWindow {
            start_ns: T0,
            end_ns: T0 + W,
            population_p90_bytes_out: Some(15),
            active_hosts: 5,
        }];
        let svg = chart(&pts, &windows, 1);
        let bar = svg.split(r#"<rect class="out""#).nth(1).unwrap();
        assert!(bar.starts_with(&format!(r#" x="{LEFT:.1}""#)), "{bar}");
        let width: f64 = bar
            .split("width=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((width - (WIDTH - LEFT - RIGHT - 1.0)).abs() < 0.11);
        for class in ["in", "baseline", "p90"] {
            assert!(
                svg.contains(&format!(r#"<path class="{class}""#)),
                "{class}"
            );
        }
        assert_inside(&svg);
    }

    #[test]
    fn huge_values_stay_finite_and_in_the_view() {
        let pts = [
            point(0, u64::MAX, u64::MAX, Some(f64::MAX)),
            point(2, 0, u64::MAX / 2, Some(1e300)),
        ];
        let windows = [RunWindow {
            start_ns: T0,
            end_ns: T0 + W,
            population_p90_bytes_out: Some(u64::MAX),
            active_hosts: 5,
        }];
        let svg = chart(&pts, &windows, 3);
        assert_inside(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        // Far end of time too.
        let svg = timeline(&Timeline {
            start_ns: u64::MAX - W,
            end_ns: u64::MAX,
            window_ns: W,
            points: &[Point {
                start_ns: u64::MAX - W,
                ..pts[0]
            }],
            windows: &[],
            alerts: &[(u64::MAX - W, u64::MAX)],
            off_hours: &[],
            host: "h",
        });
        assert_inside(&svg);
    }

    #[test]
    fn a_silent_window_drops_the_ingress_line_to_zero() {
        let pts = [point(0, 1, 100, None), point(2, 1, 100, None)];
        let svg = chart(&pts, &[], 3);
        let d = svg.split(r#"<path class="in" d=""#).nth(1).unwrap();
        let bottom = format!("{:.1}", HEIGHT - BOTTOM);
        assert!(d.contains(&bottom), "{d}");
    }

    #[test]
    fn the_host_label_is_escaped() {
        let svg = timeline(&Timeline {
            start_ns: T0,
            end_ns: T0 + W,
            window_ns: W,
            points: &[],
            windows: &[],
            alerts: &[],
            off_hours: &[],
            host: "<script>\"&'",
        });
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&quot;&amp;&#39;"));
    }
}
