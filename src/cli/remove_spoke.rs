//! `ztwim-hub remove-spoke --hub-context HUB --spoke-context SPOKE`: undo add-spoke. The saved
//! Authentication spec is restored; the cluster Secret, the RBAC and the issuer CA are deleted. The feature
//! set is never touched (TechPreviewNoUpgrade cannot be undone). On a Kubernetes (kind) spoke the
//! authentication file in `--authn-config-dir` is restored instead.

use std::io::IsTerminal;
use std::sync::Mutex;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::GlobalArgs;
use super::add_spoke::{
    DiscoverOptions, SpokeTargetArgs, check_selection_names, discover, step_names,
};
use super::live::{LiveArgs, print_outcome};
use crate::error;
use crate::kube::apply::{Applier, DryRun};
use crate::kube::client::Kubeconfigs;
use crate::output::Printer;
use crate::profile::Platform;
use crate::render::Renderer;
use crate::workflow::spoke::{self, SpokeRun, remove};
use crate::workflow::{Runner, StepReport};

fn after_help() -> String {
    format!(
        "{}\n\nThe FeatureGate is left as it is: TechPreviewNoUpgrade can never be turned off.\n\n\
Kubernetes (kind) spokes (--authn-config-dir DIR, as for add-spoke): the authentication file is put back byte for byte from its backup \
while it is still what add-spoke wrote; otherwise only the hub's JWT authenticator is removed from it (and remove-spoke says so). \
Nothing else in DIR is touched.\n\n\
Example:\n  ztwim-hub remove-spoke --hub-context hub --spoke-context spoke-a --yes",
        remove::step_help()
    )
}

/// Remove a spoke: unregister it from Argo CD and restore its previous authentication.
#[derive(Debug, Args)]
#[command(after_help = after_help())]
pub struct RemoveSpokeArgs {
    #[command(flatten)]
    pub target: SpokeTargetArgs,
    #[command(flatten)]
    pub live: LiveArgs,
}

pub fn exec(global: &GlobalArgs, args: &RemoveSpokeArgs, printer: &Printer) -> Result<()> {
    args.target.check_profiles(global)?;
    let renderer = Renderer::new(global.templates_dir.as_deref())?;
    check_selection_names(
        &args.live,
        &[
            remove::steps(Platform::Openshift),
            remove::steps(Platform::Kubernetes),
        ],
        &remove::all_check_names(),
    )?;
    args.live.check_consent_possible("remove-spoke")?;
    if args.live.dry_run == Some(DryRun::Client) {
        return Err(error::input(
            "remove-spoke has no client dry run (it only deletes and restores); use --dry-run=server",
        ));
    }
    let spoke_name = args.target.spoke_name()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let kubeconfigs = Kubeconfigs::load(global.kubeconfig.as_deref())?;
        let hub = kubeconfigs.cluster("--hub-context", &args.target.hub_context).await?;
        let spoke_cluster = kubeconfigs.cluster("--spoke-context", &args.target.spoke_context).await?;
        hub.version().await?;
        spoke_cluster.version().await?;
        let profiles = args.target.choose_profiles(global, &hub, &spoke_cluster).await?;
        args.target.check_authn_config_dir(&profiles, &spoke_cluster)?;
        let (hub_profile, spoke_profile) = (&profiles.hub.profile, &profiles.spoke.profile);
        let platform = spoke_profile.platform;
        let steps = remove::steps(platform);
        args.live.selection().validate(&step_names(&steps))?;
        args.live.ignore().validate(&remove::check_names(platform))?;
        let options = DiscoverOptions {
            spoke_name,
            spoke_ca_file: None,
            // Nothing is written with the spoke's CA here; do not insist on one.
            insecure_skip_tls_verify: spoke_cluster.ca_pem.is_none(),
            audience: None,
            rbac: None,
            gitops_namespace: args.target.gitops_namespace.clone(),
        };
        let (values, _warnings) =
            discover(&hub, &spoke_cluster, hub_profile, spoke_profile, options).await?;
        profiles.announce(printer);
        let plan = spoke::plan(&renderer, hub_profile, spoke_profile, &values)?;
        let what = match platform {
            Platform::Openshift => format!(
                "restore the previous authentication of {} (OAuth logins come back; SPIFFE identities stop working there)",
                spoke_cluster.context
            ),
            Platform::Kubernetes => format!(
                "restore the authentication file of {} (SPIFFE identities from {} stop working there)",
                spoke_cluster.context, values.issuer_url
            ),
        };
        args.live.confirm(
            printer,
            &format!(
                "remove-spoke will unregister {} from Argo CD on {} and {what}",
                values.spoke_name, hub.context
            ),
            &format!("Remove spoke {}?", spoke_cluster.context),
        )?;
        let ctx = SpokeRun {
            printer: printer.clone(),
            hub_profile: hub_profile.clone(),
            spoke_profile: spoke_profile.clone(),
            hub,
            spoke: spoke_cluster,
            values,
            plan,
            applier: Applier { dry_run: args.live.dry_run, force: args.live.force },
            timeout: args.live.timeout,
            rollout_timeout: args.target.rollout_timeout,
            exec_timeout: args.live.exec_timeout,
            allow_tech_preview: false,
            interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            ignore: args.live.ignore(),
            state_dir: args.target.state_dir(),
            facts: Mutex::new(spoke::Facts::default()),
            smoke_test: None,
            authn_config_dir: args.target.authn_config_dir(),
        };
        let runner = Runner { steps: &steps, selection: args.live.selection() };
        let (reports, result) = runner.run(&ctx).await;
        report(printer, &ctx, &reports, result.as_ref().err())?;
        result
    })
}

fn report(
    printer: &Printer,
    ctx: &SpokeRun,
    reports: &[StepReport],
    error: Option<&anyhow::Error>,
) -> Result<()> {
    let warnings = ctx.facts.lock().expect("facts").warnings.clone();
    let doc = json!({
        "command": "remove-spoke",
        "hubContext": ctx.hub.context,
        "spokeContext": ctx.spoke.context,
        "spokeName": ctx.values.spoke_name,
        "hubProfile": ctx.hub_profile.name,
        "spokeProfile": ctx.spoke_profile.name,
        "dryRun": ctx.applier.dry_run,
        "featureGate": if ctx.values.needs_feature_gate { "left as TechPreviewNoUpgrade (irreversible)" } else { "not changed" },
        "warnings": warnings,
    });
    print_outcome(printer, reports, error, doc, || {
        if ctx.values.needs_feature_gate {
            "\nFeatureGate cluster keeps TechPreviewNoUpgrade: it cannot be undone.\n".to_string()
        } else {
            String::new()
        }
    })
}
