//! Simulated clusters for the live commands: a kubesim Sim, a kubeconfig and the proxy environment,
//! and a runner for the real binary against them.

use std::path::PathBuf;
use std::time::Duration;

use kubesim::{KubeUser, Profile, Sim, SimConfig};
use serde_json::Value;

use crate::support::{Output, Run};

pub struct Clusters {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Clusters {
    /// Clusters named and profiled as given (`("hub", "openshift-4.20")`), controller delay 0.
    pub fn start(clusters: &[(&str, &str)]) -> Clusters {
        Clusters::start_with(clusters, |c| c)
    }

    pub fn start_with(
        clusters: &[(&str, &str)],
        configure: impl FnOnce(SimConfig) -> SimConfig,
    ) -> Clusters {
        Clusters::start_in(tempfile::tempdir().unwrap(), clusters, configure)
    }

    /// Clusters whose `kind_spokes` (kind clusters among `clusters`) run kube-apiserver with
    /// `--authentication-config`, as `kind create cluster --config` with a `kind-config` spoke config
    /// does: `kind-config --hub hub --spoke NAME... --dir <dir>/kind` writes the initial files, and each
    /// spoke starts with `SimConfig::authentication_config(name, <dir>/kind/<name>-authn/...)`.
    pub fn start_kind_spokes(clusters: &[(&str, &str)], kind_spokes: &[&str]) -> Clusters {
        let dir = tempfile::tempdir().unwrap();
        let kind_dir = dir.path().join("kind");
        if !kind_spokes.is_empty() {
            let mut args = vec!["kind-config", "--hub", "hub"];
            for spoke in kind_spokes {
                args.extend(["--spoke", spoke]);
            }
            let kind_dir_arg = kind_dir.to_str().unwrap().to_string();
            args.extend(["--dir", &kind_dir_arg, "-q"]);
            crate::support::ztwim(&args).success();
        }
        let files: Vec<(String, PathBuf)> = kind_spokes
            .iter()
            .map(|s| (s.to_string(), authn_file_in(&kind_dir, s)))
            .collect();
        Clusters::start_in(dir, clusters, move |mut config| {
            for (name, path) in &files {
                config = config.authentication_config(name, path);
            }
            config
        })
    }

    fn start_in(
        dir: tempfile::TempDir,
        clusters: &[(&str, &str)],
        configure: impl FnOnce(SimConfig) -> SimConfig,
    ) -> Clusters {
        let mut config = SimConfig::new().controller_delay(Duration::from_millis(0));
        for (name, profile) in clusters {
            config = config.cluster(name, Profile::parse(profile).expect("a kubesim profile"));
        }
        let sim = Sim::start(configure(config)).expect("kubesim starts");
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Clusters {
            sim,
            dir,
            kubeconfig,
        }
    }

    /// The `--authn-config-dir` of a spoke started by [`Clusters::start_kind_spokes`]: the directory
    /// kind-config wrote for it (`<dir>/kind/<spoke>-authn`).
    pub fn authn_dir(&self, spoke: &str) -> PathBuf {
        self.dir.path().join("kind").join(format!("{spoke}-authn"))
    }

    /// The authentication file the spoke's kube-apiserver reads.
    pub fn authn_file(&self, spoke: &str) -> PathBuf {
        authn_file_in(&self.dir.path().join("kind"), spoke)
    }

    /// Adds contexts with other users to the kubeconfig: `(context, cluster, user)`.
    pub fn add_users(&mut self, entries: &[(&str, &str, KubeUser)]) {
        let mut all: Vec<(String, String, KubeUser)> = self
            .sim
            .clusters()
            .iter()
            .map(|c| (c.name().to_string(), c.name().to_string(), KubeUser::Admin))
            .collect();
        all.extend(
            entries
                .iter()
                .map(|(a, b, u)| (a.to_string(), b.to_string(), u.clone())),
        );
        let refs: Vec<(&str, &str, &KubeUser)> = all
            .iter()
            .map(|(a, b, u)| (a.as_str(), b.as_str(), u))
            .collect();
        std::fs::write(&self.kubeconfig, self.sim.kubeconfig_for(&refs)).unwrap();
    }

    /// `ztwim-hub ARGS` with this kubeconfig, the proxy environment and a private state directory.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command(args).run()
    }

    /// The same, not yet run (to add environment).
    pub fn command<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let proxy = format!("http://{}", self.sim.proxy_addr());
        Run::new(args)
            .env("KUBECONFIG", self.kubeconfig.to_str().unwrap())
            .env("HTTPS_PROXY", &proxy)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env(
                "XDG_STATE_HOME",
                self.dir.path().join("state").to_str().unwrap(),
            )
            .env("HOME", self.dir.path().to_str().unwrap())
    }

    /// Counters of mutating requests on every cluster, as (name, mutating, stored).
    pub fn writes(&self) -> Vec<(String, u64, u64)> {
        self.sim
            .clusters()
            .iter()
            .map(|c| {
                let k = c.counters();
                (c.name().to_string(), k.mutating_requests, k.stored_changes)
            })
            .collect()
    }

    #[track_caller]
    pub fn assert_untouched(&self) {
        for (name, mutating, stored) in self.writes() {
            assert_eq!(
                (mutating, stored),
                (0, 0),
                "cluster {name} received {mutating} mutating requests"
            );
        }
    }

    pub fn reset_counters(&self) {
        for c in self.sim.clusters() {
            c.reset_counters();
        }
    }
}

fn authn_file_in(kind_dir: &std::path::Path, spoke: &str) -> PathBuf {
    kind_dir
        .join(format!("{spoke}-authn"))
        .join("authentication-config.yaml")
}

/// The JSON document a live command printed with `-o json`.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    })
}
