//! `render bootstrap --profile kind`: upstream SPIRE from our templates, the OIDC provider on its node
//! port, and the Argo CD release manifest (a small fixture of our own shaped like upstream's) with the
//! exec-auth plumbing merged in. The serving certificate's key is never printed.

use serde_json::Value;

use crate::support::*;

pub fn kind_fixture(name: &str) -> String {
    fixtures()
        .join("kind")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

pub fn kind_bootstrap_args() -> Vec<String> {
    vec![
        "render".into(),
        "bootstrap".into(),
        "--profile".into(),
        "kind".into(),
        "--argocd-manifest".into(),
        kind_fixture("argocd-install.yaml"),
        "--spire-crds".into(),
        kind_fixture("spire-crds.yaml"),
    ]
}

fn render_json(extra: &[&str]) -> Vec<Value> {
    let mut args = kind_bootstrap_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(["-o".to_string(), "json".to_string()]);
    let out = ztwim(&args).success();
    assert!(
        !out.stdout.contains("PRIVATE KEY"),
        "a private key was printed"
    );
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_kind_hub_plan_has_spire_the_issuer_and_argocd_with_the_plumbing() {
    let objs = render_json(&[]);
    // SPIRE's configuration: the kind defaults.
    let conf: Value = serde_json::from_str(
        find(&objs, "ConfigMap", "spire-server")["data"]["server.conf"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(conf["server"]["trust_domain"], "hub.kind");
    assert_eq!(
        conf["server"]["jwt_issuer"],
        "https://hub-control-plane:30443"
    );
    let oidc: Value = serde_json::from_str(
        find(&objs, "ConfigMap", "spire-oidc-discovery-provider")["data"]
            ["oidc-discovery-provider.conf"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(oidc["jwt_issuer"], "https://hub-control-plane:30443");
    assert_eq!(oidc["domains"][0], "hub-control-plane");
    let svc = find(&objs, "Service", "spire-oidc-discovery-provider");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30443);
    let id = find(&objs, "ClusterSPIFFEID", "ztwim-hub-argocd");
    assert_eq!(
        id["spec"]["spiffeIDTemplate"],
        "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"
    );
    assert_eq!(
        id["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "argocd"
    );
    // The serving certificate's Secret is applied by bootstrap, never printed.
    assert!(
        !objs
            .iter()
            .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == "spire-oidc-tls")
    );
    // Upstream Argo CD, namespaced, with the plumbing in both components.
    for (kind, name) in [
        ("Deployment", "argocd-server"),
        ("StatefulSet", "argocd-application-controller"),
    ] {
        let w = find(&objs, kind, name);
        assert_eq!(w["metadata"]["namespace"], "argocd", "{kind} {name}");
        let spec = &w["spec"]["template"]["spec"];
        assert!(
            spec["initContainers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "install-jwt-spiffe"),
            "{kind} {name}"
        );
        assert!(
            spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["csi"]["driver"] == "csi.spiffe.io")
        );
        let main = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        assert!(
            main["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == "/run/spire/sockets")
        );
    }
    // Cluster-scoped upstream objects stay cluster-scoped.
    for o in &objs {
        if o["kind"] == "ClusterRole" || o["kind"] == "CustomResourceDefinition" {
            assert!(o["metadata"].get("namespace").is_none(), "{o}");
        }
    }
}

#[test]
fn another_argocd_namespace_is_rewritten_in_the_bindings_too() {
    let objs = render_json(&["--gitops-namespace", "platform-argocd"]);
    let bindings: Vec<&Value> = objs
        .iter()
        .filter(|o| {
            o["kind"] == "ClusterRoleBinding"
                && o["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("argocd")
        })
        .collect();
    assert!(!bindings.is_empty());
    for b in bindings {
        for s in b["subjects"].as_array().unwrap() {
            assert_eq!(s["namespace"], "platform-argocd", "{b}");
        }
    }
    let id = find(&objs, "ClusterSPIFFEID", "ztwim-hub-argocd");
    assert_eq!(
        id["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "platform-argocd"
    );
}

#[test]
fn the_issuer_and_trust_domain_come_from_flags() {
    let objs = render_json(&[
        "--issuer-url",
        "https://oidc.hub.example.com:30443",
        "--trust-domain",
        "ci.example.org",
    ]);
    let conf: Value = serde_json::from_str(
        find(&objs, "ConfigMap", "spire-server")["data"]["server.conf"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(conf["server"]["trust_domain"], "ci.example.org");
    assert_eq!(
        conf["server"]["jwt_issuer"],
        "https://oidc.hub.example.com:30443"
    );
}

#[test]
fn the_yaml_plan_says_where_the_withheld_secret_is() {
    let out = ztwim(kind_bootstrap_args()).success();
    assert!(
        out.stdout
            .contains("Secret spire/spire-oidc-tls holds a private key")
    );
    assert!(!out.stdout.contains("PRIVATE KEY"));
}

#[test]
fn bad_kind_inputs_are_refused_with_one_line() {
    let mut args = kind_bootstrap_args();
    args.extend(["--app-domain".into(), "apps.example.com".into()]);
    ztwim(&args).bad_input("--app-domain applies to openshift hubs only");

    let mut args = kind_bootstrap_args();
    args.extend([
        "--issuer-url".into(),
        "http://hub-control-plane:30443".into(),
    ]);
    ztwim(&args).bad_input("--issuer-url");

    let mut args = kind_bootstrap_args();
    args[5] = "/no/such/install.yaml".into();
    ztwim(&args).bad_input("--argocd-manifest /no/such/install.yaml: cannot read it");

    let mut args = kind_bootstrap_args();
    args[5] = kind_fixture("spire-crds.yaml");
    ztwim(&args).bad_input("no Deployment argocd-server in it");

    let mut args = kind_bootstrap_args();
    args[7] = kind_fixture("argocd-install.yaml");
    ztwim(&args).bad_input("is not a spire.spiffe.io CustomResourceDefinition");

    let mut args = kind_bootstrap_args();
    args[5] = "http://mirror.example.com/install.yaml".into();
    ztwim(&args).bad_input("only https:// URLs or local paths");

    // OpenShift flags on the kind profile and the reverse.
    let mut args: Vec<String> = BOOTSTRAP.iter().map(|s| s.to_string()).collect();
    args.extend([
        "--argocd-manifest".into(),
        kind_fixture("argocd-install.yaml"),
    ]);
    ztwim(&args).bad_input("--argocd-manifest applies to kind hubs only");
}
