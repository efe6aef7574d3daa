//! `ztwim-hub add-spoke --hub-context HUB --spoke-context SPOKE`: the spoke trusts the hub's SPIRE OIDC
//! issuer, binds Argo CD's SPIFFE IDs, and is registered in Argo CD; then both are proven to work.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde_json::json;

use super::GlobalArgs;
use super::live::{LiveArgs, parse_duration, print_outcome, print_plan};
use crate::error::{self, Error};
use crate::kube::apply::{Applier, DryRun};
use crate::kube::client::{Cluster, Kubeconfigs};
use crate::kube::platform::{self, Chosen};
use crate::output::Printer;
use crate::profile::{Platform, Profile, RbacMode};
use crate::render::Renderer;
use crate::render::values::{SpokeInputs, SpokeValues};
use crate::validate::{self, MinorVersion};
use crate::verify::oidc;
use crate::workflow::spoke::{self, SpokeRun, authn_file};
use crate::workflow::{Runner, Step, StepReport};

fn after_help() -> String {
    format!(
        "{}\n\nProfiles: the hub's and the spoke's are chosen separately, from each cluster's APIs (OpenShift when it serves config.openshift.io), \
--profile forces both, --spoke-profile the spoke's; add-spoke says which it chose and why.\n\n\
Lockout guard: the spoke context must use a client certificate (the installer's admin kubeconfig; kind's admin kubeconfig): once external OIDC \
is on, OAuth tokens stop working and only SPIFFE identities and certificates can log in, and a certificate does not depend on the authentication \
file a kind spoke's kube-apiserver reads. The previous Authentication spec is saved (on the spoke and under --state-dir); remove-spoke restores it. \
Below OpenShift 4.20 the TechPreviewNoUpgrade feature set is needed: it is IRREVERSIBLE and blocks upgrades, so it takes \
--allow-tech-preview-no-upgrade (and, at a terminal, typing the spoke's name).\n\n\
Kubernetes (kind) spokes: --authn-config-dir DIR is the directory kind-config wrote for the spoke (DIR/<spoke>-authn), whose \
authentication-config.yaml the spoke's kube-apiserver reads. add-spoke saves it as authentication-config.yaml.ztwim-hub-backup, adds the hub's \
JWT authenticator and waits (up to --timeout) until a JWT-SVID from the hub authenticates; if that fails, the file is put back.\n\n\
Examples:\n  ztwim-hub add-spoke --hub-context hub --spoke-context spoke-a --dry-run=client\n  ztwim-hub add-spoke --hub-context hub --spoke-context spoke-a --yes -o json\n  \
ztwim-hub add-spoke --hub-context hub --spoke-context spoke-k --authn-config-dir kind/spoke-k-authn",
        spoke::step_help()
    )
}

