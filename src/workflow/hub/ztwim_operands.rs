//! `ztwim-operands`: ZTWIM's operands (all `cluster`): SPIRE server, agents, the SPIFFE CSI driver and
//! the OIDC discovery provider. Waits until each reports Ready and its workload runs, then checks that
//! SPIRE runs with the trust domain and issuer we asked for.

use anyhow::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::HubRun;
use crate::error::Error;
use crate::kube::kinds;
use crate::kube::wait::{self, Target};
use crate::workflow::{Step, StepReport};

pub struct ZtwimOperands;

const OPERANDS: &[&str] = &[
    "ZeroTrustWorkloadIdentityManager",
    "SpireServer",
    "SpireAgent",
    "SpiffeCSIDriver",
    "SpireOIDCDiscoveryProvider",
];

const WORKLOADS: &[(&str, &str)] = &[
    ("StatefulSet", "spire-server"),
    ("DaemonSet", "spire-agent"),
    ("DaemonSet", "spire-spiffe-csi-driver"),
    ("Deployment", "spire-spiffe-oidc-discovery-provider"),
];

impl Step<HubRun> for ZtwimOperands {
    fn name(&self) -> &'static str {
        "ztwim-operands"
    }

    fn about(&self) -> &'static str {
        "apply the five ZTWIM operands; wait until Ready and running"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for kind in OPERANDS {
                let k = kinds::known("operator.openshift.io/v1alpha1", kind);
                wait::until(
                    &ctx.hub,
                    Target {
                        kind: k,
                        namespace: None,
                        name: Some("cluster"),
                        label_selector: None,
                    },
                    &format!("{kind} cluster Ready"),
                    ctx.timeout,
                    |objs| wait::condition_true(objs, "Ready"),
                )
                .await?;
            }
            report.notes.push("operands Ready".into());
            let ns = ctx.profile.ztwim().namespace.as_str();
            for (kind, name) in WORKLOADS {
                wait::workload(&ctx.hub, kind, ns, name, ctx.timeout).await?;
            }
            report.notes.push(
                "SPIRE server, agents, CSI driver and OIDC discovery provider running".into(),
            );
            Ok(())
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let note = verify_server_conf(ctx, &ctx.profile.ztwim().namespace).await?;
            report.notes.push(note);
            Ok(())
        })
    }
}

/// SPIRE runs with the trust domain and issuer we asked for: ConfigMap `<ns>/spire-server`'s
/// `server.conf` (JSON, as ZTWIM and our kind templates write it).
pub async fn verify_server_conf(ctx: &HubRun, ns: &str) -> Result<String> {
    if ctx.applier.dry_run.is_some() {
        return Ok("dry run: SPIRE's configuration not read back".into());
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.hub.client.clone(), ns);
    let cm = cms.get_opt("spire-server").await?.ok_or_else(|| {
        Error::Verification(format!(
            "ConfigMap {ns}/spire-server does not exist: SPIRE is not configured"
        ))
    })?;
    let conf = cm
        .data
        .as_ref()
        .and_then(|d| d.get("server.conf"))
        .ok_or_else(|| {
            Error::Verification(format!("ConfigMap {ns}/spire-server has no server.conf"))
        })?;
    let conf: serde_json::Value = serde_json::from_str(conf).map_err(|e| {
        Error::Verification(format!(
            "ConfigMap {ns}/spire-server server.conf is not JSON ({e})"
        ))
    })?;
    let read = |key: &str| {
        conf.pointer(&format!("/server/{key}"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (trust_domain, issuer) = (read("trust_domain"), read("jwt_issuer"));
    if trust_domain != ctx.values.trust_domain {
        return Err(Error::Verification(format!(
            "SPIRE runs with trust domain {trust_domain:?}, not {:?}",
            ctx.values.trust_domain
        ))
        .into());
    }
    if issuer != ctx.values.jwt_issuer {
        return Err(Error::Verification(format!(
            "SPIRE runs with jwt_issuer {issuer:?}, not {:?}",
            ctx.values.jwt_issuer
        ))
        .into());
    }
    Ok(format!(
        "SPIRE trust domain {trust_domain}, issuer {issuer}"
    ))
}
