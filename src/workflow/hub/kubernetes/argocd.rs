//! `argocd`: upstream Argo CD from its release manifest, with the exec-auth init container and the SPIFFE
//! CSI volume merged into argocd-server and argocd-application-controller. Waits until both are ready; the
//! shared `identity` step then checks the pods' plumbing and proves their identities.

use anyhow::Result;
use futures::future::BoxFuture;

use crate::kube::wait;
use crate::render::upstream::ARGOCD_PATCHED;
use crate::workflow::hub::{HubRun, argocd};
use crate::workflow::{Step, StepReport};

pub struct UpstreamArgoCd;

impl Step<HubRun> for UpstreamArgoCd {
    fn name(&self) -> &'static str {
        "argocd"
    }

    fn about(&self) -> &'static str {
        "apply Argo CD's release with the exec plugin and CSI volume; wait for pods"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let ns = ctx.values.gitops_namespace.as_str();
            for (kind, name, _) in ARGOCD_PATCHED {
                wait::workload(&ctx.hub, kind, ns, name, ctx.timeout).await?;
            }
            argocd::wait_pods(ctx).await?;
            report.notes.push(format!(
                "Argo CD {} in {ns}: server and application controller Ready",
                ctx.profile.upstream_argocd().version
            ));
            Ok(())
        })
    }
}
