//! `ztwim-hub render bootstrap|add-spoke`: the objects the live commands apply, offline. Every value the
//! live commands discover from a cluster is a flag here.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::GlobalArgs;
use crate::error;
use crate::output::{OutputFormat, Printer};
use crate::profile::{Profile, RbacMode};
use crate::render::Renderer;
use crate::render::plan::Plan;
use crate::render::values::{
    BootstrapValues, HubInputs, HubPlatformInputs, SpokeInputs, SpokeValues,
};
use crate::validate;

/// Print the manifests bootstrap or add-spoke would apply, without a cluster.
///
/// Output is multi-document YAML on stdout (default), a JSON array with -o json, or one file per object
/// under DIR/<cluster>/ with a kustomization.yaml each (--output-dir), ready to commit to a GitOps repository.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ztwim-hub render bootstrap --profile openshift --app-domain apps.hub.example.com --channel stable-v1\n  ztwim-hub render add-spoke --spoke-name spoke-a --spoke-server https://api.spoke-a.example.com:6443 \\\n    --spoke-ca-file spoke-ca.crt --trust-domain apps.hub.example.com \\\n    --issuer-url https://spire-spiffe-oidc-discovery-provider.apps.hub.example.com \\\n    --issuer-ca-file ingress-ca.crt --spoke-version 4.19"
)]
pub struct RenderArgs {
    #[command(subcommand)]
    pub what: RenderWhat,
}

#[derive(Debug, Subcommand)]
pub enum RenderWhat {
    /// The hub: ZTWIM operator and operands, the GitOps operator, the Argo CD instance.
    Bootstrap(RenderBootstrapArgs),
    /// A spoke: feature gate (below 4.20), issuer CA, OIDC authentication, RBAC, and the Argo CD cluster Secret.
    AddSpoke(RenderAddSpokeArgs),
    /// The manifests add-spoke --smoke-test deploys: commit them to a repository Argo CD can read.
    SmokeTest(RenderSmokeTestArgs),
}

#[derive(Debug, Args)]
pub struct RenderSmokeTestArgs {
    #[command(flatten)]
    pub out: RenderOutputArgs,
}

#[derive(Debug, Args, Clone, Default)]
pub struct HubValueArgs {
    /// The hub's apps domain (live: "apps." + DNS cluster .spec.baseDomain).
    #[arg(long, value_name = "DOMAIN")]
    pub app_domain: Option<String>,
    /// The SPIFFE trust domain [default: the apps domain]. Immutable once ZTWIM is installed.
    #[arg(long, value_name = "DOMAIN")]
    pub trust_domain: Option<String>,
    /// SPIRE's cluster name [default: from the profile]. Immutable once ZTWIM is installed.
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// ZTWIM's OLM channel (live: the PackageManifest's default channel).
    #[arg(long, value_name = "CHANNEL")]
    pub channel: Option<String>,
    /// Namespace of the Argo CD instance [default: from the profile, ztwim-gitops]. Not openshift-*.
    #[arg(long, value_name = "NAMESPACE")]
    pub gitops_namespace: Option<String>,
    /// Download URL of the exec-auth plugin archive ({version} and {arch} are replaced), e.g. a mirror.
    #[arg(long, value_name = "URL")]
    pub exec_auth_url: Option<String>,
    /// sha256 of the plugin archive; the init container refuses any other file.
    #[arg(long, value_name = "HEX")]
    pub exec_auth_sha256: Option<String>,
    /// kind: the SPIRE OIDC issuer URL [default: https://<hub>-control-plane:30443, the hub's node on the
    /// docker network, as kind-config sets up].
    #[arg(long, value_name = "URL")]
    pub issuer_url: Option<String>,
    /// kind: Argo CD's release manifest, an https URL or a local file (mirrors, air gaps) [default: the
    /// profile's pinned release].
    #[arg(long, value_name = "URL|PATH")]
    pub argocd_manifest: Option<String>,
    /// kind: the spire-controller-manager CRDs, https URLs or local files or directories; repeatable
    /// [default: the profile's pinned release].
    #[arg(long, value_name = "URL|PATH")]
    pub spire_crds: Vec<String>,
}

