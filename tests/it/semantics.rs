//! What the objects mean together: identities, audiences, the exec plugin plumbing, and the deliberate
//! improvements over the runbook (docs/security.md).

use serde_json::Value;

use crate::support::*;

fn bootstrap(extra: &[(&str, &str)]) -> Vec<Value> {
    ztwim(with(BOOTSTRAP, extra, &[])).success().documents()
}

fn add_spoke(extra: &[(&str, &str)], remove: &[&str]) -> Vec<Value> {
    ztwim(with(ADD_SPOKE, extra, remove)).success().documents()
}

#[test]
fn the_bound_spiffe_ids_are_the_argocd_instance_service_accounts() {
    for ns in ["ztwim-gitops", "platform-gitops"] {
        let hub = bootstrap(&[("--gitops-namespace", ns)]);
        let spoke = add_spoke(&[("--gitops-namespace", ns)], &[]);
        let argocd = find(&hub, "ArgoCD", None);
        let instance = argocd["metadata"]["name"].as_str().unwrap();
        assert_eq!(argocd["metadata"]["namespace"], ns);
        let trust_domain =
            find(&hub, "ZeroTrustWorkloadIdentityManager", None)["spec"]["trustDomain"]
                .as_str()
                .unwrap();
        let expected: Vec<String> = ["argocd-server", "argocd-application-controller"]
            .iter()
            .map(|c| format!("spiffe://{trust_domain}/ns/{ns}/sa/{instance}-{c}"))
            .collect();
        let binding = find(&spoke, "ClusterRoleBinding", None);
        let subjects: Vec<String> = binding["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                assert_eq!(s["kind"], "User");
                assert_eq!(s["apiGroup"], "rbac.authorization.k8s.io");
                s["name"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(subjects, expected);
        // The cluster Secret lives next to the Argo CD instance that reads it.
        assert_eq!(find(&spoke, "Secret", None)["metadata"]["namespace"], ns);
    }
}

#[test]
fn audiences_and_credential_versions_agree() {
    for audience in [None, Some("spoke-a-audience")] {
        let extra: Vec<(&str, &str)> = audience.map(|a| ("--audience", a)).into_iter().collect();
        let spoke = add_spoke(&extra, &[]);
        let provider = &find(&spoke, "Authentication", None)["spec"]["oidcProviders"][0];
        let config = cluster_secret_config(find(&spoke, "Secret", None));
        let exec = &config["execProviderConfig"];
        let want = audience.unwrap_or("openshift-spoke");
        assert_eq!(provider["issuer"]["audiences"], serde_json::json!([want]));
        assert_eq!(exec["env"]["SPIFFE_JWT_AUDIENCE"], want);
        let version = exec["apiVersion"]
            .as_str()
            .unwrap()
            .strip_prefix("client.authentication.k8s.io/")
            .unwrap();
        assert_eq!(exec["env"]["EXEC_CREDENTIAL_VERSION"], version);
        assert_eq!(
            exec["command"],
            "/binaries/k8s-spiffe-workload-jwt-exec-auth"
        );
        assert_eq!(
            exec["env"]["SPIFFE_ENDPOINT_SOCKET"],
            "unix:///run/spire/sockets/spire-agent.sock"
        );
    }
}

#[test]
fn server_and_controller_get_the_init_container_and_both_volumes() {
    let hub = bootstrap(&[]);
    let argocd = find(&hub, "ArgoCD", None);
    for component in ["server", "controller"] {
        let spec = &argocd["spec"][component];
        let init = spec["initContainers"].as_array().unwrap();
        assert_eq!(init.len(), 1);
        assert_eq!(init[0]["name"], "install-jwt-spiffe");
        assert!(
            init[0]["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == "binaries" && m["mountPath"] == "/binaries")
        );
        let mounts = spec["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == "binaries" && m["mountPath"] == "/binaries")
        );
        assert!(mounts.iter().any(|m| m["name"] == "spiffe-workload-api"
            && m["mountPath"] == "/run/spire/sockets"
            && m["readOnly"] == true));
        let volumes = spec["volumes"].as_array().unwrap();
        assert!(
            volumes
                .iter()
                .any(|v| v["name"] == "binaries" && v["emptyDir"].is_object())
        );
        assert!(volumes.iter().any(|v| v["name"] == "spiffe-workload-api"
            && v["csi"]["driver"] == "csi.spiffe.io"
            && v["csi"]["readOnly"] == true));
    }
}

#[test]
fn the_issuer_is_the_same_everywhere() {
    let hub = bootstrap(&[]);
    let spoke = add_spoke(&[], &[]);
    let server = find(&hub, "SpireServer", None)["spec"]["jwtIssuer"].clone();
    assert_eq!(
        find(&hub, "SpireOIDCDiscoveryProvider", None)["spec"]["jwtIssuer"],
        server
    );
    assert_eq!(
        find(&spoke, "Authentication", None)["spec"]["oidcProviders"][0]["issuer"]["issuerURL"],
        server
    );
}

#[test]
fn the_runbook_pitfalls_are_fixed() {
    let spoke = add_spoke(&[], &[]);
    let provider = &find(&spoke, "Authentication", None)["spec"]["oidcProviders"][0];
    // The username is the SPIFFE ID itself, or the ClusterRoleBinding never matches.
    assert_eq!(
        provider["claimMappings"]["username"],
        serde_json::json!({"claim": "sub", "prefixPolicy": "NoPrefix"})
    );
    // The issuer CA ConfigMap exists and is referenced.
    let ca = find(&spoke, "ConfigMap", None);
    assert_eq!(ca["metadata"]["namespace"], "openshift-config");
    assert_eq!(
        provider["issuer"]["issuerCertificateAuthority"]["name"],
        ca["metadata"]["name"]
    );
    let ingress = std::fs::read_to_string(fixtures().join("ingress-ca.crt")).unwrap();
    assert_eq!(
        ca["data"]["ca-bundle.crt"].as_str().unwrap().trim(),
        ingress.trim()
    );
    // The cluster Secret pins the spoke CA and has a clean server URL.
    let secret = find(&spoke, "Secret", None);
    assert_eq!(
        secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
        "cluster"
    );
    assert_eq!(
        secret_field(secret, "server"),
        "https://api.spoke-a.example.com:6443"
    );
    assert_eq!(secret_field(secret, "name"), "spoke-a");
    let config = cluster_secret_config(secret);
    assert_eq!(config["tlsClientConfig"]["insecure"], false);
    use base64::Engine;
    let ca_data = base64::engine::general_purpose::STANDARD
        .decode(config["tlsClientConfig"]["caData"].as_str().unwrap())
        .unwrap();
    let spoke_ca = std::fs::read_to_string(fixtures().join("spoke-ca.crt")).unwrap();
    assert_eq!(String::from_utf8(ca_data).unwrap().trim(), spoke_ca.trim());
    assert!(
        !serde_json::to_string(&config).unwrap().contains("token"),
        "no token in the cluster Secret"
    );
    // Argo CD: no default role for every authenticated user; admins come from the admin groups.
    let hub = bootstrap(&[]);
    let rbac = &find(&hub, "ArgoCD", None)["spec"]["rbac"];
    assert_eq!(rbac["defaultPolicy"], "");
    assert!(
        rbac["policy"]
            .as_str()
            .unwrap()
            .contains("g, cluster-admins, role:admin")
    );
    // A trailing slash on the server URL is dropped, not doubled.
    let spoke = add_spoke(
        &[("--spoke-server", "https://api.spoke-a.example.com:6443/")],
        &[],
    );
    assert_eq!(
        secret_field(find(&spoke, "Secret", None), "server"),
        "https://api.spoke-a.example.com:6443"
    );
}

#[test]
fn every_object_the_tool_owns_is_labelled() {
    let mut docs = bootstrap(&[]);
    docs.extend(add_spoke(&[("--rbac", "least-privilege")], &[]));
    for doc in docs {
        let kind = doc["kind"].as_str().unwrap();
        // FeatureGate and Authentication `cluster` belong to the platform; we only set fields on them.
        if ["FeatureGate", "Authentication"].contains(&kind) {
            assert!(doc["metadata"].get("labels").is_none(), "{kind}");
            continue;
        }
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/managed-by"], "ztwim-hub",
            "{kind}"
        );
    }
}