/// Add a spoke: trust the hub's issuer, bind Argo CD's SPIFFE IDs, register it.
///
/// Every value comes from the two clusters: the issuer and trust domain from the hub's SPIRE, the CA
/// the issuer needs (OpenShift: the ingress CA; kind: the OIDC serving CA), the spoke's API server URL
/// and CA (OpenShift: the kubeconfig; kind: kube-public/cluster-info) and its version. Verified at the end: a JWT-SVID from the hub logs in to the spoke as the SPIFFE ID, with
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
    /// The spoke's profile, a built-in name or a file [default: --profile, else detected from the spoke].
    #[arg(long, value_name = "NAME|PATH")]
    pub spoke_profile: Option<String>,
    /// Kubernetes (kind) spokes, required there: the directory holding the authentication file the
    /// spoke's kube-apiserver reads (kind-config's DIR/<spoke>-authn).
    #[arg(long, value_name = "DIR")]
    pub authn_config_dir: Option<PathBuf>,
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

    /// `--authn-config-dir`, made absolute (for messages and reports).
    pub fn authn_config_dir(&self) -> Option<PathBuf> {
        self.authn_config_dir
            .as_deref()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf()))
    }

    /// Loads the profiles the flags name, so that a wrong one is refused before a cluster is contacted.
    pub fn check_profiles(&self, global: &GlobalArgs) -> Result<()> {
        for spec in [global.profile.as_deref(), self.spoke_profile.as_deref()]
            .into_iter()
            .flatten()
        {
            Profile::load(spec)?;
        }
        Ok(())
    }

    /// The hub's and the spoke's profiles: `--profile` forces both, `--spoke-profile` the spoke's;
    /// otherwise each is detected from its cluster.
    pub async fn choose_profiles(
        &self,
        global: &GlobalArgs,
        hub: &Cluster,
        spoke: &Cluster,
    ) -> Result<Profiles> {
        let hub_choice = platform::choose(global.profile.as_deref(), "--profile", hub).await?;
        let (given, flag) = match (&self.spoke_profile, &global.profile) {
            (Some(s), _) => (Some(s.as_str()), "--spoke-profile"),
            (None, Some(g)) => (Some(g.as_str()), "--profile"),
            (None, None) => (None, "--spoke-profile"),
        };
        let spoke_choice = platform::choose(given, flag, spoke).await?;
        Ok(Profiles {
            hub: hub_choice,
            spoke: spoke_choice,
        })
    }

    /// `--authn-config-dir` is required for a Kubernetes spoke and refused for an OpenShift one.
    pub fn check_authn_config_dir(&self, profiles: &Profiles, spoke: &Cluster) -> Result<()> {
        match (profiles.spoke.profile.platform, &self.authn_config_dir) {
            (Platform::Kubernetes, None) => Err(error::input(authn_file::missing_dir_message(
                &spoke.context,
            ))),
            (Platform::Openshift, Some(_)) => Err(error::input(format!(
                "--authn-config-dir is for Kubernetes (kind) spokes, and {} is OpenShift (spoke profile {}: {}): it trusts the issuer through Authentication cluster; drop --authn-config-dir",
                spoke.context, profiles.spoke.profile.name, profiles.spoke.reason
            ))),
            _ => Ok(()),
        }
    }
}

/// The two profiles of a spoke command and why each was chosen.
pub struct Profiles {
    pub hub: Chosen,
    pub spoke: Chosen,
}

impl Profiles {
    /// The "profile:" lines (after discovery, so that a refusal stays one line).
    pub fn announce(&self, printer: &Printer) {
        printer.info(format!(
            "hub profile: {} ({})",
            self.hub.profile.name, self.hub.reason
        ));
        printer.info(format!(
            "spoke profile: {} ({})",
            self.spoke.profile.name, self.spoke.reason
        ));
    }
}

