//! `add-spoke --authn-config-dir` and `remove-spoke` on Kubernetes (kind) spokes, and mixed fleets, through
//! the real binary against kubesim: each kind spoke's kube-apiserver reads the authentication file
//! `kind-config` wrote (kubesim's `SimConfig::authentication_config`) and reloads it when it changes.

use kubesim::KubeUser;
use serde_json::Value;

use crate::sims::{Clusters, json_of};
use crate::support::Output;
use ztwim_hub::kind::authn::{AuthenticationConfiguration, JwtAuthenticator};

const KIND_STEPS: [&str; 6] = [
    "preflight",
    "authn-config",
    "rbac",
    "verify-identity",
    "argocd-cluster",
    "verify-argocd",
];

/// An OpenShift hub bootstrapped with ztwim-hub, plus the given spokes (`kind_spokes` read their
/// authentication file).
fn openshift_hub_with(spokes: &[(&str, &str)], kind_spokes: &[&str]) -> Clusters {
    let mut all = vec![("hub", "openshift-4.20")];
    all.extend_from_slice(spokes);
    let c = Clusters::start_kind_spokes(&all, kind_spokes);
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
    let dir = c.authn_dir(spoke);
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
        "--authn-config-dir",
        dir.to_str().unwrap(),
    ];
    args.extend(extra);
    c.run(args)
}

