//! `add-spoke` and `remove-spoke` against a bootstrapped simulated hub and simulated spokes, through the
//! real binary: the happy paths, idempotence, several spokes, the prefix trap, rollback, faults.

use kubesim::{Fault, Matcher};
use serde_json::{Value, json};

use crate::sims::{Clusters, json_of};
use crate::support::Output;

/// A hub bootstrapped with ztwim-hub, plus the spokes.
fn bootstrapped(spokes: &[(&str, &str)]) -> Clusters {
    let mut all = vec![("hub", "openshift-4.20")];
    all.extend_from_slice(spokes);
    let c = Clusters::start(&all);
    c.run([
        "bootstrap",
        "--context",
        "hub",
        "--yes",
        "-q",
        "--timeout",
        "60s",
    ])
    .success();
    c.reset_counters();
    c
}

fn add_spoke(c: &Clusters, spoke: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        spoke,
        "--yes",
        "--timeout",
        "60s",
        "--rollout-timeout",
        "60s",
    ];
    args.extend(extra);
    c.run(args)
}

fn remove_spoke(c: &Clusters, spoke: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "remove-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        spoke,
        "--yes",
        "--timeout",
        "60s",
        "--rollout-timeout",
        "60s",
    ];
    args.extend(extra);
    c.run(args)
}

fn auth_spec(c: &Clusters, spoke: &str) -> Value {
    c.sim
        .cluster(spoke)
        .get("config.openshift.io/v1", "Authentication", None, "cluster")
        .unwrap()["spec"]
        .clone()
}

fn state_file(c: &Clusters, spoke: &str) -> std::path::PathBuf {
    c.dir
        .path()
        .join("state/ztwim-hub/spokes")
        .join(spoke)
        .join("authentication-spec.json")
}

fn server_id(c: &Clusters) -> String {
    format!(
        "spiffe://{}/ns/ztwim-gitops/sa/openshift-gitops-argocd-server",
        c.sim.cluster("hub").apps_domain()
    )
}

#[track_caller]
fn assert_registered(c: &Clusters, spoke: &str, doc: &Value) {
    assert_eq!(doc["result"], "ok", "{doc}");
    let hub = c.sim.cluster("hub");
    let secret = hub
        .get("v1", "Secret", Some("ztwim-gitops"), spoke)
        .expect("the cluster Secret");
    assert_eq!(
        secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "cluster"
    );
    assert_eq!(doc["argocdReached"], c.sim.cluster(spoke).server_url());
    assert!(
        c.sim
            .cluster(spoke)
            .get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "ztwim-gitops-admins"
            )
            .is_some()
    );
    let ids: Vec<&str> = doc["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["claims"]["sub"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&server_id(c).as_str()), "{ids:?}");
    for id in doc["identities"].as_array().unwrap() {
        assert_eq!(id["claims"]["aud"], json!(["openshift-spoke"]));
    }
}

#[test]
fn a_4_20_spoke_is_added_without_a_feature_gate_and_verified() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    let before = auth_spec(&c, "spoke");
    let out = add_spoke(&c, "spoke", &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_registered(&c, "spoke", &doc);
    assert_eq!(doc["values"]["featureGate"], false);
    let spoke = c.sim.cluster("spoke");
    assert_ne!(
        spoke
            .get("config.openshift.io/v1", "FeatureGate", None, "cluster")
            .unwrap()["spec"]["featureSet"],
        "TechPreviewNoUpgrade"
    );
    // OIDC is on, trusting the hub's issuer with the ingress CA it needs.
    let spec = auth_spec(&c, "spoke");
    assert_eq!(spec["type"], "OIDC");
    assert_eq!(
        spec["oidcProviders"][0]["claimMappings"]["username"]["prefixPolicy"],
        "NoPrefix"
    );
    assert_eq!(
        spec["oidcProviders"][0]["issuer"]["issuerCertificateAuthority"]["name"],
        "ztwim-oidc-issuer-ca"
    );
    let ca = spoke
        .get(
            "v1",
            "ConfigMap",
            Some("openshift-config"),
            "ztwim-oidc-issuer-ca",
        )
        .expect("issuer CA ConfigMap");
    assert_eq!(
        ca["data"]["ca-bundle.crt"].as_str().unwrap().trim(),
        c.sim.cluster("hub").ingress_ca_pem().trim()
    );
    // The previous spec is saved on the spoke and on this machine.
    let backup = spoke
        .get(
            "v1",
            "ConfigMap",
            Some("openshift-config"),
            "ztwim-hub-authentication-backup",
        )
        .expect("the backup");
    let saved: Value = serde_json::from_str(backup["data"]["spec.json"].as_str().unwrap()).unwrap();
    assert_eq!(saved, before);
    let local: Value =
        serde_json::from_str(&std::fs::read_to_string(state_file(&c, "spoke")).unwrap()).unwrap();
    assert_eq!(local, before);
    // The spoke sees the SPIFFE ID itself.
    assert_eq!(
        doc["spokeUsername"].as_str().unwrap().rsplit('/').next(),
        Some("openshift-gitops-argocd-application-controller")
    );
}

