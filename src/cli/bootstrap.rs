//! `ztwim-hub bootstrap --context HUB`: the hub, end to end: SPIRE (ZTWIM on OpenShift, upstream on kind), its
//! OIDC issuer and an Argo CD whose pods obtain JWT-SVIDs, each step applied, awaited and verified.

use std::sync::Mutex;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::live::{LiveArgs, print_outcome, print_plan};
use super::render::HubValueArgs;
use crate::error;
use crate::kube::apply::{Applier, DryRun, api_for};
use crate::kube::client::{Cluster, Kubeconfigs};
use crate::kube::kinds;
use crate::kube::platform;
use crate::output::Printer;
use crate::profile::Platform;
use crate::profile::Profile;
use crate::render::Renderer;
use crate::render::hub::Sources;
use crate::render::tls::{self, ServingCert};
use crate::render::values::{BootstrapValues, HubInputs, HubPlatformInputs};
use crate::workflow::hub::{self, HubRun};
use crate::workflow::{Runner, StepReport};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::Api;

fn after_help() -> String {
    format!(
        "Steps, in order (--skip/--only take these names):\n{}\n\nThe profile is detected when --profile is not given: openshift when the hub serves config.openshift.io, \
kind otherwise. Values not given are discovered. OpenShift: the apps domain from DNS cluster, the channel from the \
PackageManifest, the trust domain and cluster name from an existing install. kind: the hub's name from its \
<name>-control-plane node, the issuer https://<name>-control-plane:30443, the trust domain <name>.kind (or an \
existing install's). A re-run changes nothing and verifies again.\n\nExamples:\n  ztwim-hub bootstrap --context hub --dry-run=client\n  \
ztwim-hub bootstrap --context hub --yes -o json\n  ztwim-hub bootstrap --context kind-hub --yes --argocd-manifest ./install.yaml",
        hub::step_help()
    )
}

/// Set up the hub: SPIRE, its OIDC issuer, and Argo CD with SPIFFE identities.
///
/// OpenShift: ZTWIM from OLM with its operands, SPIRE's OIDC issuer on a Route, OpenShift GitOps and an Argo
/// CD instance. kind: upstream SPIRE, its OIDC issuer on a NodePort, and Argo CD's release manifest. Either
/// way the Argo CD server and application controller obtain JWT-SVIDs; every step is applied with
/// server-side apply, awaited with watches, and verified.
#[derive(Debug, Args)]
#[command(after_help = after_help())]
pub struct BootstrapArgs {
    /// The hub's kube context.
    #[arg(long, value_name = "CONTEXT")]
    pub context: String,
    #[command(flatten)]
    pub hub: HubValueArgs,
    /// Audience of the JWT-SVIDs the identity step obtains [default: the profile's spoke audience].
    #[arg(long, value_name = "AUDIENCE")]
    pub audience: Option<String>,
    #[command(flatten)]
    pub live: LiveArgs,
}

