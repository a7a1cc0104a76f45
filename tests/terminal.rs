//! The binary on a terminal and off it: runs under a pseudo-terminal made by `script`
//! (util-linux, in Debian's essential bsdutils), piped, and with NO_COLOR.
mod common;
use common::TempDir;
use egresswatch::alert::text;
use egresswatch::generate::{GenerateOptions, Scenario, generate};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_egresswatch")
}

/// `shell` run by `sh` with its stdout and stderr on a pty of `cols` columns; what the pty
/// showed, line ends as written (the pty turns `\n` into `\r\n`, undone here).
fn on_terminal(cols: u16, shell: &str, no_color: Option<&str>) -> String {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("stty cols {cols} rows 50; {shell}"),
        "/dev/null",
    ])
    .stdin(Stdio::null())
    .env_remove("COLUMNS")
    .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let o = cmd.output().expect("script (util-linux) runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n")
}

fn piped(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("COLUMNS")
        .env_remove("NO_COLOR")
        .output()
        .expect("binary runs")
}

fn replay_table_on_terminal(cols: u16, no_color: Option<&str>) -> String {
    let shell = format!(
        "{} replay {} 2>/dev/null",
        bin(),
        repo("captures/office.pcap").display()
    );
    on_terminal(cols, &shell, no_color)
}

#[test]
fn the_table_is_coloured_on_a_terminal_only() {
    let office = repo("captures/office.pcap");
    // Piped, the table is asked for: plain text, 100 columns.
    let o = piped(&["replay", "--format", "table", office.to_str().unwrap()]);
    assert!(o.status.success());
    let plain = String::from_utf8(o.stdout).unwrap();
    assert!(plain.starts_with("TIME (UTC)"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "colour in a pipe:\n{plain}");
    assert!(plain.lines().all(|l| l.chars().count() <= 100), "{plain}");

    // On a 100-column terminal the table is the default, with colours that add no columns.
    let coloured = replay_table_on_terminal(100, None);
    assert!(
        coloured.contains("\u{1b}["),
        "no colour on a terminal:\n{coloured}"
    );
    assert_eq!(text::strip_ansi(&coloured), plain);
    // An empty NO_COLOR does not count (no-color.org).
    assert_eq!(replay_table_on_terminal(100, Some("")), coloured);

    // NO_COLOR: the same table without a single escape.
    let no_color = replay_table_on_terminal(100, Some("1"));
    assert_eq!(no_color, plain);

    // JSON never has colours, on a terminal either.
    let json = on_terminal(
        100,
        &format!(
            "{} replay --format json {} 2>/dev/null",
            bin(),
            office.display()
        ),
        None,
    );
    assert!(!json.contains('\u{1b}'));
    for line in json.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn the_table_fits_the_terminal_width() {
    for cols in [72u16, 100, 140] {
        let table = text::strip_ansi(&replay_table_on_terminal(cols, None));
        assert!(table.starts_with("TIME (UTC)"), "{table}");
        for line in table.lines() {
            assert!(
                line.chars().count() <= usize::from(cols),
                "{cols} columns: {line}"
            );
        }
    }
    // Wider terminals cut less of the reasons.
    let narrow = text::strip_ansi(&replay_table_on_terminal(72, None));
    let wide = text::strip_ansi(&replay_table_on_terminal(140, None));
    assert!(narrow.matches('…').count() > wide.matches('…').count());
}

/// The replay's input through a pipe in three parts with pauses between them: the run lasts
/// as long as the pauses whatever the machine's speed, and the reader (4 MiB chunks) has a
/// whole chunk to parse after each part.
fn slow_feed(pcap: &Path) -> String {
    let f = pcap.display();
    format!(
        "(head -c 5000000 {f}; sleep 1.5; head -c 10000000 {f} | tail -c +5000001; sleep 1.5; \
         tail -c +10000001 {f})"
    )
}

#[test]
fn replay_shows_progress_on_a_terminal_and_nothing_more_when_stderr_is_a_file() {
    let dir = TempDir::new("terminal", "progress");
    let pcap = dir.path("bench.pcap");
    let packets = 12_000;
    let opts = GenerateOptions {
        scenario: Scenario::Bench,
        packets,
        ..Default::default()
    };
    generate(&opts, &pcap, None).unwrap();
    assert!(std::fs::metadata(&pcap).unwrap().len() > 10_000_000);
    let replay = format!(
        "{} | {} replay /dev/stdin >/dev/null",
        slow_feed(&pcap),
        bin()
    );

    let screen = on_terminal(100, &replay, None);
    // The bar redraws in place: frames end with a carriage return.
    let frames: Vec<&str> = screen
        .split(['\r', '\n'])
        .filter(|f| f.contains(" pkt/s, "))
        .collect();
    assert!(!frames.is_empty(), "no progress shown:\n{screen}");
    for f in &frames {
        assert!(f.contains(" read, ") && f.contains(" alert"), "{f:?}");
    }
    assert!(
        frames.iter().any(|f| f.contains(" MiB read, ")),
        "{frames:?}"
    );
    assert!(
        frames.iter().any(|f| !f.contains(" 0 pkt/s")),
        "never a rate: {frames:?}"
    );
    // The bar is cleared, then the summary is printed as without it.
    let summary = screen.rsplit("\u{1b}[2K").next().unwrap();
    assert!(
        summary.starts_with(&format!("egresswatch: 1 file(s), {packets} frames")),
        "{summary:?}"
    );

    // stderr to a file: only the summary, no bar, no escape, no carriage return.
    let err = dir.path("stderr.txt");
    on_terminal(100, &format!("{replay} 2>{}", err.display()), None);
    let written = std::fs::read_to_string(&err).unwrap();
    assert!(
        !written.contains('\r') && !written.contains('\u{1b}'),
        "{written:?}"
    );
    // Memory differs from run to run; every other line is the same.
    let lines = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("memory"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(lines(&written), lines(summary));
}
