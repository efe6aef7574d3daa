//! `render`: the README's invocations, output formats, the output directory, and overrides.

use crate::support::*;

#[test]
fn bootstrap_yaml_is_stable() {
    let out = ztwim(BOOTSTRAP).success();
    insta::assert_snapshot!("render_bootstrap", out.stdout);
    assert!(
        out.stderr
            .contains("warning: the exec-auth plugin v0.0.7 (x86_64) is not pinned by sha256"),
        "{}",
        out.stderr
    );
    assert_eq!(
        kinds(&out.documents()),
        [
            "Namespace",
            "OperatorGroup",
            "Subscription",
            "ZeroTrustWorkloadIdentityManager",
            "SpireServer",
            "SpireAgent",
            "SpiffeCSIDriver",
            "SpireOIDCDiscoveryProvider",
            "Namespace",
            "OperatorGroup",
            "Subscription",
            "Namespace",
            "ArgoCD"
        ]
    );
}

#[test]
fn add_spoke_yaml_is_stable() {
    let out = ztwim(ADD_SPOKE).success();
    insta::assert_snapshot!("render_add_spoke", out.stdout);
    assert!(out.stderr.contains("IRREVERSIBLE"), "{}", out.stderr);
    assert_eq!(
        kinds(&out.documents()),
        [
            "FeatureGate",
            "ConfigMap",
            "Authentication",
            "ClusterRoleBinding",
            "Secret"
        ]
    );
}

#[test]
fn json_output_is_an_array_of_the_same_objects() {
    for args in [BOOTSTRAP, ADD_SPOKE] {
        let yaml = ztwim(args).success().documents();
        let mut json_args = args.to_vec();
        json_args.extend(["-o", "json"]);
        let out = ztwim(&json_args).success();
        let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
        assert_eq!(json.as_array().expect("an array"), &yaml);
    }
}

#[test]
fn quiet_hides_warnings() {
    let mut args = BOOTSTRAP.to_vec();
    args.push("-q");
    let out = ztwim(&args).success();
    assert_eq!(out.stderr, "");
}

#[test]
fn output_dir_writes_one_file_per_object_and_a_kustomization_per_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("gitops");
    let target_arg = target.to_str().unwrap();
    let out = ztwim(with(BOOTSTRAP, &[("--output-dir", target_arg)], &[])).success();
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    ztwim(with(ADD_SPOKE, &[("--output-dir", target_arg)], &[])).success();

    let mut listing = Vec::new();
    for cluster in ["hub", "spoke-a"] {
        let mut files: Vec<String> = std::fs::read_dir(target.join(cluster))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        for f in &files {
            listing.push(format!("{cluster}/{f}"));
        }
        // The kustomization lists every other file, in apply order, and each file is one object.
        let kustomization: serde_json::Value = kubesim::schema::parse_yaml_documents(
            &std::fs::read_to_string(target.join(cluster).join("kustomization.yaml")).unwrap(),
        )
        .unwrap()
        .remove(0);
        assert_eq!(kustomization["kind"], "Kustomization");
        let resources: Vec<String> = kustomization["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect();
        let mut sorted = resources.clone();
        sorted.sort();
        let others: Vec<String> = files
            .iter()
            .filter(|f| *f != "kustomization.yaml")
            .cloned()
            .collect();
        assert_eq!(sorted, others);
        if cluster == "hub" {
            // bootstrap's objects in apply order, then the spoke's cluster Secret added by add-spoke.
            assert_eq!(resources.last().unwrap(), "01-secret-spoke-a.yaml");
            assert!(resources[0].starts_with("01-namespace"));
        }
        for file in others {
            let docs = kubesim::schema::parse_yaml_documents(
                &std::fs::read_to_string(target.join(cluster).join(&file)).unwrap(),
            )
            .unwrap();
            assert_eq!(docs.len(), 1, "{file}");
        }
    }
    insta::assert_snapshot!("output_dir_layout", listing.join("\n"));
    // The cluster Secret goes to the hub, next to the hub's own objects.
    assert!(
        listing
            .iter()
            .any(|f| f.starts_with("hub/") && f.ends_with("secret-spoke-a.yaml")),
        "{listing:?}"
    );
}

