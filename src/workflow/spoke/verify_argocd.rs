//! `verify-argocd`: Argo CD itself can use the registration. Reads the cluster Secret back from the hub,
//! runs the exec plugin in the application controller pod with the Secret's execProviderConfig, and calls
//! the Secret's server with the Secret's TLS settings, as Argo CD will. A server this machine cannot
//! resolve (kind: `https://<spoke>-control-plane:6443`, a name on the docker network) is reached through
//! `HTTPS_PROXY`, or at the kubeconfig's address with the certificate still verified for the Secret's
//! host name.

use anyhow::Result;
use base64::Engine;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::Value;

use super::SpokeRun;
use crate::error::Error;
use crate::kube::client::{Reach, token_client_reaching};
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
            let reach = Reach::find(&server, &ctx.spoke.server).await;
            let client = token_client_reaching(&server, ca.as_deref(), insecure, &token, &reach)?;
            let username =
                super::verify_identity::check_login(&client, ctx, &proven.claims.sub).await?;
            super::verify_identity::check_rights(&client, ctx, &username).await?;
            report.notes.push(format!(
                "Argo CD's application controller reaches {} as {username}",
                reach.describe(&server)
            ));
            ctx.facts.lock().expect("facts").argocd_reached = Some(server);
            if let Some(smoke) = &ctx.smoke_test {
                let note = smoke_test(ctx, smoke).await?;
                report.notes.push(note.clone());
                ctx.facts.lock().expect("facts").smoke_test = Some(note);
            }
            Ok(())
        })
    }
}

const SMOKE_NAMESPACE: &str = "ztwim-hub-smoke";

/// An Argo CD Application deploys the smoke-test manifests to the spoke; it must become Synced and
/// Healthy and its ConfigMap must be on the spoke. Then it is deleted (with its resources).
async fn smoke_test(ctx: &SpokeRun, smoke: &super::SmokeTest) -> Result<String> {
    use crate::kube::kinds;
    use crate::kube::wait::{self, Readiness, Target};
    use crate::render::object::Object;
    let ns = &ctx.values.gitops_namespace;
    let name = format!("ztwim-hub-smoke-{}", ctx.values.spoke_name);
    let app = Object::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"app.kubernetes.io/managed-by": "ztwim-hub"},
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "default",
            "source": {"repoURL": smoke.repo, "path": smoke.path, "targetRevision": "HEAD"},
            "destination": {"name": ctx.values.spoke_name, "namespace": SMOKE_NAMESPACE},
            "syncPolicy": {"automated": {}, "syncOptions": ["CreateNamespace=true"]},
        },
    }))
    .map_err(|e| anyhow::anyhow!("the smoke-test Application: {e}"))?;
    ctx.applier.apply(&ctx.hub, &app).await?;
    let kind = kinds::known("argoproj.io/v1alpha1", "Application");
    let synced = wait::until(
        &ctx.hub,
        Target {
            kind,
            namespace: Some(ns),
            name: Some(&name),
            label_selector: None,
        },
        &format!("Application {ns}/{name} Synced and Healthy"),
        ctx.timeout,
        |objs| {
            let Some(app) = objs.first() else {
                return Readiness::NotReady("it does not exist".into());
            };
            let get = |p: &str| {
                app.data
                    .pointer(p)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let (sync, health) = (get("/status/sync/status"), get("/status/health/status"));
            if sync == "Synced" && health == "Healthy" {
                return Readiness::Ready;
            }
            let conditions: Vec<String> = app
                .data
                .pointer("/status/conditions")
                .and_then(|c| c.as_array())
                .map(|c| {
                    c.iter()
                        .map(|c| {
                            format!(
                                "{}: {}",
                                c["type"].as_str().unwrap_or(""),
                                c["message"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Readiness::NotReady(format!(
                "sync {sync:?}, health {health:?} {}",
                conditions.join("; ")
            ))
        },
    )
    .await
    .map_err(|e| {
        Error::Verification(format!(
            "the smoke test failed: {}",
            crate::error::one_line(&e)
        ))
    })?;
    drop(synced);
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(ctx.spoke.client.clone(), SMOKE_NAMESPACE);
    if cms.get_opt("ztwim-hub-smoke").await?.is_none() {
        return Err(Error::Verification(format!(
            "Application {ns}/{name} reports Synced and Healthy, but ConfigMap {SMOKE_NAMESPACE}/ztwim-hub-smoke is not on the spoke"
        ))
        .into());
    }
    ctx.applier.delete(&ctx.hub, kind, Some(ns), &name).await?;
    wait::until(
        &ctx.hub,
        Target {
            kind,
            namespace: Some(ns),
            name: Some(&name),
            label_selector: None,
        },
        &format!("Application {ns}/{name} to be deleted with its resources"),
        ctx.timeout,
        |objs| {
            if objs.is_empty() {
                Readiness::Ready
            } else {
                Readiness::NotReady("still there".into())
            }
        },
    )
    .await?;
    Ok(format!(
        "smoke test: Application {name} synced {SMOKE_NAMESPACE}/ztwim-hub-smoke to the spoke, Healthy; deleted again"
    ))
}
