//! `preflight`: read-only checks on both clusters, reported together, before anything changes.
//! The lockout guard lives here: the spoke must be administered with a client certificate, because once
//! external OIDC is on, only SPIFFE identities and certificates can log in (OpenShift), and because a
//! certificate does not depend on the authentication file add-spoke changes (Kubernetes).

use anyhow::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::SpokeRun;
use super::authn_file;
use crate::kube::apply::api_for;
use crate::kube::client::{Cluster, Credential, describe_kube_error, whoami};
use crate::kube::kinds;
use crate::preflight::{self, Check, Outcome};
use crate::profile::Platform;
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
            let checks = checks(ctx.spoke_platform());
            let warnings = preflight::run(checks, ctx, &ctx.ignore).await?;
            for w in warnings {
                ctx.warn(w);
            }
            report.notes.push(format!("{} checks passed", checks.len()));
            if let Some(checked) = ctx.facts.lock().expect("facts").lockout_checked.clone() {
                ctx.printer.debug(1, format!("  lockout guard: {checked}"));
                report.notes.push(format!("lockout guard: {checked}"));
            }
            Ok(())
        })
    }
}

const OPENSHIFT_CHECKS: &[&dyn Check<SpokeRun>] = &[
    &LockoutGuard,
    &SpokeVersion,
    &ExistingAuthentication,
    &Permissions,
    &HubIssuer,
    &HubIdentity,
];

const KUBERNETES_CHECKS: &[&dyn Check<SpokeRun>] = &[
    &LockoutGuard,
    &SpokeVersion,
    &AuthnConfigFile,
    &Permissions,
    &HubIssuer,
    &HubIdentity,
];

fn checks(platform: Platform) -> &'static [&'static dyn Check<SpokeRun>] {
    match platform {
        Platform::Openshift => OPENSHIFT_CHECKS,
        Platform::Kubernetes => KUBERNETES_CHECKS,
    }
}

/// The preflight checks for a spoke of this platform.
pub fn check_names(platform: Platform) -> Vec<&'static str> {
    checks(platform).iter().map(|c| c.name()).collect()
}

/// The checks of either platform (`--ignore-preflight-errors` is checked against them before a cluster
/// is contacted).
pub fn all_check_names() -> Vec<&'static str> {
    let mut names = check_names(Platform::Openshift);
    for name in check_names(Platform::Kubernetes) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

struct LockoutGuard;

impl Check<SpokeRun> for LockoutGuard {
    fn name(&self) -> &'static str {
        "lockout-guard"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(lockout_guard(ctx))
    }
}