#[test]
fn a_pinned_plugin_is_verified_by_the_init_container_and_not_warned_about() {
    let digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let out = ztwim(with(
        BOOTSTRAP,
        &[("--exec-auth-sha256", &digest.to_uppercase())],
        &[],
    ))
    .success();
    assert!(!out.stderr.contains("not pinned"), "{}", out.stderr);
    let docs = out.documents();
    let argocd = find(&docs, "ArgoCD", None);
    for component in ["server", "controller"] {
        let init = &argocd["spec"][component]["initContainers"][0];
        let env = init["env"].as_array().unwrap();
        assert!(
            env.iter()
                .any(|e| e["name"] == "EXEC_AUTH_SHA256" && e["value"] == digest),
            "{env:?}"
        );
        assert!(
            init["command"][2]
                .as_str()
                .unwrap()
                .contains("sha256sum -c")
        );
    }
}

#[test]
fn a_mirror_url_replaces_the_download_url() {
    let out = ztwim(with(
        BOOTSTRAP,
        &[(
            "--exec-auth-url",
            "https://mirror.example.com/exec-auth/{version}/{arch}.tgz",
        )],
        &[],
    ))
    .success();
    assert!(
        out.stdout
            .contains("https://mirror.example.com/exec-auth/v0.0.7/x86_64.tgz"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("github.com"));
}

#[test]
fn trust_domain_defaults_to_the_apps_domain_and_can_be_set() {
    let docs = ztwim(BOOTSTRAP).success().documents();
    assert_eq!(
        find(&docs, "ZeroTrustWorkloadIdentityManager", None)["spec"]["trustDomain"],
        "apps.hub.example.com"
    );
    let docs = ztwim(with(
        BOOTSTRAP,
        &[("--trust-domain", "corp.example.org")],
        &[],
    ))
    .success()
    .documents();
    assert_eq!(
        find(&docs, "ZeroTrustWorkloadIdentityManager", None)["spec"]["trustDomain"],
        "corp.example.org"
    );
    // The issuer stays on the apps domain: it is where the route is served.
    assert_eq!(
        find(&docs, "SpireServer", None)["spec"]["jwtIssuer"],
        "https://spire-spiffe-oidc-discovery-provider.apps.hub.example.com"
    );
}

#[test]
fn spoke_4_20_needs_no_feature_gate_and_a_trusted_issuer_no_ca() {
    let out = ztwim(with(
        ADD_SPOKE,
        &[("--spoke-version", "4.20")],
        &["--issuer-ca-file"],
    ))
    .success();
    let docs = out.documents();
    assert_eq!(
        kinds(&docs),
        ["Authentication", "ClusterRoleBinding", "Secret"]
    );
    assert!(!out.stderr.contains("IRREVERSIBLE"));
    let provider = &find(&docs, "Authentication", None)["spec"]["oidcProviders"][0];
    assert!(
        provider["issuer"]
            .get("issuerCertificateAuthority")
            .is_none(),
        "{provider}"
    );
}

#[test]
fn least_privilege_binds_its_own_cluster_role() {
    let docs = ztwim(with(ADD_SPOKE, &[("--rbac", "least-privilege")], &[]))
        .success()
        .documents();
    assert_eq!(
        kinds(&docs),
        [
            "FeatureGate",
            "ConfigMap",
            "Authentication",
            "ClusterRole",
            "ClusterRoleBinding",
            "Secret"
        ]
    );
    let role = find(&docs, "ClusterRole", None);
    let binding = find(&docs, "ClusterRoleBinding", None);
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let rules = role["rules"].as_array().unwrap();
    // Reads everything...
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == serde_json::json!(["*"])
                && r["verbs"] == serde_json::json!(["get", "list", "watch"]))
    );
    // ...and writes no RBAC, no Secrets, no CRDs.
    for rule in rules
        .iter()
        .filter(|r| r["verbs"].as_array().unwrap().iter().any(|v| v == "create"))
    {
        for resource in rule["resources"].as_array().unwrap() {
            let resource = resource.as_str().unwrap();
            assert!(
                ![
                    "*",
                    "secrets",
                    "clusterroles",
                    "clusterrolebindings",
                    "roles",
                    "rolebindings",
                    "customresourcedefinitions"
                ]
                .contains(&resource),
                "least-privilege must not write {resource}"
            );
        }
        assert_ne!(rule["apiGroups"], serde_json::json!(["*"]));
    }
}

