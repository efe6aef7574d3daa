//! kubectl compatibility: the machine's kubectl against kubesim.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Kubectl, WIDGET_CRD, sim_hub_spoke, sim_kind};
use kubesim::{ExecResult, KubeUser};
use serde_json::json;

#[test]
fn get_namespaces_and_version() {
    let sim = sim_hub_spoke();
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let out = k.ok(&["--context", "hub", "get", "ns"]);
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "openshift-config-managed",
    ] {
        assert!(out.contains(ns), "{out}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&k.ok(&["--context", "spoke", "version", "-o", "json"])).unwrap();
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.32.0");
    let dns = k.ok(&[
        "--context",
        "hub",
        "get",
        "dns.config.openshift.io",
        "cluster",
        "-o",
        "jsonpath={.spec.baseDomain}",
    ]);
    assert_eq!(dns, "hub.kubesim.example");
    let channel = k.ok(&[
        "--context",
        "hub",
        "get",
        "packagemanifest",
        "-n",
        "openshift-marketplace",
        "openshift-gitops-operator",
        "-o",
        "jsonpath={.status.defaultChannel}",
    ]);
    assert_eq!(channel, "latest");
}

#[test]
fn server_side_apply_crd_then_cr() {
    let sim = sim_kind();
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let crd = k.write("crd.yaml", WIDGET_CRD);
    let out = k.ok(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
    assert!(out.contains("serverside-applied"), "{out}");
    k.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/widgets.example.com",
    ]);
    let cr = k.write("cr.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 3, color: red}\n");
    sim.cluster("k1").reset_counters();
    k.ok(&["apply", "--server-side", "-f", cr.to_str().unwrap()]);
    let first = sim.cluster("k1").counters();
    assert_eq!((first.mutating_requests, first.stored_changes), (1, 1));
    // Re-applying the same object is a no-op.
    k.ok(&["apply", "--server-side", "-f", cr.to_str().unwrap()]);
    let second = sim.cluster("k1").counters();
    assert_eq!((second.mutating_requests, second.stored_changes), (2, 1));
    let table = k.ok(&["get", "wd"]);
    assert!(table.contains("w1") && table.contains("SIZE"), "{table}");
    let obj = sim
        .cluster("k1")
        .get("example.com/v1", "Widget", Some("default"), "w1")
        .unwrap();
    assert_eq!(obj["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(obj["metadata"]["managedFields"][0]["operation"], "Apply");
    // A misspelled field is rejected with its path.
    let bad = k.write("bad.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2, namespace: default}\nspec: {size: 3, colour: red}\n");
    let out = k.run(&["apply", "--server-side", "-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.colour"), "{err}");
    assert!(
        sim.cluster("k1")
            .get("example.com/v1", "Widget", Some("default"), "w2")
            .is_none()
    );
    // Another manager changing an owned field conflicts unless forced.
    let other = k.write("other.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1, namespace: default}\nspec: {size: 4, color: red}\n");
    let out = k.run(&[
        "apply",
        "--server-side",
        "--field-manager",
        "someone-else",
        "-f",
        other.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("conflict"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "someone-else",
        "-f",
        other.to_str().unwrap(),
    ]);
    assert_eq!(
        sim.cluster("k1")
            .get("example.com/v1", "Widget", Some("default"), "w1")
            .unwrap()["spec"]["size"],
        4
    );
}

#[test]
fn wait_for_established_honours_controller_delay_and_fault() {
    let sim = kubesim::Sim::start(
        kubesim::SimConfig::new()
            .cluster("k1", kubesim::Profile::kind("1.34"))
            .controller_delay(Duration::from_millis(300)),
    )
    .unwrap();
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let crd = k.write("crd.yaml", WIDGET_CRD);
    k.ok(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        "crd/widgets.example.com",
    ]);

    let sim = kubesim::Sim::start(
        kubesim::SimConfig::new().cluster("k1", kubesim::Profile::kind("1.34")),
    )
    .unwrap();
    sim.cluster("k1")
        .add_fault(kubesim::Fault::ControllerNeverReady {
            controller: "crd-establishing".into(),
        });
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let crd = k.write("crd.yaml", WIDGET_CRD);
    k.ok(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
    let out = k.run(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=2s",
        "crd/widgets.example.com",
    ]);
    assert!(
        !out.status.success(),
        "the CRD must never become established"
    );
}

#[test]
fn get_pods_by_label() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    for (name, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        c.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
                     "spec": {"containers": [{"name": "main", "image": "x"}]}, "status": {"phase": "Running"}}))
            .unwrap();
    }
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let out = k.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), vec!["pod/a", "pod/b"]);
    let out = k.ok(&["get", "pods", "-l", "app in (db)"]);
    assert!(
        out.contains("Running") && out.contains('c') && !out.contains("\na "),
        "{out}"
    );
    let out = k.ok(&[
        "get",
        "pods",
        "--field-selector",
        "metadata.name=b",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "pod/b");
}

