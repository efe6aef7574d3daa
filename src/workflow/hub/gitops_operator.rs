//! `gitops-operator`: OpenShift GitOps from OLM, without its default Argo CD instance.

use anyhow::Result;
use futures::future::BoxFuture;

use super::HubRun;
use crate::workflow::{Step, StepReport};

pub struct GitopsOperator;

impl Step<HubRun> for GitopsOperator {
    fn name(&self) -> &'static str {
        "gitops-operator"
    }

    fn about(&self) -> &'static str {
        "install OpenShift GitOps from OLM; wait for its CSV and CRD"
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a HubRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let op = &ctx.profile.gitops().operator;
            let notes = super::olm::wait_installed(
                ctx,
                &ctx.profile.gitops().operator_namespace,
                &op.subscription,
                &["argocds.argoproj.io"],
            )
            .await?;
            report.notes.extend(notes);
            Ok(())
        })
    }
}