#[test]
fn insecure_skip_tls_verify_is_explicit_and_warned_about() {
    let out = ztwim(with(
        ADD_SPOKE,
        &[("--insecure-skip-tls-verify", "")],
        &["--spoke-ca-file"],
    ))
    .success();
    assert!(
        out.stderr.contains("warning: --insecure-skip-tls-verify"),
        "{}",
        out.stderr
    );
    let docs = out.documents();
    let config = cluster_secret_config(find(&docs, "Secret", None));
    assert_eq!(
        config["tlsClientConfig"],
        serde_json::json!({"insecure": true})
    );
}

#[test]
fn a_templates_dir_overrides_one_template_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("templates/openshift/spoke/authentication.yaml"),
    )
    .unwrap();
    let changed = original.replace("prefixPolicy: NoPrefix", "prefixPolicy: \"\"");
    assert_ne!(original, changed);
    std::fs::create_dir_all(dir.path().join("openshift/spoke")).unwrap();
    std::fs::write(
        dir.path().join("openshift/spoke/authentication.yaml"),
        changed,
    )
    .unwrap();
    let docs = ztwim(with(
        ADD_SPOKE,
        &[("--templates-dir", dir.path().to_str().unwrap())],
        &[],
    ))
    .success()
    .documents();
    let auth = find(&docs, "Authentication", None);
    assert_eq!(
        auth["spec"]["oidcProviders"][0]["claimMappings"]["username"]["prefixPolicy"],
        ""
    );
    assert_eq!(
        kinds(&docs).len(),
        5,
        "the other templates still come from the binary"
    );
}

#[test]
fn a_template_using_an_undefined_value_is_an_error_naming_template_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("openshift/hub")).unwrap();
    std::fs::write(
        dir.path().join("openshift/hub/argocd.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {{ v.no_such_value }}\n",
    )
    .unwrap();
    ztwim(with(
        BOOTSTRAP,
        &[("--templates-dir", dir.path().to_str().unwrap())],
        &[],
    ))
    .bad_input("template openshift/hub/argocd.yaml: line 4");
}

#[test]
fn a_template_with_a_misspelled_built_in_field_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("openshift/hub")).unwrap();
    std::fs::write(
        dir.path().join("openshift/hub/argocd.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  lables: {a: b}\n",
    )
    .unwrap();
    ztwim(with(
        BOOTSTRAP,
        &[("--templates-dir", dir.path().to_str().unwrap())],
        &[],
    ))
    .bad_input("field .metadata.lables is not part of the Namespace schema");
}

#[test]
fn a_profile_file_replaces_the_built_in_profile() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/openshift.yaml"),
    )
    .unwrap()
    .replace("namespace: ztwim-gitops", "namespace: platform-gitops");
    let path = dir.path().join("mine.yaml");
    std::fs::write(&path, text).unwrap();
    let docs = ztwim(with(
        BOOTSTRAP,
        &[("--profile", path.to_str().unwrap())],
        &[],
    ))
    .success()
    .documents();
    assert_eq!(
        find(&docs, "ArgoCD", None)["metadata"]["namespace"],
        "platform-gitops"
    );
}