#[test]
fn auth_whoami_for_admin_cert_and_token_users() {
    let sim = sim_hub_spoke();
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let who: serde_json::Value =
        serde_json::from_str(&k.ok(&["--context", "hub", "auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "system:admin");
    let spoke = sim.cluster("spoke");
    spoke.add_static_token(
        "tok-123",
        "spiffe://apps.hub.kubesim.example/ns/ztwim-gitops/sa/argocd",
        &[],
    );
    let kt =
        Kubectl::new(&sim.kubeconfig_with_user("spoke-jwt", "spoke", &KubeUser::token("tok-123")));
    let who: serde_json::Value =
        serde_json::from_str(&kt.ok(&["auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(
        who["status"]["userInfo"]["username"],
        "spiffe://apps.hub.kubesim.example/ns/ztwim-gitops/sa/argocd"
    );
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        json!(["system:authenticated"])
    );
    // Before RBAC it can list nothing.
    let out = kt.run(&["get", "ns"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kt.run(&["auth", "can-i", "list", "namespaces"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert!(!out.status.success());
    // A wrong token is 401.
    let kbad =
        Kubectl::new(&sim.kubeconfig_with_user("spoke-bad", "spoke", &KubeUser::token("nope")));
    let out = kbad.run(&["get", "ns"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("provide credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After a binding to cluster-admin it can.
    spoke.put(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "ztwim-gitops-admins"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "spiffe://apps.hub.kubesim.example/ns/ztwim-gitops/sa/argocd"}]})).unwrap();
    assert!(kt.ok(&["get", "ns"]).contains("default"));
    assert_eq!(
        kt.ok(&["auth", "can-i", "list", "namespaces"]).trim(),
        "yes"
    );
}

#[test]
fn exec_runs_registered_commands() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    c.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                 "spec": {"containers": [{"name": "main", "image": "x"}, {"name": "side", "image": "y"}]}})).unwrap();
    c.register_command("default", "p", Some("side"), "echo", |req| {
        ExecResult::ok(format!("{}\n", req.command[1..].join(" ")))
    });
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let out = k.ok(&["exec", "p", "-c", "side", "--", "echo", "hello", "world"]);
    assert_eq!(out, "hello world\n");
    let out = k.run(&["exec", "p", "-c", "main", "--", "echo", "hi"]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn get_watch_with_timeout() {
    let sim = sim_kind();
    let c = sim.cluster("k1").clone();
    let k = Kubectl::new(&sim.kubeconfig_yaml());
    let mut child = k
        .command(&[
            "get",
            "configmaps",
            "-w",
            "--request-timeout=15s",
            "-o",
            "name",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the watch start: wait until kubectl has listed (kube-root-ca.crt shows up).
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(String::from_utf8_lossy(&buf[..n]).to_string())
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains("kube-root-ca.crt") {
        seen.push_str(
            &rx.recv_timeout(deadline - Instant::now())
                .expect("kubectl lists configmaps"),
        );
    }
    c.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched", "namespace": "default"}, "data": {"a": "1"}})).unwrap();
    while !seen.contains("configmap/watched") {
        let chunk = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("watch event not seen: {seen}"));
        seen.push_str(&chunk);
    }
    let _ = child.kill();
    let _ = child.wait();
}