/// `--skip`/`--only` and `--ignore-preflight-errors` against the steps and checks of either platform.
pub fn check_selection_names(
    live: &LiveArgs,
    lists: &[Vec<&'static dyn Step<SpokeRun>>],
    checks: &[&str],
) -> Result<()> {
    live.selection().validate(&spoke::all_step_names(lists))?;
    live.ignore().validate(checks)
}

pub fn step_names(steps: &[&'static dyn Step<SpokeRun>]) -> Vec<&'static str> {
    steps.iter().map(|s| s.name()).collect()
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
    args.target.check_profiles(global)?;
    let renderer = Renderer::new(global.templates_dir.as_deref())?;
    check_selection_names(
        &args.live,
        &[
            spoke::steps(Platform::Openshift),
            spoke::steps(Platform::Kubernetes),
        ],
        &spoke::preflight::all_check_names(),
    )?;
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
        let profiles = args.target.choose_profiles(global, &hub, &spoke).await?;
        args.target.check_authn_config_dir(&profiles, &spoke)?;
        let (hub_profile, spoke_profile) = (&profiles.hub.profile, &profiles.spoke.profile);
        let platform = spoke_profile.platform;
        let steps = spoke::steps(platform);
        args.live.selection().validate(&step_names(&steps))?;
        args.live.ignore().validate(&spoke::check_names(platform))?;
        let options = DiscoverOptions {
            spoke_name,
            spoke_ca_file,
            insecure_skip_tls_verify: args.insecure_skip_tls_verify,
            audience: args.audience.clone(),
            rbac: args.rbac,
            gitops_namespace: args.target.gitops_namespace.clone(),
        };
        let (values, warnings) = discover(&hub, &spoke, hub_profile, spoke_profile, options).await?;
        profiles.announce(printer);
        let plan = spoke::plan(&renderer, hub_profile, spoke_profile, &values)?;
        for w in &warnings {
            printer.warn(w);
        }
        if args.live.dry_run == Some(DryRun::Client) {
            print_plan(printer, &plan)?;
            if let Some(dir) = &args.target.authn_config_dir() {
                let file = authn_file::AuthnFile::new(dir, spoke_profile);
                let current = file.read().and_then(|t| file.parse(&t))?;
                let desired = authn_file::desired(&current, authn_file::authenticator(&values));
                printer.data(&authn_file::comment(&values.spoke_name, &file.path.display().to_string(), &desired)?)?;
            }
            return Ok(());
        }
        let how = match platform {
            Platform::Openshift => format!(
                "its API server will trust {} (audience {}), and only SPIFFE identities and client certificates will log in there",
                values.issuer_url, values.audience
            ),
            Platform::Kubernetes => format!(
                "its kube-apiserver will trust {} (audience {}) through {}",
                values.issuer_url,
                values.audience,
                args.target.authn_config_dir().unwrap_or_default().display()
            ),
        };
        args.live.confirm(
            printer,
            &format!(
                "add-spoke will change {} ({}): {how}; Argo CD on {} gets the cluster {}",
                spoke.context, spoke.server, hub.context, values.spoke_name
            ),
            &format!("Add {} as a spoke of {}?", spoke.context, hub.context),
        )?;
        let ctx = SpokeRun {
            printer: printer.clone(),
            hub_profile: hub_profile.clone(),
            spoke_profile: spoke_profile.clone(),
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
            authn_config_dir: args.target.authn_config_dir(),
        };
        let runner = Runner { steps: &steps, selection: args.live.selection() };
        let (reports, result) = runner.run(&ctx).await;
        report(printer, &ctx, &reports, result.as_ref().err())?;
        result
    })
}

/// The hub's SPIRE configuration (trust domain, issuer) from ConfigMap `spire-server` (OpenShift: in
/// ZTWIM's namespace, kind: in `spire`), key `server.conf` (JSON).
pub async fn hub_spire(hub: &Cluster, profile: &Profile) -> Result<(String, String)> {
    let ns = match profile.platform {
        Platform::Openshift => &profile.ztwim().namespace,
        Platform::Kubernetes => &profile.spire().namespace,
    };
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
/// ingress CA (OpenShift) or the CA of the OIDC provider's serving certificate, Secret
/// `spire/spire-oidc-tls` key `ca.crt` (kind).
async fn issuer_ca(hub: &Cluster, profile: &Profile, issuer: &str) -> Result<Option<String>> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let system = oidc::https_client_reaching(
        None,
        Duration::from_secs(15),
        &url,
        spoke::issuer_fallback(profile),
    )
    .await?;
    if system.get(&url).send().await.is_ok() {
        return Ok(None);
    }
    match profile.platform {
        Platform::Openshift => {
            let cms: Api<ConfigMap> =
                Api::namespaced(hub.client.clone(), "openshift-config-managed");
            Ok(cms
                .get_opt("default-ingress-cert")
                .await?
                .and_then(|cm| cm.data)
                .and_then(|d| d.get("ca-bundle.crt").cloned()))
        }
        Platform::Kubernetes => {
            let ns = &profile.spire().namespace;
            let secrets: Api<Secret> = Api::namespaced(hub.client.clone(), ns);
            let secret = secrets.get_opt(OIDC_TLS_SECRET).await.map_err(|e| {
                crate::kube::client::read_refused(
                    hub,
                    &format!("Secret {ns}/{OIDC_TLS_SECRET}"),
                    &e,
                )
            })?;
            let ca = secret
                .and_then(|s| s.data)
                .and_then(|d| d.get("ca.crt").cloned())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .filter(|pem| pem.contains("BEGIN CERTIFICATE"));
            match ca {
                Some(pem) => Ok(Some(pem)),
                None => Err(Error::Preflight(format!(
                    "the hub {} is not bootstrapped (no Secret {ns}/{OIDC_TLS_SECRET} with ca.crt, the CA of the issuer's certificate); run ztwim-hub bootstrap --context {} first",
                    hub.context, hub.context
                ))
                .into()),
            }
        }
    }
}

/// kind hubs: the OIDC discovery provider's serving certificate and its CA.
pub const OIDC_TLS_SECRET: &str = "spire-oidc-tls";

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
    hub_profile: &Profile,
    spoke_profile: &Profile,
    args: DiscoverOptions,
) -> Result<(SpokeValues, Vec<String>)> {
    let mut warnings = Vec::new();
    let (trust_domain, issuer_url) = hub_spire(hub, hub_profile).await?;
    let issuer_ca_pem = issuer_ca(hub, hub_profile, &issuer_url).await?;
    let (spoke_version, spoke_server, endpoint_ca) = match spoke_profile.platform {
        Platform::Openshift => (
            openshift_version(spoke).await?,
            spoke.server.clone(),
            spoke.ca_pem.clone(),
        ),
        Platform::Kubernetes => {
            let version = kubernetes_version(spoke).await?;
            let (server, ca) = match cluster_info(spoke).await {
                Ok(endpoint) => endpoint,
                Err(why) => {
                    warnings.push(format!(
                        "{}: {why}; the cluster Secret uses the kubeconfig's server {} instead, which the hub's pods may not reach (kind: https://<spoke>-control-plane:6443)",
                        spoke.context, spoke.server
                    ));
                    (spoke.server.clone(), spoke.ca_pem.clone())
                }
            };
            (version, server, ca)
        }
    };
    let spoke_ca_pem = if args.insecure_skip_tls_verify {
        None
    } else {
        args.spoke_ca_file.or(endpoint_ca)
    };
    if spoke_ca_pem.is_none() && !args.insecure_skip_tls_verify {
        return Err(error::input(format!(
            "the kubeconfig has no certificate-authority for {}: pass --spoke-ca-file (or, not for production, --insecure-skip-tls-verify)",
            spoke.context
        )));
    }
    let inputs = SpokeInputs {
        spoke_name: args.spoke_name,
        spoke_server,
        spoke_ca_pem,
        insecure_skip_tls_verify: args.insecure_skip_tls_verify,
        trust_domain,
        issuer_url,
        issuer_ca_pem,
        spoke_version: Some(spoke_version),
        audience: args.audience.clone(),
        rbac: args.rbac,
        gitops_namespace: args.gitops_namespace.clone(),
    };
    let (values, more) = SpokeValues::resolve(hub_profile, spoke_profile, &inputs)?;
    warnings.extend(more);
    Ok((values, warnings))
}

