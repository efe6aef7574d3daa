//! The read-only checks of a Kubernetes hub (the `preflight` step runs them with the shared ones).

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};
use kube::Api;

use crate::preflight::{Check, Outcome};
use crate::workflow::hub::HubRun;
use crate::workflow::hub::preflight::{Permissions, minor_of};

pub const CHECKS: &[&dyn Check<HubRun>] = &[
    &KubernetesVersion,
    &Permissions,
    &ExistingSpire,
    &CsiDriver,
    &DefaultStorage,
];

/// The oldest Kubernetes the templates are written for (CSI ephemeral volumes, projected tokens, v1 APIs).
const MIN_KUBERNETES: (u32, u32) = (1, 27);

struct KubernetesVersion;

impl Check<HubRun> for KubernetesVersion {
    fn name(&self) -> &'static str {
        "kubernetes-version"
    }
    fn run<'a>(&'a self, ctx: &'a HubRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match ctx.hub.version().await {
                Ok(info) => {
                    let v = info.git_version.trim_start_matches('v').to_string();
                    match minor_of(&v) {
                        Some(m) if (m.major, m.minor) >= MIN_KUBERNETES => Outcome::ok(),
                        Some(_) => Outcome::error(format!(
                            "the hub runs Kubernetes {v}; the kind profile needs {}.{} or later",
                            MIN_KUBERNETES.0, MIN_KUBERNETES.1
                        )),
                        None => Outcome::error(format!("cannot read the Kubernetes version {v:?}")),
                    }
                }
                Err(e) => Outcome::error(format!(
                    "cannot read the Kubernetes version ({})",
                    crate::error::one_line(&e)
                )),
            }
        })
    }
}

struct ExistingSpire;

impl Check<HubRun> for ExistingSpire {
    fn name(&self) -> &'static str {
        "existing-install"
    }
    fn run<'a>(&'a self, ctx: &'a HubRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let ns = &ctx.profile.spire().namespace;
            let cms: Api<ConfigMap> = Api::namespaced(ctx.hub.client.clone(), ns);
            let conf = match cms.get_opt("spire-server").await {
                Ok(cm) => cm.and_then(|cm| cm.data?.get("server.conf").cloned()),
                Err(e) => {
                    return Outcome::error(format!(
                        "cannot read ConfigMap {ns}/spire-server ({})",
                        crate::kube::client::describe_kube_error(&e)
                    ));
                }
            };
            let Some(conf) = conf else {
                return Outcome::ok();
            };
            let conf: serde_json::Value = serde_json::from_str(&conf).unwrap_or_default();
            let td = conf
                .pointer("/server/trust_domain")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            if !td.is_empty() && td != ctx.values.trust_domain {
                return Outcome::error(format!(
                    "SPIRE in {ns} runs with trust domain {td:?}, not {:?}; the trust domain is immutable (omit --trust-domain to keep it)",
                    ctx.values.trust_domain
                ));
            }
            Outcome::ok()
        })
    }
}

struct CsiDriver;

impl Check<HubRun> for CsiDriver {
    fn name(&self) -> &'static str {
        "csi-driver"
    }
    fn run<'a>(&'a self, ctx: &'a HubRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let drivers: Api<CSIDriver> = Api::all(ctx.hub.client.clone());
            match drivers.get_opt("csi.spiffe.io").await {
                Ok(Some(d)) => {
                    let ours = d
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                        .is_some_and(|m| m == "ztwim-hub");
                    if ours {
                        Outcome::ok()
                    } else {
                        Outcome::error(
                            "CSIDriver csi.spiffe.io exists and ztwim-hub did not create it: another SPIRE install runs on this hub; remove it or use that install",
                        )
                    }
                }
                Ok(None) => Outcome::ok(),
                Err(e) => Outcome::error(format!(
                    "cannot read CSIDriver csi.spiffe.io ({})",
                    crate::kube::client::describe_kube_error(&e)
                )),
            }
        })
    }
}

struct DefaultStorage;

impl Check<HubRun> for DefaultStorage {
    fn name(&self) -> &'static str {
        "default-storage-class"
    }
    fn run<'a>(&'a self, ctx: &'a HubRun) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let classes: Api<StorageClass> = Api::all(ctx.hub.client.clone());
            match classes.list(&Default::default()).await {
                Ok(list) => {
                    let default = list.items.iter().any(|c| {
                        c.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
                            .is_some_and(|v| v == "true")
                    });
                    if default {
                        Outcome::ok()
                    } else {
                        Outcome::warning(
                            "no default StorageClass: the spire-server data volume may stay Pending (kind has one, \"standard\")",
                        )
                    }
                }
                Err(e) => Outcome::warning(format!(
                    "cannot list StorageClasses ({}); the spire-server data volume needs a default one",
                    crate::kube::client::describe_kube_error(&e)
                )),
            }
        })
    }
}
