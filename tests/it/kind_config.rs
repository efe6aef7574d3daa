//! `kind-config`: the kind configs it writes parse strictly into ztwim-hub's types and have the shapes of
//! the kind field notes; the spokes' authentication file is valid and kubesim's kind kube-apiserver
//! loads it (and reloads add-spoke's version of it); bad input is one line and exit code 2.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ztwim_hub::kind::authn::{AuthenticationConfiguration, JwtAuthenticator};
use ztwim_hub::kind::{self, Cluster, ClusterConfigurationPatch, ExtraArgs, NodeRole, Protocol};

use crate::support::*;

const AUTHN_ARG: &str = "/etc/kubernetes/ztwim-authn/authentication-config.yaml";

fn kind_config(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "kind-config".to_string(),
        "--hub".into(),
        "hub".into(),
        "--spoke".into(),
        "spoke-a".into(),
        "--dir".into(),
        dir.to_string_lossy().into_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    ztwim(args)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The YAML document as untyped JSON, to check the exact keys kind and kubeadm read.
fn raw(text: &str) -> Value {
    let mut docs = kubesim::schema::parse_yaml_documents(text).expect("YAML");
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)
}

fn the_patch(cluster: &Cluster) -> ClusterConfigurationPatch {
    let patches = cluster
        .cluster_configuration_patches()
        .expect("strict patches");
    assert_eq!(patches.len(), 1, "{cluster:?}");
    patches.into_iter().next().unwrap()
}

#[test]
fn hub_config_maps_the_oidc_node_port_to_localhost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new").join("kind");
    let out = kind_config(&dir, &["--oidc-host-port", "31443"]).success();
    let text = read(&dir.join("hub.yaml"));
    let hub = Cluster::from_yaml(&text).expect("strict kind config");
    assert_eq!(hub.api_version, "kind.x-k8s.io/v1alpha4");
    assert_eq!(hub.kind, "Cluster");
    assert_eq!(hub.name.as_deref(), Some("hub"));
    assert_eq!(hub.nodes.len(), 1);
    assert_eq!(hub.nodes[0].role, NodeRole::ControlPlane);
    assert!(hub.kubeadm_config_patches.is_empty());
    let mapping = &hub.nodes[0].extra_port_mappings;
    assert_eq!(mapping.len(), 1);
    assert_eq!(
        (mapping[0].container_port, mapping[0].host_port),
        (30443, 31443)
    );
    assert_eq!(mapping[0].listen_address, "127.0.0.1");
    assert_eq!(mapping[0].protocol, Protocol::Tcp);
    assert_eq!(
        raw(&text)["nodes"][0]["extraPortMappings"],
        json!([{"containerPort": 30443, "hostPort": 31443, "listenAddress": "127.0.0.1", "protocol": "TCP"}])
    );

    let dir = std::fs::canonicalize(&dir).unwrap();
    for line in [
        "issuer URL: https://hub-control-plane:30443".to_string(),
        "from this machine: https://127.0.0.1:31443".to_string(),
        format!(
            "kind create cluster --name hub --config {}",
            dir.join("hub.yaml").display()
        ),
        format!(
            "kind create cluster --name spoke-a --config {}",
            dir.join("spoke-a.yaml").display()
        ),
    ] {
        assert!(out.stderr.contains(&line), "{line:?} in\n{}", out.stderr);
    }
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn spoke_config_gives_the_apiserver_its_authentication_config_v1beta4() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &[]).success();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let text = read(&dir.join("spoke-a.yaml"));
    let spoke = Cluster::from_yaml(&text).expect("strict kind config");
    assert_eq!(spoke.name.as_deref(), Some("spoke-a"));
    assert_eq!(spoke.nodes.len(), 1);
    assert_eq!(spoke.nodes[0].role, NodeRole::ControlPlane);
    // Hop 1: the host directory into the node container (the directory, so renames show through).
    assert_eq!(
        raw(&text)["nodes"][0]["extraMounts"],
        json!([{
            "hostPath": dir.join("spoke-a-authn").to_str().unwrap(),
            "containerPath": "/etc/kubernetes/ztwim-authn",
            "readOnly": false,
        }])
    );
    assert!(dir.join("spoke-a-authn").is_dir());
    // Hop 2: the node's directory into the kube-apiserver static pod, and the flag, v1beta4 list form,
    // with no apiVersion (a patch pinned to the wrong one would be silently ignored).
    let patch_text = &spoke.kubeadm_config_patches[0];
    assert_eq!(
        raw(patch_text),
        json!({
            "kind": "ClusterConfiguration",
            "apiServer": {
                "extraArgs": [{"name": "authentication-config", "value": AUTHN_ARG}],
                "extraVolumes": [{
                    "name": "ztwim-authn",
                    "hostPath": "/etc/kubernetes/ztwim-authn",
                    "mountPath": "/etc/kubernetes/ztwim-authn",
                    "readOnly": true,
                    "pathType": "DirectoryOrCreate",
                }],
            },
        })
    );
    let patch = the_patch(&spoke);
    assert!(matches!(patch.api_server.extra_args, ExtraArgs::List(_)));
    assert_eq!(
        patch.api_server.extra_args.get("authentication-config"),
        Some(AUTHN_ARG)
    );
    // The flag names the file kind-config wrote, through the two mounts.
    let volume = &patch.api_server.extra_volumes[0];
    let in_node = Path::new(AUTHN_ARG)
        .strip_prefix(&volume.mount_path)
        .expect("the flag's file is in the pod's volume");
    let host_dir = Path::new(&spoke.nodes[0].extra_mounts[0].host_path);
    assert_eq!(
        spoke.nodes[0].extra_mounts[0].container_path,
        volume.host_path
    );
    assert!(host_dir.join(in_node).is_file());
}