#[test]
fn a_4_19_spoke_gets_the_irreversible_feature_set_only_with_consent() {
    let c = bootstrapped(&[("spoke", "openshift-4.19")]);
    let doc = json_of(
        &add_spoke(
            &c,
            "spoke",
            &["--allow-tech-preview-no-upgrade", "-o", "json"],
        )
        .success(),
    );
    assert_registered(&c, "spoke", &doc);
    assert_eq!(doc["values"]["featureGate"], true);
    let fg = c
        .sim
        .cluster("spoke")
        .get("config.openshift.io/v1", "FeatureGate", None, "cluster")
        .unwrap();
    assert_eq!(fg["spec"]["featureSet"], "TechPreviewNoUpgrade");
    let step = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "feature-gate")
        .unwrap();
    let notes: Vec<&str> = step["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(notes[0], "ExternalOIDC enabled");
    // The feature set's own kube-apiserver rollout is awaited before the Authentication changes.
    assert!(
        notes[1].starts_with("kube-apiserver rolled out the feature set"),
        "{notes:?}"
    );
}

#[test]
fn least_privilege_binds_the_narrow_role_and_proves_it_is_narrow() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    let doc =
        json_of(&add_spoke(&c, "spoke", &["--rbac", "least-privilege", "-o", "json"]).success());
    assert_registered(&c, "spoke", &doc);
    let spoke = c.sim.cluster("spoke");
    let crb = spoke
        .get(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            None,
            "ztwim-gitops-admins",
        )
        .unwrap();
    assert_eq!(crb["roleRef"]["name"], "ztwim-gitops-least-privilege");
    assert!(
        spoke
            .get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                "ztwim-gitops-least-privilege"
            )
            .is_some()
    );
}

#[test]
fn a_second_run_changes_nothing() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    add_spoke(&c, "spoke", &[]).success();
    c.reset_counters();
    let doc = json_of(&add_spoke(&c, "spoke", &["-o", "json"]).success());
    for (name, _, stored) in c.writes() {
        assert_eq!(stored, 0, "{name}: a re-run must store nothing");
    }
    assert_eq!(doc["result"], "ok");
}

