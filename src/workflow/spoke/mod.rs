//! `add-spoke`'s steps, in order, one file each. [`SpokeRun`] is their typed context. Nothing on the
//! spoke changes before preflight has passed on both clusters. The steps depend on the spoke's platform:
//! an OpenShift spoke trusts the issuer through `Authentication cluster` (and a kube-apiserver rollout),
//! a Kubernetes (kind) spoke through kube-apiserver's structured authentication file ([`authn_config`]).

mod apiserver_rollout;
mod argocd_cluster;
mod authentication;
pub mod authn_config;
pub mod authn_file;
mod feature_gate;
mod issuer_ca;
pub mod preflight;
mod rbac;
pub mod remove;
mod verify_argocd;
mod verify_identity;

use std::path::PathBuf;
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
use crate::profile::{Platform, Profile, Side};
use crate::render::Renderer;
use crate::render::plan::Plan;
use crate::render::values::SpokeValues;
use crate::verify::identity::{self, Plugin, Proven, Token};
use crate::verify::oidc::{self, Discovery};

/// Everything an add-spoke step needs.
pub struct SpokeRun {
    pub printer: Printer,
    /// The hub's profile: its Argo CD (namespace, pod labels, the exec plugin) and its issuer.
    pub hub_profile: Profile,
    /// The spoke's profile: how the spoke trusts the issuer, its RBAC.
    pub spoke_profile: Profile,
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
    /// Kubernetes spokes: `--authn-config-dir`, the directory kube-apiserver reads its
    /// authentication file from.
    pub authn_config_dir: Option<PathBuf>,
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
    /// Kubernetes spokes: the authentication file and its backup, and what this run did to them.
    pub authn_config_file: Option<String>,
    pub authn_backup_file: Option<String>,
    #[serde(skip)]
    pub authn_rollback: Option<authn_config::Rollback>,
    /// What the lockout guard checked, in words.
    #[serde(skip)]
    pub lockout_checked: Option<String>,
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

    /// The exec plugin as the cluster Secret configures it (the hub's Argo CD plumbing).
    pub fn plugin(&self) -> Plugin {
        plugin(&self.hub_profile, &self.values.audience)
    }

    /// The label selector of the hub's Argo CD pods; `component` is `server` or
    /// `application-controller`.
    pub fn argocd_selector(&self, component: &str) -> String {
        let argo = self.hub_profile.argo();
        let label = if component == "server" {
            argo.server_label
        } else {
            argo.controller_label
        };
        format!("app.kubernetes.io/name={label}")
    }

    pub fn spoke_platform(&self) -> Platform {
        self.spoke_profile.platform
    }

    /// Kubernetes spokes: the authentication file and its backup in `--authn-config-dir`.
    pub fn authn_file(&self) -> anyhow::Result<authn_file::AuthnFile> {
        let dir = self.authn_config_dir.as_deref().ok_or_else(|| {
            crate::error::input(authn_file::missing_dir_message(&self.spoke.context))
        })?;
        Ok(authn_file::AuthnFile::new(dir, &self.spoke_profile))
    }

    /// Where this machine reaches the hub's issuer when its host does not resolve here (kind hubs:
    /// the profile's `spire.oidcHostAddress`).
    pub fn issuer_fallback(&self) -> Option<&str> {
        issuer_fallback(&self.hub_profile)
    }
}

/// See [`SpokeRun::issuer_fallback`].
pub fn issuer_fallback(hub: &Profile) -> Option<&str> {
    match hub.platform {
        Platform::Openshift => None,
        Platform::Kubernetes => Some(hub.spire().oidc_host_address.as_str()),
    }
}

impl SpokeRun {
    /// The hub's issuer, verified (fetched once per run), trusting the CA the spoke will trust.
    pub async fn discovery(&self) -> anyhow::Result<Discovery> {
        if let Some(d) = self.facts.lock().expect("facts").discovery.clone() {
            return Ok(d);
        }
        let client = oidc::https_client_reaching(
            self.values.issuer_ca_pem.as_deref(),
            Duration::from_secs(30),
            &self.values.issuer_url,
            self.issuer_fallback(),
        )
        .await?;
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

/// The steps of `add-spoke` for a spoke of this platform, in order.
pub fn steps(platform: Platform) -> Vec<&'static dyn Step<SpokeRun>> {
    match platform {
        Platform::Openshift => vec![
            &preflight::Preflight,
            &feature_gate::FeatureGate,
            &issuer_ca::IssuerCa,
            &authentication::Authentication,
            &apiserver_rollout::ApiserverRollout,
            &rbac::Rbac,
            &verify_identity::VerifyIdentity,
            &argocd_cluster::ArgocdCluster,
            &verify_argocd::VerifyArgocd,
        ],
        Platform::Kubernetes => vec![
            &preflight::Preflight,
            &authn_config::AuthnConfig,
            &rbac::Rbac,
            &verify_identity::VerifyIdentity,
            &argocd_cluster::ArgocdCluster,
            &verify_argocd::VerifyArgocd,
        ],
    }
}

/// Every step name of either platform, in a stable order: `--skip`/`--only` are checked against it
/// before a cluster is contacted (the spoke's platform is not known yet), then against the chosen list.
pub fn all_step_names(lists: &[Vec<&'static dyn Step<SpokeRun>>]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for list in lists {
        for step in list {
            if !names.contains(&step.name()) {
                names.push(step.name());
            }
        }
    }
    names
}

/// The step lists for `--help`: one per spoke platform.
pub fn step_help_for(lists: &[(&str, Vec<&'static dyn Step<SpokeRun>>)]) -> String {
    lists
        .iter()
        .map(|(title, steps)| {
            let lines: Vec<String> = steps
                .iter()
                .map(|s| format!("  {:<22} {}", s.name(), s.about()))
                .collect();
            format!("{title}:\n{}", lines.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

pub fn step_help() -> String {
    step_help_for(&[
        (
            "Steps for an OpenShift spoke, in order (--skip/--only take these names)",
            steps(Platform::Openshift),
        ),
        (
            "Steps for a Kubernetes (kind) spoke, in order",
            steps(Platform::Kubernetes),
        ),
    ])
}

/// The plan of add-spoke: the spoke profile's spoke-side manifests and the hub profile's hub-side
/// ones (`manifests.addSpoke` filtered by `cluster`), each rendered with its own profile, in the order
/// of the workflow's steps.
pub fn plan(
    renderer: &Renderer,
    hub: &Profile,
    spoke: &Profile,
    values: &SpokeValues,
) -> anyhow::Result<Plan> {
    let order: Vec<&str> = steps(spoke.platform).iter().map(|s| s.name()).collect();
    let mut entries = Vec::new();
    for (profile, side) in [(spoke, Side::Spoke), (hub, Side::Hub)] {
        for m in profile
            .manifests
            .add_spoke
            .iter()
            .filter(|m| m.cluster == side)
        {
            let index = order.iter().position(|s| *s == m.step).ok_or_else(|| {
                crate::error::input(format!(
                    "profile {}: manifests.addSpoke step {:?} is not a step of add-spoke for a {} spoke (steps: {})",
                    profile.name,
                    m.step,
                    spoke.platform.as_str(),
                    order.join(", ")
                ))
            })?;
            entries.push((index, profile, m));
        }
    }
    entries.sort_by_key(|(index, _, _)| *index);
    let mut plan = Plan::default();
    for (_, profile, m) in entries {
        let part = Plan::render(
            renderer,
            std::slice::from_ref(m),
            profile,
            values,
            Some(&values.spoke_name),
        )?;
        plan.objects.extend(part.objects);
    }
    Ok(plan)
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
