//! `spire`: the SPIRE server (with spire-controller-manager), the agents, the SPIFFE CSI driver and the
//! ClusterSPIFFEIDs. Waits until the StatefulSet and both DaemonSets are ready, then checks that SPIRE runs
//! with the trust domain and issuer we asked for.

use anyhow::Result;
use futures::future::BoxFuture;

use crate::kube::wait;
use crate::workflow::hub::{HubRun, ztwim_operands};
use crate::workflow::{Step, StepReport};

pub struct Spire;

const WORKLOADS: &[(&str, &str)] = &[
    ("StatefulSet", "spire-server"),
    ("DaemonSet", "spire-agent"),
    ("DaemonSet", "spiffe-csi-driver"),
];

impl Step<HubRun> for Spire {
    fn name(&self) -> &'static str {
        "spire"
    }

    fn about(&self) -> &'static str {
        "apply SPIRE server, agents, CSI driver, ClusterSPIFFEIDs; wait until running"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let ns = ctx.profile.spire().namespace.as_str();
            for (kind, name) in WORKLOADS {
                wait::workload(&ctx.hub, kind, ns, name, ctx.timeout).await?;
            }
            report
                .notes
                .push("SPIRE server, controller manager, agents and CSI driver running".into());
            Ok(())
        })
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let note =
                ztwim_operands::verify_server_conf(ctx, &ctx.profile.spire().namespace).await?;
            report.notes.push(note);
            Ok(())
        })
    }
}