#[test]
fn kubeadm_v1beta3_writes_the_map_form() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &["--kubeadm-api", "v1beta3"]).success();
    let spoke = Cluster::from_yaml(&read(&tmp.path().join("spoke-a.yaml"))).unwrap();
    let patch_text = &spoke.kubeadm_config_patches[0];
    assert_eq!(
        raw(patch_text)["apiServer"]["extraArgs"],
        json!({"authentication-config": AUTHN_ARG})
    );
    assert!(raw(patch_text).get("apiVersion").is_none(), "{patch_text}");
    let patch = the_patch(&spoke);
    assert!(matches!(patch.api_server.extra_args, ExtraArgs::Map(_)));
    assert_eq!(patch.api_server.extra_volumes.len(), 1);
}

#[test]
fn several_spokes_each_get_their_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &["--spoke", "spoke-b"]).success();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    for spoke in ["spoke-a", "spoke-b"] {
        let c = Cluster::from_yaml(&read(&dir.join(format!("{spoke}.yaml")))).unwrap();
        assert_eq!(c.name.as_deref(), Some(spoke));
        assert_eq!(
            PathBuf::from(&c.nodes[0].extra_mounts[0].host_path),
            dir.join(format!("{spoke}-authn"))
        );
        assert!(
            dir.join(format!("{spoke}-authn/authentication-config.yaml"))
                .is_file()
        );
    }
}

#[test]
fn the_initial_authentication_config_is_valid_and_loads_in_kubesim() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &[]).success();
    let path = tmp.path().join("spoke-a-authn/authentication-config.yaml");
    let text = read(&path);
    assert!(text.contains("an empty `jwt` list"), "{text}");
    let config = AuthenticationConfiguration::read(&path).expect("strict");
    assert_eq!(config, AuthenticationConfiguration::initial());
    assert_eq!(config.api_version, "apiserver.config.k8s.io/v1beta1");
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(
        raw(&text),
        json!({
            "apiVersion": "apiserver.config.k8s.io/v1beta1",
            "kind": "AuthenticationConfiguration",
            "jwt": [],
        })
    );
    let loaded = kubesim::kind_authn::parse(&text, &kubesim::Profile::kind("1.34"))
        .expect("kube-apiserver accepts the initial file");
    assert!(loaded.is_empty());
}

