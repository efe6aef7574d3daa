//! `spire-crds`: the spire-controller-manager CRDs (ClusterSPIFFEID and friends) from its release, applied
//! and awaited until Established.

use anyhow::Result;
use futures::future::BoxFuture;

use crate::kube::kinds;
use crate::kube::wait::{self, Target};
use crate::workflow::hub::HubRun;
use crate::workflow::{Step, StepReport};

pub struct SpireCrds;

impl Step<HubRun> for SpireCrds {
    fn name(&self) -> &'static str {
        "spire-crds"
    }

    fn about(&self) -> &'static str {
        "apply the spire-controller-manager CRDs; wait until Established"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let kind = kinds::known("apiextensions.k8s.io/v1", "CustomResourceDefinition");
            let mut names = Vec::new();
            for planned in ctx.plan.step(self.name()) {
                let name = planned.object.name();
                wait::until(
                    &ctx.hub,
                    Target {
                        kind,
                        namespace: None,
                        name: Some(&name),
                        label_selector: None,
                    },
                    &format!("CRD {name} Established"),
                    ctx.timeout,
                    |objs| wait::condition_true(objs, "Established"),
                )
                .await?;
                names.push(name);
            }
            report
                .notes
                .push(format!("CRDs Established: {}", names.join(", ")));
            Ok(())
        })
    }
}