#[test]
fn two_spokes_work_and_removing_one_leaves_the_other() {
    let c = bootstrapped(&[("spoke-a", "openshift-4.20"), ("spoke-b", "openshift-4.20")]);
    let a_before = auth_spec(&c, "spoke-a");
    assert_registered(
        &c,
        "spoke-a",
        &json_of(&add_spoke(&c, "spoke-a", &["-o", "json"]).success()),
    );
    assert_registered(
        &c,
        "spoke-b",
        &json_of(&add_spoke(&c, "spoke-b", &["-o", "json"]).success()),
    );
    let out = remove_spoke(&c, "spoke-a", &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_eq!(doc["result"], "ok");
    // spoke-a is back to what it was, unregistered, its RBAC and backup gone.
    assert_eq!(auth_spec(&c, "spoke-a"), a_before);
    let hub = c.sim.cluster("hub");
    assert!(
        hub.get("v1", "Secret", Some("ztwim-gitops"), "spoke-a")
            .is_none()
    );
    let a = c.sim.cluster("spoke-a");
    assert!(
        a.get(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            None,
            "ztwim-gitops-admins"
        )
        .is_none()
    );
    assert!(
        a.get(
            "v1",
            "ConfigMap",
            Some("openshift-config"),
            "ztwim-hub-authentication-backup"
        )
        .is_none()
    );
    assert!(!state_file(&c, "spoke-a").exists());
    // spoke-b still works: a re-run verifies it end to end and changes nothing.
    c.reset_counters();
    let b = json_of(&add_spoke(&c, "spoke-b", &["-o", "json"]).success());
    assert_registered(&c, "spoke-b", &b);
    assert_eq!(c.sim.cluster("spoke-b").counters().stored_changes, 0);
}

#[test]
fn remove_spoke_never_touches_the_feature_set_and_says_so() {
    let c = bootstrapped(&[("spoke", "openshift-4.19")]);
    add_spoke(&c, "spoke", &["--allow-tech-preview-no-upgrade"]).success();
    let out = remove_spoke(&c, "spoke", &[]).success();
    assert!(
        out.stdout
            .contains("FeatureGate cluster keeps TechPreviewNoUpgrade"),
        "{}",
        out.stdout
    );
    let fg = c
        .sim
        .cluster("spoke")
        .get("config.openshift.io/v1", "FeatureGate", None, "cluster")
        .unwrap();
    assert_eq!(fg["spec"]["featureSet"], "TechPreviewNoUpgrade");
    // The certificate admin still works (remove-spoke checked it; so does kubectl).
    let status = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            c.kubeconfig.to_str().unwrap(),
            "--context",
            "spoke",
            "auth",
            "whoami",
        ])
        .env("HOME", c.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_empty_prefix_policy_is_caught_by_verify_identity() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(
        crate::support::repo().join("templates/openshift/spoke/authentication.yaml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("openshift/spoke")).unwrap();
    std::fs::write(
        dir.path().join("openshift/spoke/authentication.yaml"),
        original.replace("prefixPolicy: NoPrefix", "prefixPolicy: \"\""),
    )
    .unwrap();
    let out = add_spoke(
        &c,
        "spoke",
        &["--templates-dir", dir.path().to_str().unwrap()],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("step verify-identity"), "{last}");
    assert!(
        last.contains("the spoke sees the SPIFFE ID prefixed"),
        "{last}"
    );
    assert!(last.contains("prefixPolicy must be NoPrefix"), "{last}");
}

#[test]
fn a_run_aborted_after_authentication_completes_when_run_again_and_the_backup_is_never_missing() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    let spoke = c.sim.cluster("spoke");
    // Creating the ClusterRoleBinding fails: the run stops in step rbac, after authentication.
    spoke.add_fault(Fault::Http {
        status: 500,
        matcher: Matcher::any().resource("clusterrolebindings").verb("patch"),
        probability: 1.0,
        seed: 1,
        retry_after_seconds: None,
        times: None,
    });
    let out = add_spoke(&c, "spoke", &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.lines().last().unwrap().contains("step rbac"),
        "{}",
        out.stderr
    );
    assert_eq!(auth_spec(&c, "spoke")["type"], "OIDC");
    assert!(
        spoke
            .get(
                "v1",
                "ConfigMap",
                Some("openshift-config"),
                "ztwim-hub-authentication-backup"
            )
            .is_some(),
        "OIDC is on: the backup must exist"
    );
    spoke.clear_faults();
    let doc = json_of(&add_spoke(&c, "spoke", &["-o", "json"]).success());
    assert_registered(&c, "spoke", &doc);
    // The backup still holds the original spec, not the OIDC one.
    let backup = spoke
        .get(
            "v1",
            "ConfigMap",
            Some("openshift-config"),
            "ztwim-hub-authentication-backup",
        )
        .unwrap();
    let saved: Value = serde_json::from_str(backup["data"]["spec.json"].as_str().unwrap()).unwrap();
    assert_ne!(saved["type"], "OIDC");
}

#[test]
fn no_token_in_any_output_of_add_and_remove() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    let outs = [
        add_spoke(&c, "spoke", &["-vv"]).success(),
        add_spoke(&c, "spoke", &["-o", "json"]).success(),
        remove_spoke(&c, "spoke", &["-vv"]).success(),
    ];
    for out in outs {
        assert!(
            !out.stdout.contains("eyJ") && !out.stderr.contains("eyJ"),
            "something like a JWT was printed:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn the_hub_secret_is_registered_while_the_spoke_rolls_out() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    // The spoke's kube-apiserver never finishes its rollout: the run times out in apiserver-rollout,
    // but the hub-only argocd-cluster step already ran during that wait.
    c.sim
        .cluster("spoke")
        .add_fault(Fault::ControllerNeverReady {
            controller: "kube-apiserver-operator".into(),
        });
    let out = c.run([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke",
        "--yes",
        "--timeout",
        "60s",
        "--rollout-timeout",
        "3s",
        "-o",
        "json",
    ]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let doc = json_of(&out);
    let steps: Vec<(&str, &str)> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["result"].as_str().unwrap()))
        .collect();
    assert!(
        steps.contains(&("apiserver-rollout", "failed")),
        "{steps:?}"
    );
    assert!(steps.contains(&("argocd-cluster", "ok")), "{steps:?}");
    assert!(
        !steps.iter().any(|(s, _)| *s == "rbac"),
        "nothing on the spoke after the failed rollout: {steps:?}"
    );
    assert!(
        c.sim
            .cluster("hub")
            .get("v1", "Secret", Some("ztwim-gitops"), "spoke")
            .is_some()
    );
}

#[test]
fn the_smoke_test_syncs_an_application_to_the_spoke_and_removes_it() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    // The manifests the tool supplies, in a "repository" kubesim's Argo CD reads (file://).
    let repo = tempfile::tempdir().unwrap();
    let manifests = c.run(["render", "smoke-test"]).success().stdout;
    std::fs::write(repo.path().join("smoke.yaml"), manifests).unwrap();
    let url = format!("file://{}", repo.path().display());
    let doc = json_of(&add_spoke(&c, "spoke", &["--smoke-test", &url, "-o", "json"]).success());
    assert_registered(&c, "spoke", &doc);
    assert!(
        doc["smokeTest"].as_str().unwrap().contains("Healthy"),
        "{doc}"
    );
    // Deleted again, with what it deployed.
    let hub = c.sim.cluster("hub");
    assert!(
        hub.list("argoproj.io/v1alpha1", "Application", Some("ztwim-gitops"))
            .is_empty()
    );
    assert!(
        c.sim
            .cluster("spoke")
            .get(
                "v1",
                "ConfigMap",
                Some("ztwim-hub-smoke"),
                "ztwim-hub-smoke"
            )
            .is_none()
    );
}

