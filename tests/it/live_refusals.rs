//! The live commands refuse bad input and failed preflights with exit code 2, a one-line message, and
//! not a single mutating request to any cluster.

use kubesim::KubeUser;
use serde_json::json;

use crate::sims::{Clusters, json_of};

const HUB: &[(&str, &str)] = &[("hub", "openshift-4.20")];
const HUB_AND_SPOKE: &[(&str, &str)] = &[("hub", "openshift-4.20"), ("spoke", "openshift-4.20")];

/// A role that may read everything and change nothing.
fn grant_read_only(c: &Clusters, cluster: &str, user: &str) {
    let k = c.sim.cluster(cluster);
    k.put(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "read-everything"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}))
    .unwrap();
    k.put(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": format!("{user}-reads")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "read-everything"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}))
    .unwrap();
    c.reset_counters();
}

/// What bootstrap leaves on the hub that add-spoke reads first: SPIRE's configuration.
fn seed_bootstrapped_hub(c: &Clusters) {
    let hub = c.sim.cluster("hub");
    let domain = hub.apps_domain();
    let conf = json!({"server": {
        "trust_domain": domain,
        "jwt_issuer": format!("https://spire-spiffe-oidc-discovery-provider.{domain}"),
    }});
    hub.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "zero-trust-workload-identity-manager"}})).unwrap();
    hub.put(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "spire-server", "namespace": "zero-trust-workload-identity-manager"},
        "data": {"server.conf": conf.to_string()}
    }))
    .unwrap();
    c.reset_counters();
}

#[test]
fn bootstrap_names_a_missing_context_and_lists_the_known_ones() {
    let c = Clusters::start(HUB);
    c.run(["bootstrap", "--context", "nope", "--yes"])
        .bad_input("--context nope: no such context");
    c.assert_untouched();
}

#[test]
fn bootstrap_reports_an_unreachable_server() {
    let c = Clusters::start(HUB);
    let hub = c.sim.cluster("hub");
    let yaml = c
        .sim
        .kubeconfig_yaml()
        .replace(hub.server_url(), "https://127.0.0.1:9");
    std::fs::write(&c.kubeconfig, yaml).unwrap();
    c.run(["bootstrap", "--context", "hub", "--yes"])
        .bad_input("cannot reach the API server at https://127.0.0.1:9");
}

#[test]
fn without_a_terminal_and_without_yes_nothing_is_asked_or_touched() {
    let c = Clusters::start(HUB_AND_SPOKE);
    c.run(["bootstrap", "--context", "hub"])
        .bad_input("re-run with --yes");
    c.run([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke",
    ])
    .bad_input("re-run with --yes");
    c.assert_untouched();
}

#[test]
fn a_user_without_rights_is_refused_by_preflight() {
    let mut c = Clusters::start(HUB);
    c.add_users(&[("alice", "hub", KubeUser::cert("alice", &[]))]);
    grant_read_only(&c, "hub", "alice");
    let out = c
        .run(["bootstrap", "--context", "alice", "--yes"])
        .refused("preflight failed: [permissions] user of context alice may not: ");
    assert!(out.stderr.contains("create namespaces"), "{}", out.stderr);
    c.assert_untouched();
}

#[test]
fn a_user_who_cannot_even_read_is_refused_before_preflight() {
    let mut c = Clusters::start(HUB);
    c.add_users(&[("nobody", "hub", KubeUser::cert("nobody", &[]))]);
    c.run(["bootstrap", "--context", "nobody", "--yes"])
        .bad_input("on nobody (403 Forbidden");
    c.assert_untouched();
}

#[test]
fn openshift_4_17_is_too_old_for_ztwim() {
    let c = Clusters::start(&[("hub", "openshift-4.17")]);
    c.run(["bootstrap", "--context", "hub", "--yes"])
        .refused("[openshift-version] the hub runs OpenShift 4.17");
    c.assert_untouched();
}

