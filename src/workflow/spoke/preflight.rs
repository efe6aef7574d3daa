//! `preflight`: read-only checks on both clusters, reported together, before anything changes.
//! The lockout guard lives here: the spoke must be administered with a client certificate, because once
//! external OIDC is on, only SPIFFE identities and certificates can log in.

use anyhow::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::SpokeRun;
use crate::kube::apply::api_for;
use crate::kube::client::{Cluster, Credential, describe_kube_error, whoami};
use crate::kube::kinds;
use crate::preflight::{self, Check, Outcome};
use crate::workflow::{Step, StepReport, Workflow};

pub struct Preflight;

impl Step<SpokeRun> for Preflight {
    fn name(&self) -> &'static str {
        "preflight"
    }

    fn about(&self) -> &'static str {
        "check both clusters: hub issuer and identity, spoke version, lockout guard, rights"
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let warnings = preflight::run(CHECKS, ctx, &ctx.ignore).await?;
            for w in warnings {
                ctx.warn(w);
            }
            report.notes.push(format!("{} checks passed", CHECKS.len()));
            Ok(())
        })
    }
}

const CHECKS: &[&dyn Check<SpokeRun>] = &[
    &LockoutGuard,
    &SpokeVersion,
    &ExistingAuthentication,
    &Permissions,
    &HubIssuer,
    &HubIdentity,
];

pub fn check_names() -> Vec<&'static str> {
    CHECKS.iter().map(|c| c.name()).collect()
}

struct LockoutGuard;

impl Check<SpokeRun> for LockoutGuard {
    fn name(&self) -> &'static str {
        "lockout-guard"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { lockout_guard(&ctx.spoke).await })
    }
}

/// Refuses a spoke context that would stop working once external OIDC is on.
pub async fn lockout_guard(spoke: &Cluster) -> Outcome {
    let how = match spoke.credential {
        Credential::ClientCertificate => None,
        Credential::BearerToken => Some("a bearer token"),
        Credential::ExecPlugin => Some("an exec plugin"),
        Credential::AuthProvider => Some("an auth provider"),
        Credential::Basic => Some("a username and password"),
        Credential::None => Some("no credential"),
    };
    if let Some(how) = how {
        return Outcome::error(format!(
            "context {} authenticates with {how}: after this change only SPIFFE identities and client certificates can log in to the spoke, so this context would be locked out; use a context with a client certificate (the installer's admin kubeconfig)",
            spoke.context
        ));
    }
    match whoami(&spoke.client).await {
        Ok((user, _)) if !user.is_empty() => Outcome::ok(),
        Ok(_) => Outcome::error(format!(
            "context {}: SelfSubjectReview returned no username",
            spoke.context
        )),
        Err(e) => Outcome::error(format!(
            "context {}: the client certificate does not work now (SelfSubjectReview: {})",
            spoke.context,
            describe_kube_error(&e)
        )),
    }
}

struct SpokeVersion;

impl Check<SpokeRun> for SpokeVersion {
    fn name(&self) -> &'static str {
        "spoke-version"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let v = ctx.values.spoke_version;
            let p = ctx.profile.spoke.openshift();
            if v < p.min_version {
                return Outcome::error(format!(
                    "the spoke runs OpenShift {v}; external OIDC authentication needs {} or later",
                    p.min_version
                ));
            }
            if !ctx.values.needs_feature_gate {
                return Outcome::ok();
            }
            match feature_set(&ctx.spoke).await {
                Ok(Some(set)) if set == "TechPreviewNoUpgrade" => Outcome::ok(),
                Ok(_) if ctx.allow_tech_preview => Outcome::ok(),
                Ok(_) => Outcome::error(format!(
                    "the spoke runs OpenShift {v}: external OIDC needs FeatureGate cluster featureSet TechPreviewNoUpgrade, which is IRREVERSIBLE and blocks upgrades; pass --allow-tech-preview-no-upgrade to accept that, or upgrade the spoke to {} first",
                    p.external_oidc_ga_version
                )),
                Err(e) => Outcome::error(format!(
                    "cannot read FeatureGate cluster ({})",
                    crate::error::one_line(&e)
                )),
            }
        })
    }
}

/// The spoke's `FeatureGate cluster` feature set.
pub async fn feature_set(spoke: &Cluster) -> Result<Option<String>> {
    let kind = kinds::known("config.openshift.io/v1", "FeatureGate");
    let fg = api_for(spoke, kind, None).get_opt("cluster").await?;
    Ok(fg.and_then(|fg| {
        fg.data
            .pointer("/spec/featureSet")
            .and_then(|s| s.as_str())
            .map(str::to_string)
    }))
}

struct ExistingAuthentication;