impl HubValueArgs {
    /// Refuses the flags the profile's platform does not use.
    pub fn check_platform(&self, profile: &Profile) -> anyhow::Result<()> {
        let (flags, other): (Vec<(&str, bool)>, &str) = match profile.platform {
            crate::profile::Platform::Openshift => (
                vec![
                    ("--issuer-url", self.issuer_url.is_some()),
                    ("--argocd-manifest", self.argocd_manifest.is_some()),
                    ("--spire-crds", !self.spire_crds.is_empty()),
                ],
                "kind",
            ),
            crate::profile::Platform::Kubernetes => (
                vec![
                    ("--app-domain", self.app_domain.is_some()),
                    ("--channel", self.channel.is_some()),
                ],
                "openshift",
            ),
        };
        match flags.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(error::input(format!(
                "{flag} applies to {other} hubs only, and the profile is {} ({}); drop {flag} or pass --profile {other}",
                profile.name,
                profile.platform.as_str()
            ))),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Args)]
pub struct RenderBootstrapArgs {
    #[command(flatten)]
    pub hub: HubValueArgs,
    #[command(flatten)]
    pub out: RenderOutputArgs,
}

#[derive(Debug, Args)]
pub struct RenderOutputArgs {
    /// Write one file per object under DIR/<cluster>/ (cluster: hub or the spoke name), with a kustomization.yaml.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RenderAddSpokeArgs {
    /// The spoke's name in Argo CD (a DNS-1123 label; live: from the spoke context).
    #[arg(long, value_name = "NAME")]
    pub spoke_name: Option<String>,
    /// The spoke API server URL (live: from the kubeconfig).
    #[arg(long, value_name = "URL")]
    pub spoke_server: Option<String>,
    /// PEM CA bundle of the spoke API server, pinned in the Argo CD cluster Secret (live: from the kubeconfig).
    #[arg(long, value_name = "PATH")]
    pub spoke_ca_file: Option<PathBuf>,
    /// Argo CD does not verify the spoke's certificate. Not for production; excludes --spoke-ca-file.
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// The hub's SPIFFE trust domain (live: ConfigMap spire-server on the hub).
    #[arg(long, value_name = "DOMAIN")]
    pub trust_domain: Option<String>,
    /// The hub's SPIRE OIDC issuer URL (live: ConfigMap spire-server on the hub).
    #[arg(long, value_name = "URL")]
    pub issuer_url: Option<String>,
    /// PEM CA of the issuer's certificate, if not publicly trusted (live: the hub's ingress CA).
    #[arg(long, value_name = "PATH")]
    pub issuer_ca_file: Option<PathBuf>,
    /// The spoke's OpenShift version, MAJOR.MINOR (live: ClusterVersion). Below 4.20 adds the feature gate.
    /// Required for OpenShift spokes; not used for Kubernetes (kind) spokes.
    #[arg(long, value_name = "VERSION")]
    pub spoke_version: Option<String>,
    /// The spoke's profile, when it differs from the hub's (--profile): a built-in name or a file.
    #[arg(long, value_name = "NAME|PATH")]
    pub spoke_profile: Option<String>,
    /// JWT audience the spoke accepts and Argo CD requests [default: from the profile, openshift-spoke].
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Option<String>,
    /// What Argo CD may do on the spoke [default: from the profile].
    #[arg(long, value_enum)]
    pub rbac: Option<RbacMode>,
    /// Namespace of the hub's Argo CD instance [default: from the profile, ztwim-gitops].
    #[arg(long, value_name = "NAMESPACE")]
    pub gitops_namespace: Option<String>,
    #[command(flatten)]
    pub out: RenderOutputArgs,
}

/// A flag that render needs because it has no cluster to discover the value from.
fn required<'a>(value: &'a Option<String>, flag: &str, live: &str) -> anyhow::Result<&'a str> {
    value.as_deref().ok_or_else(|| {
        error::input(format!(
            "{flag} is required: render has no cluster to read it from (live: {live})"
        ))
    })
}

