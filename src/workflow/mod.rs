//! Workflows are ordered, named steps (kubeadm's phases). Each step applies its part of the plan, waits
//! for it, and verifies it; the [`Runner`] runs them in order, honours `--skip`/`--only`, names the step in
//! every error, and reports what each step did. Dry runs are handled here and behind the apply interface,
//! never inside a step.

pub mod hub;
pub mod spoke;

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::future::BoxFuture;
use serde::Serialize;

use crate::error;
use crate::kube::apply::{Applier, Change, DryRun};
use crate::kube::client::Cluster;
use crate::output::Printer;
use crate::profile::Side;
use crate::render::plan::Plan;

/// What every workflow context offers the runner and the default step behaviour.
pub trait Workflow: Sync {
    fn printer(&self) -> &Printer;
    fn plan(&self) -> &Plan;
    fn applier(&self) -> &Applier;
    fn cluster(&self, side: Side) -> &Cluster;
}

/// One named step of a workflow.
pub trait Step<C: Workflow>: Sync {
    fn name(&self) -> &'static str;
    /// One line for `--help` and progress.
    fn about(&self) -> &'static str;

    /// Applies the step's objects from the plan, in order.
    fn apply<'a>(&'a self, ctx: &'a C, report: &'a mut StepReport) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for planned in ctx.plan().step(self.name()) {
                let change = ctx
                    .applier()
                    .apply(ctx.cluster(planned.side), &planned.object)
                    .await?;
                ctx.printer().debug(
                    1,
                    format!("  {} {}", planned.object.display_name(), change.label()),
                );
                report.changes.push(ObjectChange {
                    cluster: planned.cluster.clone(),
                    object: planned.object.display_name(),
                    change,
                });
            }
            Ok(())
        })
    }

    /// Waits until what the step applied is ready.
    fn wait<'a>(&'a self, _ctx: &'a C, _report: &'a mut StepReport) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Proves the step's result.
    fn verify<'a>(&'a self, _ctx: &'a C, _report: &'a mut StepReport) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// The name of an earlier step during whose wait this step may already run (it touches another
    /// cluster, so running it early is safe). `None`: strictly in order.
    fn runs_during(&self) -> Option<&'static str> {
        None
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectChange {
    pub cluster: String,
    pub object: String,
    pub change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepResult {
    Ok,
    Skipped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: String,
    pub result: StepResult,
    #[serde(serialize_with = "seconds")]
    pub duration: Duration,
    pub changes: Vec<ObjectChange>,
    /// What the step verified or noticed, one line each.
    pub notes: Vec<String>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 10.0).round() / 10.0)
}

impl StepReport {
    fn new(step: &str) -> StepReport {
        StepReport {
            step: step.to_string(),
            result: StepResult::Ok,
            duration: Duration::ZERO,
            changes: vec![],
            notes: vec![],
        }
    }

