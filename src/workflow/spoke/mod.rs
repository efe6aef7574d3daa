//! `add-spoke`'s steps, in order, one file each. [`SpokeRun`] is their typed context. Nothing on the
//! spoke changes before preflight has passed on both clusters.

mod apiserver_rollout;
mod argocd_cluster;
mod authentication;
mod feature_gate;
mod issuer_ca;
pub mod preflight;
mod rbac;
pub mod remove;
mod verify_argocd;
mod verify_identity;

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

pub use authentication::{BACKUP_CONFIGMAP, BACKUP_KEY};
pub use preflight::check_names;

use super::{Step, Workflow};
use crate::kube::apply::Applier;
use crate::kube::client::Cluster;
use crate::output::Printer;
use crate::preflight::Ignore;
use crate::profile::{Profile, Side};
use crate::render::plan::Plan;
use crate::render::values::SpokeValues;
use crate::verify::identity::{self, Plugin, Proven, Token};
use crate::verify::oidc::{self, Discovery};

/// Everything an add-spoke step needs.
pub struct SpokeRun {
    pub printer: Printer,
    pub profile: Profile,
    pub hub: Cluster,
    pub spoke: Cluster,
    pub values: SpokeValues,
    pub plan: Plan,
    pub applier: Applier,
    pub timeout: Duration,
    /// The kube-apiserver rollout can take many minutes.
    pub rollout_timeout: Duration,
    pub exec_timeout: Duration,
    pub allow_tech_preview: bool,
    /// Whether stdin and stderr are a terminal (the irreversible step asks to type the spoke name).
    pub interactive: bool,
    pub ignore: Ignore,
    pub state_dir: std::path::PathBuf,
    pub facts: Mutex<Facts>,
    /// `--smoke-test`: where Argo CD finds the smoke-test manifests.
    pub smoke_test: Option<SmokeTest>,
}

#[derive(Debug, Clone)]
pub struct SmokeTest {
    pub repo: String,
    pub path: String,
}

/// What the steps found out, for the final report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Facts {
    /// The kube-apiserver revision before the authentication change (when the operator reports one).
    pub revision_before: Option<u64>,
    /// Set when this run changed the feature set: the kube-apiserver revision before it.
    #[serde(skip)]
    pub feature_gate_revision_before: Option<Option<u64>>,
    /// Whether this run changed the Authentication (so a rollout must follow).
    pub authentication_changed: bool,
    pub backup_file: Option<String>,
    pub identities: Vec<Proven>,
    pub spoke_username: Option<String>,
    pub argocd_reached: Option<String>,
    pub smoke_test: Option<String>,
    pub discovery: Option<Discovery>,
    pub warnings: Vec<String>,
}

impl Workflow for SpokeRun {
    fn printer(&self) -> &Printer {
        &self.printer
    }
    fn plan(&self) -> &Plan {
        &self.plan
    }
    fn applier(&self) -> &Applier {
        &self.applier
    }
    fn cluster(&self, side: Side) -> &Cluster {
        match side {
            Side::Hub => &self.hub,
            Side::Spoke => &self.spoke,
        }
    }
}

impl SpokeRun {
    pub fn warn(&self, msg: String) {
        self.printer.warn(&msg);
        self.facts.lock().expect("facts lock").warnings.push(msg);
    }

    /// The exec plugin as the cluster Secret configures it.
    pub fn plugin(&self) -> Plugin {
        plugin(&self.profile, &self.values.audience)
    }

    pub fn argocd_selector(&self, component: &str) -> String {
        format!(
            "app.kubernetes.io/name={}-{component}",
            self.profile.gitops().instance
        )
    }
}

impl SpokeRun {
    /// The hub's issuer, verified (fetched once per run), trusting the CA the spoke will trust.
    pub async fn discovery(&self) -> anyhow::Result<Discovery> {
        if let Some(d) = self.facts.lock().expect("facts").discovery.clone() {
            return Ok(d);
        }
        let client = oidc::https_client(
            self.values.issuer_ca_pem.as_deref(),
            Duration::from_secs(30),
        )?;
        let d = oidc::verify(&client, &self.values.issuer_url, &self.values.issuer_url).await?;
        self.facts.lock().expect("facts").discovery = Some(d.clone());
        Ok(d)
    }

    /// A verified JWT-SVID with the spoke's audience from an Argo CD pod on the hub.
    /// `component` is `server` or `application-controller`.
    pub async fn hub_token(&self, component: &str) -> anyhow::Result<(Proven, Token)> {
        let discovery = self.discovery().await?;
        let ns = &self.values.gitops_namespace;
        let pod = crate::kube::wait::ready_pod(
            &self.hub,
            ns,
            &self.argocd_selector(component),
            self.timeout,
        )
        .await?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let (container, expected) = if component == "server" {
            ("argocd-server", &self.values.identities.server)
        } else {
            (
                "argocd-application-controller",
                &self.values.identities.controller,
            )
        };
        identity::obtain(
            &self.hub,
            ns,
            &name,
            container,
            &self.plugin(),
            &discovery.jwks,
            &self.values.issuer_url,
            expected,
            self.exec_timeout,
        )
        .await
    }
}

pub fn plugin(profile: &Profile, audience: &str) -> Plugin {
    let e = &profile.exec_auth;
    Plugin {
        command: format!("{}/k8s-spiffe-workload-jwt-exec-auth", e.binary_dir),
        socket: format!("unix://{}/{}", e.socket_dir, e.socket_name),
        audience: audience.to_string(),
        credential_version: e.exec_credential_version.clone(),
    }
}

/// The steps of `add-spoke`, in order.
pub fn steps() -> Vec<&'static dyn Step<SpokeRun>> {
    vec![
        &preflight::Preflight,
        &feature_gate::FeatureGate,
        &issuer_ca::IssuerCa,
        &authentication::Authentication,
        &apiserver_rollout::ApiserverRollout,
        &rbac::Rbac,
        &verify_identity::VerifyIdentity,
        &argocd_cluster::ArgocdCluster,
        &verify_argocd::VerifyArgocd,
    ]
}

pub fn step_help() -> String {
    steps()
        .iter()
        .map(|s| format!("  {:<18} {}", s.name(), s.about()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The kube-apiserver revision in a ClusterOperator condition message ("... at revision 9").
pub fn revision_in(message: &str) -> Option<u64> {
    let idx = message.rfind("revision ")?;
    message[idx + "revision ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