/// The OpenShift version of a spoke (`ClusterVersion version`).
async fn openshift_version(spoke: &Cluster) -> Result<MinorVersion> {
    let version = crate::workflow::hub::preflight::openshift_version(spoke)
        .await
        .map_err(|e| match e.downcast_ref::<kube::Error>() {
            Some(k) => crate::kube::client::read_refused(spoke, "ClusterVersion version", k),
            None => e,
        })?
        .ok_or_else(|| {
            Error::Preflight(format!(
                "{}: ClusterVersion version has no status.desired.version: is the spoke OpenShift? (--spoke-profile kind for a vanilla Kubernetes spoke)",
                spoke.context
            ))
        })?;
    crate::workflow::hub::preflight::minor_of(&version).ok_or_else(|| {
        Error::Preflight(format!(
            "{}: cannot read the OpenShift version {version:?}",
            spoke.context
        ))
        .into()
    })
}

/// The Kubernetes version of a spoke (`/version`: major and minor, e.g. "1" and "34" or "34+").
async fn kubernetes_version(spoke: &Cluster) -> Result<MinorVersion> {
    let info = spoke.version().await?;
    let digits = |s: &str| -> String { s.chars().take_while(char::is_ascii_digit).collect() };
    format!("{}.{}", digits(&info.major), digits(&info.minor))
        .parse()
        .map_err(|_| {
            Error::Preflight(format!(
                "{}: cannot read the Kubernetes version (major {:?}, minor {:?})",
                spoke.context, info.major, info.minor
            ))
            .into()
        })
}

