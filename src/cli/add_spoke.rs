//! `ztwim-hub add-spoke --hub-context HUB --spoke-context SPOKE`: the spoke trusts the hub's SPIRE OIDC
//! issuer, binds Argo CD's SPIFFE IDs, and is registered in Argo CD; then both are proven to work.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

use super::GlobalArgs;
use super::live::{LiveArgs, parse_duration, print_outcome, print_plan};
use crate::error::{self, Error};
use crate::kube::apply::{Applier, DryRun};
use crate::kube::client::{Cluster, Kubeconfigs};
use crate::output::Printer;
use crate::profile::{Profile, RbacMode};
use crate::render::Renderer;
use crate::render::plan::Plan;
use crate::render::values::{SpokeInputs, SpokeValues};
use crate::validate;
use crate::verify::oidc;
use crate::workflow::spoke::{self, SpokeRun};
use crate::workflow::{Runner, StepReport};

fn after_help() -> String {
    format!(
        "Steps, in order (--skip/--only take these names):\n{}\n\nLockout guard: the spoke context must use a client certificate (the installer's admin kubeconfig): once external OIDC \
is on, OAuth tokens stop working and only SPIFFE identities and certificates can log in. The previous Authentication spec is saved \
(on the spoke and under --state-dir); remove-spoke restores it. Below OpenShift 4.20 the TechPreviewNoUpgrade feature set is \
needed: it is IRREVERSIBLE and blocks upgrades, so it takes --allow-tech-preview-no-upgrade (and, at a terminal, typing the spoke's name).\n\n\
Examples:\n  ztwim-hub add-spoke --hub-context hub --spoke-context spoke-a --dry-run=client\n  ztwim-hub add-spoke --hub-context hub --spoke-context spoke-a --yes -o json",
        spoke::step_help()
    )
}

/// Add a spoke: trust the hub's issuer, bind Argo CD's SPIFFE IDs, register it.
///
/// Every value comes from the two clusters: the issuer and trust domain from the hub's SPIRE, the ingress
/// CA if the issuer needs it, the spoke's API server URL and CA from the kubeconfig and its version from
/// ClusterVersion. Verified at the end: a JWT-SVID from the hub logs in to the spoke as the SPIFFE ID, with
/// the rights of the RBAC mode, and Argo CD's own configuration reaches the spoke.
#[derive(Debug, Args)]
#[command(after_help = after_help())]
pub struct AddSpokeArgs {
    #[command(flatten)]
    pub target: SpokeTargetArgs,
    /// JWT audience the spoke accepts and Argo CD requests [default: from the profile, openshift-spoke].
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Option<String>,
    /// What Argo CD may do on the spoke [default: from the profile].
    #[arg(long, value_enum)]
    pub rbac: Option<RbacMode>,
    /// Accept the IRREVERSIBLE TechPreviewNoUpgrade feature set on a spoke below OpenShift 4.20.
    #[arg(long)]
    pub allow_tech_preview_no_upgrade: bool,
    /// Argo CD does not verify the spoke's certificate. Not for production.
    #[arg(long, conflicts_with = "spoke_ca_file")]
    pub insecure_skip_tls_verify: bool,
    /// PEM CA bundle of the spoke API server [default: from the kubeconfig].
    #[arg(long, value_name = "PATH")]
    pub spoke_ca_file: Option<PathBuf>,
    /// Also prove a real sync: an Argo CD Application deploys the manifests of `ztwim-hub render smoke-test`
    /// from this repository (committed there by you) to the spoke; it must become Synced and Healthy, and is
    /// deleted again.
    #[arg(long, value_name = "REPO_URL")]
    pub smoke_test: Option<String>,
    /// Path of the smoke-test manifests in the repository.
    #[arg(
        long,
        value_name = "PATH",
        default_value = ".",
        requires = "smoke_test"
    )]
    pub smoke_test_path: String,
    #[command(flatten)]
    pub live: LiveArgs,
}

