//! `preflight`: read-only checks, reported together, before anything changes.

use anyhow::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::HubRun;
use crate::kube::apply::api_for;
use crate::kube::client::describe_kube_error;
use crate::kube::kinds;
use crate::preflight::{self, Check, Outcome};
use crate::profile::Platform;
use crate::validate::MinorVersion;
use crate::workflow::{Step, StepReport};

pub struct Preflight;

impl Step<HubRun> for Preflight {
    fn name(&self) -> &'static str {
        "preflight"
    }

    fn about(&self) -> &'static str {
        "check version, permissions, the catalog (OpenShift), any existing install"
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let checks: Vec<&dyn Check<HubRun>> = match ctx.profile.platform {
                Platform::Openshift => CHECKS.to_vec(),
                Platform::Kubernetes => super::kubernetes::preflight::CHECKS.to_vec(),
            };
            let warnings = preflight::run(&checks, ctx, &ctx.ignore).await?;
            for w in warnings {
                ctx.warn(w);
            }
            report.notes.push(format!("{} checks passed", checks.len()));
            Ok(())
        })
    }
}

/// The names of the checks, for `--ignore-preflight-errors`.
pub fn check_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = CHECKS
        .iter()
        .chain(super::kubernetes::preflight::CHECKS)
        .map(|c| c.name())
        .collect();
    names.sort();
    names.dedup();
    names
}

const CHECKS: &[&dyn Check<HubRun>] = &[&Version, &Permissions, &Packages, &ExistingInstall];

/// Parses `4.20.3` (or `4.20`) into 4.20.
pub fn minor_of(version: &str) -> Option<MinorVersion> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some(MinorVersion { major, minor })
}

/// The cluster's OpenShift version from ClusterVersion `version`.
pub async fn openshift_version(cluster: &crate::kube::client::Cluster) -> Result<Option<String>> {
    let kind = kinds::known("config.openshift.io/v1", "ClusterVersion");
    let api = api_for(cluster, kind, None);
    let cv = api.get_opt("version").await?;
    Ok(cv.and_then(|cv| {
        cv.data
            .pointer("/status/desired/version")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }))
}

struct Version;

impl Check<HubRun> for Version {
    fn name(&self) -> &'static str {
        "openshift-version"
    }
    fn run<'a>(&'a self, ctx: &'a HubRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let min = ctx.profile.ztwim().hub_min_version;
            match openshift_version(&ctx.hub).await {
                Ok(Some(v)) => match minor_of(&v) {
                    Some(m) if m >= min => Outcome::ok(),
                    Some(_) => Outcome::error(format!(
                        "the hub runs OpenShift {v}; ZTWIM needs {min} or later"
                    )),
                    None => Outcome::error(format!("cannot read the OpenShift version {v:?}")),
                },
                Ok(None) => Outcome::error(
                    "ClusterVersion version has no status.desired.version: is this OpenShift?",
                ),
                Err(e) => Outcome::error(format!(
                    "cannot read ClusterVersion version ({})",
                    crate::error::one_line(&e)
                )),
            }
        })
    }
}

pub(super) struct Permissions;

impl Check<HubRun> for Permissions {
    fn name(&self) -> &'static str {
        "permissions"
    }
    fn run<'a>(&'a self, ctx: &'a HubRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut wanted: Vec<(String, String, String, Option<String>)> = Vec::new();
            for planned in &ctx.plan.objects {
                let k = planned.object.known_kind();
                for verb in ["get", "create", "patch"] {
                    wanted.push((
                        verb.into(),
                        k.group.into(),
                        k.plural.into(),
                        planned.object.namespace(),
                    ));
                }
            }
            let gitops_ns = Some(ctx.values.gitops_namespace.clone());
            wanted.push((
                "create".into(),
                "".into(),
                "pods/exec".into(),
                gitops_ns.clone(),
            ));
            wanted.push(("list".into(), "".into(), "pods".into(), gitops_ns));
            wanted.push((
                "watch".into(),
                "apiextensions.k8s.io".into(),
                "customresourcedefinitions".into(),
                None,
            ));
            wanted.dedup();
            let reviews: Api<SelfSubjectAccessReview> = Api::all(ctx.hub.client.clone());
            let mut denied = Vec::new();
            for (verb, group, resource, namespace) in wanted {
                let (resource, subresource) = match resource.split_once('/') {
                    Some((r, s)) => (r.to_string(), Some(s.to_string())),
                    None => (resource, None),
                };
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(ResourceAttributes {
                            verb: Some(verb.clone()),
                            group: Some(group.clone()),
                            resource: Some(resource.clone()),
                            subresource: subresource.clone(),
                            namespace: namespace.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match reviews.create(&PostParams::default(), &review).await {
                    Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {}
                    Ok(_) => denied.push(format!(
                        "{verb} {}{}{}",
                        if group.is_empty() {
                            resource.clone()
                        } else {
                            format!("{resource}.{group}")
                        },
                        subresource.map(|s| format!("/{s}")).unwrap_or_default(),
                        namespace.map(|n| format!(" in {n}")).unwrap_or_default()
                    )),
                    Err(e) => {
                        return Outcome::error(format!(
                            "cannot ask the API server what you may do ({})",
                            describe_kube_error(&e)
                        ));
                    }
                }
            }
            if denied.is_empty() {
                Outcome::ok()
            } else {
                Outcome::error(format!(
                    "user of context {} may not: {}; use a cluster-admin context",
                    ctx.hub.context,
                    denied.join(", ")
                ))
            }
        })
    }
}

