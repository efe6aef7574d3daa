//! `oidc-discovery`: SPIRE's OIDC issuer is published. Waits for the discovery provider's Route, then
//! fetches the discovery document and the JWKS over HTTPS, trusting the hub's ingress CA and the system
//! roots, and checks the issuer.

use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;

use super::HubRun;
use crate::kube::kinds;
use crate::kube::wait::{self, Readiness, Target};
use crate::profile::Platform;
use crate::verify::oidc::{self, Discovery};
use crate::workflow::{Step, StepReport};

pub struct OidcDiscovery;

pub const ROUTE: &str = "spire-oidc-discovery-provider";

impl Step<HubRun> for OidcDiscovery {
    fn name(&self) -> &'static str {
        "oidc-discovery"
    }

    fn about(&self) -> &'static str {
        "fetch the OIDC discovery document and JWKS over verified TLS"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let host = route_host(ctx).await?;
            report.notes.push(format!("Route {ROUTE} serves {host}"));
            Ok(())
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let discovery = discover(ctx).await?;
            report.notes.push(format!(
                "issuer {} serves {} key(s), algorithms {}",
                discovery.issuer,
                discovery.key_ids.len(),
                discovery.algorithms.join(",")
            ));
            Ok(())
        })
    }
}

/// The Route's admitted host (waits for it).
pub async fn route_host(ctx: &HubRun) -> Result<String> {
    if let Some(host) = ctx.facts.lock().expect("facts").route_host.clone() {
        return Ok(host);
    }
    let kind = kinds::known("route.openshift.io/v1", "Route");
    let routes = wait::until(
        &ctx.hub,
        Target {
            kind,
            namespace: Some(&ctx.profile.ztwim().namespace),
            name: Some(ROUTE),
            label_selector: None,
        },
        &format!(
            "Route {}/{ROUTE} with a host",
            ctx.profile.ztwim().namespace
        ),
        ctx.timeout,
        |objs| match objs
            .first()
            .and_then(|r| r.data.pointer("/spec/host"))
            .and_then(|h| h.as_str())
        {
            Some(host) if !host.is_empty() => Readiness::Ready,
            _ => Readiness::NotReady("the Route has no host yet".into()),
        },
    )
    .await?;
    let host = routes[0]
        .data
        .pointer("/spec/host")
        .and_then(|h| h.as_str())
        .unwrap_or_default()
        .to_string();
    ctx.facts.lock().expect("facts").route_host = Some(host.clone());
    Ok(host)
}

/// The CA of a Kubernetes hub's OIDC serving certificate (`ca.crt` of Secret spire-oidc-tls).
pub async fn serving_ca(ctx: &HubRun) -> Result<Option<String>> {
    let secrets: Api<Secret> =
        Api::namespaced(ctx.hub.client.clone(), &ctx.profile.spire().namespace);
    Ok(secrets
        .get_opt(crate::render::tls::SECRET)
        .await?
        .and_then(|s| s.data)
        .and_then(|d| {
            d.get("ca.crt")
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        }))
}

/// The hub's ingress CA (PEM), if published.
pub async fn ingress_ca(ctx: &HubRun) -> Result<Option<String>> {
    let cms: Api<ConfigMap> = Api::namespaced(ctx.hub.client.clone(), "openshift-config-managed");
    Ok(cms
        .get_opt("default-ingress-cert")
        .await?
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("ca-bundle.crt").cloned()))
}

/// The verified discovery document and JWKS (fetched once per run).
pub async fn discover(ctx: &HubRun) -> Result<Discovery> {
    if let Some(d) = ctx.facts.lock().expect("facts").discovery.clone() {
        return Ok(d);
    }
    let discovery = match ctx.profile.platform {
        Platform::Openshift => {
            let host = route_host(ctx).await?;
            let ca = ingress_ca(ctx).await?;
            if ca.is_none() {
                ctx.warn("ConfigMap openshift-config-managed/default-ingress-cert has no ca-bundle.crt: the issuer must be trusted by the system roots".into());
            }
            let client = oidc::https_client(ca.as_deref(), Duration::from_secs(30))?;
            oidc::verify(&client, &format!("https://{host}"), &ctx.values.jwt_issuer).await?
        }
        Platform::Kubernetes => {
            // Only the CA bootstrap made signs the issuer's certificate: trust that and nothing else
            // would be stricter, but the system roots stay so that a publicly trusted --issuer-url works.
            let ca = serving_ca(ctx).await?;
            let issuer = &ctx.values.jwt_issuer;
            let client = oidc::https_client_reaching(
                ca.as_deref(),
                Duration::from_secs(30),
                issuer,
                Some(&ctx.profile.spire().oidc_host_address),
            )
            .await?;
            oidc::verify(&client, issuer, issuer).await?
        }
    };
    ctx.facts.lock().expect("facts").discovery = Some(discovery.clone());
    Ok(discovery)
}
