//! `ztwim-operator`: the Zero Trust Workload Identity Manager from OLM.

use anyhow::Result;
use futures::future::BoxFuture;

use super::HubRun;
use crate::workflow::{Step, StepReport};

pub struct ZtwimOperator;

/// The CRDs ZTWIM installs that bootstrap uses.
pub const CRDS: &[&str] = &[
    "zerotrustworkloadidentitymanagers.operator.openshift.io",
    "spireservers.operator.openshift.io",
    "spireagents.operator.openshift.io",
    "spiffecsidrivers.operator.openshift.io",
    "spireoidcdiscoveryproviders.operator.openshift.io",
];

impl Step<HubRun> for ZtwimOperator {
    fn name(&self) -> &'static str {
        "ztwim-operator"
    }

    fn about(&self) -> &'static str {
        "install ZTWIM from OLM; wait for its CSV and CRDs"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let op = &ctx.profile.ztwim().operator;
            let notes = super::olm::wait_installed(
                ctx,
                &ctx.profile.ztwim().namespace,
                &op.subscription,
                CRDS,
            )
            .await?;
            report.notes.extend(notes);
            Ok(())
        })
    }
}