/// The API server endpoint kubeadm publishes for the cluster's own nodes and pods: ConfigMap
/// `kube-public/cluster-info`, key `kubeconfig` (kind: `https://<name>-control-plane:6443`, a name on the
/// docker network that the hub's pods resolve), with its CA. `Err`: why it cannot be used.
async fn cluster_info(spoke: &Cluster) -> Result<(String, Option<String>), String> {
    let cms: Api<ConfigMap> = Api::namespaced(spoke.client.clone(), "kube-public");
    let cm = cms
        .get_opt("cluster-info")
        .await
        .map_err(|e| {
            format!(
                "cannot read ConfigMap kube-public/cluster-info ({})",
                crate::kube::client::describe_kube_error(&e)
            )
        })?
        .ok_or("it has no ConfigMap kube-public/cluster-info")?;
    let text = cm
        .data
        .and_then(|d| d.get("kubeconfig").cloned())
        .ok_or("ConfigMap kube-public/cluster-info has no key kubeconfig")?;
    let config = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|e| format!("kube-public/cluster-info's kubeconfig does not parse ({e})"))?;
    let cluster = config
        .clusters
        .first()
        .and_then(|c| c.cluster.clone())
        .ok_or("kube-public/cluster-info's kubeconfig names no cluster")?;
    let server = cluster
        .server
        .filter(|s| !s.is_empty())
        .ok_or("kube-public/cluster-info's kubeconfig has no server")?;
    let ca = match cluster.certificate_authority_data {
        Some(data) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    format!(
                        "kube-public/cluster-info's certificate-authority-data is not base64 ({e})"
                    )
                })?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        None => None,
    };
    Ok((server, ca))
}

fn report(
    printer: &Printer,
    ctx: &SpokeRun,
    reports: &[StepReport],
    error: Option<&anyhow::Error>,
) -> Result<()> {
    let facts = ctx.facts.lock().expect("facts").clone();
    let v = &ctx.values;
    let platform = ctx.spoke_platform();
    let version = v.spoke_version.map(|v| v.to_string());
    let issuer_ca_config_map = match platform {
        Platform::Openshift => v.issuer_ca_pem.as_ref().map(|_| {
            ctx.spoke_profile
                .spoke
                .openshift()
                .issuer_ca_config_map
                .clone()
        }),
        Platform::Kubernetes => None,
    };
    let doc = json!({
        "command": "add-spoke",
        "hubContext": ctx.hub.context,
        "spokeContext": ctx.spoke.context,
        "hubProfile": ctx.hub_profile.name,
        "spokeProfile": ctx.spoke_profile.name,
        "dryRun": ctx.applier.dry_run,
        "values": {
            "spokeName": v.spoke_name,
            "spokePlatform": v.spoke_platform,
            "spokeServer": v.spoke_server,
            "spokeVersion": version,
            "trustDomain": v.trust_domain,
            "issuerURL": v.issuer_url,
            "issuerCAConfigMap": issuer_ca_config_map,
            "issuerCA": v.issuer_ca_pem.is_some(),
            "audience": v.audience,
            "rbac": v.rbac,
            "featureGate": v.needs_feature_gate,
            "argocdNamespace": v.gitops_namespace,
            "spiffeIDs": {"server": v.identities.server, "controller": v.identities.controller},
        },
        "identities": facts.identities,
        "spokeUsername": facts.spoke_username,
        "argocdReached": facts.argocd_reached,
        "smokeTest": facts.smoke_test,
        "backupFile": facts.backup_file,
        "authnConfigFile": facts.authn_config_file,
        "authnBackupFile": facts.authn_backup_file,
        "warnings": facts.warnings,
    });
    print_outcome(printer, reports, error, doc, || {
        let (kind, trust) = match platform {
            Platform::Openshift => ("OpenShift", String::new()),
            Platform::Kubernetes => (
                "Kubernetes",
                facts
                    .authn_config_file
                    .as_ref()
                    .map(|f| format!("authn file:    {f}\n"))
                    .unwrap_or_default(),
            ),
        };
        format!(
            "\nspoke:         {} ({}, {kind} {})\nissuer:        {} (audience {})\n{trust}logs in as:    {}\n               {}\n",
            v.spoke_name,
            v.spoke_server,
            version.as_deref().unwrap_or("?"),
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
