//! Seeded state of each profile, and the `kubesim` binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Kubectl, sim_hub_spoke, sim_kind};

#[test]
fn openshift_seed() {
    let sim = sim_hub_spoke();
    for (name, version, kube) in [("hub", "4.20.0", "v1.33.0"), ("spoke", "4.19.0", "v1.32.0")] {
        let c = sim.cluster(name);
        assert_eq!(c.profile().git_version(), kube);
        for ns in [
            "default",
            "kube-system",
            "kube-public",
            "openshift-config",
            "openshift-config-managed",
            "openshift-marketplace",
        ] {
            assert!(
                c.get("v1", "Namespace", None, ns).is_some(),
                "{name}: namespace {ns}"
            );
        }
        let nodes = c.list("v1", "Node", None);
        assert_eq!(nodes.len(), 3);
        assert!(
            nodes
                .iter()
                .all(|n| n["status"]["conditions"][0]["type"] == "Ready"
                    && n["status"]["conditions"][0]["status"] == "True")
        );
        assert!(
            c.get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                "cluster-admin"
            )
            .is_some()
        );
        assert!(
            c.get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "cluster-admin"
            )
            .is_some()
        );
        let dns = c
            .get("config.openshift.io/v1", "DNS", None, "cluster")
            .unwrap();
        assert_eq!(dns["spec"]["baseDomain"], format!("{name}.kubesim.example"));
        assert_eq!(c.apps_domain(), format!("apps.{name}.kubesim.example"));
        let cv = c
            .get("config.openshift.io/v1", "ClusterVersion", None, "version")
            .unwrap();
        assert_eq!(cv["status"]["desired"]["version"], version);
        assert!(
            c.get("config.openshift.io/v1", "FeatureGate", None, "cluster")
                .is_some()
        );
        let auth = c
            .get("config.openshift.io/v1", "Authentication", None, "cluster")
            .unwrap();
        assert_eq!(auth["spec"]["type"], "IntegratedOAuth");
        let co = c
            .get(
                "config.openshift.io/v1",
                "ClusterOperator",
                None,
                "kube-apiserver",
            )
            .unwrap();
        assert!(
            co["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
        );
        let ingress = c
            .get(
                "v1",
                "ConfigMap",
                Some("openshift-config-managed"),
                "default-ingress-cert",
            )
            .unwrap();
        assert_eq!(ingress["data"]["ca-bundle.crt"], c.ingress_ca_pem());
        assert!(
            c.ingress_ca_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(
            c.get(
                "operators.coreos.com/v1alpha1",
                "CatalogSource",
                Some("openshift-marketplace"),
                "redhat-operators"
            )
            .is_some()
        );
        for pkg in [
            "openshift-zero-trust-workload-identity-manager",
            "openshift-gitops-operator",
        ] {
            let pm = c
                .get(
                    "packages.operators.coreos.com/v1",
                    "PackageManifest",
                    Some("openshift-marketplace"),
                    pkg,
                )
                .unwrap();
            assert!(
                pm["status"]["defaultChannel"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty())
            );
        }
    }
    // ExternalOIDC: default on 4.20, only with TechPreviewNoUpgrade before.
    let enabled = |c: &str| {
        sim.cluster(c)
            .get("config.openshift.io/v1", "FeatureGate", None, "cluster")
            .unwrap()["status"]["featureGates"][0]["enabled"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "ExternalOIDC")
    };
    assert!(enabled("hub"));
    assert!(!enabled("spoke"));
    // The two clusters have different CAs.
    assert_ne!(sim.cluster("hub").ca_pem(), sim.cluster("spoke").ca_pem());
}

#[test]
fn openshift_seed_validates_against_reference_crds() {
    let Some(schemas) = kubesim::schema::reference_schemas() else {
        println!("{}", kubesim::schema::SKIP_MESSAGE);
        return;
    };
    let sim = sim_hub_spoke();
    let c = sim.cluster("hub");
    let mut checked = 0;
    for (av, kind) in schemas.kinds() {
        for obj in c.list(&av, &kind, None) {
            if let Err(e) = schemas.validate(&obj) {
                panic!(
                    "seeded {kind} {} does not validate: {e:#?}",
                    obj["metadata"]["name"]
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "checked {checked}");
    // On OpenShift the config/OLM kinds are CRDs (so writes are validated against them).
    assert!(
        c.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "subscriptions.operators.coreos.com"
        )
        .is_some()
    );
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let bad = k.write("sub.yaml", "apiVersion: operators.coreos.com/v1alpha1\nkind: Subscription\nmetadata: {name: s, namespace: openshift-operators}\nspec: {name: x, source: redhat-operators, sourceNamespace: openshift-marketplace, chanel: latest}\n");
    let out = k.run(&[
        "--context",
        "hub",
        "apply",
        "--server-side",
        "-f",
        bad.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.chanel"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kind_seed_has_no_openshift_apis() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    assert_eq!(c.list("v1", "Node", None).len(), 3);
    assert!(c.get("v1", "Namespace", None, "kube-public").is_some());
    assert!(
        c.get("config.openshift.io/v1", "DNS", None, "cluster")
            .is_none()
    );
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let out = k.run(&["get", "routes"]);
    assert!(!out.status.success());
    let out = k.run(&["get", "packagemanifests"]);
    assert!(!out.status.success());
}

#[test]
fn binary_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let env = dir.path().join("env");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--env-file",
            env.to_str().unwrap(),
        ])
        .args([
            "--cluster",
            "hub=openshift-4.20",
            "--cluster",
            "spoke=openshift-4.19",
            "--cluster",
            "k1=kind-1.34",
        ])
        .args([
            "--latency-ms",
            "1",
            "--controller-delay-ms",
            "10",
            "--fault",
            "http:status=500,verb=delete,resource=secrets,cluster=k1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let env_text = std::fs::read_to_string(&env).unwrap();
    assert!(
        env_text.contains("export HTTPS_PROXY=http://127.0.0.1:"),
        "{env_text}"
    );
    assert!(env_text.contains("export NO_PROXY="), "{env_text}");
    let k = Kubectl::new(&std::fs::read_to_string(&kubeconfig).unwrap());
    let contexts = k.ok(&["config", "get-contexts", "-o", "name"]);
    assert_eq!(
        contexts.lines().collect::<Vec<_>>(),
        vec!["hub", "k1", "spoke"]
    );
    assert!(
        k.ok(&[
            "--context",
            "spoke",
            "get",
            "clusterversion",
            "version",
            "-o",
            "jsonpath={.status.desired.version}"
        ])
        .starts_with("4.19")
    );
    assert!(
        k.ok(&["--context", "k1", "get", "nodes"])
            .contains("k1-worker")
    );
    let secret = k.write("s.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: default}\nstringData: {a: b}\n");
    k.ok(&["--context", "k1", "apply", "-f", secret.to_str().unwrap()]);
    let out = k.run(&["--context", "k1", "delete", "secret", "s"]);
    assert!(!out.status.success(), "the injected 500 fault applies");
    // The counters are logged.
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("kubesim exits on SIGTERM")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("kubesim: counters cluster=k1 mutating_requests="),
        "{stderr}"
    );
    assert!(stderr.contains("kubesim: stopping"), "{stderr}");
}
