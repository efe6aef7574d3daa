#![allow(dead_code)]
//! Helpers shared by kubesim's integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kubesim::{KubeUser, Profile, Sim, SimConfig};

pub fn sim_kind() -> Sim {
    Sim::start(SimConfig::new().cluster("k1", Profile::kind("1.34"))).expect("sim starts")
}

pub fn sim_hub_spoke() -> Sim {
    Sim::start(
        SimConfig::new()
            .cluster("hub", Profile::openshift("4.20"))
            .cluster("spoke", Profile::openshift("4.19"))
            .controller_delay(Duration::from_millis(0)),
    )
    .expect("sim starts")
}

/// A kube client for one context of a kubeconfig.
pub async fn client_for(yaml: &str, context: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(yaml).expect("kubeconfig parses");
    let opts = kube::config::KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts)
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

pub async fn admin_client(sim: &Sim, cluster: &str) -> kube::Client {
    client_for(
        &sim.kubeconfig_with_user(cluster, cluster, &KubeUser::Admin),
        cluster,
    )
    .await
}

/// kubectl with its own HOME, cache dir and kubeconfig. Fails loudly when kubectl is missing.
pub struct Kubectl {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

pub fn kubectl_path() -> PathBuf {
    let candidates = [
        std::env::var_os("KUBECTL").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/kubectl")),
        Some(PathBuf::from("/usr/local/bin/kubectl")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "kubectl not found (looked at $KUBECTL, /usr/bin/kubectl, /usr/local/bin/kubectl): the kubectl compatibility tests need it"
    );
}

impl Kubectl {
    pub fn new(kubeconfig_yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        kubesim::sim::write_private(&kubeconfig, kubeconfig_yaml).unwrap();
        Self { dir, kubeconfig }
    }
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_path());
        cmd.env("HOME", self.dir.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .arg("--request-timeout=30s")
            .args(args);
        cmd
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl runs")
    }
    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub const WIDGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 0}
              color: {type: string, enum: [red, blue]}
          status:
            type: object
            properties:
              ready: {type: boolean}
"#;
