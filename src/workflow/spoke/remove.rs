//! `remove-spoke`'s steps: undo add-spoke in the safe order. The cluster Secret goes first (Argo CD stops
//! using the spoke), then the saved Authentication spec is restored and rolled out, then the RBAC, the
//! issuer CA and finally the backup are removed. The feature set is never touched: TechPreviewNoUpgrade
//! cannot be undone. On a Kubernetes (kind) spoke the authentication file is restored instead: the
//! backup byte for byte while the file is still what add-spoke wrote, else only the hub's authenticator
//! is removed.

use anyhow::Result;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::authn_file;
use super::{BACKUP_CONFIGMAP, BACKUP_KEY, SpokeRun};
use crate::error::Error;
use crate::kube::apply::{Change, api_for};
use crate::kube::client::{describe_kube_error, whoami};
use crate::kube::kinds::{self, Kind};
use crate::preflight::{self, Check, Outcome};
use crate::profile::{Platform, Side};
use crate::workflow::{ObjectChange, Step, StepReport, Workflow};

/// The steps of `remove-spoke` for a spoke of this platform, in order.
pub fn steps(platform: Platform) -> Vec<&'static dyn Step<SpokeRun>> {
    match platform {
        Platform::Openshift => vec![
            &Preflight,
            &UnregisterArgocd,
            &RestoreAuthentication,
            &super::apiserver_rollout::ApiserverRollout,
            &DeleteRbac,
            &DeleteIssuerCa,
            &Cleanup,
        ],
        Platform::Kubernetes => vec![
            &Preflight,
            &UnregisterArgocd,
            &RestoreAuthnConfig,
            &DeleteRbac,
            &Cleanup,
        ],
    }
}

pub fn step_help() -> String {
    super::step_help_for(&[
        (
            "Steps for an OpenShift spoke, in order (--skip/--only take these names)",
            steps(Platform::Openshift),
        ),
        (
            "Steps for a Kubernetes (kind) spoke, in order",
            steps(Platform::Kubernetes),
        ),
    ])
}

const OPENSHIFT_CHECKS: &[&dyn Check<SpokeRun>] = &[&LockoutGuard, &SavedSpec];
const KUBERNETES_CHECKS: &[&dyn Check<SpokeRun>] = &[&LockoutGuard, &AuthnConfigFile];

fn checks(platform: Platform) -> &'static [&'static dyn Check<SpokeRun>] {
    match platform {
        Platform::Openshift => OPENSHIFT_CHECKS,
        Platform::Kubernetes => KUBERNETES_CHECKS,
    }
}

pub fn check_names(platform: Platform) -> Vec<&'static str> {
    checks(platform).iter().map(|c| c.name()).collect()
}

/// The checks of either platform.
pub fn all_check_names() -> Vec<&'static str> {
    let mut names = check_names(Platform::Openshift);
    for name in check_names(Platform::Kubernetes) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The saved pre-OIDC spec: the copy on the spoke, else the local file.
pub async fn saved_spec(ctx: &SpokeRun) -> Result<Option<Value>> {
    let cm_kind = kinds::known("v1", "ConfigMap");
    if let Some(cm) = api_for(&ctx.spoke, cm_kind, Some("openshift-config"))
        .get_opt(BACKUP_CONFIGMAP)
        .await?
        && let Some(text) = cm
            .data
            .pointer(&format!("/data/{}", BACKUP_KEY.replace('/', "~1")))
            .and_then(|t| t.as_str())
    {
        return Ok(Some(serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("the backup ConfigMap is not JSON ({e})")
        })?));
    }
    crate::state::load_authentication_backup(&ctx.state_dir, &ctx.values.spoke_name)
}

/// Deletes an object if it is there and records the outcome in the step's report.
async fn delete_recorded(
    ctx: &SpokeRun,
    report: &mut StepReport,
    side: Side,
    kind: &Kind,
    namespace: Option<&str>,
    name: &str,
) -> Result<()> {
    let change = ctx
        .applier
        .delete(ctx.cluster(side), kind, namespace, name)
        .await?;
    let object = match namespace {
        Some(ns) => format!("{} {ns}/{name}", kind.kind),
        None => format!("{} {name}", kind.kind),
    };
    let cluster = match side {
        Side::Hub => "hub".to_string(),
        Side::Spoke => ctx.values.spoke_name.clone(),
    };
    report.changes.push(ObjectChange {
        cluster,
        object,
        change,
    });
    Ok(())
}

struct Preflight;

