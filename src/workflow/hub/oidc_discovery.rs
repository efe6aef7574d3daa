//! `oidc-discovery`: SPIRE's OIDC issuer is published. Waits for the discovery provider's Route, then
//! fetches the discovery document and the JWKS over HTTPS, trusting the hub's ingress CA and the system
//! roots, and checks the issuer.

use std::time::Duration;

use anyhow::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::HubRun;
use crate::kube::kinds;
use crate::kube::wait::{self, Readiness, Target};
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
    let host = route_host(ctx).await?;
    let ca = ingress_ca(ctx).await?;
    if ca.is_none() {
        ctx.warn("ConfigMap openshift-config-managed/default-ingress-cert has no ca-bundle.crt: the issuer must be trusted by the system roots".into());
    }
    let client = oidc::https_client(ca.as_deref(), Duration::from_secs(30))?;
    let discovery =
        oidc::verify(&client, &format!("https://{host}"), &ctx.values.jwt_issuer).await?;
    ctx.facts.lock().expect("facts").discovery = Some(discovery.clone());
    Ok(discovery)
}