/// Which hub and spoke a spoke command works on, shared by add-spoke and remove-spoke.
#[derive(Debug, Args)]
pub struct SpokeTargetArgs {
    /// The hub's kube context (bootstrapped with ztwim-hub bootstrap).
    #[arg(long, value_name = "CONTEXT")]
    pub hub_context: String,
    /// The spoke's kube context; it must authenticate with a client certificate (lockout guard).
    #[arg(long, value_name = "CONTEXT")]
    pub spoke_context: String,
    /// The spoke's name in Argo CD [default: the spoke context's name, as a DNS-1123 label].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Namespace of the hub's Argo CD instance [default: from the profile, ztwim-gitops].
    #[arg(long, value_name = "NAMESPACE")]
    pub gitops_namespace: Option<String>,
    /// How long the kube-apiserver rollout may take.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub rollout_timeout: Duration,
    /// Where the previous Authentication spec is saved [default: $XDG_STATE_HOME/ztwim-hub].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl SpokeTargetArgs {
    /// Checks the contexts differ and returns the spoke's name in Argo CD (`--name`, or derived from
    /// the spoke context), validated.
    pub fn spoke_name(&self) -> Result<String> {
        if self.hub_context == self.spoke_context {
            return Err(error::input(
                "--hub-context and --spoke-context name the same context; a spoke is another cluster",
            ));
        }
        match &self.name {
            Some(n) => {
                validate::dns1123_label("--name", n).map_err(error::input)?;
                Ok(n.clone())
            }
            None => {
                let n = name_from_context(&self.spoke_context);
                validate::dns1123_label("--name (from --spoke-context)", &n)
                    .map_err(error::input)?;
                Ok(n)
            }
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(crate::state::default_dir)
    }
}

/// The context name as a DNS-1123 label: lowercase, other characters become '-'.
pub fn name_from_context(context: &str) -> String {
    let mut name: String = context
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    let name = name.trim_matches('-');
    name[..name.len().min(63)].trim_end_matches('-').to_string()
}

pub fn exec(global: &GlobalArgs, args: &AddSpokeArgs, printer: &Printer) -> Result<()> {
    let profile = Profile::load(global.profile.as_deref().unwrap_or("openshift"))?;
    let renderer = Renderer::new(global.templates_dir.as_deref())?;
    let steps = spoke::steps();
    let names: Vec<&str> = steps.iter().map(|s| s.name()).collect();
    args.live.selection().validate(&names)?;
    args.live.ignore().validate(&spoke::check_names())?;
    args.live.check_consent_possible("add-spoke")?;
    let spoke_name = args.target.spoke_name()?;
    if let Some(repo) = &args.smoke_test
        && (repo.trim().is_empty() || repo.contains(char::is_whitespace))
    {
        return Err(error::input(format!(
            "--smoke-test {repo:?}: give the URL of a repository Argo CD can read"
        )));
    }
    let spoke_ca_file = args
        .spoke_ca_file
        .as_deref()
        .map(|p| validate::pem_certificates("--spoke-ca-file", p).map_err(error::input))
        .transpose()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let kubeconfigs = Kubeconfigs::load(global.kubeconfig.as_deref())?;
        let hub = kubeconfigs.cluster("--hub-context", &args.target.hub_context).await?;
        let spoke = kubeconfigs.cluster("--spoke-context", &args.target.spoke_context).await?;
        hub.version().await?;
        spoke.version().await?;
        let options = DiscoverOptions {
            spoke_name,
            spoke_ca_file,
            insecure_skip_tls_verify: args.insecure_skip_tls_verify,
            audience: args.audience.clone(),
            rbac: args.rbac,
            gitops_namespace: args.target.gitops_namespace.clone(),
        };
        let (values, warnings) = discover(&hub, &spoke, &profile, options).await?;
        let plan = Plan::render(&renderer, &profile.manifests.add_spoke, &profile, &values, Some(&values.spoke_name))?;
        for w in &warnings {
            printer.warn(w);
        }
        if args.live.dry_run == Some(DryRun::Client) {
            return print_plan(printer, &plan);
        }
        args.live.confirm(
            printer,
            &format!(
                "add-spoke will change {} ({}): its API server will trust {} (audience {}), and only SPIFFE identities and client certificates will log in there; Argo CD on {} gets the cluster {}",
                spoke.context, spoke.server, values.issuer_url, values.audience, hub.context, values.spoke_name
            ),
            &format!("Add {} as a spoke of {}?", spoke.context, hub.context),
        )?;
        let ctx = SpokeRun {
            printer: printer.clone(),
            profile: profile.clone(),
            hub,
            spoke,
            values,
            plan,
            applier: Applier { dry_run: args.live.dry_run, force: args.live.force },
            timeout: args.live.timeout,
            rollout_timeout: args.target.rollout_timeout,
            exec_timeout: args.live.exec_timeout,
            allow_tech_preview: args.allow_tech_preview_no_upgrade,
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            ignore: args.live.ignore(),
            state_dir: args.target.state_dir(),
            facts: Mutex::new(spoke::Facts { warnings, ..Default::default() }),
            smoke_test: args.smoke_test.clone().map(|repo| spoke::SmokeTest { repo, path: args.smoke_test_path.clone() }),
        };
        let runner = Runner { steps: &steps, selection: args.live.selection() };
        let (reports, result) = runner.run(&ctx).await;
        report(printer, &ctx, &reports, result.as_ref().err())?;
        result
    })
}

