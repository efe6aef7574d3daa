//! `feature-gate`: only below OpenShift 4.20, where external OIDC needs `FeatureGate cluster`
//! `featureSet: TechPreviewNoUpgrade`. That change is IRREVERSIBLE and blocks upgrades: it needs
//! `--allow-tech-preview-no-upgrade` (checked in preflight), and a user at a terminal must also type the
//! spoke's name. Then waits until `ExternalOIDC` is enabled.

use anyhow::Result;
use futures::future::BoxFuture;

use super::SpokeRun;
use crate::error;
use crate::kube::kinds;
use crate::kube::wait::{self, Readiness, Target};
use crate::workflow::{ObjectChange, Step, StepReport};

pub struct FeatureGate;

impl Step<SpokeRun> for FeatureGate {
    fn name(&self) -> &'static str {
        "feature-gate"
    }

    fn about(&self) -> &'static str {
        "below 4.20 only: set TechPreviewNoUpgrade (IRREVERSIBLE), wait for ExternalOIDC"
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(planned) = ctx.plan.step(self.name()).next() else {
                report.notes.push(format!(
                    "not needed on OpenShift {}",
                    ctx.values
                        .spoke_version
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                ));
                return Ok(());
            };
            let already = super::preflight::feature_set(&ctx.spoke).await?.as_deref()
                == Some("TechPreviewNoUpgrade");
            if !already {
                if !ctx.allow_tech_preview {
                    return Err(error::Error::Preflight(
                        "TechPreviewNoUpgrade needs --allow-tech-preview-no-upgrade".into(),
                    )
                    .into());
                }
                if ctx.interactive && ctx.applier.writes() {
                    let name = &ctx.values.spoke_name;
                    ctx.printer.warn(format!(
                        "FeatureGate cluster featureSet TechPreviewNoUpgrade on {name} can NEVER be undone and blocks all upgrades of {name}"
                    ));
                    let typed: String = dialoguer::Input::new()
                        .with_prompt(format!("Type the spoke's name ({name}) to go ahead"))
                        .allow_empty(true)
                        .interact_text()
                        .map_err(|e| error::input(format!("no confirmation ({e})")))?;
                    if typed.trim() != name {
                        return Err(error::input(format!(
                            "you typed {typed:?}, not {name:?}: nothing was changed"
                        )));
                    }
                }
            }
            let before = super::apiserver_rollout::current_revision(ctx).await?;
            let change = ctx.applier.apply(&ctx.spoke, &planned.object).await?;
            if change.is_write() {
                ctx.facts
                    .lock()
                    .expect("facts")
                    .feature_gate_revision_before = Some(before);
            }
            report.changes.push(ObjectChange {
                cluster: planned.cluster.clone(),
                object: planned.object.display_name(),
                change,
            });
            Ok(())
        })
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if ctx.plan.step(self.name()).next().is_none() {
                return Ok(());
            }
            let kind = kinds::known("config.openshift.io/v1", "FeatureGate");
            wait::until(
                &ctx.spoke,
                Target {
                    kind,
                    namespace: None,
                    name: Some("cluster"),
                    label_selector: None,
                },
                "FeatureGate cluster to enable ExternalOIDC",
                ctx.rollout_timeout,
                |objs| {
                    let enabled = objs
                        .first()
                        .and_then(|fg| fg.data.pointer("/status/featureGates"))
                        .and_then(|g| g.as_array())
                        .is_some_and(|gates| {
                            gates.iter().any(|g| {
                                g["enabled"]
                                    .as_array()
                                    .is_some_and(|e| e.iter().any(|f| f["name"] == "ExternalOIDC"))
                            })
                        });
                    if enabled {
                        Readiness::Ready
                    } else {
                        Readiness::NotReady("ExternalOIDC is not enabled yet".into())
                    }
                },
            )
            .await?;
            report.notes.push("ExternalOIDC enabled".into());
            // The feature set rolls out a kube-apiserver revision of its own: let it finish, so that the
            // authentication step's rollout is not mistaken for it (or it for that one).
            let pending = ctx
                .facts
                .lock()
                .expect("facts")
                .feature_gate_revision_before
                .take();
            if let Some(before) = pending {
                let rev = super::apiserver_rollout::wait_rollout(ctx, true, before).await?;
                report.notes.push(match rev {
                    Some(r) => format!("kube-apiserver rolled out the feature set (revision {r})"),
                    None => "kube-apiserver rolled out the feature set".into(),
                });
            }
            Ok(())
        })
    }
}