fn remove_spoke(c: &Clusters, spoke: &str, extra: &[&str]) -> Output {
    let dir = c.authn_dir(spoke);
    let mut args = vec![
        "remove-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        spoke,
        "--yes",
        "--timeout",
        "60s",
        "--authn-config-dir",
        dir.to_str().unwrap(),
    ];
    args.extend(extra);
    c.run(args)
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn backup_of(c: &Clusters, spoke: &str) -> std::path::PathBuf {
    c.authn_dir(spoke)
        .join("authentication-config.yaml.ztwim-hub-backup")
}

fn steps(doc: &Value) -> Vec<String> {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect()
}

/// Every change the run reported, as `step: object change`, except those that are `unchanged`.
fn changed(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for step in doc["steps"].as_array().unwrap() {
        for c in step["changes"].as_array().unwrap() {
            if c["change"] != "unchanged" {
                out.push(format!("{}: {} {}", step["step"], c["object"], c["change"]));
            }
        }
    }
    out
}

#[track_caller]
fn assert_no_stored_changes(c: &Clusters) {
    for (name, _mutating, stored) in c.writes() {
        assert_eq!(stored, 0, "cluster {name} stored {stored} changes");
    }
}

#[test]
fn an_openshift_hub_adds_a_kind_spoke_a_rerun_changes_nothing_and_remove_restores_the_file() {
    let c = openshift_hub_with(&[("spoke-k", "kind-1.34")], &["spoke-k"]);
    let file = c.authn_file("spoke-k");
    let initial = read(&file);
    let hub = c.sim.cluster("hub");
    let domain = hub.apps_domain();
    let issuer = format!("https://spire-spiffe-oidc-discovery-provider.{domain}");

    let out = add_spoke(&c, "spoke-k", &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_eq!(doc["result"], "ok", "{}", out.stderr);
    assert_eq!(steps(&doc), KIND_STEPS);
    assert_eq!(doc["hubProfile"], "openshift");
    assert_eq!(doc["spokeProfile"], "kind");
    assert_eq!(doc["values"]["spokePlatform"], "kubernetes");
    assert_eq!(doc["values"]["spokeVersion"], "1.34");
    assert_eq!(doc["values"]["audience"], "kind-spoke");
    assert_eq!(doc["authnConfigFile"], file.to_str().unwrap());

    // The file: the hub's authenticator, with the CA of the hub's ingress (not publicly trusted).
    let config = AuthenticationConfiguration::read(&file).expect("strict");
    assert_eq!(
        config,
        AuthenticationConfiguration::with_jwt(JwtAuthenticator::for_issuer(
            &issuer,
            None,
            Some(hub.ingress_ca_pem()),
            "kind-spoke"
        ))
    );
    assert_eq!(read(&backup_of(&c, "spoke-k")), initial);
    let reload = c.sim.cluster("spoke-k").oidc_authn().reload_status();
    assert!(reload.successes >= 2, "{reload:?}");
    assert_eq!(reload.failures, 0, "{reload:?}");

    // Argo CD reaches the spoke at the endpoint kubeadm publishes, with that endpoint's CA.
    let secret = hub
        .get("v1", "Secret", Some("ztwim-gitops"), "spoke-k")
        .expect("the cluster Secret");
    assert_eq!(
        crate::support::secret_field(&secret, "server"),
        "https://spoke-k-control-plane:6443"
    );
    assert_eq!(doc["argocdReached"], "https://spoke-k-control-plane:6443");
    let config = crate::support::cluster_secret_config(&secret);
    assert_eq!(
        config["execProviderConfig"]["env"]["SPIFFE_JWT_AUDIENCE"],
        "kind-spoke"
    );
    let server_id = format!("spiffe://{domain}/ns/ztwim-gitops/sa/openshift-gitops-argocd-server");
    let binding = c
        .sim
        .cluster("spoke-k")
        .get(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            None,
            "ztwim-gitops-admins",
        )
        .expect("the ClusterRoleBinding");
    assert!(
        binding["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == server_id.as_str()),
        "{binding}"
    );
    assert_eq!(
        doc["spokeUsername"],
        "spiffe://{domain}/ns/ztwim-gitops/sa/openshift-gitops-argocd-application-controller"
            .replace("{domain}", &domain)
    );
    let preflight = &doc["steps"][0]["notes"];
    assert!(
        preflight.to_string().contains("client certificate"),
        "the lockout guard says what it checked: {preflight}"
    );

    // A re-run: nothing stored on either cluster, the file and its backup untouched.
    let written = read(&file);
    c.reset_counters();
    let out = add_spoke(&c, "spoke-k", &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_eq!(changed(&doc), Vec::<String>::new(), "{doc}");
    assert_no_stored_changes(&c);
    assert_eq!(read(&file), written);
    assert_eq!(read(&backup_of(&c, "spoke-k")), initial);

    // remove-spoke: the file byte for byte as it was, the backup gone, Argo CD and RBAC cleaned up.
    let out = remove_spoke(&c, "spoke-k", &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_eq!(
        steps(&doc),
        [
            "preflight",
            "argocd-cluster",
            "restore-authn-config",
            "rbac",
            "cleanup"
        ]
    );
    assert_eq!(read(&file), initial);
    assert!(!backup_of(&c, "spoke-k").exists());
    assert!(
        hub.get("v1", "Secret", Some("ztwim-gitops"), "spoke-k")
            .is_none()
    );
    assert!(
        c.sim
            .cluster("spoke-k")
            .get(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                None,
                "ztwim-gitops-admins"
            )
            .is_none()
    );
}

#[test]
fn remove_spoke_keeps_an_authenticator_someone_added_after_add_spoke_and_says_so() {
    let c = openshift_hub_with(&[("spoke-k", "kind-1.34")], &["spoke-k"]);
    let file = c.authn_file("spoke-k");
    add_spoke(&c, "spoke-k", &[]).success();
    let mut config = AuthenticationConfiguration::read(&file).unwrap();
    let other = JwtAuthenticator::for_issuer("https://sso.example.com", None, None, "k8s");
    config.upsert_jwt(other.clone());
    config.write_atomically(&file).unwrap();
    let out = remove_spoke(&c, "spoke-k", &[]).success();
    assert!(
        out.stderr.contains(
            "removing only the JWT authenticator for https://spire-spiffe-oidc-discovery-provider"
        ),
        "{}",
        out.stderr
    );
    let after = AuthenticationConfiguration::read(&file).unwrap();
    assert_eq!(after.jwt, vec![other]);
    assert!(
        backup_of(&c, "spoke-k").exists(),
        "the backup is left alone"
    );
}

#[test]
fn the_wait_fails_and_the_file_is_restored_when_dir_is_not_what_the_spoke_reads() {
    let c = openshift_hub_with(&[("spoke-k", "kind-1.34")], &["spoke-k"]);
    // Another directory kind-config wrote (for a spoke that was never created): nobody reads it.
    let other = c.dir.path().join("elsewhere");
    crate::support::ztwim([
        "kind-config",
        "--hub",
        "hub",
        "--spoke",
        "spoke-k",
        "--dir",
        other.to_str().unwrap(),
        "-q",
    ])
    .success();
    let wrong = other.join("spoke-k-authn");
    let wrong_file = wrong.join("authentication-config.yaml");
    let before = read(&wrong_file);
    let read_by_spoke = read(&c.authn_file("spoke-k"));
    let out = c.run([
        "add-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke-k",
        "--yes",
        "--timeout",
        "3s",
        "--authn-config-dir",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 4, "a timeout\n{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(last.starts_with("error: step authn-config: "), "{last}");
    assert!(last.contains(wrong_file.to_str().unwrap()), "{last}");
    assert!(
        last.contains("is --authn-config-dir the directory this spoke's kube-apiserver reads"),
        "{last}"
    );
    assert!(last.contains("restored"), "{last}");
    assert_eq!(read(&wrong_file), before, "the file is put back");
    assert!(
        !wrong
            .join("authentication-config.yaml.ztwim-hub-backup")
            .exists(),
        "the backup this run made goes with the rollback"
    );
    assert_eq!(read(&c.authn_file("spoke-k")), read_by_spoke);
    assert_no_stored_changes(&c);
}

#[test]
fn kind_spoke_refusals_change_nothing() {
    let mut c = openshift_hub_with(
        &[("spoke-k", "kind-1.34"), ("spoke-o", "openshift-4.20")],
        &["spoke-k"],
    );
    let file = c.authn_file("spoke-k");
    let initial = read(&file);
    let dir = c.authn_dir("spoke-k");
    let dir = dir.to_str().unwrap();
    let base = |spoke: &str| {
        vec![
            "add-spoke".to_string(),
            "--hub-context".into(),
            "hub".into(),
            "--spoke-context".into(),
            spoke.into(),
            "--yes".into(),
            "--timeout".into(),
            "20s".into(),
        ]
    };
    let with = |spoke: &str, extra: &[&str]| {
        let mut args = base(spoke);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // A kind spoke needs the flag; an OpenShift spoke refuses it.
    c.run(with("spoke-k", &[]))
        .bad_input("--authn-config-dir is required for a Kubernetes (kind) spoke");
    let out = c.run(with("spoke-k", &[]));
    assert!(out.stderr.contains("kind-config"), "{}", out.stderr);
    c.run(with("spoke-o", &["--authn-config-dir", dir]))
        .bad_input("--authn-config-dir is for Kubernetes (kind) spokes, and spoke-o is OpenShift");
    // A directory without the file, and a file kube-apiserver would not load.
    let empty = c.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    c.run(with(
        "spoke-k",
        &["--authn-config-dir", empty.to_str().unwrap()],
    ))
    .refused("[authn-config-file]");
    let bad = c.dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("authentication-config.yaml"),
        initial.replace("jwt: []", "jwt: []\nissuers: []"),
    )
    .unwrap();
    c.run(with(
        "spoke-k",
        &["--authn-config-dir", bad.to_str().unwrap()],
    ))
    .refused("not an AuthenticationConfiguration");
    // Step and check names: the union before contacting a cluster, then the kind list.
    c.run(with("spoke-k", &["--skip", "nope"]))
        .bad_input("--skip nope: no such step (steps: preflight, feature-gate");
    let out = c.run(with(
        "spoke-k",
        &["--authn-config-dir", dir, "--only", "feature-gate"],
    ));
    let out = out.bad_input("--only feature-gate: no such step");
    assert!(
        out.stderr.contains(
            "(steps: preflight, authn-config, rbac, verify-identity, argocd-cluster, verify-argocd)"
        ),
        "{}",
        out.stderr
    );
    c.run(with(
        "spoke-k",
        &[
            "--authn-config-dir",
            dir,
            "--ignore-preflight-errors",
            "existing-authentication",
        ],
    ))
    .bad_input("--ignore-preflight-errors existing-authentication: no such check");
    c.run(with("spoke-k", &["--spoke-profile", "nope"]))
        .bad_input("--profile \"nope\": no such built-in profile");
    // The lockout guard: a bearer token is refused, and the refusal says why.
    c.sim
        .cluster("spoke-k")
        .add_static_token("ci-token-of-admin", "ci-admin", &["system:masters"]);
    c.add_users(&[(
        "spoke-k-token",
        "spoke-k",
        KubeUser::token("ci-token-of-admin"),
    )]);
    let out = c
        .run(with(
            "spoke-k-token",
            &["--authn-config-dir", dir, "--name", "spoke-k"],
        ))
        .refused("[lockout-guard] context spoke-k-token authenticates with a bearer token");
    assert!(out.stderr.contains("client certificate"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("ci-token-of-admin"),
        "the token is never printed"
    );
    c.assert_untouched();
    assert_eq!(read(&file), initial);
    assert!(!backup_of(&c, "spoke-k").exists());
}

/// `render add-spoke` for a kind spoke, the flags every variant below shares.
const RENDER_KIND_SPOKE: &[&str] = &[
    "render",
    "add-spoke",
    "--profile",
    "kind",
    "--spoke-name",
    "spoke-a",
    "--spoke-server",
    "https://spoke-a-control-plane:6443",
    "--spoke-ca-file",
    "spoke-ca.crt",
    "--trust-domain",
    "hub.kind",
    "--issuer-url",
    "https://hub-control-plane:30443",
];

#[test]
fn render_add_spoke_for_a_kind_spoke_prints_the_objects_and_the_file() {
    let out = crate::support::ztwim(
        [RENDER_KIND_SPOKE, &["--issuer-ca-file", "ingress-ca.crt"]].concat(),
    )
    .success();
    let docs = out.documents();
    assert_eq!(
        crate::support::kinds(&docs),
        ["ClusterRoleBinding", "Secret"]
    );
    let binding = crate::support::find(&docs, "ClusterRoleBinding", None);
    assert_eq!(
        binding["subjects"][0]["name"],
        "spiffe://hub.kind/ns/argocd/sa/argocd-server"
    );
    let secret = crate::support::find(&docs, "Secret", Some("spoke-a"));
    assert_eq!(secret["metadata"]["namespace"], "argocd");
    assert!(
        out.stdout
            .contains("# cluster: spoke-a, step: authn-config, file: <--authn-config-dir>/authentication-config.yaml"),
        "{}",
        out.stdout
    );
    let commented: String = out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("step: authn-config"))
        .filter_map(|l| l.strip_prefix("#   "))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = AuthenticationConfiguration::from_yaml(&commented).expect("the commented file");
    let ca = read(&crate::support::fixtures().join("ingress-ca.crt"));
    assert_eq!(
        config,
        AuthenticationConfiguration::with_jwt(JwtAuthenticator::for_issuer(
            "https://hub-control-plane:30443",
            None,
            Some(&ca),
            "kind-spoke"
        ))
    );

    // --output-dir: the objects per cluster, the file where kind-config keeps it.
    let tmp = tempfile::tempdir().unwrap();
    crate::support::ztwim(
        [
            RENDER_KIND_SPOKE,
            &["--output-dir", tmp.path().to_str().unwrap()],
        ]
        .concat(),
    )
    .success();
    let written = AuthenticationConfiguration::read(
        &tmp.path().join("spoke-a-authn/authentication-config.yaml"),
    )
    .unwrap();
    assert_eq!(written.jwt[0].issuer.certificate_authority, None);
    assert!(tmp.path().join("spoke-a/kustomization.yaml").exists());
    assert!(tmp.path().join("hub/kustomization.yaml").exists());
}

/// A kind hub bootstrapped with ztwim-hub (our small Argo CD and SPIRE CRD fixtures), plus the spokes.
fn kind_hub_with(spokes: &[(&str, &str)], kind_spokes: &[&str]) -> Clusters {
    let mut all = vec![("hub", "kind-1.34")];
    all.extend_from_slice(spokes);
    let c = Clusters::start_kind_spokes(&all, kind_spokes);
    let manifest = crate::render_kind::kind_fixture("argocd-install.yaml");
    let crds = crate::render_kind::kind_fixture("spire-crds.yaml");
    c.run([
        "bootstrap",
        "--context",
        "hub",
        "--yes",
        "-q",
        "--timeout",
        "60s",
        "--exec-timeout",
        "5s",
        "--argocd-manifest",
        &manifest,
        "--spire-crds",
        &crds,
    ])
    .success();
    c.reset_counters();
    c
}

/// The CA of the kind hub's OIDC serving certificate (what the spokes must trust).
fn kind_issuer_ca(c: &Clusters) -> String {
    let secret = c
        .sim
        .cluster("hub")
        .get("v1", "Secret", Some("spire"), "spire-oidc-tls")
        .expect("bootstrap created the serving certificate");
    crate::support::secret_field(&secret, "ca.crt")
}

const KIND_ISSUER: &str = "https://hub-control-plane:30443";

fn subjects(doc: &Value) -> Vec<String> {
    doc["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["claims"]["sub"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_kind_hub_adds_a_kind_spoke_a_rerun_changes_nothing_and_remove_restores_the_file() {
    let c = kind_hub_with(&[("spoke-k", "kind-1.34")], &["spoke-k"]);
    let file = c.authn_file("spoke-k");
    let initial = read(&file);
    let out = add_spoke(&c, "spoke-k", &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_eq!(doc["result"], "ok", "{}", out.stderr);
    assert_eq!(steps(&doc), KIND_STEPS);
    assert_eq!(
        (&doc["hubProfile"], &doc["spokeProfile"]),
        (&"kind".into(), &"kind".into())
    );
    assert_eq!(doc["values"]["issuerURL"], KIND_ISSUER);
    assert_eq!(doc["values"]["argocdNamespace"], "argocd");
    assert_eq!(
        subjects(&doc),
        [
            "spiffe://hub.kind/ns/argocd/sa/argocd-server",
            "spiffe://hub.kind/ns/argocd/sa/argocd-application-controller"
        ]
    );
    let ca = kind_issuer_ca(&c);
    assert_eq!(
        AuthenticationConfiguration::read(&file).unwrap(),
        AuthenticationConfiguration::with_jwt(JwtAuthenticator::for_issuer(
            KIND_ISSUER,
            None,
            Some(&ca),
            "kind-spoke"
        ))
    );
    let secret = c
        .sim
        .cluster("hub")
        .get("v1", "Secret", Some("argocd"), "spoke-k")
        .expect("the cluster Secret in the upstream Argo CD namespace");
    assert_eq!(
        secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "cluster"
    );
    assert_eq!(
        crate::support::secret_field(&secret, "server"),
        "https://spoke-k-control-plane:6443"
    );
    assert_eq!(doc["argocdReached"], "https://spoke-k-control-plane:6443");

    let written = read(&file);
    c.reset_counters();
    let doc = json_of(&add_spoke(&c, "spoke-k", &["-o", "json"]).success());
    assert_eq!(changed(&doc), Vec::<String>::new(), "{doc}");
    assert_no_stored_changes(&c);
    assert_eq!(read(&file), written);

    remove_spoke(&c, "spoke-k", &[]).success();
    assert_eq!(read(&file), initial);
    assert!(!backup_of(&c, "spoke-k").exists());
    assert!(
        c.sim
            .cluster("hub")
            .get("v1", "Secret", Some("argocd"), "spoke-k")
            .is_none()
    );
}

#[test]
fn mixed_fleet_a_kind_hub_adds_an_openshift_spoke() {
    let c = kind_hub_with(&[("spoke-o", "openshift-4.20")], &[]);
    let out = c
        .run([
            "add-spoke",
            "--hub-context",
            "hub",
            "--spoke-context",
            "spoke-o",
            "--yes",
            "--timeout",
            "60s",
            "--rollout-timeout",
            "60s",
            "-o",
            "json",
        ])
        .success();
    let doc = json_of(&out);
    assert_eq!(doc["result"], "ok", "{}", out.stderr);
    assert_eq!(
        (&doc["hubProfile"], &doc["spokeProfile"]),
        (&"kind".into(), &"openshift".into())
    );
    assert_eq!(
        steps(&doc),
        [
            "preflight",
            "feature-gate",
            "issuer-ca",
            "authentication",
            "apiserver-rollout",
            "argocd-cluster",
            "rbac",
            "verify-identity",
            "verify-argocd"
        ]
    );
    assert_eq!(doc["values"]["audience"], "openshift-spoke");
    assert_eq!(
        subjects(&doc),
        [
            "spiffe://hub.kind/ns/argocd/sa/argocd-server",
            "spiffe://hub.kind/ns/argocd/sa/argocd-application-controller"
        ]
    );
    let spoke = c.sim.cluster("spoke-o");
    let auth = spoke
        .get("config.openshift.io/v1", "Authentication", None, "cluster")
        .unwrap();
    let provider = &auth["spec"]["oidcProviders"][0];
    assert_eq!(provider["issuer"]["issuerURL"], KIND_ISSUER);
    let ca_map = provider["issuer"]["issuerCertificateAuthority"]["name"]
        .as_str()
        .expect("the kind hub's issuer is not publicly trusted");
    let cm = spoke
        .get("v1", "ConfigMap", Some("openshift-config"), ca_map)
        .unwrap();
    assert_eq!(cm["data"]["ca-bundle.crt"], kind_issuer_ca(&c).as_str());
    assert!(
        c.sim
            .cluster("hub")
            .get("v1", "Secret", Some("argocd"), "spoke-o")
            .is_some()
    );

    c.reset_counters();
    let doc = json_of(
        &c.run([
            "add-spoke",
            "--hub-context",
            "hub",
            "--spoke-context",
            "spoke-o",
            "--yes",
            "--timeout",
            "60s",
            "-o",
            "json",
        ])
        .success(),
    );
    assert_eq!(changed(&doc), Vec::<String>::new(), "{doc}");
    assert_no_stored_changes(&c);

    c.run([
        "remove-spoke",
        "--hub-context",
        "hub",
        "--spoke-context",
        "spoke-o",
        "--yes",
        "--timeout",
        "60s",
        "--rollout-timeout",
        "60s",
    ])
    .success();
    let auth = spoke
        .get("config.openshift.io/v1", "Authentication", None, "cluster")
        .unwrap();
    assert_eq!(auth["spec"]["type"], "IntegratedOAuth");
    assert!(
        c.sim
            .cluster("hub")
            .get("v1", "Secret", Some("argocd"), "spoke-o")
            .is_none()
    );
}

fn notes_of(doc: &Value, step: &str) -> String {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == step)
        .map(|s| s["notes"].to_string())
        .unwrap_or_default()
}

#[test]
fn kind_spoke_dry_runs_write_nothing_and_show_the_file() {
    let c = openshift_hub_with(&[("spoke-k", "kind-1.34")], &["spoke-k"]);
    let file = c.authn_file("spoke-k");
    let initial = read(&file);
    // Client: the plan as render prints it, and the file add-spoke would write, as comments.
    let out = add_spoke(&c, "spoke-k", &["--dry-run=client"]).success();
    assert_eq!(
        crate::support::kinds(&out.documents()),
        ["ClusterRoleBinding", "Secret"]
    );
    assert!(
        out.stdout.contains(&format!(
            "# cluster: spoke-k, step: authn-config, file: {}",
            file.display()
        )),
        "{}",
        out.stdout
    );
    // Server: every apply a dry run, the file only reported.
    let doc = json_of(&add_spoke(&c, "spoke-k", &["--dry-run=server", "-o", "json"]).success());
    let authn = &doc["steps"][1];
    assert_eq!(authn["step"], "authn-config");
    assert_eq!(authn["changes"][0]["change"], "would-configure", "{doc}");
    assert_eq!(read(&file), initial);
    assert!(!backup_of(&c, "spoke-k").exists());
    assert_no_stored_changes(&c);
}

#[test]
fn without_cluster_info_the_kubeconfig_server_is_used_with_a_warning() {
    let c = openshift_hub_with(&[("spoke-k", "kind-1.34")], &["spoke-k"]);
    let spoke = c.sim.cluster("spoke-k");
    spoke
        .delete("v1", "ConfigMap", Some("kube-public"), "cluster-info")
        .unwrap();
    let out = add_spoke(&c, "spoke-k", &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_eq!(doc["values"]["spokeServer"], spoke.server_url());
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("kube-public/cluster-info") && warnings.contains("kubeconfig's server"),
        "{warnings}"
    );
}

#[test]
fn verify_argocd_reaches_a_host_this_machine_cannot_resolve_at_the_kubeconfig_address() {
    let c = openshift_hub_with(&[("spoke-k", "kind-1.34")], &["spoke-k"]);
    let dir = c.authn_dir("spoke-k");
    // The Secret's host is exempt from the proxy and does not resolve here: verify-argocd connects to
    // the kubeconfig's address and still verifies the certificate for spoke-k-control-plane.
    let out = c
        .command([
            "add-spoke",
            "--hub-context",
            "hub",
            "--spoke-context",
            "spoke-k",
            "--yes",
            "--timeout",
            "60s",
            "--authn-config-dir",
            dir.to_str().unwrap(),
            "-o",
            "json",
        ])
        .env("NO_PROXY", "127.0.0.1,localhost,spoke-k-control-plane")
        .run()
        .success();
    let doc = json_of(&out);
    assert_eq!(doc["argocdReached"], "https://spoke-k-control-plane:6443");
    let notes = notes_of(&doc, "verify-argocd");
    assert!(
        notes.contains(&format!(
            "its host does not resolve here: connected to {}",
            c.sim.cluster("spoke-k").server_url()
        )),
        "{notes}"
    );
}
