//! `ztwim-hub completions SHELL`: a completion script on stdout.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::output::Printer;

/// Print a shell completion script.
///
/// For example: ztwim-hub completions bash > /etc/bash_completion.d/ztwim-hub
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn exec(args: &CompletionsArgs, printer: &Printer) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "ztwim-hub", &mut script);
    printer.data(&String::from_utf8(script)?)?;
    Ok(())
}
