//! `argocd`: the Argo CD instance in its own namespace, with the exec-auth init container and the SPIFFE
//! CSI volume on the server and the application controller. Waits until it is Available and both pods
//! are Ready, then checks the pods really carry the plumbing.

use anyhow::Result;
use futures::future::BoxFuture;
use kube::api::DynamicObject;

use super::HubRun;
use crate::kube::kinds;
use crate::kube::wait::{self, Readiness, Target};
use crate::workflow::{Step, StepReport};

pub struct ArgoCd;

/// The Argo CD components that run the exec plugin: (label suffix, container).
pub const COMPONENTS: &[(&str, &str)] = &[
    ("server", "argocd-server"),
    ("application-controller", "argocd-application-controller"),
];

pub fn selector(ctx: &HubRun, component: &str) -> String {
    let argo = ctx.profile.argo();
    let label = match component {
        "server" => argo.server_label,
        _ => argo.controller_label,
    };
    format!("app.kubernetes.io/name={label}")
}

/// Waits until the server's and the application controller's pods are Ready.
pub async fn wait_pods(ctx: &HubRun) -> Result<()> {
    let ns = ctx.values.gitops_namespace.as_str();
    let pod_kind = kinds::known("v1", "Pod");
    for (component, _) in COMPONENTS {
        let selector = selector(ctx, component);
        wait::until(
            &ctx.hub,
            Target {
                kind: pod_kind,
                namespace: Some(ns),
                name: None,
                label_selector: Some(&selector),
            },
            &format!("pods {selector} in {ns} Ready"),
            ctx.timeout,
            wait::pods_ready,
        )
        .await?;
    }
    Ok(())
}

impl Step<HubRun> for ArgoCd {
    fn name(&self) -> &'static str {
        "argocd"
    }

    fn about(&self) -> &'static str {
        "apply Argo CD with the exec plugin and CSI volume; wait for pods"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let ns = ctx.values.gitops_namespace.as_str();
            let instance = ctx.profile.gitops().instance.as_str();
            let kind = kinds::known("argoproj.io/v1beta1", "ArgoCD");
            wait::until(
                &ctx.hub,
                Target {
                    kind,
                    namespace: Some(ns),
                    name: Some(instance),
                    label_selector: None,
                },
                &format!("ArgoCD {ns}/{instance} phase Available"),
                ctx.timeout,
                |objs| match objs
                    .first()
                    .and_then(|a| a.data.pointer("/status/phase"))
                    .and_then(|p| p.as_str())
                {
                    Some("Available") => Readiness::Ready,
                    Some(phase) => Readiness::NotReady(format!("phase {phase}")),
                    None => Readiness::NotReady("no status yet".into()),
                },
            )
            .await?;
            wait_pods(ctx).await?;
            report
                .notes
                .push("Argo CD Available, server and application controller Ready".into());
            Ok(())
        })
    }
}

/// A Ready pod of the component.
pub async fn ready_pod(ctx: &HubRun, component: &str) -> Result<DynamicObject> {
    wait::ready_pod(
        &ctx.hub,
        &ctx.values.gitops_namespace,
        &selector(ctx, component),
        ctx.timeout,
    )
    .await
}

/// Why a pod cannot run the exec plugin, from its spec: no init container, no CSI volume, or the volume
/// not mounted where the plugin looks. `None` when the plumbing looks right.
pub fn diagnose(ctx: &HubRun, pod: &DynamicObject, container: &str) -> Option<String> {
    check_plumbing(ctx, pod, container).err()
}

fn check_plumbing(ctx: &HubRun, pod: &DynamicObject, container: &str) -> Result<(), String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.data.get("spec").cloned().unwrap_or_default();
    let fail = |what: &str| -> String {
        format!(
            "pod {}/{name} {what} (check spec.server and spec.controller of ArgoCD {}; re-apply it with --only argocd)",
            ctx.values.gitops_namespace,
            ctx.profile.gitops().instance
        )
    };
    let empty = Vec::new();
    let list = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(|x| x.as_array())
            .cloned()
            .unwrap_or_default()
    };
    if !list(&spec, "initContainers")
        .iter()
        .any(|c| c["name"] == "install-jwt-spiffe")
    {
        return Err(fail("has no install-jwt-spiffe init container"));
    }
    let socket_volume = list(&spec, "volumes")
        .into_iter()
        .find(|v| v["csi"]["driver"] == "csi.spiffe.io")
        .ok_or_else(|| fail("has no csi.spiffe.io volume"))?;
    let containers = list(&spec, "containers");
    let main = containers
        .iter()
        .find(|c| c["name"] == container)
        .ok_or_else(|| fail(&format!("has no container {container}")))?;
    let mounts = main
        .get("volumeMounts")
        .and_then(|m| m.as_array())
        .unwrap_or(&empty);
    let socket_dir = ctx.profile.exec_auth.socket_dir.as_str();
    if !mounts
        .iter()
        .any(|m| m["name"] == socket_volume["name"] && m["mountPath"] == socket_dir)
    {
        return Err(fail(&format!(
            "does not mount the SPIFFE CSI volume at {socket_dir} in {container}"
        )));
    }
    Ok(())
}