pub fn exec(global: &GlobalArgs, args: &RenderArgs, printer: &Printer) -> anyhow::Result<()> {
    let profile = Profile::load(global.profile.as_deref().unwrap_or("openshift"))?;
    let renderer = Renderer::new(global.templates_dir.as_deref())?;
    // A Kubernetes spoke's authentication file: not an object, shown as comments or written aside.
    let mut extra: Option<AuthnFileRender> = None;
    let (plan, warnings, out) = match &args.what {
        RenderWhat::Bootstrap(a) => {
            let (plan, warnings) = plan_bootstrap(&profile, &renderer, &a.hub)?;
            (plan, warnings, &a.out)
        }
        RenderWhat::AddSpoke(a) => {
            let spoke_profile = match &a.spoke_profile {
                Some(spec) => Profile::load(spec)?,
                None => profile.clone(),
            };
            let (plan, warnings, authn) = plan_add_spoke(&profile, &spoke_profile, &renderer, a)?;
            extra = authn;
            (plan, warnings, &a.out)
        }
        RenderWhat::SmokeTest(a) => (smoke_test_plan(&profile, &renderer)?, Vec::new(), &a.out),
    };
    for warning in warnings {
        printer.warn(warning);
    }
    if let Some(dir) = &out.output_dir {
        let mut written = plan.write_dir(dir)?;
        if let Some(authn) = &extra {
            written.push(authn.write_under(dir)?);
        }
        for path in &written {
            printer.debug(1, format!("wrote {}", path.display()));
        }
        printer.info(format!(
            "wrote {} files under {}",
            written.len(),
            dir.display()
        ));
        return Ok(());
    }
    let mut text = match printer.format() {
        OutputFormat::Json => plan.to_json()?,
        OutputFormat::Yaml | OutputFormat::Text => plan.to_yaml()?,
    };
    if let Some(authn) = &extra
        && printer.format() != OutputFormat::Json
    {
        text.push_str(&authn.comment);
    }
    printer.data(&text)?;
    Ok(())
}

/// `render add-spoke` for a Kubernetes spoke: the authentication file add-spoke writes (for a spoke
/// whose file has no other authenticator yet, as kind-config creates it).
pub struct AuthnFileRender {
    pub spoke_name: String,
    pub file_name: String,
    pub config: crate::kind::authn::AuthenticationConfiguration,
    /// The YAML comment block for printed plans.
    pub comment: String,
}

impl AuthnFileRender {
    /// `--output-dir DIR`: `DIR/<spoke>-authn/<file>`, where kind-config keeps it too (not next to the
    /// spoke's objects, so that `kubectl apply -f DIR/<spoke>` never sees it).
    pub fn write_under(&self, dir: &std::path::Path) -> anyhow::Result<PathBuf> {
        let sub = dir.join(format!("{}-authn", self.spoke_name));
        std::fs::create_dir_all(&sub).map_err(|e| {
            error::input(format!(
                "--output-dir: cannot create {} ({e})",
                sub.display()
            ))
        })?;
        let path = sub.join(&self.file_name);
        self.config.write_atomically(&path)?;
        Ok(path)
    }
}

/// The smoke test's manifests (for the spoke, through Argo CD).
pub fn smoke_test_plan(profile: &Profile, renderer: &Renderer) -> anyhow::Result<Plan> {
    let steps = [crate::profile::StepManifests {
        step: "smoke-test".into(),
        cluster: crate::profile::Side::Spoke,
        templates: vec![SMOKE_TEST_TEMPLATE.into()],
    }];
    Plan::render(
        renderer,
        &steps,
        profile,
        &serde_json::json!({}),
        Some("smoke-test"),
    )
}

pub const SMOKE_TEST_TEMPLATE: &str = "common/smoke/manifests.yaml";

