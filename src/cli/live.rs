//! Options shared by the commands that change clusters (bootstrap, add-spoke): dry runs, step
//! selection, preflight overrides, timeouts and consent.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use crate::error;
use crate::kube::apply::DryRun;
use crate::output::OutputFormat;
use crate::output::Printer;
use crate::preflight::Ignore;
use crate::render::plan::Plan;
use crate::workflow::Selection;
use crate::workflow::{StepReport, StepResult};

#[derive(Debug, Args, Clone)]
pub struct LiveArgs {
    /// client: print the plan (reads only what must be discovered); server: send every apply with dryRun=All.
    #[arg(long, value_enum, value_name = "MODE")]
    pub dry_run: Option<DryRun>,
    /// Skip these steps (repeat or separate with commas).
    #[arg(long, value_name = "STEP", value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Run only these steps (repeat or separate with commas).
    #[arg(long, value_name = "STEP", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Turn these preflight errors into warnings (check names, or all).
    #[arg(long, value_name = "CHECK", value_delimiter = ',')]
    pub ignore_preflight_errors: Vec<String>,
    /// How long each wait may take (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long the exec plugin may take inside a pod before SPIRE counts as misconfigured.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub exec_timeout: Duration,
    /// Take over fields another field manager owns (server-side apply conflicts).
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 90s or 10m ({e})"))?;
    if d.is_zero() {
        return Err("the duration must be more than 0".into());
    }
    Ok(d)
}

impl LiveArgs {
    pub fn selection(&self) -> Selection {
        Selection {
            skip: self.skip.clone(),
            only: self.only.clone(),
        }
    }

    pub fn ignore(&self) -> Ignore {
        Ignore(self.ignore_preflight_errors.clone())
    }

    /// Refuses, before any cluster is contacted, a run that would need a confirmation nobody can give.
    pub fn check_consent_possible(&self, command: &str) -> anyhow::Result<()> {
        if self.yes || self.dry_run.is_some() {
            return Ok(());
        }
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Err(error::input(format!(
                "{command} changes clusters and asks for confirmation, but there is no terminal to ask on: re-run with --yes (or --dry-run=client to see the plan)"
            )));
        }
        Ok(())
    }

    /// Asks on the terminal (unless --yes or a dry run). `summary` is shown first.
    pub fn confirm(&self, printer: &Printer, summary: &str, question: &str) -> anyhow::Result<()> {
        if self.yes || self.dry_run.is_some() {
            return Ok(());
        }
        printer.info(summary);
        let yes = dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()
            .map_err(|e| error::input(format!("no confirmation ({e}); re-run with --yes")))?;
        if yes {
            Ok(())
        } else {
            Err(error::input("not confirmed: nothing was changed"))
        }
    }
}

/// `--dry-run=client`: the plan, as `render` prints it.
pub fn print_plan(printer: &Printer, plan: &Plan) -> anyhow::Result<()> {
    let text = match printer.format() {
        OutputFormat::Json => plan.to_json()?,
        _ => plan.to_yaml()?,
    };
    printer.data(&text)?;
    Ok(())
}

/// How a live command ends. With `-o json|yaml`: one document on stdout, `document` plus `result`,
/// `error` and `steps`, also on failure. As text: the step table and `summary` on stdout on success; on
/// failure the table on stderr (unless only preflight ran: the error says it all).
pub fn print_outcome(
    printer: &Printer,
    reports: &[StepReport],
    error: Option<&anyhow::Error>,
    document: serde_json::Value,
    summary: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match printer.format() {
        OutputFormat::Json | OutputFormat::Yaml => {
            let mut doc = document;
            if let Some(map) = doc.as_object_mut() {
                map.insert(
                    "result".into(),
                    (if error.is_some() { "failed" } else { "ok" }).into(),
                );
                map.insert("error".into(), error.map(error::one_line).into());
                map.insert("steps".into(), serde_json::to_value(reports)?);
            }
            let text = if printer.format() == OutputFormat::Json {
                serde_json::to_string_pretty(&doc)? + "\n"
            } else {
                crate::render::plan::to_yaml(&doc)?
            };
            printer.data(&text)?;
        }
        OutputFormat::Text => {
            let table = crate::workflow::table(reports);
            if error.is_none() {
                printer.data(&(table + &summary()))?;
            } else if reports
                .iter()
                .any(|r| r.step != "preflight" && r.result != StepResult::Skipped)
            {
                printer.info(table.trim_end());
            }
        }
    }
    Ok(())
}