impl Step<SpokeRun> for Preflight {
    fn name(&self) -> &'static str {
        "preflight"
    }
    fn about(&self) -> &'static str {
        "check the lockout guard and that what add-spoke changed can be restored"
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let checks = checks(ctx.spoke_platform());
            for w in preflight::run(checks, ctx, &ctx.ignore).await? {
                ctx.warn(w);
            }
            report.notes.push(format!("{} checks passed", checks.len()));
            if let Some(checked) = ctx.facts.lock().expect("facts").lockout_checked.clone() {
                report.notes.push(format!("lockout guard: {checked}"));
            }
            Ok(())
        })
    }
}

struct LockoutGuard;

impl Check<SpokeRun> for LockoutGuard {
    fn name(&self) -> &'static str {
        "lockout-guard"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(super::preflight::lockout_guard(ctx))
    }
}

struct SavedSpec;

impl Check<SpokeRun> for SavedSpec {
    fn name(&self) -> &'static str {
        "saved-spec"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match saved_spec(ctx).await {
                Ok(Some(_)) => Outcome::ok(),
                Ok(None) => Outcome::error(format!(
                    "no saved Authentication spec for {} (neither ConfigMap openshift-config/{BACKUP_CONFIGMAP} nor a file under {}); restore spec.type yourself, or --skip restore-authentication",
                    ctx.values.spoke_name,
                    ctx.state_dir.display()
                )),
                Err(e) => Outcome::error(crate::error::one_line(&e)),
            }
        })
    }
}

struct UnregisterArgocd;

impl Step<SpokeRun> for UnregisterArgocd {
    fn name(&self) -> &'static str {
        "argocd-cluster"
    }
    fn about(&self) -> &'static str {
        "delete the spoke's cluster Secret on the hub"
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let kind = kinds::known("v1", "Secret");
            let ns = Some(ctx.values.gitops_namespace.as_str());
            delete_recorded(ctx, report, Side::Hub, kind, ns, &ctx.values.spoke_name).await
        })
    }
}

struct RestoreAuthentication;

impl Step<SpokeRun> for RestoreAuthentication {
    fn name(&self) -> &'static str {
        "restore-authentication"
    }
    fn about(&self) -> &'static str {
        "restore the saved Authentication spec (OAuth logins work again after the rollout)"
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let saved = saved_spec(ctx).await?.ok_or_else(|| {
                Error::Preflight(format!(
                    "no saved Authentication spec for {}",
                    ctx.values.spoke_name
                ))
            })?;
            let kind = kinds::known("config.openshift.io/v1", "Authentication");
            let current = api_for(&ctx.spoke, kind, None).get("cluster").await?;
            let current_spec = current
                .data
                .get("spec")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let change = if current_spec == saved {
                Change::Unchanged
            } else {
                ctx.facts.lock().expect("facts").revision_before =
                    super::apiserver_rollout::current_revision(ctx).await?;
                let mut spec: Map<String, Value> = saved.as_object().cloned().unwrap_or_default();
                if let Some(current) = current_spec.as_object() {
                    for key in current.keys() {
                        spec.entry(key.clone()).or_insert(Value::Null);
                    }
                }
                ctx.applier
                    .merge_patch(&ctx.spoke, kind, None, "cluster", json!({ "spec": spec }))
                    .await?;
                if ctx.applier.writes() {
                    ctx.facts.lock().expect("facts").authentication_changed = true;
                    Change::Configured
                } else {
                    Change::WouldConfigure
                }
            };
            report.changes.push(ObjectChange {
                cluster: ctx.values.spoke_name.clone(),
                object: "Authentication cluster".into(),
                change,
            });
            if ctx.values.needs_feature_gate {
                report.notes.push(
                    "FeatureGate cluster keeps TechPreviewNoUpgrade: that cannot be undone".into(),
                );
            }
            Ok(())
        })
    }
}

struct DeleteRbac;

impl Step<SpokeRun> for DeleteRbac {
    fn name(&self) -> &'static str {
        "rbac"
    }
    fn about(&self) -> &'static str {
        "delete the ClusterRoleBinding (and the least-privilege ClusterRole)"
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let p = &ctx.spoke_profile.spoke;
            for (kind, name) in [
                ("ClusterRoleBinding", &p.cluster_role_binding),
                ("ClusterRole", &p.cluster_role),
            ] {
                let k = kinds::known("rbac.authorization.k8s.io/v1", kind);
                delete_recorded(ctx, report, Side::Spoke, k, None, name).await?;
            }
            Ok(())
        })
    }
}