#[test]
fn an_existing_install_with_another_trust_domain_is_refused() {
    let c = Clusters::start(HUB);
    let hub = c.sim.cluster("hub");
    hub.put(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "zerotrustworkloadidentitymanagers.operator.openshift.io"},
        "spec": {"group": "operator.openshift.io", "scope": "Cluster",
            "names": {"plural": "zerotrustworkloadidentitymanagers", "singular": "zerotrustworkloadidentitymanager",
                      "kind": "ZeroTrustWorkloadIdentityManager", "listKind": "ZeroTrustWorkloadIdentityManagerList"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    // The CRD is established by kubesim's controller; then the CR can be stored.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let cr = json!({"apiVersion": "operator.openshift.io/v1alpha1", "kind": "ZeroTrustWorkloadIdentityManager",
            "metadata": {"name": "cluster"}, "spec": {"trustDomain": "other.example.com", "clusterName": "management-cluster"}});
        if hub.put(cr).is_ok() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the CRD never became usable"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    c.reset_counters();
    c.run([
        "bootstrap",
        "--context",
        "hub",
        "--yes",
        "--trust-domain",
        &hub.apps_domain(),
    ])
    .refused("[existing-install] ZTWIM is installed with trust domain \"other.example.com\"");
    c.assert_untouched();
}

#[test]
fn step_and_check_names_are_checked_before_any_cluster_is_contacted() {
    let c = Clusters::start(HUB);
    c.run(["bootstrap", "--context", "hub", "--yes", "--skip", "ztwim"])
        .bad_input("--skip ztwim: no such step (steps: preflight, ztwim-operator,");
    c.run([
        "bootstrap",
        "--context",
        "hub",
        "--yes",
        "--ignore-preflight-errors",
        "typo",
    ])
    .bad_input("no such check");
    c.run([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "hub",
        "--yes",
    ])
    .bad_input("name the same context");
    c.assert_untouched();
}

#[test]
fn client_dry_run_prints_what_render_prints() {
    let c = Clusters::start(HUB);
    let hub = c.sim.cluster("hub");
    let pm = hub
        .get(
            "packages.operators.coreos.com/v1",
            "PackageManifest",
            Some("openshift-marketplace"),
            "openshift-zero-trust-workload-identity-manager",
        )
        .expect("kubesim seeds the PackageManifest");
    let channel = pm["status"]["defaultChannel"].as_str().unwrap().to_string();
    let dry = c
        .run(["bootstrap", "--context", "hub", "--dry-run=client"])
        .success();
    let render = c
        .run([
            "render",
            "bootstrap",
            "--app-domain",
            &hub.apps_domain(),
            "--channel",
            &channel,
        ])
        .success();
    assert_eq!(dry.stdout, render.stdout);
    assert!(dry.stdout.contains("kind: ArgoCD"));
    c.assert_untouched();
}

#[test]
fn server_dry_run_stores_nothing_and_reports_pending_custom_resources() {
    let c = Clusters::start(HUB);
    let out = c
        .run([
            "bootstrap",
            "--context",
            "hub",
            "--dry-run=server",
            "-o",
            "json",
        ])
        .success();
    let doc = json_of(&out);
    assert_eq!(doc["result"], "ok");
    let operands = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "ztwim-operands")
        .unwrap();
    assert!(
        operands["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["change"] == "pending"),
        "{operands}"
    );
    let operator = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "ztwim-operator")
        .unwrap();
    assert!(
        operator["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["change"] == "would-create"),
        "{operator}"
    );
    c.assert_untouched();
    assert!(c.sim.cluster("hub").counters().dry_run_requests > 0);
}

#[test]
fn add_spoke_refuses_a_hub_that_was_not_bootstrapped() {
    let c = Clusters::start(HUB_AND_SPOKE);
    c.run([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke",
        "--yes",
    ])
    .bad_input("the hub hub is not bootstrapped");
    c.assert_untouched();
}