fn hub_authenticator() -> JwtAuthenticator {
    let ca = read(&fixtures().join("ingress-ca.crt"));
    JwtAuthenticator::for_issuer(
        &kind::issuer_url("hub"),
        Some(
            "https://spire-spiffe-oidc-discovery-provider.spire.svc/.well-known/openid-configuration",
        ),
        Some(&ca),
        "kind-spoke",
    )
}

#[test]
fn with_jwt_is_accepted_by_kubesim() {
    let config = AuthenticationConfiguration::with_jwt(hub_authenticator());
    assert_eq!(config.validate(), Ok(()));
    let text = config.to_yaml().unwrap();
    let loaded = kubesim::kind_authn::parse(&text, &kubesim::Profile::kind("1.34"))
        .expect("kube-apiserver accepts add-spoke's file");
    assert_eq!(loaded.len(), 1);
    let jwt = &loaded[0];
    assert_eq!(jwt.issuer_url, "https://hub-control-plane:30443");
    assert_eq!(jwt.audiences, ["kind-spoke"]);
    assert_eq!(
        jwt.discovery_url.as_deref(),
        Some(
            "https://spire-spiffe-oidc-discovery-provider.spire.svc/.well-known/openid-configuration"
        )
    );
    assert_eq!(
        jwt.ca_pem.as_deref().map(str::trim),
        Some(read(&fixtures().join("ingress-ca.crt")).trim())
    );
    assert_eq!(
        jwt.username,
        kubesim::jwt_authn::PrefixedClaim {
            source: kubesim::jwt_authn::ClaimSource::Claim("sub".into()),
            prefix: String::new(),
        }
    );
    assert_eq!(
        AuthenticationConfiguration::from_yaml(&text).unwrap(),
        config
    );
}

#[test]
fn a_kind_spoke_starts_with_the_file_and_reloads_add_spokes_version() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &[]).success();
    let path = tmp.path().join("spoke-a-authn/authentication-config.yaml");
    let sim = kubesim::Sim::start(
        kubesim::SimConfig::new()
            .cluster("spoke-a", kubesim::Profile::kind("1.34"))
            .authentication_config("spoke-a", &path),
    )
    .expect("a kind spoke starts with the initial file");
    let authn = sim.cluster("spoke-a").oidc_authn().clone();
    assert_eq!(authn.reload_status().successes, 1);
    AuthenticationConfiguration::with_jwt(hub_authenticator())
        .write_atomically(&path)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while authn.reload_status().successes < 2 {
        assert!(Instant::now() < deadline, "{:?}", authn.reload_status());
        std::thread::sleep(kubesim::kind_authn::POLL_INTERVAL);
    }
    let status = authn.reload_status();
    assert_eq!((status.failures, status.last_error), (0, None));
}

#[test]
fn snapshots_of_a_hub_and_a_spoke_config() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &[]).success();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    let redact = |text: String| text.replace(dir.to_str().unwrap(), "[DIR]");
    insta::assert_snapshot!("kind_hub_config", read(&dir.join("hub.yaml")));
    insta::assert_snapshot!("kind_spoke_config", redact(read(&dir.join("spoke-a.yaml"))));
}

#[test]
fn json_output_lists_files_and_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let out = kind_config(tmp.path(), &["-o", "json"]).success();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        result["hub"]["issuerUrl"],
        "https://hub-control-plane:30443"
    );
    assert_eq!(result["hub"]["hostUrl"], "https://127.0.0.1:30443");
    assert_eq!(result["spokes"][0]["kubeadmApi"], "kubeadm.k8s.io/v1beta4");
    let statuses: Vec<&str> = result["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["written", "written", "written"]);
    assert_eq!(result["commands"].as_array().unwrap().len(), 2);
}