impl Check<SpokeRun> for ExistingAuthentication {
    fn name(&self) -> &'static str {
        "existing-authentication"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let kind = kinds::known("config.openshift.io/v1", "Authentication");
            let auth = match api_for(&ctx.spoke, kind, None).get_opt("cluster").await {
                Ok(a) => a,
                Err(e) => {
                    return Outcome::error(format!(
                        "cannot read Authentication cluster ({})",
                        describe_kube_error(&e)
                    ));
                }
            };
            let Some(auth) = auth else {
                return Outcome::error("the spoke has no Authentication cluster: is it OpenShift?");
            };
            let ty = auth
                .data
                .pointer("/spec/type")
                .and_then(|t| t.as_str())
                .unwrap_or("");
            match ty {
                "" | "IntegratedOAuth" | "None" => Outcome::ok(),
                "OIDC" => {
                    let providers = auth
                        .data
                        .pointer("/spec/oidcProviders")
                        .and_then(|p| p.as_array())
                        .cloned()
                        .unwrap_or_default();
                    let ours = providers.iter().all(|p| {
                        p["name"] == ctx.profile.spoke.openshift().oidc_provider_name.as_str()
                            && p["issuer"]["issuerURL"] == ctx.values.issuer_url.as_str()
                    });
                    if ours {
                        Outcome::ok()
                    } else {
                        let names: Vec<String> = providers
                            .iter()
                            .map(|p| {
                                format!(
                                    "{} ({})",
                                    p["name"].as_str().unwrap_or("?"),
                                    p["issuer"]["issuerURL"].as_str().unwrap_or("?")
                                )
                            })
                            .collect();
                        Outcome::error(format!(
                            "the spoke already uses another OIDC provider: {}; OpenShift supports only one, and replacing it would lock out its users",
                            names.join(", ")
                        ))
                    }
                }
                other => Outcome::error(format!(
                    "Authentication cluster has type {other:?}, which ztwim-hub does not know how to change safely"
                )),
            }
        })
    }
}

struct Permissions;

impl Check<SpokeRun> for Permissions {
    fn name(&self) -> &'static str {
        "permissions"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut denied = Vec::new();
            for planned in &ctx.plan.objects {
                let k = planned.object.known_kind();
                let cluster = ctx.cluster(planned.side);
                for verb in ["get", "create", "patch"] {
                    match allowed(
                        cluster,
                        verb,
                        k.group,
                        k.plural,
                        planned.object.namespace().as_deref(),
                        None,
                    )
                    .await
                    {
                        Ok(true) => {}
                        Ok(false) => denied.push(format!(
                            "{verb} {} on {}",
                            k.resource_name(),
                            cluster.context
                        )),
                        Err(e) => {
                            return Outcome::error(format!(
                                "cannot ask {} what you may do ({})",
                                cluster.context,
                                describe_kube_error(&e)
                            ));
                        }
                    }
                }
            }
            // The backup of the Authentication spec, and the exec into Argo CD's pods.
            let backup = allowed(
                &ctx.spoke,
                "create",
                "",
                "configmaps",
                Some("openshift-config"),
                None,
            )
            .await;
            let exec = allowed(
                &ctx.hub,
                "create",
                "",
                "pods",
                Some(&ctx.values.gitops_namespace),
                Some("exec"),
            )
            .await;
            for (ok, what) in [
                (
                    backup,
                    format!(
                        "create configmaps in openshift-config on {}",
                        ctx.spoke.context
                    ),
                ),
                (
                    exec,
                    format!(
                        "create pods/exec in {} on {}",
                        ctx.values.gitops_namespace, ctx.hub.context
                    ),
                ),
            ] {
                match ok {
                    Ok(true) => {}
                    Ok(false) => denied.push(what),
                    Err(e) => {
                        return Outcome::error(format!(
                            "cannot ask what you may do ({})",
                            describe_kube_error(&e)
                        ));
                    }
                }
            }
            denied.dedup();
            if denied.is_empty() {
                Outcome::ok()
            } else {
                Outcome::error(format!(
                    "you may not: {}; use cluster-admin contexts",
                    denied.join(", ")
                ))
            }
        })
    }
}

/// SelfSubjectAccessReview: may the context's user do this?
pub async fn allowed(
    cluster: &Cluster,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    subresource: Option<&str>,
) -> Result<bool, kube::Error> {
    allowed_with(
        &cluster.client,
        verb,
        group,
        resource,
        namespace,
        subresource,
    )
    .await
}

pub async fn allowed_with(
    client: &kube::Client,
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    subresource: Option<&str>,
) -> Result<bool, kube::Error> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: namespace.map(str::to_string),
                subresource: subresource.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let r = reviews.create(&PostParams::default(), &review).await?;
    Ok(r.status.is_some_and(|s| s.allowed))
}

struct HubIssuer;

impl Check<SpokeRun> for HubIssuer {
    fn name(&self) -> &'static str {
        "hub-issuer"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move { Outcome::from_result(ctx.discovery().await.map(|_| Outcome::ok())) })
    }
}

struct HubIdentity;

impl Check<SpokeRun> for HubIdentity {
    fn name(&self) -> &'static str {
        "hub-identity"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match ctx.hub_token("server").await {
                Ok((proven, _token)) => {
                    for w in proven.warnings {
                        ctx.warn(w);
                    }
                    Outcome::ok()
                }
                Err(e) => Outcome::error(format!(
                    "the hub's Argo CD cannot obtain an identity: {} (run ztwim-hub bootstrap --context {} first)",
                    crate::error::one_line(&e),
                    ctx.hub.context
                )),
            }
        })
    }
}
