//! `identity`: the proof. Inside the Argo CD server and application controller pods, run the exec
//! plugin exactly as Argo CD will, and verify the JWT-SVID it returns against the issuer's JWKS: signature,
//! issuer, audience, subject (the pod's SPIFFE ID) and expiry. Only the claims are reported.

use anyhow::Result;
use futures::future::BoxFuture;

use super::HubRun;
use super::argocd::{COMPONENTS, diagnose, ready_pod};
use crate::error::Error;
use crate::verify::identity::{self, Plugin};
use crate::workflow::{Step, StepReport};

pub struct Identity;

pub fn plugin(ctx: &HubRun) -> Plugin {
    let e = &ctx.profile.exec_auth;
    Plugin {
        command: format!("{}/k8s-spiffe-workload-jwt-exec-auth", e.binary_dir),
        socket: format!("unix://{}/{}", e.socket_dir, e.socket_name),
        audience: ctx.audience.clone(),
        credential_version: e.exec_credential_version.clone(),
    }
}

impl Step<HubRun> for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn about(&self) -> &'static str {
        "get a JWT-SVID in the Argo CD pods; verify it against the JWKS"
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let discovery = super::oidc_discovery::discover(ctx).await?;
            let plugin = plugin(ctx);
            for (component, container) in COMPONENTS {
                let pod = ready_pod(ctx, component).await?;
                let name = pod.metadata.name.clone().unwrap_or_default();
                let expected = if *component == "server" {
                    &ctx.values.identities.server
                } else {
                    &ctx.values.identities.controller
                };
                let proven = identity::prove(
                    &ctx.hub,
                    &ctx.values.gitops_namespace,
                    &name,
                    container,
                    &plugin,
                    &discovery.jwks,
                    &ctx.values.jwt_issuer,
                    expected,
                    ctx.exec_timeout,
                )
                .await
                .map_err(|e| match diagnose(ctx, &pod, container) {
                    Some(why) => {
                        Error::Verification(format!("{}: {why}", crate::error::one_line(&e))).into()
                    }
                    None => e,
                })?;
                for warning in &proven.warnings {
                    ctx.warn(warning.clone());
                }
                report.notes.push(format!(
                    "{container}: JWT-SVID for {} (aud {}, valid {}s) verified",
                    proven.claims.sub,
                    proven.claims.aud.join(","),
                    proven
                        .lifetime_seconds
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "?".into())
                ));
                ctx.facts.lock().expect("facts").identities.push(proven);
            }
            Ok(())
        })
    }
}