#[test]
fn rerunning_with_the_same_flags_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &[]).success();
    let out = kind_config(tmp.path(), &["-o", "json"]).success();
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        result["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["status"] == "unchanged"),
        "{result}"
    );
}

#[test]
fn force_replaces_a_file_with_other_content() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &[]).success();
    let authn = tmp.path().join("spoke-a-authn/authentication-config.yaml");
    AuthenticationConfiguration::with_jwt(hub_authenticator())
        .write_atomically(&authn)
        .unwrap();
    let out = kind_config(tmp.path(), &["--force", "-o", "json"]).success();
    let result: Value = serde_json::from_str(&out.stdout).unwrap();
    let statuses: Vec<&str> = result["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["unchanged", "unchanged", "replaced"]);
    assert_eq!(
        AuthenticationConfiguration::read(&authn).unwrap(),
        AuthenticationConfiguration::initial()
    );
}

// Bad input: one line, exit code 2, and (except the refusal to overwrite) no file written.

fn nothing_written(dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "{entries:?}");
}

#[test]
fn a_name_that_is_not_a_dns_label_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    ztwim([
        "kind-config",
        "--hub",
        "Hub",
        "--spoke",
        "spoke-a",
        "--dir",
        tmp.path().to_str().unwrap(),
    ])
    .bad_input("--hub \"Hub\" is not a valid name");
    ztwim([
        "kind-config",
        "--hub",
        "hub",
        "--spoke",
        "spoke_a",
        "--dir",
        tmp.path().to_str().unwrap(),
    ])
    .bad_input("--spoke \"spoke_a\" is not a valid name");
    nothing_written(tmp.path());
}

#[test]
fn a_name_too_long_for_its_control_plane_container_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let long = "s".repeat(50);
    ztwim([
        "kind-config",
        "--hub",
        "hub",
        "--spoke",
        &long,
        "--dir",
        tmp.path().to_str().unwrap(),
    ])
    .bad_input("at most 49 characters");
    nothing_written(tmp.path());
}

#[test]
fn the_same_name_twice_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    ztwim([
        "kind-config",
        "--hub",
        "hub",
        "--spoke",
        "hub",
        "--dir",
        dir,
    ])
    .bad_input("--spoke \"hub\" is given twice");
    ztwim([
        "kind-config",
        "--hub",
        "hub",
        "--spoke",
        "a",
        "--spoke",
        "a",
        "--dir",
        dir,
    ])
    .bad_input("--spoke \"a\" is given twice");
    nothing_written(tmp.path());
}

#[test]
fn a_missing_required_flag_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    ztwim(["kind-config", "--hub", "hub", "--dir", dir]).bad_input("--spoke is required");
    ztwim(["kind-config", "--spoke", "a", "--dir", dir]).bad_input("--hub is required");
    ztwim(["kind-config", "--hub", "hub", "--spoke", "a"]).bad_input("--dir is required");
    nothing_written(tmp.path());
}

#[test]
fn oidc_host_port_zero_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &["--oidc-host-port", "0"]).bad_input("--oidc-host-port");
    nothing_written(tmp.path());
}

#[test]
fn an_unknown_kubeadm_api_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    kind_config(tmp.path(), &["--kubeadm-api", "v1beta2"]).bad_input("v1beta2");
    nothing_written(tmp.path());
}

#[test]
fn a_dir_that_cannot_be_created_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    kind_config(&file.join("kind"), &[]).bad_input("cannot create the directory");
}

#[test]
fn a_file_with_other_content_is_not_replaced_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    std::fs::write(dir.join("spoke-a.yaml"), "# mine\n").unwrap();
    kind_config(&dir, &[]).bad_input(&format!(
        "{} exists with other content; not replaced (pass --force to overwrite it)",
        dir.join("spoke-a.yaml").display()
    ));
    assert_eq!(read(&dir.join("spoke-a.yaml")), "# mine\n");
    // Refused before anything was written.
    assert!(!dir.join("hub.yaml").exists());
    assert!(!dir.join("spoke-a-authn").exists());
}
