//! Waits shared by the two operator steps: an OLM operator is installed when its Subscription names an
//! installed CSV in phase Succeeded and its CRDs are Established.

use anyhow::Result;
use kube::api::DynamicObject;

use super::HubRun;
use crate::kube::kinds;
use crate::kube::wait::{self, Readiness, Target};

/// Waits for the Subscription's CSV to succeed, then for each CRD to be Established. Returns notes.
pub async fn wait_installed(
    ctx: &HubRun,
    namespace: &str,
    subscription: &str,
    crds: &[&str],
) -> Result<Vec<String>> {
    let subs = wait::until(
        &ctx.hub,
        Target {
            kind: kinds::known("operators.coreos.com/v1alpha1", "Subscription"),
            namespace: Some(namespace),
            name: Some(subscription),
            label_selector: None,
        },
        &format!("Subscription {namespace}/{subscription} to install a CSV"),
        ctx.timeout,
        subscription_installed,
    )
    .await?;
    let csv_name = subs[0]
        .data
        .pointer("/status/installedCSV")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    wait::until(
        &ctx.hub,
        Target {
            kind: kinds::known("operators.coreos.com/v1alpha1", "ClusterServiceVersion"),
            namespace: Some(namespace),
            name: Some(&csv_name),
            label_selector: None,
        },
        &format!("ClusterServiceVersion {namespace}/{csv_name} phase Succeeded"),
        ctx.timeout,
        csv_succeeded,
    )
    .await?;
    let mut notes = vec![format!("CSV {csv_name} Succeeded")];
    for crd in crds {
        wait::until(
            &ctx.hub,
            Target {
                kind: kinds::known("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
                namespace: None,
                name: Some(crd),
                label_selector: None,
            },
            &format!("CRD {crd} Established"),
            ctx.timeout,
            |objs| wait::condition_true(objs, "Established"),
        )
        .await?;
    }
    notes.push(format!("CRDs Established: {}", crds.join(", ")));
    Ok(notes)
}

fn subscription_installed(objs: &[DynamicObject]) -> Readiness {
    let Some(sub) = objs.first() else {
        return Readiness::NotReady("the Subscription does not exist".into());
    };
    if let Some((status, reason, message)) = wait::condition(sub, "ResolutionFailed")
        && status == "True"
    {
        return Readiness::NotReady(format!(
            "ResolutionFailed reason={reason:?} message={message:?}"
        ));
    }
    match sub
        .data
        .pointer("/status/installedCSV")
        .and_then(|v| v.as_str())
    {
        Some(csv) if !csv.is_empty() => Readiness::Ready,
        _ => Readiness::NotReady(format!(
            "no installedCSV yet (state {:?})",
            sub.data
                .pointer("/status/state")
                .and_then(|v| v.as_str())
                .unwrap_or("")
        )),
    }
}

fn csv_succeeded(objs: &[DynamicObject]) -> Readiness {
    let Some(csv) = objs.first() else {
        return Readiness::NotReady("the CSV does not exist yet".into());
    };
    let phase = csv
        .data
        .pointer("/status/phase")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if phase == "Succeeded" {
        Readiness::Ready
    } else {
        let reason = csv
            .data
            .pointer("/status/reason")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let message = csv
            .data
            .pointer("/status/message")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        Readiness::NotReady(format!(
            "phase {phase:?} reason={reason:?} message={message:?}"
        ))
    }
}
