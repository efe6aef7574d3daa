//! `argocd-cluster`: the spoke registered in Argo CD: a cluster Secret on the hub whose
//! execProviderConfig runs the exec plugin (no token is stored anywhere).

use crate::workflow::Step;

use super::SpokeRun;

pub struct ArgocdCluster;

impl Step<SpokeRun> for ArgocdCluster {
    fn name(&self) -> &'static str {
        "argocd-cluster"
    }
    fn about(&self) -> &'static str {
        "register the spoke in Argo CD: the cluster Secret on the hub"
    }

    /// Only the hub changes, so it goes ahead while the spoke's kube-apiserver rolls out.
    fn runs_during(&self) -> Option<&'static str> {
        Some("apiserver-rollout")
    }
}