    /// `2 created, 1 unchanged`, or `no changes`.
    pub fn summary(&self) -> String {
        if self.result == StepResult::Skipped {
            return "skipped".into();
        }
        let mut counts: Vec<(Change, usize)> = Vec::new();
        for c in &self.changes {
            match counts.iter_mut().find(|(k, _)| *k == c.change) {
                Some((_, n)) => *n += 1,
                None => counts.push((c.change, 1)),
            }
        }
        if counts.is_empty() || counts.iter().all(|(k, _)| *k == Change::Unchanged) {
            return "no changes".into();
        }
        counts
            .iter()
            .map(|(k, n)| format!("{n} {}", k.label()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `--skip` and `--only`, checked against the workflow's step names.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub skip: Vec<String>,
    pub only: Vec<String>,
}

impl Selection {
    pub fn validate(&self, names: &[&str]) -> Result<()> {
        for (flag, list) in [("--skip", &self.skip), ("--only", &self.only)] {
            for name in list {
                if !names.contains(&name.as_str()) {
                    return Err(error::input(format!(
                        "{flag} {name}: no such step (steps: {})",
                        names.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn runs(&self, name: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|n| n == name))
            && !self.skip.iter().any(|n| n == name)
    }
}

/// Runs steps in order. Returns the reports so far with the first error (which names its step).
pub struct Runner<'s, C: Workflow> {
    pub steps: &'s [&'s dyn Step<C>],
    pub selection: Selection,
}

impl<C: Workflow> Runner<'_, C> {
    pub async fn run(&self, ctx: &C) -> (Vec<StepReport>, Result<()>) {
        let mut reports: Vec<StepReport> = Vec::new();
        let mut done: Vec<String> = Vec::new();
        for (index, step) in self.steps.iter().enumerate() {
            let name = step.name();
            if done.iter().any(|d| d == name) {
                continue;
            }
            if !self.selection.runs(name) {
                let mut report = StepReport::new(name);
                report.result = StepResult::Skipped;
                ctx.printer().info(format!("[{name}] skipped"));
                reports.push(report);
                continue;
            }
            // Later steps that may run while this one waits.
            let companions: Vec<&dyn Step<C>> = self.steps[index + 1..]
                .iter()
                .copied()
                .filter(|s| s.runs_during() == Some(name) && self.selection.runs(s.name()))
                .collect();
            let (report, result) = if companions.is_empty() {
                self.run_step(ctx, *step).await
            } else {
                let names: Vec<&str> = companions.iter().map(|s| s.name()).collect();
                ctx.printer().debug(
                    1,
                    format!("[{name}] {} run(s) while it waits", names.join(", ")),
                );
                let main = self.run_step(ctx, *step);
                let side = async {
                    let mut out = Vec::new();
                    for companion in &companions {
                        let (r, res) = self.run_step(ctx, *companion).await;
                        let failed = res.is_err();
                        out.push((r, res));
                        if failed {
                            break;
                        }
                    }
                    out
                };
                let ((report, result), side) = futures::join!(main, side);
                let mut first_error = result;
                let mut side_reports = Vec::new();
                for (r, res) in side {
                    done.push(r.step.clone());
                    side_reports.push(r);
                    if first_error.is_ok() {
                        first_error = res;
                    }
                }
                reports.push(report);
                reports.extend(side_reports);
                if let Err(err) = first_error {
                    return (reports, Err(err));
                }
                continue;
            };
            reports.push(report);
            if let Err(err) = result {
                return (reports, Err(err));
            }
        }
        (reports, Ok(()))
    }

    /// Applies, waits for and verifies one step (waits and verification are skipped in dry runs).
    async fn run_step(&self, ctx: &C, step: &dyn Step<C>) -> (StepReport, Result<()>) {
        let name = step.name();
        let dry_run = ctx.applier().dry_run;
        let mut report = StepReport::new(name);
        let progress = ctx.printer().progress(format!("[{name}] {}", step.about()));
        let started = Instant::now();
        let result = async {
            step.apply(ctx, &mut report).await?;
            if dry_run.is_none() {
                step.wait(ctx, &mut report).await?;
                step.verify(ctx, &mut report).await?;
            } else if dry_run == Some(DryRun::Server) {
                report
                    .notes
                    .push("dry run: not waited for, not verified".into());
            }
            anyhow::Ok(())
        }
        .await
        .map_err(|err| {
            let hint = if error::exit_code_of(&err) == error::ExitCode::Usage {
                String::new()
            } else {
                format!("; fix the cause and re-run (--only {name} runs just this step)")
            };
            error::with_message(
                &err,
                format!("step {name}: {}{hint}", error::one_line(&err)),
            )
        });
        report.duration = started.elapsed();
        progress.finish();
        match &result {
            Ok(()) => ctx
                .printer()
                .info(format!("[{name}] done: {}", report.summary())),
            Err(_) => report.result = StepResult::Failed,
        }
        (report, result)
    }
}

/// The step table printed at the end of a run.
pub fn table(reports: &[StepReport]) -> String {
    let width = reports
        .iter()
        .map(|r| r.step.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:<7}  {:>8}  {}\n",
        "STEP", "RESULT", "DURATION", "CHANGES"
    );
    for r in reports {
        let result = match r.result {
            StepResult::Ok => "ok",
            StepResult::Skipped => "skipped",
            StepResult::Failed => "failed",
        };
        let duration = if r.result == StepResult::Skipped {
            "-".to_string()
        } else {
            format!("{:.1}s", r.duration.as_secs_f64())
        };
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:>8}  {}\n",
            r.step,
            result,
            duration,
            r.summary()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_checks_names_and_filters() {
        let names = ["preflight", "a", "b"];
        let sel = Selection {
            skip: vec!["a".into()],
            only: vec![],
        };
        sel.validate(&names).unwrap();
        assert!(sel.runs("b") && !sel.runs("a"));
        let sel = Selection {
            skip: vec![],
            only: vec!["b".into()],
        };
        assert!(sel.runs("b") && !sel.runs("preflight"));
        let err = Selection {
            skip: vec!["c".into()],
            only: vec![],
        }
        .validate(&names)
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("--skip c: no such step (steps: preflight, a, b)")
        );
    }
}