pub fn exec(global: &GlobalArgs, args: &BootstrapArgs, printer: &Printer) -> Result<()> {
    // Validate what needs no cluster before contacting one.
    let given = global.profile.as_deref().map(Profile::load).transpose()?;
    let renderer = Renderer::new(global.templates_dir.as_deref())?;
    args.live.selection().validate(&hub::all_step_names())?;
    args.live.ignore().validate(&hub::check_names())?;
    args.live.check_consent_possible("bootstrap")?;
    if let Some(profile) = &given {
        args.hub.check_platform(profile)?;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let kubeconfigs = Kubeconfigs::load(global.kubeconfig.as_deref())?;
        let cluster = kubeconfigs.cluster("--context", &args.context).await?;
        let version = cluster.version().await?;
        printer.debug(1, format!("{}: {} (Kubernetes {})", cluster.context, cluster.server, version.git_version));
        let chosen = platform::choose(global.profile.as_deref(), "--profile", &cluster).await?;
        let profile = chosen.profile;
        args.hub.check_platform(&profile)?;
        let steps = hub::steps(profile.platform);
        let names: Vec<&str> = steps.iter().map(|s| s.name()).collect();
        args.live.selection().validate(&names)?;
        let audience = args
            .audience
            .clone()
            .unwrap_or_else(|| profile.spoke.audience.clone());
        if audience.trim().is_empty() || audience.contains(char::is_whitespace) {
            return Err(error::input(format!(
                "--audience {audience:?}: an audience is one word without spaces"
            )));
        }
        let (mut values, warnings, tls) = match profile.platform {
            Platform::Openshift => {
                let (v, w) = discover(&cluster, &profile, &args.hub).await?;
                (v, w, None)
            }
            Platform::Kubernetes => discover_kubernetes(&cluster, &profile, &args.hub).await?,
        };
        let sources = (profile.platform == Platform::Kubernetes).then(|| {
            Sources::new(&profile, &args.hub.spire_crds, args.hub.argocd_manifest.as_deref())
        });
        let plan = crate::render::hub::plan(&renderer, &profile, &mut values, sources.as_ref(), tls).await?;
        printer.info(format!("profile: {} ({})", profile.name, chosen.reason));
        for w in &warnings {
            printer.warn(w);
        }
        if args.live.dry_run == Some(DryRun::Client) {
            return print_plan(printer, &plan);
        }
        let what = match profile.platform {
            Platform::Openshift => "install ZTWIM",
            Platform::Kubernetes => "install SPIRE",
        };
        args.live.confirm(
            printer,
            &format!(
                "bootstrap will change cluster {} ({}): {what} ({} objects in all), trust domain {}, issuer {}, Argo CD in {}",
                cluster.context,
                cluster.server,
                plan.objects.len(),
                values.trust_domain,
                values.jwt_issuer,
                values.gitops_namespace
            ),
            &format!("Bootstrap {}?", cluster.context),
        )?;
        let ctx = HubRun {
            printer: printer.clone(),
            profile: profile.clone(),
            hub: cluster,
            values,
            plan,
            applier: Applier { dry_run: args.live.dry_run, force: args.live.force },
            timeout: args.live.timeout,
            exec_timeout: args.live.exec_timeout,
            audience,
            ignore: args.live.ignore(),
            facts: Mutex::new(hub::Facts { warnings, ..Default::default() }),
        };
        let runner = Runner { steps: &steps, selection: args.live.selection() };
        let (reports, result) = runner.run(&ctx).await;
        report(printer, &ctx, &reports, result.as_ref().err())?;
        result
    })
}

/// A Kubernetes hub: its kind name (from the `<name>-control-plane` node), an existing SPIRE's trust domain
/// and the serving certificate to keep.
async fn discover_kubernetes(
    cluster: &Cluster,
    profile: &Profile,
    args: &HubValueArgs,
) -> Result<(BootstrapValues, Vec<String>, Option<ServingCert>)> {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let nodes = nodes
        .list(&Default::default())
        .await
        .map_err(|e| crate::kube::client::read_refused(cluster, "nodes", &e))?;
    let hub_name = nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.as_deref()?.strip_suffix("-control-plane"))
        .min()
        .map(str::to_string);
    let hub_name = match (hub_name, &args.issuer_url, &args.cluster_name) {
        (Some(name), _, _) => name,
        (None, Some(_), Some(name)) => name.clone(),
        (None, _, _) => {
            return Err(error::input(format!(
                "{} has no node named <name>-control-plane, so it is not a kind cluster ztwim-hub can name: pass --issuer-url (where the spokes' API servers reach this hub's NodePort {}) and --cluster-name",
                cluster.context,
                profile.spire().oidc_node_port
            )));
        }
    };
    let ns = &profile.spire().namespace;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
    let existing = cms
        .get_opt("spire-server")
        .await
        .map_err(|e| crate::kube::client::read_refused(cluster, "ConfigMap spire-server", &e))?
        .and_then(|cm| cm.data?.get("server.conf").cloned())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
    let existing_str = |key: &str| {
        existing
            .as_ref()
            .and_then(|c| c.pointer(&format!("/server/{key}")))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let inputs = HubInputs {
        trust_domain: args
            .trust_domain
            .clone()
            .or_else(|| existing_str("trust_domain")),
        cluster_name: args.cluster_name.clone(),
        gitops_namespace: args.gitops_namespace.clone(),
        exec_auth_url: args.exec_auth_url.clone(),
        exec_auth_sha256: args.exec_auth_sha256.clone(),
        platform: HubPlatformInputs::Kubernetes {
            hub_name,
            issuer_url: args.issuer_url.clone(),
        },
    };
    let (values, warnings) = BootstrapValues::resolve(profile, &inputs)?;
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), ns);
    let names = &values.kubernetes().oidc_certificate_names;
    let tls = secrets
        .get_opt(tls::SECRET)
        .await
        .map_err(|e| crate::kube::client::read_refused(cluster, "Secret spire-oidc-tls", &e))?
        .and_then(|s| s.data)
        .map(|data| {
            data.into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()
        })
        .and_then(|data| ServingCert::reuse(&data, names));
    Ok((values, warnings, tls))
}