#[test]
fn lockout_guard_refuses_a_spoke_context_with_a_bearer_token() {
    let mut c = Clusters::start(HUB_AND_SPOKE);
    seed_bootstrapped_hub(&c);
    c.sim.cluster("spoke").add_static_token(
        "sha256~oauth-token-of-admin",
        "kube:admin",
        &["system:masters"],
    );
    c.add_users(&[(
        "spoke-oauth",
        "spoke",
        KubeUser::token("sha256~oauth-token-of-admin"),
    )]);
    let out = c
        .run([
            "add-spoke",
            "--hub-context",
            "hub",
            "--spoke-context",
            "spoke-oauth",
            "--yes",
        ])
        .refused("[lockout-guard] context spoke-oauth authenticates with a bearer token");
    assert!(out.stderr.contains("locked out"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("sha256~oauth-token-of-admin"),
        "the token must never be printed"
    );
    c.assert_untouched();
}

#[test]
fn spoke_4_19_needs_explicit_consent_to_the_irreversible_feature_set() {
    let c = Clusters::start(&[("hub", "openshift-4.20"), ("spoke", "openshift-4.19")]);
    seed_bootstrapped_hub(&c);
    c.run([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke",
        "--yes",
    ])
    .refused("pass --allow-tech-preview-no-upgrade");
    c.assert_untouched();
}

#[test]
fn spoke_4_18_cannot_use_external_oidc() {
    let c = Clusters::start(&[("hub", "openshift-4.20"), ("spoke", "openshift-4.18")]);
    seed_bootstrapped_hub(&c);
    c.run([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke",
        "--yes",
    ])
    .refused("needs OpenShift 4.19 or later");
    c.assert_untouched();
}

#[test]
fn another_oidc_provider_on_the_spoke_is_refused() {
    let c = Clusters::start(HUB_AND_SPOKE);
    seed_bootstrapped_hub(&c);
    let spoke = c.sim.cluster("spoke");
    let mut auth = spoke
        .get("config.openshift.io/v1", "Authentication", None, "cluster")
        .unwrap();
    auth["spec"] = json!({"type": "OIDC", "oidcProviders": [{
        "name": "corporate-sso",
        "issuer": {"issuerURL": "https://sso.example.com", "audiences": ["openshift"]},
        "claimMappings": {"username": {"claim": "email", "prefixPolicy": "NoPrefix"}}
    }]});
    spoke.put(auth).unwrap();
    c.reset_counters();
    c.run(["add-spoke", "--hub-context", "hub", "--spoke-context", "spoke", "--yes"])
        .refused("[existing-authentication] the spoke already uses another OIDC provider: corporate-sso (https://sso.example.com)");
    c.assert_untouched();
}

#[test]
fn a_spoke_user_who_cannot_patch_authentication_is_refused() {
    let mut c = Clusters::start(HUB_AND_SPOKE);
    seed_bootstrapped_hub(&c);
    c.add_users(&[("spoke-bob", "spoke", KubeUser::cert("bob", &[]))]);
    grant_read_only(&c, "spoke", "bob");
    c.run([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke-bob",
        "--yes",
    ])
    .refused("patch authentications.config.openshift.io on spoke-bob");
    c.assert_untouched();
}

#[test]
fn kubeconfig_comes_from_the_flag_or_from_several_files_in_kubeconfig() {
    let c = Clusters::start(HUB_AND_SPOKE);
    seed_bootstrapped_hub(&c);
    // One file per cluster, merged from $KUBECONFIG as kubectl does.
    let hub_file = c.dir.path().join("hub.kubeconfig");
    let spoke_file = c.dir.path().join("spoke.kubeconfig");
    std::fs::write(
        &hub_file,
        c.sim.kubeconfig_for(&[("hub", "hub", &KubeUser::Admin)]),
    )
    .unwrap();
    std::fs::write(
        &spoke_file,
        c.sim
            .kubeconfig_for(&[("spoke", "spoke", &KubeUser::Admin)]),
    )
    .unwrap();
    let merged = format!("{}:{}", hub_file.display(), spoke_file.display());
    let out = c
        .command([
            "add-spoke",
            "--hub-context",
            "hub",
            "--spoke-context",
            "spoke",
            "--dry-run=client",
        ])
        .env("KUBECONFIG", &merged)
        .run()
        .success();
    assert!(
        out.stdout.contains("kind: Authentication"),
        "{}",
        out.stdout
    );
    // --kubeconfig wins over $KUBECONFIG: with only the hub's file, the spoke context is unknown.
    c.command([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke",
        "--dry-run=client",
        "--kubeconfig",
    ])
    .arg(hub_file.to_str().unwrap())
    .env("KUBECONFIG", &merged)
    .run()
    .bad_input("--spoke-context spoke: no such context in");
    c.assert_untouched();
}