struct Packages;

impl Check<HubRun> for Packages {
    fn name(&self) -> &'static str {
        "catalog-packages"
    }
    fn run<'a>(&'a self, ctx: &'a HubRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut outcome = Outcome::ok();
            for (op, channel) in [
                (
                    &ctx.profile.ztwim().operator,
                    &ctx.values.openshift().ztwim_channel,
                ),
                (
                    &ctx.profile.gitops().operator,
                    &ctx.values.openshift().gitops_channel,
                ),
            ] {
                match package_channels(&ctx.hub, &op.source_namespace, &op.package).await {
                    Ok(Some((_, channels))) if channels.contains(channel) => {}
                    Ok(Some((_, channels))) => outcome.errors.push(format!(
                        "package {} has no channel {channel:?} (channels: {})",
                        op.package,
                        channels.join(", ")
                    )),
                    Ok(None) => outcome.errors.push(format!(
                        "package {} is not in the catalog (PackageManifest in {}); is the {} CatalogSource available?",
                        op.package, op.source_namespace, op.source
                    )),
                    Err(e) => outcome.errors.push(format!("cannot read PackageManifest {} ({})", op.package, crate::error::one_line(&e))),
                }
            }
            outcome
        })
    }
}

/// A package's default channel and channels, from its PackageManifest.
pub async fn package_channels(
    cluster: &crate::kube::client::Cluster,
    namespace: &str,
    package: &str,
) -> Result<Option<(Option<String>, Vec<String>)>> {
    let kind = kinds::known("packages.operators.coreos.com/v1", "PackageManifest");
    let api = api_for(cluster, kind, Some(namespace));
    let Some(pm) = api.get_opt(package).await? else {
        return Ok(None);
    };
    let channels: Vec<String> = pm
        .data
        .pointer("/status/channels")
        .and_then(|c| c.as_array())
        .map(|c| {
            c.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let default = pm
        .data
        .pointer("/status/defaultChannel")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .or_else(|| {
            if channels.len() == 1 {
                Some(channels[0].clone())
            } else {
                None
            }
        });
    Ok(Some((default, channels)))
}

struct ExistingInstall;

impl Check<HubRun> for ExistingInstall {
    fn name(&self) -> &'static str {
        "existing-install"
    }
    fn run<'a>(&'a self, ctx: &'a HubRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match existing_ztwim(&ctx.hub).await {
                Ok(Some((td, cn))) => {
                    let mut outcome = Outcome::ok();
                    if td != ctx.values.trust_domain {
                        outcome.errors.push(format!(
                            "ZTWIM is installed with trust domain {td:?}, not {:?}; the trust domain is immutable (omit --trust-domain to keep it)",
                            ctx.values.trust_domain
                        ));
                    }
                    if cn != ctx.values.cluster_name {
                        outcome.errors.push(format!(
                            "ZTWIM is installed with cluster name {cn:?}, not {:?}; the cluster name is immutable (omit --cluster-name to keep it)",
                            ctx.values.cluster_name
                        ));
                    }
                    outcome
                }
                Ok(None) => Outcome::ok(),
                Err(e) => Outcome::error(format!(
                    "cannot read ZeroTrustWorkloadIdentityManager cluster ({})",
                    crate::error::one_line(&e)
                )),
            }
        })
    }
}

/// The trust domain and cluster name of an existing ZTWIM install, if any.
pub async fn existing_ztwim(
    cluster: &crate::kube::client::Cluster,
) -> Result<Option<(String, String)>> {
    let kind = kinds::known(
        "operator.openshift.io/v1alpha1",
        "ZeroTrustWorkloadIdentityManager",
    );
    let api = api_for(cluster, kind, None);
    match api.get_opt("cluster").await {
        Ok(Some(obj)) => {
            let s = |k: &str| {
                obj.data
                    .pointer(&format!("/spec/{k}"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            Ok(Some((s("trustDomain"), s("clusterName"))))
        }
        Ok(None) => Ok(None),
        // Not installed yet: the API is not served.
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e.into()),
    }
}
