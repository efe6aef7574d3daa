//! `oidc-discovery`: the OIDC discovery provider and its serving certificate (Secret spire-oidc-tls),
//! published on a NodePort. Waits for the Deployment, checks the Service's node port, then fetches the
//! discovery document and the JWKS from the issuer URL over HTTPS, trusting only the certificate's CA.

use anyhow::Result;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Service;
use kube::Api;

use crate::error::Error;
use crate::kube::wait;
use crate::workflow::hub::{HubRun, oidc_discovery};
use crate::workflow::{Step, StepReport};

pub struct OidcDiscovery;

pub const PROVIDER: &str = "spire-oidc-discovery-provider";

impl Step<HubRun> for OidcDiscovery {
    fn name(&self) -> &'static str {
        "oidc-discovery"
    }

    fn about(&self) -> &'static str {
        "serve the issuer on a NodePort; fetch discovery and JWKS over verified TLS"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let spire = ctx.profile.spire();
            let ns = spire.namespace.as_str();
            wait::workload(&ctx.hub, "Deployment", ns, PROVIDER, ctx.timeout).await?;
            if ctx.applier.dry_run.is_none() {
                let services: Api<Service> = Api::namespaced(ctx.hub.client.clone(), ns);
                let port = services
                    .get_opt(PROVIDER)
                    .await?
                    .and_then(|s| s.spec?.ports?.first()?.node_port);
                if port != Some(i32::from(spire.oidc_node_port)) {
                    return Err(Error::Verification(format!(
                        "Service {ns}/{PROVIDER} has node port {}, not {}: the spokes reach the issuer there; is the port taken by another Service?",
                        port.map(|p| p.to_string()).unwrap_or_else(|| "none".into()),
                        spire.oidc_node_port
                    ))
                    .into());
                }
            }
            report.notes.push(format!(
                "{PROVIDER} serves {} on node port {}",
                ctx.values.jwt_issuer, spire.oidc_node_port
            ));
            Ok(())
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let discovery = oidc_discovery::discover(ctx).await?;
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
