//! `bootstrap`'s steps, in order, one file each. [`HubRun`] is their typed context.

mod argocd;
mod gitops_operator;
mod identity;
mod oidc_discovery;
mod olm;
pub mod preflight;
mod ztwim_operands;
mod ztwim_operator;

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

pub use preflight::{check_names, existing_ztwim, package_channels};

use super::{Step, Workflow};
use crate::kube::apply::Applier;
use crate::kube::client::Cluster;
use crate::output::Printer;
use crate::preflight::Ignore;
use crate::profile::{Profile, Side};
use crate::render::plan::Plan;
use crate::render::values::BootstrapValues;
use crate::verify::identity::Proven;
use crate::verify::oidc::Discovery;

/// Everything a bootstrap step needs.
pub struct HubRun {
    pub printer: Printer,
    pub profile: Profile,
    pub hub: Cluster,
    pub values: BootstrapValues,
    pub plan: Plan,
    pub applier: Applier,
    pub timeout: Duration,
    pub exec_timeout: Duration,
    /// The audience of the JWT-SVIDs the identity step obtains.
    pub audience: String,
    pub ignore: Ignore,
    pub facts: Mutex<Facts>,
}

/// What the steps found out, for the final report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Facts {
    pub route_host: Option<String>,
    pub discovery: Option<Discovery>,
    pub identities: Vec<Proven>,
    pub warnings: Vec<String>,
}

impl Workflow for HubRun {
    fn printer(&self) -> &Printer {
        &self.printer
    }
    fn plan(&self) -> &Plan {
        &self.plan
    }
    fn applier(&self) -> &Applier {
        &self.applier
    }
    fn cluster(&self, _side: Side) -> &Cluster {
        &self.hub
    }
}

impl HubRun {
    pub fn warn(&self, msg: String) {
        self.printer.warn(&msg);
        self.facts.lock().expect("facts lock").warnings.push(msg);
    }
}

/// The steps of `bootstrap`, in order.
pub fn steps() -> Vec<&'static dyn Step<HubRun>> {
    vec![
        &preflight::Preflight,
        &ztwim_operator::ZtwimOperator,
        &ztwim_operands::ZtwimOperands,
        &oidc_discovery::OidcDiscovery,
        &gitops_operator::GitopsOperator,
        &argocd::ArgoCd,
        &identity::Identity,
    ]
}

/// `name: about` lines for `--help`.
pub fn step_help() -> String {
    steps()
        .iter()
        .map(|s| format!("  {:<16} {}", s.name(), s.about()))
        .collect::<Vec<_>>()
        .join("\n")
}
