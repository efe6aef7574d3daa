//! ztwim-hub: an Argo CD hub whose identity comes from SPIFFE/SPIRE, and spokes that trust it, without
//! long-lived tokens. `docs/architecture.md` describes the layout.
//!
//! [`run`] is the one place where errors become messages and exit codes.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod cli;
pub mod error;
pub mod kind;
pub mod kube;
pub mod output;
pub mod preflight;
pub mod profile;
pub mod render;
pub mod state;
pub mod validate;
pub mod verify;
pub mod workflow;

use std::ffi::OsString;

use clap::Parser;

use crate::error::ExitCode;
use crate::output::Printer;

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn run<I, T>(args: I) -> std::process::ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => return std::process::ExitCode::from(cli::report_parse_error(err)),
    };
    let printer = Printer::new(
        cli.global.output,
        cli.global.quiet,
        cli.global.verbose,
        cli.global.no_color,
    );
    let code = match cli::execute(cli, &printer) {
        Ok(()) => ExitCode::Success,
        Err(err) => {
            printer.error(error::one_line(&err));
            error::exit_code_of(&err)
        }
    };
    std::process::ExitCode::from(code.code())
}
