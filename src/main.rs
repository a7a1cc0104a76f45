use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = egresswatch::cli::Cli::parse();
    match egresswatch::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`| head`) is the reader's choice, not our failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("egresswatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}
