//! `kubesim`: serve simulated clusters until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kubesim::{Fault, Profile, Sim, SimConfig};

#[derive(Parser, Debug)]
#[command(
    name = "kubesim",
    about = "Simulated Kubernetes/OpenShift API servers for ztwim-hub's tests"
)]
struct Args {
    /// Where to write the kubeconfig (one admin context per cluster).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Where to write the env file (HTTPS_PROXY, NO_PROXY).
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// A cluster as NAME=PROFILE, PROFILE being openshift-4.N or kind-1.N, optionally followed
    /// by `,authn-config=PATH` (kind: the kube-apiserver's authentication configuration file,
    /// reloaded when it changes). Repeatable.
    #[arg(
        long = "cluster",
        value_name = "NAME=PROFILE[,authn-config=PATH]",
        required = true
    )]
    clusters: Vec<String>,
    /// Extra latency on every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Delay before controllers react to a change, in milliseconds.
    #[arg(long, default_value_t = 0)]
    controller_delay_ms: u64,
    /// A fault: KIND:key=value,... (see kubesim::Fault::parse). Repeatable.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<String>,
    /// How often to log the request counters of each cluster (when they changed), in ms.
    #[arg(long, default_value_t = 1000)]
    counters_interval_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = SimConfig::new()
        .latency(Duration::from_millis(args.latency_ms))
        .controller_delay(Duration::from_millis(args.controller_delay_ms));
    for c in &args.clusters {
        let (name, profile) = c
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--cluster {c:?}: expected NAME=PROFILE"))?;
        let mut options = profile.split(',');
        let profile = options.next().unwrap_or_default();
        config = config.cluster(name, Profile::parse(profile)?);
        for opt in options {
            match opt.split_once('=') {
                Some(("authn-config", path)) if !path.is_empty() => {
                    config = config.authentication_config(name, path);
                }
                _ => anyhow::bail!(
                    "--cluster {c:?}: unknown option {opt:?} (expected authn-config=PATH)"
                ),
            }
        }
    }
    for f in &args.faults {
        let (fault, cluster) = Fault::parse(f).map_err(|e| anyhow::anyhow!(e))?;
        config = config.fault(fault, cluster.as_deref());
    }
    let sim = Sim::start(config)?;
    sim.write_kubeconfig(&args.kubeconfig)?;
    if let Some(env) = &args.env_file {
        kubesim::sim::write_private(env, &sim.env_file())?;
    }
    for c in sim.clusters() {
        eprintln!(
            "kubesim: cluster {} ({}) at {}",
            c.name(),
            c.profile(),
            c.server_url()
        );
    }
    println!("ready");
    let interval = Duration::from_millis(args.counters_interval_ms.max(50));
    sim.runtime().block_on(async {
        let mut last: Vec<kubesim::Counters> = sim.clusters().iter().map(|c| c.counters()).collect();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = tick.tick() => {
                    for (i, c) in sim.clusters().iter().enumerate() {
                        let now = c.counters();
                        if now != last[i] {
                            eprintln!(
                                "kubesim: counters cluster={} mutating_requests={} stored_changes={} dry_run_requests={} internal_changes={}",
                                c.name(), now.mutating_requests, now.stored_changes, now.dry_run_requests, now.internal_changes
                            );
                            last[i] = now;
                        }
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    for c in sim.clusters() {
        let now = c.counters();
        eprintln!(
            "kubesim: counters cluster={} mutating_requests={} stored_changes={} dry_run_requests={} internal_changes={}",
            c.name(),
            now.mutating_requests,
            now.stored_changes,
            now.dry_run_requests,
            now.internal_changes
        );
    }
    eprintln!("kubesim: stopping");
    Ok(())
}
