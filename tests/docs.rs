//! Shell completions and man pages generated from the clap definitions: the bash script
//! parses and completes, no hidden subcommand leaks, the man pages render with groff without
//! warnings and document every subcommand and option. Expected names come from the same clap
//! definitions (`Cli::command()`), not from a list kept here.
mod common;
use clap::CommandFactory;
use common::TempDir;
use egresswatch::cli::Cli;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn egresswatch(args: &[&str]) -> Vec<u8> {
    let o = Command::new(env!("CARGO_BIN_EXE_egresswatch"))
        .args(args)
        .output()
        .expect("binary runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

fn subcommands(hidden: bool) -> BTreeSet<String> {
    Cli::command()
        .get_subcommands()
        .filter(|s| s.is_hide_set() == hidden)
        .map(|s| s.get_name().to_string())
        .collect()
}

/// What bash completes for `line` (words split on spaces; the last one is completed).
fn bash_complete(script: &Path, line: &str) -> BTreeSet<String> {
    let mut words: Vec<&str> = line.split(' ').collect();
    if line.ends_with(' ') {
        words.pop();
        words.push("");
    }
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let shell = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; \
         COMP_POINT=${{#COMP_LINE}}; _egresswatch egresswatch '{}' '{}'; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let o = Command::new("bash").args(["-c", &shell]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_parses_and_completes_subcommands_and_options() {
    let dir = TempDir::new("docs", "bash");
    let script = dir.path("egresswatch.bash");
    std::fs::write(&script, egresswatch(&["completions", "bash"])).unwrap();
    let o = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let offered = bash_complete(&script, "egresswatch ");
    let visible = subcommands(false);
    assert!(!visible.is_empty());
    for name in &visible {
        assert!(offered.contains(name), "{name} not offered: {offered:?}");
    }
    for name in subcommands(true) {
        assert!(!offered.contains(&name), "hidden {name} offered");
    }
    // Every long option of every visible subcommand completes after its name.
    for sub in Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
    {
        let offered = bash_complete(&script, &format!("egresswatch {} --", sub.get_name()));
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(
                    offered.contains(&format!("--{long}")),
                    "{} --{long}: {offered:?}",
                    sub.get_name()
                );
            }
        }
    }
}

/// `name` as a whole word of `text` (not inside `command` or `--log-dir`).
fn has_word(text: &str, name: &str) -> bool {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices(name)
        .any(|(i, _)| !text[..i].ends_with(part) && !text[i + name.len()..].starts_with(part))
}

#[test]
fn other_shells_get_scripts_without_hidden_subcommands() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(egresswatch(&["completions", shell])).unwrap();
        for name in subcommands(false) {
            assert!(has_word(&script, &name), "{shell}: {name} missing");
        }
        // A hidden subcommand's name may be a word of the script itself (elvish has a
        // `completions` variable): its description is what would show.
        for sub in Cli::command().get_subcommands().filter(|s| s.is_hide_set()) {
            let about = sub.get_about().unwrap().to_string();
            let start: Vec<&str> = about.split_whitespace().take(4).collect();
            assert!(
                !script.contains(&start.join(" ")),
                "{shell}: hidden {} present",
                sub.get_name()
            );
        }
    }
}

/// groff's text rendering (ASCII, one long line per paragraph, no hyphenation), and its
/// warnings, which must be none.
fn render(page: &Path) -> String {
    let warnings = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .expect("groff runs (scripts/setup.sh --test installs groff-base)");
    assert!(warnings.status.success());
    assert!(
        warnings.stderr.is_empty(),
        "{}: {}",
        page.display(),
        String::from_utf8_lossy(&warnings.stderr)
    );
    let o = Command::new("groff")
        .args(["-man", "-Tascii", "-rLL=400n", "-rHY=0", "-P-cbou"])
        .arg(page)
        .output()
        .unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn man_pages_render_and_document_every_subcommand_and_option() {
    let dir = TempDir::new("docs", "man");
    let main = dir.path("stdout.1");
    std::fs::write(&main, egresswatch(&["man"])).unwrap();
    let text = render(&main);
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "SUBCOMMANDS",
        "EXIT STATUS",
        "ENVIRONMENT",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    assert!(text.contains("NO_COLOR"));
    for name in subcommands(false) {
        assert!(
            text.contains(&format!("egresswatch-{name}(1)")),
            "{name}:\n{text}"
        );
    }
    for name in subcommands(true) {
        assert!(
            !text.contains(&format!("egresswatch-{name}")),
            "hidden {name}"
        );
    }

    let pages = dir.path("pages");
    egresswatch(&["man", "--out-dir", pages.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(pages.join("egresswatch.1")).unwrap(),
        std::fs::read(&main).unwrap()
    );
    let mut files: BTreeSet<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.remove("egresswatch.1"));
    let expected: BTreeSet<String> = subcommands(false)
        .iter()
        .filter(|n| *n != "help")
        .map(|n| format!("egresswatch-{n}.1"))
        .collect();
    assert_eq!(files, expected);
    for sub in Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
    {
        let text = render(&pages.join(format!("egresswatch-{}.1", sub.get_name())));
        assert!(
            text.contains(&format!("egresswatch {}", sub.get_name())),
            "{text}"
        );
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                assert!(
                    text.contains(&format!("--{long}")),
                    "{}: --{long}",
                    sub.get_name()
                );
            }
        }
    }
}
