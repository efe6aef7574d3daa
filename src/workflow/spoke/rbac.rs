//! `rbac`: the ClusterRoleBinding for the Argo CD server and application controller SPIFFE IDs
//! (cluster-admin, or the least-privilege ClusterRole).

use crate::workflow::Step;

use super::SpokeRun;

pub struct Rbac;

impl Step<SpokeRun> for Rbac {
    fn name(&self) -> &'static str {
        "rbac"
    }
    fn about(&self) -> &'static str {
        "bind the Argo CD SPIFFE IDs on the spoke (cluster-admin or least-privilege)"
    }
}