#[test]
fn a_publicly_trusted_issuer_needs_no_issuer_ca_on_the_spoke() {
    let c = bootstrapped(&[("spoke", "openshift-4.20")]);
    let hub = c.sim.cluster("hub");
    // The hub's ingress certificate is publicly trusted: by the spokes' API servers and by this machine.
    hub.trust_ingress_publicly();
    let roots = c.dir.path().join("public-roots.pem");
    std::fs::write(&roots, hub.ingress_ca_pem()).unwrap();
    let out = c
        .command([
            "add-spoke",
            "--hub-context",
            "hub",
            "--spoke-context",
            "spoke",
            "--yes",
            "--timeout",
            "60s",
            "-o",
            "json",
        ])
        .env("SSL_CERT_FILE", roots.to_str().unwrap())
        .run()
        .success();
    let doc = json_of(&out);
    assert_registered(&c, "spoke", &doc);
    assert_eq!(doc["values"]["issuerCAConfigMap"], Value::Null);
    let spoke = c.sim.cluster("spoke");
    assert!(
        spoke
            .get(
                "v1",
                "ConfigMap",
                Some("openshift-config"),
                "ztwim-oidc-issuer-ca"
            )
            .is_none()
    );
    let issuer = &auth_spec(&c, "spoke")["oidcProviders"][0]["issuer"];
    assert!(
        issuer.get("issuerCertificateAuthority").is_none(),
        "{issuer}"
    );
}
