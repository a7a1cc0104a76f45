//! Shell completions and man pages, made from the clap definitions at run time, so they
//! always match the binary installed (`egresswatch completions bash`, `egresswatch man`).
use crate::cli::Cli;
use clap::CommandFactory;
use std::io::{self, Write};
use std::path::Path;

/// Sections clap does not know about, appended to egresswatch(1).
const MAIN_PAGE_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
.B 0
Success, also when the reader of the output closes the pipe.
.TP
.B 1
An error; the message names the file (a capture, the config, an alerts file).
.TP
.B 2
A usage error.
.SH ENVIRONMENT
.TP
.B NO_COLOR
When set and not empty, the alert table and \fBexplain\fR print no colours.
Colours are only ever printed to a terminal.
.TP
.B COLUMNS
Width of the alert table when standard output is not a terminal (default 100).
.SH FILES
.TP
.I config/egresswatch.toml
Every configuration key with its default and a comment; \fBegresswatch check\-config\fR
validates a file.
"#;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut visible(), "egresswatch", out);
}

/// The command without its hidden subcommands: clap_complete offers hidden ones too (unlike
/// clap_mangen) and `Command` cannot remove one, so the root is rebuilt around the visible
/// ones, with the root's own arguments.
fn visible() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("egresswatch")
        .version(env!("CARGO_PKG_VERSION"))
        .about(full.get_about().cloned().unwrap_or_default())
        .subcommand_required(true)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// egresswatch(1): clap's sections and ours.
pub fn main_page(out: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(built());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    out.write_all(MAIN_PAGE_EXTRA.as_bytes())?;
    man.render_version_section(out)
}

/// egresswatch.1 and one page per visible subcommand (egresswatch-replay.1, ...) in `dir`.
pub fn write_man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cmd = built();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        clap_mangen::Man::new(sub.clone()).generate_to(dir)?;
    }
    let mut page = io::BufWriter::new(std::fs::File::create(dir.join("egresswatch.1"))?);
    main_page(&mut page)?;
    page.flush()
}

/// The command tree with subcommand names resolved (`egresswatch-replay`), no `help`.
fn built() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}