/// The hub's SPIRE configuration (trust domain, issuer) from ConfigMap `spire-server`.
pub async fn hub_spire(hub: &Cluster, profile: &Profile) -> Result<(String, String)> {
    let ns = &profile.ztwim().namespace;
    let not_bootstrapped = |why: &str| -> anyhow::Error {
        Error::Preflight(format!(
            "the hub {} is not bootstrapped ({why}); run ztwim-hub bootstrap --context {} first",
            hub.context, hub.context
        ))
        .into()
    };
    let cms: Api<ConfigMap> = Api::namespaced(hub.client.clone(), ns);
    let cm = cms
        .get_opt("spire-server")
        .await
        .map_err(|e| not_bootstrapped(&crate::kube::client::describe_kube_error(&e)))?
        .ok_or_else(|| not_bootstrapped(&format!("no ConfigMap {ns}/spire-server")))?;
    let conf = cm
        .data
        .as_ref()
        .and_then(|d| d.get("server.conf"))
        .ok_or_else(|| not_bootstrapped("spire-server has no server.conf"))?;
    let conf: serde_json::Value =
        serde_json::from_str(conf).map_err(|_| not_bootstrapped("server.conf is not JSON"))?;
    let get = |k: &str| {
        conf.pointer(&format!("/server/{k}"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (td, issuer) = (get("trust_domain"), get("jwt_issuer"));
    if td.is_empty() || issuer.is_empty() {
        return Err(not_bootstrapped(
            "server.conf has no trust_domain or jwt_issuer",
        ));
    }
    Ok((td, issuer))
}

/// The CA the spoke must trust for the issuer: none if the system roots verify it, else the hub's
/// ingress CA.
async fn issuer_ca(hub: &Cluster, issuer: &str) -> Result<Option<String>> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let system = oidc::https_client(None, Duration::from_secs(15))?;
    if system.get(&url).send().await.is_ok() {
        return Ok(None);
    }
    let cms: Api<ConfigMap> = Api::namespaced(hub.client.clone(), "openshift-config-managed");
    Ok(cms
        .get_opt("default-ingress-cert")
        .await?
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("ca-bundle.crt").cloned()))
}

/// What add-spoke and remove-spoke take from their flags to discover the rest.
pub struct DiscoverOptions {
    pub spoke_name: String,
    pub spoke_ca_file: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub audience: Option<String>,
    pub rbac: Option<RbacMode>,
    pub gitops_namespace: Option<String>,
}

/// The spoke values from both clusters: issuer and trust domain from the hub, server, CA and version
/// from the spoke.
pub async fn discover(
    hub: &Cluster,
    spoke: &Cluster,
    profile: &Profile,
    args: DiscoverOptions,
) -> Result<(SpokeValues, Vec<String>)> {
    let spoke_name = args.spoke_name;
    let spoke_ca_file = args.spoke_ca_file;
    let (trust_domain, issuer_url) = hub_spire(hub, profile).await?;
    let issuer_ca_pem = issuer_ca(hub, &issuer_url).await?;
    let version = crate::workflow::hub::preflight::openshift_version(spoke)
        .await
        .map_err(|e| match e.downcast_ref::<kube::Error>() {
            Some(k) => crate::kube::client::read_refused(spoke, "ClusterVersion version", k),
            None => e,
        })?
        .ok_or_else(|| {
            Error::Preflight(format!(
                "{}: ClusterVersion version has no status.desired.version: is the spoke OpenShift?",
                spoke.context
            ))
        })?;
    let spoke_version = crate::workflow::hub::preflight::minor_of(&version).ok_or_else(|| {
        Error::Preflight(format!(
            "{}: cannot read the OpenShift version {version:?}",
            spoke.context
        ))
    })?;
    let spoke_ca_pem = if args.insecure_skip_tls_verify {
        None
    } else {
        spoke_ca_file.or_else(|| spoke.ca_pem.clone())
    };
    if spoke_ca_pem.is_none() && !args.insecure_skip_tls_verify {
        return Err(error::input(format!(
            "the kubeconfig has no certificate-authority for {}: pass --spoke-ca-file (or, not for production, --insecure-skip-tls-verify)",
            spoke.context
        )));
    }
    let inputs = SpokeInputs {
        spoke_name,
        spoke_server: spoke.server.clone(),
        spoke_ca_pem,
        insecure_skip_tls_verify: args.insecure_skip_tls_verify,
        trust_domain,
        issuer_url,
        issuer_ca_pem,
        spoke_version,
        audience: args.audience.clone(),
        rbac: args.rbac,
        gitops_namespace: args.gitops_namespace.clone(),
    };
    SpokeValues::resolve(profile, &inputs)
}

fn report(
    printer: &Printer,
    ctx: &SpokeRun,
    reports: &[StepReport],
    error: Option<&anyhow::Error>,
) -> Result<()> {
    let facts = ctx.facts.lock().expect("facts").clone();
    let v = &ctx.values;
    let doc = json!({
        "command": "add-spoke",
        "hubContext": ctx.hub.context,
        "spokeContext": ctx.spoke.context,
        "dryRun": ctx.applier.dry_run,
        "values": {
            "spokeName": v.spoke_name,
            "spokeServer": v.spoke_server,
            "spokeVersion": v.spoke_version.to_string(),
            "trustDomain": v.trust_domain,
            "issuerURL": v.issuer_url,
            "issuerCAConfigMap": v.issuer_ca_pem.as_ref().map(|_| &ctx.profile.spoke.openshift().issuer_ca_config_map),
            "audience": v.audience,
            "rbac": v.rbac,
            "featureGate": v.needs_feature_gate,
            "spiffeIDs": {"server": v.identities.server, "controller": v.identities.controller},
        },
        "identities": facts.identities,
        "spokeUsername": facts.spoke_username,
        "argocdReached": facts.argocd_reached,
        "smokeTest": facts.smoke_test,
        "backupFile": facts.backup_file,
        "warnings": facts.warnings,
    });
    print_outcome(printer, reports, error, doc, || {
        format!(
            "\nspoke:         {} ({}, OpenShift {})\nissuer:        {} (audience {})\nlogs in as:    {}\n               {}\n",
            v.spoke_name,
            v.spoke_server,
            v.spoke_version,
            v.issuer_url,
            v.audience,
            v.identities.server,
            v.identities.controller
        )
    })
}

#[cfg(test)]
mod tests {
    use super::name_from_context;

    #[test]
    fn context_names_become_dns_labels() {
        assert_eq!(name_from_context("spoke-a"), "spoke-a");
        assert_eq!(
            name_from_context("admin@Spoke_A.example"),
            "admin-spoke-a-example"
        );
        assert_eq!(
            name_from_context("default/api-spoke:6443/admin"),
            "default-api-spoke-6443-admin"
        );
    }
}