/// Refuses a spoke context that the change could lock out: on OpenShift, anything but a client
/// certificate stops working once external OIDC is on; on Kubernetes, a token or plugin credential may
/// be one that the authentication file's authenticators (or a file kube-apiserver cannot load) decide
/// about, while a client certificate is checked against the client CA, independently of the file.
/// Records what was checked.
pub async fn lockout_guard(ctx: &SpokeRun) -> Outcome {
    let spoke = &ctx.spoke;
    let platform = ctx.spoke_platform();
    let how = match spoke.credential {
        Credential::ClientCertificate => None,
        Credential::BearerToken => Some("a bearer token"),
        Credential::ExecPlugin => Some("an exec plugin"),
        Credential::AuthProvider => Some("an auth provider"),
        Credential::Basic => Some("a username and password"),
        Credential::None => Some("no credential"),
    };
    if let Some(how) = how {
        return Outcome::error(match platform {
            Platform::Openshift => format!(
                "context {} authenticates with {how}: after this change only SPIFFE identities and client certificates can log in to the spoke, so this context would be locked out; use a context with a client certificate (the installer's admin kubeconfig)",
                spoke.context
            ),
            Platform::Kubernetes => format!(
                "context {} authenticates with {how}: add-spoke changes the spoke's authentication file, and a token or plugin credential may depend on what that file says (or be locked out by a file kube-apiserver cannot load); use a context with a client certificate, which kube-apiserver checks against its client CA whatever the file says (kind's admin kubeconfig: kind get kubeconfig --name <spoke>)",
                spoke.context
            ),
        });
    }
    match whoami(&spoke.client).await {
        Ok((user, _)) if !user.is_empty() => {
            let checked = match platform {
                Platform::Openshift => format!(
                    "context {} authenticates with a client certificate (SelfSubjectReview: {user}), which keeps working with external OIDC",
                    spoke.context
                ),
                Platform::Kubernetes => format!(
                    "context {} authenticates with a client certificate (SelfSubjectReview: {user}), which kube-apiserver verifies with its client CA, independently of the authentication file",
                    spoke.context
                ),
            };
            ctx.facts.lock().expect("facts").lockout_checked = Some(checked);
            Outcome::ok()
        }
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
            let Some(v) = ctx.values.spoke_version else {
                return Outcome::error("the spoke's version is unknown");
            };
            if ctx.spoke_platform() == Platform::Kubernetes {
                let min = ctx.spoke_profile.spoke.kubernetes().min_version;
                if v < min {
                    return Outcome::error(format!(
                        "the spoke runs Kubernetes {v}; structured authentication (apiserver.config.k8s.io/v1beta1, on by default) needs {min} or later"
                    ));
                }
                return Outcome::ok();
            }
            let p = ctx.spoke_profile.spoke.openshift();
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
                        p["name"]
                            == ctx
                                .spoke_profile
                                .spoke
                                .openshift()
                                .oidc_provider_name
                                .as_str()
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
            // The backup of the Authentication spec (OpenShift), and the exec into Argo CD's pods.
            let mut extra = Vec::new();
            if ctx.spoke_platform() == Platform::Openshift {
                let backup = allowed(
                    &ctx.spoke,
                    "create",
                    "",
                    "configmaps",
                    Some("openshift-config"),
                    None,
                )
                .await;
                extra.push((
                    backup,
                    format!(
                        "create configmaps in openshift-config on {}",
                        ctx.spoke.context
                    ),
                ));
            }
            let exec = allowed(
                &ctx.hub,
                "create",
                "",
                "pods",
                Some(&ctx.values.gitops_namespace),
                Some("exec"),
            )
            .await;
            extra.push((
                exec,
                format!(
                    "create pods/exec in {} on {}",
                    ctx.values.gitops_namespace, ctx.hub.context
                ),
            ));
            for (ok, what) in extra {
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
                    if ctx.spoke_platform() == Platform::Kubernetes {
                        // The application controller is the one that will call the spoke.
                        let selector = ctx.argocd_selector("application-controller");
                        let ns = &ctx.values.gitops_namespace;
                        if let Err(e) =
                            crate::kube::wait::ready_pod(&ctx.hub, ns, &selector, ctx.timeout).await
                        {
                            return Outcome::error(format!(
                                "the hub's Argo CD application controller is not running ({}); run ztwim-hub bootstrap --context {} first",
                                crate::error::one_line(&e),
                                ctx.hub.context
                            ));
                        }
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

struct AuthnConfigFile;

impl Check<SpokeRun> for AuthnConfigFile {
    fn name(&self) -> &'static str {
        "authn-config-file"
    }
    fn run<'a>(&'a self, ctx: &'a SpokeRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let file = match ctx.authn_file() {
                Ok(f) => f,
                Err(e) => return Outcome::error(crate::error::one_line(&e)),
            };
            let text = match file.read() {
                Ok(t) => t,
                Err(e) => return Outcome::error(crate::error::one_line(&e)),
            };
            let current = match file.parse(&text) {
                Ok(c) => c,
                Err(e) => return Outcome::error(crate::error::one_line(&e)),
            };
            if let Err(why) = file.check_writable() {
                return Outcome::error(why);
            }
            let desired = authn_file::desired(&current, authn_file::authenticator(&ctx.values));
            if let Err(errors) = desired.validate() {
                return Outcome::error(format!(
                    "{}: with the hub's authenticator the file would be invalid ({})",
                    file.path.display(),
                    errors.join("; ")
                ));
            }
            Outcome::ok()
        })
    }
}