/// Fills in what the flags leave open from the cluster, then validates and derives the values.
async fn discover(
    cluster: &Cluster,
    profile: &Profile,
    args: &HubValueArgs,
) -> Result<(BootstrapValues, Vec<String>)> {
    let app_domain = match &args.app_domain {
        Some(d) => d.clone(),
        None => {
            let kind = kinds::known("config.openshift.io/v1", "DNS");
            let dns = api_for(cluster, kind, None)
                .get_opt("cluster")
                .await
                .map_err(|e| crate::kube::client::read_refused(cluster, "DNS cluster", &e))?;
            let base = dns
                .as_ref()
                .and_then(|d| d.data.pointer("/spec/baseDomain"))
                .and_then(|b| b.as_str())
                .filter(|b| !b.is_empty())
                .ok_or_else(|| {
                    error::input(format!(
                        "cannot discover the apps domain of {}: DNS cluster has no spec.baseDomain; pass --app-domain",
                        cluster.context
                    ))
                })?;
            format!("apps.{base}")
        }
    };
    let op = &profile.ztwim().operator;
    let channel = match (&args.channel, &op.channel) {
        (Some(c), _) | (None, Some(c)) => c.clone(),
        (None, None) => {
            let found = hub::package_channels(cluster, &op.source_namespace, &op.package)
                .await
                .map_err(|e| match e.downcast_ref::<kube::Error>() {
                    Some(k) => crate::kube::client::read_refused(
                        cluster,
                        &format!("PackageManifest {}", op.package),
                        k,
                    ),
                    None => e,
                })?;
            match found {
                Some((Some(default), _)) => default,
                Some((None, channels)) => {
                    return Err(error::input(format!(
                        "package {} has no default channel; pass --channel (channels: {})",
                        op.package,
                        channels.join(", ")
                    )));
                }
                None => {
                    return Err(error::input(format!(
                        "package {} is not in the catalog of {} (no PackageManifest in {}); is the {} CatalogSource available? Or pass --channel",
                        op.package, cluster.context, op.source_namespace, op.source
                    )));
                }
            }
        }
    };
    let existing =
        hub::existing_ztwim(cluster)
            .await
            .map_err(|e| match e.downcast_ref::<kube::Error>() {
                Some(k) => crate::kube::client::read_refused(
                    cluster,
                    "ZeroTrustWorkloadIdentityManager cluster",
                    k,
                ),
                None => e,
            })?;
    let inputs = HubInputs {
        platform: HubPlatformInputs::Openshift {
            app_domain,
            ztwim_channel: channel,
        },
        trust_domain: args
            .trust_domain
            .clone()
            .or_else(|| existing.as_ref().map(|(td, _)| td.clone())),
        cluster_name: args
            .cluster_name
            .clone()
            .or_else(|| existing.as_ref().map(|(_, cn)| cn.clone())),
        gitops_namespace: args.gitops_namespace.clone(),
        exec_auth_url: args.exec_auth_url.clone(),
        exec_auth_sha256: args.exec_auth_sha256.clone(),
    };
    BootstrapValues::resolve(profile, &inputs)
}

fn report(
    printer: &Printer,
    ctx: &HubRun,
    reports: &[StepReport],
    error: Option<&anyhow::Error>,
) -> Result<()> {
    let facts = ctx.facts.lock().expect("facts").clone();
    let v = &ctx.values;
    let doc = json!({
        "command": "bootstrap",
        "context": ctx.hub.context,
        "dryRun": ctx.applier.dry_run,
        "profile": ctx.profile.name,
        "platform": ctx.profile.platform,
        "values": {
            "appDomain": v.openshift.as_ref().map(|o| &o.app_domain),
            "trustDomain": v.trust_domain,
            "clusterName": v.cluster_name,
            "issuerURL": v.jwt_issuer,
            "routeHost": facts.route_host,
            "gitopsNamespace": v.gitops_namespace,
            "ztwimChannel": v.openshift.as_ref().map(|o| &o.ztwim_channel),
            "spiffeIDs": {"server": v.identities.server, "controller": v.identities.controller},
        },
        "identities": facts.identities,
        "warnings": facts.warnings,
    });
    print_outcome(printer, reports, error, doc, || {
        format!(
            "\nissuer:        {}\ntrust domain:  {}\nArgo CD:       {} in {}\nSPIFFE IDs:    {}\n               {}\n",
            v.jwt_issuer,
            v.trust_domain,
            ctx.profile.argo().instance,
            v.gitops_namespace,
            v.identities.server,
            v.identities.controller
        )
    })
}
