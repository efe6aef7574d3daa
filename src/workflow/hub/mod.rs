//! `bootstrap`'s steps, in order, one file each. [`HubRun`] is their typed context.

pub mod argocd;
mod gitops_operator;
mod identity;
pub mod kubernetes;
pub mod oidc_discovery;
mod olm;
pub mod preflight;
pub mod ztwim_operands;
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
use crate::profile::{Platform, Profile, Side};
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

/// The steps of `bootstrap` on a hub of `platform`, in order.
pub fn steps(platform: Platform) -> Vec<&'static dyn Step<HubRun>> {
    match platform {
        Platform::Openshift => vec![
            &preflight::Preflight,
            &ztwim_operator::ZtwimOperator,
            &ztwim_operands::ZtwimOperands,
            &oidc_discovery::OidcDiscovery,
            &gitops_operator::GitopsOperator,
            &argocd::ArgoCd,
            &identity::Identity,
        ],
        Platform::Kubernetes => vec![
            &preflight::Preflight,
            &kubernetes::spire_crds::SpireCrds,
            &kubernetes::spire::Spire,
            &kubernetes::oidc_discovery::OidcDiscovery,
            &kubernetes::argocd::UpstreamArgoCd,
            &identity::Identity,
        ],
    }
}

/// Every step name of either platform, for validating `--skip`/`--only` before the platform is known.
pub fn all_step_names() -> Vec<&'static str> {
    let mut names = Vec::new();
    for platform in [Platform::Openshift, Platform::Kubernetes] {
        for s in steps(platform) {
            if !names.contains(&s.name()) {
                names.push(s.name());
            }
        }
    }
    names
}

/// `name: about` lines for `--help`, per platform.
pub fn step_help() -> String {
    let list = |platform: Platform| {
        steps(platform)
            .iter()
            .map(|s| format!("  {:<16} {}", s.name(), s.about()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "OpenShift (profile openshift):\n{}\n\nKubernetes (profile kind):\n{}",
        list(Platform::Openshift),
        list(Platform::Kubernetes)
    )
}
