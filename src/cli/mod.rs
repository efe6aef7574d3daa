//! The command line: global options and one file per command (args + exec: complete, validate, run).

pub mod add_spoke;
pub mod bootstrap;
pub mod completions;
pub mod kind_config;
pub mod live;
pub mod remove_spoke;
pub mod render;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::{OutputFormat, Printer};

const ABOUT: &str = "Argo CD on a hub cluster managing spoke clusters with SPIFFE identities instead of long-lived tokens.";

const LONG_ABOUT: &str = "\
Argo CD on a hub cluster managing spoke clusters with SPIFFE identities instead of long-lived tokens.

On OpenShift the identities come from the Zero Trust Workload Identity Manager (SPIRE); Argo CD's server and
application controller obtain short-lived JWT-SVIDs through the k8s-spiffe-workload-jwt-exec-auth plugin,
and each spoke's API server trusts the hub's SPIRE OIDC issuer.

Start offline: `ztwim-hub render bootstrap --help` shows every object the hub gets, without a cluster.";

#[derive(Debug, Parser)]
#[command(name = "ztwim-hub", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Kubeconfig file to use (default: $KUBECONFIG, which may list several files, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Output format: text for people; yaml or json for pipelines (progress is then silent).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Profile: a built-in name (openshift) or the path of a profile file.
    #[arg(long, global = true, value_name = "NAME|PATH")]
    pub profile: Option<String>,
    /// Directory whose templates replace the built-in ones with the same relative path.
    #[arg(long, global = true, value_name = "DIR")]
    pub templates_dir: Option<PathBuf>,
    /// More detail on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors on stderr (no progress, no warnings).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// No colours (also when NO_COLOR is set or stderr is not a terminal).
    #[arg(long, global = true)]
    pub no_color: bool,
}

// Parsed once per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    Render(render::RenderArgs),
    Bootstrap(bootstrap::BootstrapArgs),
    AddSpoke(add_spoke::AddSpokeArgs),
    RemoveSpoke(remove_spoke::RemoveSpokeArgs),
    KindConfig(kind_config::KindConfigArgs),
    Completions(completions::CompletionsArgs),
}

/// Runs the parsed command.
pub fn execute(cli: Cli, printer: &Printer) -> anyhow::Result<()> {
    match &cli.command {
        Command::Render(args) => render::exec(&cli.global, args, printer),
        Command::Bootstrap(args) => bootstrap::exec(&cli.global, args, printer),
        Command::AddSpoke(args) => add_spoke::exec(&cli.global, args, printer),
        Command::RemoveSpoke(args) => remove_spoke::exec(&cli.global, args, printer),
        Command::KindConfig(args) => kind_config::exec(args, printer),
        Command::Completions(args) => completions::exec(args, printer),
    }
}

/// Prints a clap error: help and version as clap renders them (exit 0), anything else as one line
/// (exit 2). Returns the exit code.
#[allow(clippy::print_stderr, clippy::print_stdout)]
pub fn report_parse_error(err: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = err.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            crate::error::ExitCode::Usage.code()
        }
        _ => {
            let rendered = err.render().to_string();
            let mut lines = rendered
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .peekable();
            let mut first = lines
                .next()
                .unwrap_or("error: invalid arguments")
                .to_string();
            // "the following required arguments were not provided:" is followed by their names.
            if first.ends_with(':') {
                let mut names = Vec::new();
                while let Some(next) = lines
                    .peek()
                    .filter(|l| l.starts_with('-') || l.starts_with('<'))
                {
                    names.push(next.to_string());
                    lines.next();
                }
                first = format!("{first} {}", names.join(", "));
            }
            let tip = lines
                .find(|l| l.starts_with("tip:"))
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            let help = lines
                .find(|l| l.starts_with("For more information"))
                .map(|_| " See --help.")
                .unwrap_or_default();
            eprintln!("{first}{tip}{help}");
            crate::error::ExitCode::Usage.code()
        }
    }
}
