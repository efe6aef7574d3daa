//! `bootstrap` against a simulated kind hub (kubesim `kind-1.34`), through the real binary: the profile is
//! detected, upstream SPIRE, the OIDC provider on its node port and upstream Argo CD (our fixture shaped like
//! its release manifest) come up, the issuer is verified over TLS and the Argo CD pods prove their
//! identities; a re-run stores nothing; refusals touch nothing.

use serde_json::Value;

use crate::render_kind::kind_fixture;
use crate::sims::{Clusters, json_of};
use crate::support::Output;

pub const KIND_HUB: &[(&str, &str)] = &[("hub", "kind-1.34")];

pub fn kind_bootstrap(c: &Clusters, context: &str, extra: &[&str]) -> Output {
    let manifest = kind_fixture("argocd-install.yaml");
    let crds = kind_fixture("spire-crds.yaml");
    let mut args = vec![
        "bootstrap",
        "--context",
        context,
        "--yes",
        "--exec-timeout",
        "5s",
        "--timeout",
        "60s",
        "--argocd-manifest",
        &manifest,
        "--spire-crds",
        &crds,
    ];
    args.extend(extra);
    c.run(args)
}

#[test]
fn a_kind_hub_is_bootstrapped_detected_verified_and_a_rerun_changes_nothing() {
    let c = Clusters::start(KIND_HUB);
    let hub = c.sim.cluster("hub");
    let out = kind_bootstrap(&c, "hub", &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_eq!(doc["result"], "ok", "{}", out.stderr);
    assert_eq!(doc["platform"], "kubernetes");
    assert_eq!(doc["profile"], "kind");
    assert_eq!(
        doc["values"]["issuerURL"],
        "https://hub-control-plane:30443"
    );
    assert_eq!(doc["values"]["trustDomain"], "hub.kind");
    // kind has a default StorageClass (standard) for spire-server's data volume: no warning about it.
    assert!(
        !doc["warnings"].to_string().contains("StorageClass"),
        "{}",
        doc["warnings"]
    );
    let steps: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "preflight",
            "spire-crds",
            "spire",
            "oidc-discovery",
            "argocd",
            "identity"
        ]
    );
    let subs: Vec<&str> = doc["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["claims"]["sub"].as_str().unwrap())
        .collect();
    assert_eq!(
        subs,
        [
            "spiffe://hub.kind/ns/argocd/sa/argocd-server",
            "spiffe://hub.kind/ns/argocd/sa/argocd-application-controller"
        ]
    );
    // The serving certificate is on the cluster, its key nowhere in the output.
    let secret = hub
        .get("v1", "Secret", Some("spire"), "spire-oidc-tls")
        .expect("the serving certificate Secret");
    assert!(secret["data"]["ca.crt"].is_string());
    assert!(!out.stdout.contains("PRIVATE KEY") && !out.stderr.contains("PRIVATE KEY"));
    // The init container is in upstream Argo CD's server.
    let server = hub
        .get("apps/v1", "Deployment", Some("argocd"), "argocd-server")
        .unwrap();
    let inits = server
        .pointer("/spec/template/spec/initContainers")
        .and_then(Value::as_array)
        .unwrap();
    assert!(inits.iter().any(|i| i["name"] == "install-jwt-spiffe"));

    // Again: nothing stored, the same certificate kept.
    c.reset_counters();
    let again = kind_bootstrap(&c, "hub", &["-o", "json"]).success();
    assert_eq!(json_of(&again)["result"], "ok");
    for (name, _, stored) in c.writes() {
        assert_eq!(
            stored, 0,
            "cluster {name}: a re-run stored changes:\n{}",
            again.stdout
        );
    }
    let kept = hub
        .get("v1", "Secret", Some("spire"), "spire-oidc-tls")
        .unwrap();
    assert_eq!(
        kept["data"], secret["data"],
        "the serving certificate was replaced"
    );
}

#[test]
fn the_text_output_says_which_profile_was_detected() {
    let c = Clusters::start(KIND_HUB);
    let out = kind_bootstrap(&c, "hub", &["--dry-run=client"]).success();
    assert!(
        out.stderr
            .contains("profile: kind (detected: hub serves no config.openshift.io API"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("kind: ClusterSPIFFEID"));
    assert!(!out.stdout.contains("PRIVATE KEY"));
    c.assert_untouched();
}

#[test]
fn kind_refusals_touch_nothing() {
    let c = Clusters::start(KIND_HUB);
    kind_bootstrap(&c, "hub", &["--app-domain", "apps.example.com"])
        .bad_input("--app-domain applies to openshift hubs only");
    kind_bootstrap(&c, "hub", &["--only", "ztwim-operator"]).bad_input("ztwim-operator");
    // A release manifest that cannot be downloaded: one line, exit 2, before anything is applied.
    let out = c.run([
        "bootstrap",
        "--context",
        "hub",
        "--yes",
        "--argocd-manifest",
        "https://127.0.0.1:9/install.yaml",
        "--spire-crds",
        &kind_fixture("spire-crds.yaml"),
    ]);
    out.refused("--argocd-manifest https://127.0.0.1:9/install.yaml: cannot download");
    // The OpenShift profile on a kind hub: refused when discovery finds no OpenShift API.
    let out = kind_bootstrap(&c, "hub", &["--profile", "openshift"]);
    assert_ne!(out.code, 0, "{}", out.stderr);
    c.assert_untouched();
}