pub fn plan_bootstrap(
    profile: &Profile,
    renderer: &Renderer,
    args: &HubValueArgs,
) -> anyhow::Result<(Plan, Vec<String>)> {
    args.check_platform(profile)?;
    let platform = match profile.platform {
        crate::profile::Platform::Openshift => HubPlatformInputs::Openshift {
            app_domain: required(
                &args.app_domain,
                "--app-domain",
                "\"apps.\" + DNS cluster .spec.baseDomain",
            )?
            .to_string(),
            ztwim_channel: match (&args.channel, &profile.ztwim().operator.channel) {
                (Some(c), _) | (None, Some(c)) => c.clone(),
                (None, None) => {
                    required(
                        &None,
                        "--channel",
                        "the PackageManifest's status.defaultChannel",
                    )?;
                    unreachable!()
                }
            },
        },
        crate::profile::Platform::Kubernetes => HubPlatformInputs::Kubernetes {
            hub_name: args.cluster_name.clone().unwrap_or_else(|| "hub".into()),
            issuer_url: args.issuer_url.clone(),
        },
    };
    let inputs = HubInputs {
        trust_domain: args.trust_domain.clone(),
        cluster_name: args.cluster_name.clone(),
        gitops_namespace: args.gitops_namespace.clone(),
        exec_auth_url: args.exec_auth_url.clone(),
        exec_auth_sha256: args.exec_auth_sha256.clone(),
        platform,
    };
    let (mut values, warnings) = BootstrapValues::resolve(profile, &inputs)?;
    let sources = (profile.platform == crate::profile::Platform::Kubernetes).then(|| {
        crate::render::hub::Sources::new(profile, &args.spire_crds, args.argocd_manifest.as_deref())
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let plan = runtime.block_on(crate::render::hub::plan(
        renderer,
        profile,
        &mut values,
        sources.as_ref(),
        None,
    ))?;
    Ok((plan, warnings))
}

pub fn plan_add_spoke(
    hub_profile: &Profile,
    spoke_profile: &Profile,
    renderer: &Renderer,
    args: &RenderAddSpokeArgs,
) -> anyhow::Result<(Plan, Vec<String>, Option<AuthnFileRender>)> {
    let pem = |flag: &str, path: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        path.as_deref()
            .map(|p| validate::pem_certificates(flag, p).map_err(error::input))
            .transpose()
    };
    let spoke_name = required(&args.spoke_name, "--spoke-name", "the spoke context's name")?;
    let spoke_version = match spoke_profile.platform {
        crate::profile::Platform::Openshift => {
            let version = required(
                &args.spoke_version,
                "--spoke-version",
                "ClusterVersion version",
            )?;
            Some(validate::minor_version("--spoke-version", version).map_err(error::input)?)
        }
        crate::profile::Platform::Kubernetes => args
            .spoke_version
            .as_deref()
            .map(|v| validate::minor_version("--spoke-version", v).map_err(error::input))
            .transpose()?,
    };
    let inputs = SpokeInputs {
        spoke_name: spoke_name.to_string(),
        spoke_server: required(
            &args.spoke_server,
            "--spoke-server",
            "the spoke context's cluster server; kind: kube-public/cluster-info",
        )?
        .to_string(),
        spoke_ca_pem: pem("--spoke-ca-file", &args.spoke_ca_file)?,
        insecure_skip_tls_verify: args.insecure_skip_tls_verify,
        trust_domain: required(
            &args.trust_domain,
            "--trust-domain",
            "ConfigMap spire-server on the hub",
        )?
        .to_string(),
        issuer_url: required(
            &args.issuer_url,
            "--issuer-url",
            "ConfigMap spire-server on the hub",
        )?
        .to_string(),
        issuer_ca_pem: pem("--issuer-ca-file", &args.issuer_ca_file)?,
        spoke_version,
        audience: args.audience.clone(),
        rbac: args.rbac,
        gitops_namespace: args.gitops_namespace.clone(),
    };
    let (values, warnings) = SpokeValues::resolve(hub_profile, spoke_profile, &inputs)?;
    let plan = crate::workflow::spoke::plan(renderer, hub_profile, spoke_profile, &values)?;
    let authn = match spoke_profile.platform {
        crate::profile::Platform::Openshift => None,
        crate::profile::Platform::Kubernetes => {
            use crate::workflow::spoke::authn_file;
            let file_name = spoke_profile.spoke.kubernetes().authn_config_file.clone();
            let config = authn_file::desired(
                &crate::kind::authn::AuthenticationConfiguration::initial(),
                authn_file::authenticator(&values),
            );
            let comment = authn_file::comment(
                spoke_name,
                &format!("<--authn-config-dir>/{file_name}"),
                &config,
            )?;
            Some(AuthnFileRender {
                spoke_name: spoke_name.to_string(),
                file_name,
                config,
                comment,
            })
        }
    };
    Ok((plan, warnings, authn))
}
