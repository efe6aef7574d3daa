//! `verify-argocd`: Argo CD itself can use the registration. Reads the cluster Secret back from the hub,
//! runs the exec plugin in the application controller pod with the Secret's execProviderConfig, and calls
//! the Secret's server with the Secret's TLS settings, as Argo CD will.

use anyhow::Result;
use base64::Engine;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::Value;

use super::SpokeRun;
use crate::error::Error;
use crate::kube::client::token_client;
use crate::verify::identity::{self, Plugin};
use crate::workflow::{Step, StepReport};

pub struct VerifyArgocd;

impl Step<SpokeRun> for VerifyArgocd {
    fn name(&self) -> &'static str {
        "verify-argocd"
    }

    fn about(&self) -> &'static str {
        "call the spoke the way Argo CD will: the Secret's plugin, server and CA"
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let fail = |m: String| -> anyhow::Error { Error::Verification(m).into() };
            let ns = &ctx.values.gitops_namespace;
            let name = &ctx.values.spoke_name;
            let secrets: Api<Secret> = Api::namespaced(ctx.hub.client.clone(), ns);
            let secret = secrets.get_opt(name).await?.ok_or_else(|| {
                fail(format!(
                    "the cluster Secret {ns}/{name} does not exist on the hub"
                ))
            })?;
            let field = |key: &str| -> Result<String> {
                let bytes = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .ok_or_else(|| fail(format!("the cluster Secret {ns}/{name} has no {key}")))?;
                Ok(String::from_utf8_lossy(&bytes.0).into_owned())
            };
            let server = field("server")?;
            let config: Value = serde_json::from_str(&field("config")?)
                .map_err(|e| fail(format!("the cluster Secret's config is not JSON ({e})")))?;
            let exec = &config["execProviderConfig"];
            let env = |k: &str| exec["env"][k].as_str().unwrap_or_default().to_string();
            let plugin = Plugin {
                command: exec["command"].as_str().unwrap_or_default().to_string(),
                socket: env("SPIFFE_ENDPOINT_SOCKET"),
                audience: env("SPIFFE_JWT_AUDIENCE"),
                credential_version: exec["apiVersion"]
                    .as_str()
                    .and_then(|v| v.strip_prefix("client.authentication.k8s.io/"))
                    .unwrap_or_default()
                    .to_string(),
            };
            if env("EXEC_CREDENTIAL_VERSION") != plugin.credential_version {
                return Err(fail(format!(
                    "the cluster Secret asks for {} but EXEC_CREDENTIAL_VERSION is {:?}: Argo CD would reject the plugin's output",
                    exec["apiVersion"],
                    env("EXEC_CREDENTIAL_VERSION")
                )));
            }
            let tls = &config["tlsClientConfig"];
            let insecure = tls["insecure"].as_bool().unwrap_or(false);
            let ca = match tls["caData"].as_str() {
                Some(b64) => Some(
                    String::from_utf8_lossy(
                        &base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| fail(format!("caData is not base64 ({e})")))?,
                    )
                    .into_owned(),
                ),
                None => None,
            };
            let discovery = ctx.discovery().await?;
            let pod = crate::kube::wait::ready_pod(
                &ctx.hub,
                ns,
                &ctx.argocd_selector("application-controller"),
                ctx.timeout,
            )
            .await?;
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            let (proven, token) = identity::obtain(
                &ctx.hub,
                ns,
                &pod_name,
                "argocd-application-controller",
                &plugin,
                &discovery.jwks,
                &ctx.values.issuer_url,
                &ctx.values.identities.controller,
                ctx.exec_timeout,
            )
            .await?;
            let client = token_client(&server, ca.as_deref(), insecure, &token)?;
            let username =
                super::verify_identity::check_login(&client, ctx, &proven.claims.sub).await?;
            super::verify_identity::check_rights(&client, ctx, &username).await?;
            report.notes.push(format!(
                "Argo CD's application controller reaches {server} as {username}"
            ));
            ctx.facts.lock().expect("facts").argocd_reached = Some(server);
            Ok(())
        })
    }
}
