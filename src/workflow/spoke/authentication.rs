//! `authentication`: the spoke's `Authentication cluster` trusts the hub's SPIRE OIDC issuer. Before the
//! first change, the current spec is saved (a ConfigMap on the spoke, labelled managed-by ztwim-hub, and a
//! local file under the state directory) so that `remove-spoke` can restore it. The backup is applied
//! before the Authentication, so OIDC is never on without it.

use anyhow::Result;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::SpokeRun;
use crate::kube::apply::{Change, api_for};
use crate::kube::kinds;
use crate::render::object::Object;
use crate::workflow::{ObjectChange, Step, StepReport};

pub struct Authentication;

pub const BACKUP_CONFIGMAP: &str = "ztwim-hub-authentication-backup";
pub const BACKUP_KEY: &str = "spec.json";

impl Step<SpokeRun> for Authentication {
    fn name(&self) -> &'static str {
        "authentication"
    }

    fn about(&self) -> &'static str {
        "save the current Authentication spec, then trust the hub's OIDC issuer"
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let kind = kinds::known("config.openshift.io/v1", "Authentication");
            let current = api_for(&ctx.spoke, kind, None).get("cluster").await?;
            let spec = current
                .data
                .get("spec")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let already_oidc = spec["type"] == "OIDC";

            // 1. The backup, unless one exists (a re-run must never replace the original with the OIDC spec).
            let cm_kind = kinds::known("v1", "ConfigMap");
            let existing_backup = api_for(&ctx.spoke, cm_kind, Some("openshift-config"))
                .get_opt(BACKUP_CONFIGMAP)
                .await?;
            if existing_backup.is_none() {
                if already_oidc {
                    ctx.warn(format!(
                        "Authentication cluster on {} is already OIDC and no backup of its earlier spec exists: remove-spoke will not be able to restore it",
                        ctx.spoke.context
                    ));
                } else {
                    let backup = backup_object(&spec)?;
                    let change = ctx.applier.apply(&ctx.spoke, &backup).await?;
                    report.changes.push(ObjectChange {
                        cluster: ctx.values.spoke_name.clone(),
                        object: backup.display_name(),
                        change,
                    });
                    if change == Change::Created {
                        let file = crate::state::save_authentication_backup(
                            &ctx.state_dir,
                            &ctx.values.spoke_name,
                            &spec,
                        )?;
                        ctx.facts.lock().expect("facts").backup_file =
                            Some(file.display().to_string());
                        report.notes.push(format!("saved the previous spec to ConfigMap openshift-config/{BACKUP_CONFIGMAP} and {}", file.display()));
                    }
                }
            }

            // 2. The revision the kube-apiserver runs now, to recognise the rollout this change causes.
            ctx.facts.lock().expect("facts").revision_before =
                super::apiserver_rollout::current_revision(ctx).await?;

            // 3. OIDC needs the webhook token authenticator unset; another manager may have set it.
            if !spec["webhookTokenAuthenticator"].is_null() {
                ctx.applier
                    .merge_patch(
                        &ctx.spoke,
                        kind,
                        None,
                        "cluster",
                        json!({"spec": {"webhookTokenAuthenticator": null}}),
                    )
                    .await?;
                report.notes.push(
                    "removed spec.webhookTokenAuthenticator (OIDC cannot work with it)".into(),
                );
            }

            // 4. The OIDC provider.
            for planned in ctx.plan.step(self.name()) {
                let change = ctx.applier.apply(&ctx.spoke, &planned.object).await?;
                if change.is_write() {
                    ctx.facts.lock().expect("facts").authentication_changed = true;
                }
                report.changes.push(ObjectChange {
                    cluster: planned.cluster.clone(),
                    object: planned.object.display_name(),
                    change,
                });
            }
            Ok(())
        })
    }
}

fn backup_object(spec: &Value) -> Result<Object> {
    let value = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": BACKUP_CONFIGMAP,
            "namespace": "openshift-config",
            "labels": {"app.kubernetes.io/managed-by": "ztwim-hub"},
            "annotations": {"ztwim-hub/saved-from": "config.openshift.io/v1 Authentication cluster .spec"},
        },
        "data": {BACKUP_KEY: serde_json::to_string_pretty(spec)?},
    });
    Object::from_value(value).map_err(|e| anyhow::anyhow!("the backup ConfigMap: {e}"))
}