struct DeleteIssuerCa;

impl Step<SpokeRun> for DeleteIssuerCa {
    fn name(&self) -> &'static str {
        "issuer-ca"
    }
    fn about(&self) -> &'static str {
        "delete the issuer CA ConfigMap"
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let k = kinds::known("v1", "ConfigMap");
            let name = &ctx.spoke_profile.spoke.openshift().issuer_ca_config_map;
            delete_recorded(ctx, report, Side::Spoke, k, Some("openshift-config"), name).await
        })
    }
}

struct Cleanup;

impl Step<SpokeRun> for Cleanup {
    fn name(&self) -> &'static str {
        "cleanup"
    }
    fn about(&self) -> &'static str {
        "delete the saved spec (OpenShift); check the certificate admin still works"
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            // Kubernetes: the backup file went with restore-authn-config.
            if ctx.spoke_platform() == Platform::Kubernetes {
                return Ok(());
            }
            let k = kinds::known("v1", "ConfigMap");
            delete_recorded(
                ctx,
                report,
                Side::Spoke,
                k,
                Some("openshift-config"),
                BACKUP_CONFIGMAP,
            )
            .await?;
            if ctx.applier.writes() {
                crate::state::remove_authentication_backup(&ctx.state_dir, &ctx.values.spoke_name)?;
            }
            Ok(())
        })
    }
    fn verify<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            whoami(&ctx.spoke.client).await.map_err(|e| {
                Error::Verification(format!(
                    "the certificate admin of {} does not work ({})",
                    ctx.spoke.context,
                    describe_kube_error(&e)
                ))
            })?;
            report.notes.push(format!(
                "the certificate admin of {} still works",
                ctx.spoke.context
            ));
            Ok(())
        })
    }
}

struct AuthnConfigFile;

impl Check<SpokeRun> for AuthnConfigFile {
    fn name(&self) -> &'static str {
        "authn-config-file"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let checked = ctx.authn_file().and_then(|file| {
                let text = file.read()?;
                file.parse(&text)?;
                file.read_backup()?;
                file.check_writable().map_err(crate::error::input)?;
                Ok(())
            });
            match checked {
                Ok(()) => Outcome::ok(),
                Err(e) => Outcome::error(crate::error::one_line(&e)),
            }
        })
    }
}

struct RestoreAuthnConfig;

impl Step<SpokeRun> for RestoreAuthnConfig {
    fn name(&self) -> &'static str {
        "restore-authn-config"
    }
    fn about(&self) -> &'static str {
        "restore the authentication file, or remove only the hub's authenticator"
    }
    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let file = ctx.authn_file()?;
            let issuer = &ctx.values.issuer_url;
            let text = file.read()?;
            let current = file.parse(&text)?;
            let backup = file.read_backup()?;
            let writes = ctx.applier.writes();
            let change = match &backup {
                Some(saved) if authn_file::written_over(&text, saved, issuer) => {
                    if writes {
                        crate::kind::write_atomically(&file.path, saved.as_bytes())?;
                        std::fs::remove_file(&file.backup).map_err(|e| {
                            anyhow::anyhow!("removing {}: {e}", file.backup.display())
                        })?;
                        report.notes.push(format!(
                            "restored {} byte for byte from {} (and removed the backup)",
                            file.path.display(),
                            file.backup.display()
                        ));
                        Change::Configured
                    } else {
                        Change::WouldConfigure
                    }
                }
                _ => match authn_file::without(&current, issuer) {
                    Some(config) => {
                        let why = match &backup {
                            Some(_) => format!(
                                "{} was changed since add-spoke wrote it, so its backup {} is not put back (and is left there)",
                                file.path.display(),
                                file.backup.display()
                            ),
                            None => format!("{} has no backup", file.path.display()),
                        };
                        ctx.warn(format!(
                            "{why}: removing only the JWT authenticator for {issuer}, keeping the rest of the file"
                        ));
                        if writes {
                            config.write_atomically(&file.path)?;
                            Change::Configured
                        } else {
                            Change::WouldConfigure
                        }
                    }
                    None => {
                        report.notes.push(format!(
                            "{} has no authenticator for {issuer}: nothing to restore",
                            file.path.display()
                        ));
                        Change::Unchanged
                    }
                },
            };
            report.changes.push(ObjectChange {
                cluster: ctx.values.spoke_name.clone(),
                object: format!("file {}", file.path.display()),
                change,
            });
            Ok(())
        })
    }
}
