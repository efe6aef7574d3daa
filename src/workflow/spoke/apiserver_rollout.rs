//! `apiserver-rollout`: after the Authentication change the kube-apiserver rolls out a new revision on
//! every control-plane node (many minutes). Watches ClusterOperator `kube-apiserver` until the new revision
//! is Available, not Progressing, not Degraded.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use futures::future::BoxFuture;
use kube::api::DynamicObject;

use super::{SpokeRun, revision_in};
use crate::kube::apply::api_for;
use crate::kube::kinds;
use crate::kube::wait::{self, Readiness, Target};
use crate::workflow::{Step, StepReport};

pub struct ApiserverRollout;

fn kind() -> &'static kinds::Kind {
    kinds::known("config.openshift.io/v1", "ClusterOperator")
}

/// The revision in the Available condition's message ("3 nodes are at revision 9"), if reported.
fn revision(co: &DynamicObject) -> Option<u64> {
    wait::condition(co, "Available").and_then(|(_, _, message)| revision_in(&message))
}

pub async fn current_revision(ctx: &SpokeRun) -> Result<Option<u64>> {
    let co = api_for(&ctx.spoke, kind(), None)
        .get_opt("kube-apiserver")
        .await?;
    Ok(co.as_ref().and_then(revision))
}

impl Step<SpokeRun> for ApiserverRollout {
    fn name(&self) -> &'static str {
        "apiserver-rollout"
    }

    fn about(&self) -> &'static str {
        "wait for the kube-apiserver to roll out the new revision (many minutes)"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (changed, before) = {
                let f = ctx.facts.lock().expect("facts");
                (f.authentication_changed, f.revision_before)
            };
            let rev = wait_rollout(ctx, changed, before).await?;
            report.notes.push(match (changed, rev) {
                (true, Some(r)) => format!("kube-apiserver rolled out revision {r}"),
                (true, None) => "kube-apiserver rolled out".into(),
                (false, _) => "no change to roll out; kube-apiserver Available".into(),
            });
            Ok(())
        })
    }
}

/// Watches ClusterOperator `kube-apiserver` until it is Available, not Progressing, not Degraded and,
/// when `changed`, at a revision above `before` (or, when no revision is reported, after it was seen
/// Progressing). Returns the revision it settled at.
pub async fn wait_rollout(
    ctx: &SpokeRun,
    changed: bool,
    before: Option<u64>,
) -> Result<Option<u64>> {
    let seen_progressing = AtomicBool::new(false);
    let last_message = Mutex::new(String::new());
    let cos = wait::until(
        &ctx.spoke,
        Target {
            kind: kind(),
            namespace: None,
            name: Some("kube-apiserver"),
            label_selector: None,
        },
        "ClusterOperator kube-apiserver to roll out the new revision",
        ctx.rollout_timeout,
        |objs| {
            let Some(co) = objs.first() else {
                return Readiness::NotReady("ClusterOperator kube-apiserver does not exist".into());
            };
            let status = |t: &str| {
                wait::condition(co, t)
                    .map(|(s, _, m)| (s, m))
                    .unwrap_or_default()
            };
            let (available, _) = status("Available");
            let (progressing, progress_message) = status("Progressing");
            let (degraded, degraded_message) = status("Degraded");
            if progressing == "True" {
                seen_progressing.store(true, Ordering::SeqCst);
                let mut last = last_message.lock().expect("message lock");
                if *last != progress_message {
                    ctx.printer
                        .info(format!("  kube-apiserver: {progress_message}"));
                    *last = progress_message.clone();
                }
            }
            let rolled = !changed
                || match (before, revision(co)) {
                    (Some(b), Some(now)) => now > b,
                    _ => seen_progressing.load(Ordering::SeqCst),
                };
            if available == "True" && progressing == "False" && degraded != "True" && rolled {
                Readiness::Ready
            } else if degraded == "True" {
                Readiness::NotReady(format!("Degraded: {degraded_message}"))
            } else {
                Readiness::NotReady(format!(
                    "Available={available} Progressing={progressing} {progress_message}"
                ))
            }
        },
    )
    .await?;
    Ok(cos.first().and_then(revision))
}
