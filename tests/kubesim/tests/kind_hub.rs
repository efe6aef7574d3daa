//! The kind side of kubesim: workloads and `cluster-info` on kind clusters, upstream SPIRE
//! recognised by its images (ClusterSPIFFEIDs, the bundle notifier, the OIDC discovery provider
//! on a NodePort), the exec plugin in upstream Argo CD's pods, a kind spoke trusting the hub's
//! issuer through its authentication file, Argo CD syncing to `https://<spoke>-control-plane:6443`,
//! and the mixed fleets (OpenShift hub + kind spoke, kind hub + OpenShift spoke).
//!
//! Objects are applied through the API (kube-rs server-side apply) from hand-written fixtures
//! (`tests/kubesim/tests/fixtures/kind-hub/`, `tests/fixtures/kind/`). Every wait polls with a
//! deadline; nothing asserts on timing.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use common::{Kubectl, admin_client, client_for};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kubesim::argocd_apps::ArgoCdSettings;
use kubesim::tls::Ca;
use kubesim::{KubeUser, Profile, Sim, SimConfig};
use serde_json::{Value, json};

/// Hang guard of every wait.
const GUARD: Duration = Duration::from_secs(60);
const ISSUER: &str = "https://hub-control-plane:30443";
const AUDIENCE: &str = "kind-spoke";
const PLUGIN: &str = "/binaries/k8s-spiffe-workload-jwt-exec-auth";
const SERVER_ID: &str = "spiffe://hub.kind/ns/argocd/sa/argocd-server";
const CONTROLLER_ID: &str = "spiffe://hub.kind/ns/argocd/sa/argocd-application-controller";

// ---------------------------------------------------------------------------------------------
// Helpers.

fn kubesim_fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kind-hub")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A fixture of the workspace (`tests/fixtures/kind/`), shared with the product's tests.
fn repo_fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/kind")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn docs(yaml: &str) -> Vec<Value> {
    kubesim::schema::parse_yaml_documents(yaml).unwrap()
}

async fn api_for(c: &kube::Client, doc: &Value) -> (Api<DynamicObject>, bool) {
    let av = doc["apiVersion"].as_str().unwrap();
    let kind = doc["kind"].as_str().unwrap();
    let (group, version) = av.split_once('/').unwrap_or(("", av));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = kube::discovery::pinned_kind(c, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discovering {av} {kind}: {e}"));
    let namespaced = caps.scope == Scope::Namespaced;
    let api = match doc["metadata"]["namespace"].as_str() {
        Some(ns) if namespaced => Api::namespaced_with(c.clone(), ns, &ar),
        _ => Api::all_with(c.clone(), &ar),
    };
    (api, namespaced)
}

/// Server-side apply every document; namespaced ones without a namespace go to `ns` (as the
/// product installs Argo CD's release manifest).
async fn apply(c: &kube::Client, documents: Vec<Value>, ns: Option<&str>) {
    for mut doc in documents {
        let (_, namespaced) = api_for(c, &doc).await;
        if namespaced
            && doc["metadata"]["namespace"].is_null()
            && let Some(ns) = ns
        {
            doc["metadata"]["namespace"] = json!(ns);
        }
        let (api, _) = api_for(c, &doc).await;
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(
            &name,
            &PatchParams::apply("kind-hub-test").force(),
            &Patch::Apply(&doc),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {} {name}: {e}", doc["kind"]));
    }
}

/// Poll `f` until it returns `Some` (panics after the hang guard).
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn int(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn cond_true(obj: &Value, ty: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

async fn wait_ready(sim: &Sim, cluster: &str, kind: &str, ns: &str, name: &str) -> Value {
    let c = sim.cluster(cluster);
    wait_for(&format!("{kind} {ns}/{name} ready"), || {
        let o = c.get("apps/v1", kind, Some(ns), name)?;
        let ok = match kind {
            "Deployment" => {
                cond_true(&o, "Available")
                    && int(&o, "/status/availableReplicas") >= int(&o, "/spec/replicas").max(1)
            }
            "StatefulSet" => {
                int(&o, "/status/readyReplicas") >= o["spec"]["replicas"].as_i64().unwrap_or(1)
            }
            _ => {
                int(&o, "/status/desiredNumberScheduled") > 0
                    && int(&o, "/status/numberReady") == int(&o, "/status/desiredNumberScheduled")
            }
        };
        ok.then_some(o)
    })
    .await
}

/// The pods labelled `app.kubernetes.io/name=<app>` in `ns`.
fn pods_named(sim: &Sim, cluster: &str, ns: &str, app: &str) -> Vec<Value> {
    sim.cluster(cluster)
        .list("v1", "Pod", Some(ns))
        .into_iter()
        .filter(|p| p.pointer("/metadata/labels/app.kubernetes.io~1name") == Some(&json!(app)))
        .collect()
}

/// The one pod labelled `app.kubernetes.io/name=<app>` in `ns`.
fn pod_named(sim: &Sim, cluster: &str, ns: &str, app: &str) -> Value {
    let pods: Vec<Value> = sim
        .cluster(cluster)
        .list("v1", "Pod", Some(ns))
        .into_iter()
        .filter(|p| p.pointer("/metadata/labels/app.kubernetes.io~1name") == Some(&json!(app)))
        .collect();
    assert_eq!(pods.len(), 1, "one {app} pod in {ns}: {pods:#?}");
    pods[0].clone()
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap().to_string()
}

/// The exec-auth plumbing the product merges into argocd-server and the application controller.
fn add_plumbing(doc: &mut Value, version: &str, init: bool, csi: bool) {
    let spec = &mut doc["spec"]["template"]["spec"];
    if init {
        spec["initContainers"] = json!([{
            "name": "install-jwt-spiffe",
            "image": "docker.io/curlimages/curl:8.16.0",
            "env": [{"name": "EXEC_AUTH_URL", "value": format!("https://github.com/spiffe/k8s-spiffe-workload-jwt-exec-auth/releases/download/{version}/k8s-spiffe-workload-jwt-exec-auth_Linux_x86_64.tar.gz")},
                    {"name": "EXEC_AUTH_SHA256", "value": ""}],
            "command": ["/bin/sh", "-c", "curl -fsSL -o /tmp/a.tgz \"$EXEC_AUTH_URL\" && tar -xzf /tmp/a.tgz -C /tmp k8s-spiffe-workload-jwt-exec-auth && install -m 0755 /tmp/k8s-spiffe-workload-jwt-exec-auth /binaries/"],
            "volumeMounts": [{"name": "binaries", "mountPath": "/binaries"}]
        }]);
    }
    let volumes = spec["volumes"].as_array_mut().unwrap();
    volumes.push(json!({"name": "binaries", "emptyDir": {}}));
    if csi {
        volumes.push(json!({"name": "spiffe-workload-api", "csi": {"driver": "csi.spiffe.io", "readOnly": true}}));
    }
    let mounts = spec["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap();
    mounts.push(json!({"name": "binaries", "mountPath": "/binaries"}));
    if csi {
        mounts.push(json!({"name": "spiffe-workload-api", "mountPath": "/run/spire/sockets", "readOnly": true}));
    }
}

/// Upstream Argo CD (the fixture) with the plumbing in argocd-server and the controller.
fn argocd_install(version: &str) -> Vec<Value> {
    let mut out = docs(&repo_fixture("argocd-install.yaml"));
    for d in out.iter_mut() {
        let name = d["metadata"]["name"].as_str().unwrap_or_default();
        let workload = matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet"));
        if workload && (name == "argocd-server" || name == "argocd-application-controller") {
            add_plumbing(d, version, true, true);
        }
    }
    out
}

/// The serving certificate Secret of the OIDC discovery provider (the product makes one like
/// it): a new CA, a certificate for the issuer host. Returns `(secret, CA PEM)`.
fn oidc_tls_secret(hosts: &[&str]) -> (Value, String) {
    let ca = Ca::new("kind-hub-oidc-ca").unwrap();
    let pair = ca.issue_server(hosts, &[]).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "spire-oidc-tls", "namespace": "spire"},
        "data": {"tls.crt": b64(&pair.cert_pem), "tls.key": b64(&pair.key_pem), "ca.crt": b64(&ca.cert_pem())}});
    (secret, ca.cert_pem())
}

const OIDC_HOSTS: &[&str] = &[
    "hub-control-plane",
    "spire-oidc-discovery-provider",
    "localhost",
];

/// SPIRE, the OIDC discovery provider and (optionally) upstream Argo CD on the kind hub "hub",
/// through the API. Returns the CA of the provider's serving certificate.
async fn bring_up_hub(sim: &Sim, argocd: bool) -> String {
    let c = admin_client(sim, "hub").await;
    apply(&c, docs(&repo_fixture("spire-crds.yaml")), None).await;
    apply(&c, docs(&kubesim_fixture("spire.yaml")), None).await;
    wait_ready(sim, "hub", "StatefulSet", "spire", "spire-server").await;
    wait_ready(sim, "hub", "DaemonSet", "spire", "spire-agent").await;
    wait_ready(sim, "hub", "DaemonSet", "spire", "spiffe-csi-driver").await;
    let (secret, ca) = oidc_tls_secret(OIDC_HOSTS);
    apply(&c, vec![secret], None).await;
    apply(
        &c,
        docs(&kubesim_fixture("oidc-discovery-provider.yaml")),
        None,
    )
    .await;
    wait_ready(
        sim,
        "hub",
        "Deployment",
        "spire",
        "spire-oidc-discovery-provider",
    )
    .await;
    if argocd {
        apply(
            &c,
            vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}})],
            None,
        )
        .await;
        apply(&c, argocd_install("v0.0.7"), Some("argocd")).await;
        wait_ready(sim, "hub", "Deployment", "argocd", "argocd-server").await;
        wait_ready(
            sim,
            "hub",
            "StatefulSet",
            "argocd",
            "argocd-application-controller",
        )
        .await;
    }
    ca
}

/// A reqwest client through the env file's proxy trusting only `ca_pem`.
fn https_via_proxy(sim: &Sim, ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::https(format!("http://{}", sim.proxy_addr())).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The proxy's answer to `CONNECT host_port` (its status code).
async fn proxy_connect(sim: &Sim, host_port: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(sim.proxy_addr())
        .await
        .unwrap();
    s.write_all(format!("CONNECT {host_port} HTTP/1.1\r\nHost: {host_port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn exec(
    c: &kube::Client,
    ns: &str,
    pod: &str,
    container: &str,
    cmd: Vec<String>,
) -> (String, String, i32) {
    let pods: Api<Pod> = Api::namespaced(c.clone(), ns);
    let mut p = pods
        .exec(
            pod,
            cmd,
            &AttachParams::default()
                .container(container)
                .stdout(true)
                .stderr(true)
                .stdin(false),
        )
        .await
        .unwrap();
    let mut stdout = p.stdout().unwrap();
    let mut stderr = p.stderr().unwrap();
    let status = p.take_status().unwrap();
    let run = async {
        let (mut out, mut err) = (String::new(), String::new());
        let (a, b) = tokio::join!(
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out),
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err)
        );
        a.unwrap();
        b.unwrap();
        (out, err, exit_code(&status.await.unwrap_or_default()))
    };
    tokio::time::timeout(GUARD, run)
        .await
        .expect("exec answers")
}

fn exit_code(status: &Status) -> i32 {
    if status.status.as_deref() == Some("Success") {
        return 0;
    }
    status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.parse().ok())
        .unwrap_or(-1)
}

fn plugin_cmd(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "env".into(),
        "SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/sockets/spire-agent.sock".into(),
        format!("SPIFFE_JWT_AUDIENCE={AUDIENCE}"),
        "EXEC_CREDENTIAL_VERSION=v1beta1".into(),
        PLUGIN.into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The token of the ExecCredential the plugin printed.
fn token_of(stdout: &str) -> String {
    let doc = &docs(stdout)[0];
    assert_eq!(doc["kind"], "ExecCredential", "{stdout}");
    doc["status"]["token"].as_str().unwrap().to_string()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Verify `token` against a JWKS as a relying party would.
fn verify(token: &str, jwks: &Value) -> Value {
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .cloned()
            .expect("the token's kid is in the JWKS"),
    )
    .unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[AUDIENCE]);
    v.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &v,
    )
    .expect("the token verifies")
    .claims
}

/// `SelfSubjectReview` with a bearer token: the user name, or the HTTP status.
async fn whoami(sim: &Sim, cluster: &str, token: &str) -> Result<String, u16> {
    let client = client_for(
        &sim.kubeconfig_with_user(cluster, cluster, &KubeUser::token(token)),
        cluster,
    )
    .await;
    let api: Api<SelfSubjectReview> = Api::all(client);
    match api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(r) => Ok(r
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap_or_default()),
        Err(kube::Error::Api(s)) => Err(s.code),
        Err(e) => panic!("whoami: {e}"),
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const EMPTY_AUTHN: &str =
    "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n";

/// What the product writes on a kind spoke: a JWT authenticator for `issuer` with its CA.
fn authn_config(issuer: &str, ca_pem: &str) -> String {
    serde_json::to_string_pretty(&json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": {"url": issuer, "certificateAuthority": ca_pem, "audiences": [AUDIENCE]},
            "claimMappings": {"username": {"claim": "sub", "prefix": ""}}
        }]
    }))
    .unwrap()
}

/// A hub and a spoke whose authentication file starts empty.
fn start_pair(hub: Profile, spoke: Profile, authn: &Path) -> Sim {
    start_pair_with_delay(hub, spoke, authn, 0)
}

fn start_pair_with_delay(hub: Profile, spoke: Profile, authn: &Path, delay_ms: u64) -> Sim {
    let mut config = SimConfig::new()
        .controller_delay(Duration::from_millis(delay_ms))
        .cluster("hub", hub)
        .cluster("spoke", spoke.clone())
        .argocd_settings(ArgoCdSettings {
            resync: Duration::from_millis(200),
            exec_timeout: Duration::from_secs(5),
            ..Default::default()
        });
    if !spoke.is_openshift() {
        std::fs::write(authn, EMPTY_AUTHN).unwrap();
        config = config.authentication_config("spoke", authn);
    }
    Sim::start(config).expect("sim starts")
}

/// The server and CA a kind cluster publishes in `kube-public/cluster-info`.
fn cluster_info(sim: &Sim, cluster: &str) -> (String, String) {
    let cm = sim
        .cluster(cluster)
        .get("v1", "ConfigMap", Some("kube-public"), "cluster-info")
        .expect("cluster-info");
    let kc = &docs(cm["data"]["kubeconfig"].as_str().unwrap())[0];
    let clusters = kc["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1);
    let server = clusters[0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string();
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            clusters[0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    (server, String::from_utf8(ca).unwrap())
}

// ---------------------------------------------------------------------------------------------
// A kind cluster on its own.

#[tokio::test]
async fn kind_runs_workloads_and_publishes_cluster_info() {
    let sim = Sim::start(SimConfig::new().cluster("k1", Profile::kind("1.34"))).unwrap();
    let k1 = sim.cluster("k1");
    let c = admin_client(&sim, "k1").await;
    assert_eq!(
        k1.control_plane_url().as_deref(),
        Some("https://k1-control-plane:6443")
    );
    apply(
        &c,
        docs(
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {team: a}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: apps}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: apps}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 2Gi}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: apps}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: busybox}]}
"#,
        ),
        None,
    )
    .await;
    wait_ready(&sim, "k1", "Deployment", "apps", "web").await;
    wait_ready(&sim, "k1", "StatefulSet", "apps", "db").await;
    let ds = wait_ready(&sim, "k1", "DaemonSet", "apps", "agent").await;
    assert_eq!(ds["status"]["desiredNumberScheduled"], 3, "one per node");
    let pvc = k1
        .get("v1", "PersistentVolumeClaim", Some("apps"), "data-db-0")
        .expect("the claim of the volumeClaimTemplate");
    assert_eq!(pvc["status"]["phase"], "Bound");
    let nodes: Vec<String> = k1
        .list("v1", "Pod", Some("apps"))
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .collect();
    for n in ["k1-control-plane", "k1-worker", "k1-worker2"] {
        assert!(nodes.iter().any(|x| x == n), "a pod on {n}: {nodes:?}");
    }
    // The namespace label, also after an update that leaves it out.
    let ns = k1.get("v1", "Namespace", None, "apps").unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "apps"
    );
    let mut ns2 = ns.clone();
    ns2["metadata"]["labels"] = json!({"team": "b"});
    let ns2 = k1.put(ns2).unwrap();
    assert_eq!(
        ns2["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "apps"
    );
    assert_eq!(ns2["metadata"]["labels"]["team"], "b");
    // Garbage collection: deleting the Deployment deletes its ReplicaSet and pods.
    k1.delete("apps/v1", "Deployment", Some("apps"), "web")
        .unwrap();
    wait_for("the web pods to be collected", || {
        let left = k1
            .list("v1", "Pod", Some("apps"))
            .into_iter()
            .any(|p| p.pointer("/metadata/labels/app") == Some(&json!("web")))
            || !k1.list("apps/v1", "ReplicaSet", Some("apps")).is_empty();
        (!left).then_some(())
    })
    .await;

    // cluster-info: what kubeadm publishes, readable anonymously at the control-plane endpoint.
    let (server, ca) = cluster_info(&sim, "k1");
    assert_eq!(server, "https://k1-control-plane:6443");
    assert_eq!(ca, k1.ca_pem());
    let anonymous = https_via_proxy(&sim, &ca);
    let r = anonymous
        .get(format!(
            "{server}/api/v1/namespaces/kube-public/configmaps/cluster-info"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["data"]["kubeconfig"]
            .as_str()
            .unwrap()
            .contains(&server)
    );
    let r = anonymous
        .get(format!(
            "{server}/api/v1/namespaces/default/configmaps/kube-root-ca.crt"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "anonymous users read cluster-info only");
    let role = k1
        .get(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            Some("kube-public"),
            "kubeadm:bootstrap-signer-clusterinfo",
        )
        .unwrap();
    assert_eq!(role["subjects"][0]["name"], "system:anonymous");

    // kubectl: get pods -A, and the control-plane endpoint through the env file's proxy.
    let kubectl = Kubectl::new(&sim.kubeconfig_yaml());
    let out = kubectl.ok(&["get", "pods", "-A"]);
    assert!(out.contains("db-0") && out.contains("agent-"), "{out}");
    let proxied = kubectl
        .command(&["--server", &server, "get", "namespaces"])
        .env("HTTPS_PROXY", format!("http://{}", sim.proxy_addr()))
        .output()
        .unwrap();
    assert!(
        proxied.status.success(),
        "{}",
        String::from_utf8_lossy(&proxied.stderr)
    );
    assert!(String::from_utf8_lossy(&proxied.stdout).contains("apps"));
}

// ---------------------------------------------------------------------------------------------
// A kind hub and a kind spoke, as the product sets them up.

#[tokio::test]
async fn kind_hub_serves_its_issuer_and_argocd_identities_to_a_kind_spoke() {
    kind_hub_and_spoke(0).await;
}

#[tokio::test]
async fn kind_hub_and_spoke_with_a_controller_delay() {
    kind_hub_and_spoke(100).await;
}

async fn kind_hub_and_spoke(delay_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let authn = dir.path().join("authentication-config.yaml");
    let sim = start_pair_with_delay(
        Profile::kind("1.34"),
        Profile::kind("1.34"),
        &authn,
        delay_ms,
    );
    let hub = sim.cluster("hub");
    let spoke = sim.cluster("spoke");
    let ca = bring_up_hub(&sim, true).await;
    let c = admin_client(&sim, "hub").await;

    // The trust bundle and the ClusterSPIFFEID stats.
    let bundle = hub
        .get("v1", "ConfigMap", Some("spire"), "spire-bundle")
        .unwrap();
    assert!(
        bundle["data"]["bundle.crt"]
            .as_str()
            .is_some_and(|p| p.contains("BEGIN CERTIFICATE")),
        "{bundle:#}"
    );
    let stats = wait_for("ClusterSPIFFEID stats", || {
        let o = hub.get(
            "spire.spiffe.io/v1alpha1",
            "ClusterSPIFFEID",
            None,
            "ztwim-hub-argocd",
        )?;
        let s = o.pointer("/status/stats")?.clone();
        (s["podsSelected"] == 4).then_some(s)
    })
    .await;
    assert_eq!(stats["namespacesSelected"], 1);
    assert_eq!(stats["entriesToSet"], 4);
    assert_eq!(stats["podEntryRenderFailures"], 0);
    let provider_pod = pod_named(&sim, "hub", "spire", "spire-oidc-discovery-provider");
    assert_eq!(
        hub.pod_spiffe_id("spire", &name_of(&provider_pod))
            .as_deref(),
        Some("spiffe://hub.kind/ns/spire/sa/spire-oidc-discovery-provider")
    );

    // The issuer through the env file's proxy, verified against the serving CA.
    let http = https_via_proxy(&sim, &ca);
    let doc: Value = http
        .get(format!("{ISSUER}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["jwks_uri"], format!("{ISSUER}/keys"));
    let jwks: Value = http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, hub.spire_jwks());
    // A host the provider does not serve.
    let r = http
        .get(format!("{ISSUER}/.well-known/openid-configuration"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        "domain \"evil.example\" is not allowed\n"
    );
    // Every node's port is routed (the kind docker network); other ports are not.
    assert_eq!(proxy_connect(&sim, "hub-worker2:30443").await, 200);
    assert_eq!(proxy_connect(&sim, "hub-control-plane:30444").await, 502);

    // The exec plugin in upstream Argo CD's pods.
    let server_pod = name_of(&pod_named(&sim, "hub", "argocd", "argocd-server"));
    let (out, err, code) = exec(&c, "argocd", &server_pod, "argocd-server", plugin_cmd(&[])).await;
    assert_eq!(code, 0, "{err}");
    let server_token = token_of(&out);
    let cl = verify(&server_token, &jwks);
    assert_eq!(cl["sub"], SERVER_ID);
    assert_eq!(cl["aud"], json!([AUDIENCE]));
    let (out, err, code) = exec(
        &c,
        "argocd",
        "argocd-application-controller-0",
        "argocd-application-controller",
        plugin_cmd(&["-timeout", "5s"]),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(verify(&token_of(&out), &jwks)["sub"], CONTROLLER_ID);
    // In other containers of the pod the plugin does not exist.
    let (_, _, code) = exec(
        &c,
        "argocd",
        &server_pod,
        "argocd-server",
        vec!["ls".into()],
    )
    .await;
    assert_eq!(code, 127);

    // The kind spoke trusts the hub's issuer once its authentication file says so.
    assert_eq!(whoami(&sim, "spoke", &server_token).await, Err(401));
    write_atomically(&authn, &authn_config(ISSUER, &ca));
    wait_for("the spoke to reload its authentication file", || {
        (spoke.oidc_authn().reload_status().successes >= 2).then_some(())
    })
    .await;
    assert_eq!(
        whoami(&sim, "spoke", &server_token).await,
        Ok(SERVER_ID.to_string()),
        "{:?}",
        spoke.oidc_authn().last_error()
    );

    // Argo CD on the hub syncs to the spoke's control-plane endpoint with the plugin's tokens.
    let (spoke_server, spoke_ca) = cluster_info(&sim, "spoke");
    assert_eq!(spoke_server, "https://spoke-control-plane:6443");
    spoke
        .put(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "ztwim-gitops-admins"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CONTROLLER_ID}]}))
        .unwrap();
    let config = json!({
        "execProviderConfig": {"command": PLUGIN, "apiVersion": "client.authentication.k8s.io/v1beta1",
            "env": {"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/sockets/spire-agent.sock", "SPIFFE_JWT_AUDIENCE": AUDIENCE, "EXEC_CREDENTIAL_VERSION": "v1beta1"}},
        "tlsClientConfig": {"insecure": false, "caData": base64::engine::general_purpose::STANDARD.encode(spoke_ca.as_bytes())}
    });
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guestbook\ndata:\n  greeting: hello from the kind hub\n",
    )
    .unwrap();
    apply(
        &c,
        vec![
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "spoke", "namespace": "argocd", "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
                   "stringData": {"name": "spoke", "server": spoke_server, "config": config.to_string()}}),
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                   "metadata": {"name": "guestbook", "namespace": "argocd"},
                   "spec": {"project": "default",
                            "source": {"repoURL": format!("file://{}", manifests.path().display()), "path": "."},
                            "destination": {"server": spoke_server, "namespace": "guestbook"},
                            "syncPolicy": {"automated": {}, "syncOptions": ["CreateNamespace=true"]}}}),
        ],
        None,
    )
    .await;
    let app = wait_for("the Application to sync", || {
        let a = hub.get(
            "argoproj.io/v1alpha1",
            "Application",
            Some("argocd"),
            "guestbook",
        )?;
        (a.pointer("/status/sync/status") == Some(&json!("Synced"))
            && a.pointer("/status/health/status") == Some(&json!("Healthy")))
        .then_some(a)
    })
    .await;
    assert!(app["status"]["conditions"].is_null(), "{app:#}");
    let cm = spoke
        .get("v1", "ConfigMap", Some("guestbook"), "guestbook")
        .expect("synced to the spoke");
    assert_eq!(cm["data"]["greeting"], "hello from the kind hub");
}

// ---------------------------------------------------------------------------------------------
// What keeps upstream SPIRE from working.

fn argocd_like(name: &str, ns: &str, version: &str, init: bool, csi: bool) -> Value {
    let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "argocd-server"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "argocd-server"}},
                              "spec": {"serviceAccountName": "argocd-server",
                                       "containers": [{"name": "argocd-server", "image": "quay.io/argoproj/argocd:v3.1.9", "volumeMounts": []}],
                                       "volumes": []}}}});
    add_plumbing(&mut d, version, init, csi);
    d
}

fn waiting_message(pod: &Value, container: &str) -> Option<String> {
    pod.pointer("/status/containerStatuses")?
        .as_array()?
        .iter()
        .find(|s| s["name"] == container)?
        .pointer("/state/waiting/message")?
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn upstream_spire_configuration_errors_keep_pods_not_ready() {
    let sim = Sim::start(SimConfig::new().cluster("hub", Profile::kind("1.34"))).unwrap();
    let hub = sim.cluster("hub");
    let c = admin_client(&sim, "hub").await;
    apply(&c, docs(&repo_fixture("spire-crds.yaml")), None).await;
    // server.conf in HCL: kubesim reads JSON only.
    let mut spire = docs(&kubesim_fixture("spire.yaml"));
    let good_conf = spire
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "spire-server")
        .unwrap()
        .clone();
    for d in spire.iter_mut() {
        if d["kind"] == "ConfigMap" && d["metadata"]["name"] == "spire-server" {
            d["data"]["server.conf"] = json!("server {\n  trust_domain = \"hub.kind\"\n}\n");
        }
    }
    apply(&c, spire, None).await;
    let why = wait_for("the server container to wait", || {
        let p = hub.get("v1", "Pod", Some("spire"), "spire-server-0")?;
        waiting_message(&p, "spire-server")
    })
    .await;
    assert!(
        why.contains("JSON only") && why.contains("server.conf"),
        "{why}"
    );
    let pod = hub
        .get("v1", "Pod", Some("spire"), "spire-server-0")
        .unwrap();
    assert!(!cond_true(&pod, "Ready"), "{pod:#}");
    assert!(
        waiting_message(&pod, "spire-controller-manager").is_none(),
        "only the server's container waits"
    );
    // Fixing the ConfigMap lets it start.
    apply(&c, vec![good_conf], None).await;
    wait_ready(&sim, "hub", "StatefulSet", "spire", "spire-server").await;

    // A serving certificate that is not one: the provider's pod is not Ready, nothing is routed.
    apply(
        &c,
        vec![json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "spire-oidc-tls", "namespace": "spire"},
                    "stringData": {"tls.crt": "not a certificate", "tls.key": "nor a key"}})],
        None,
    )
    .await;
    apply(
        &c,
        docs(&kubesim_fixture("oidc-discovery-provider.yaml")),
        None,
    )
    .await;
    let why = wait_for("the provider container to wait", || {
        pods_named(&sim, "hub", "spire", "spire-oidc-discovery-provider")
            .iter()
            .find_map(|p| waiting_message(p, "spire-oidc-discovery-provider"))
    })
    .await;
    assert!(why.contains("PEM"), "{why}");
    assert_eq!(proxy_connect(&sim, "hub-control-plane:30443").await, 502);
    let (secret, ca) = oidc_tls_secret(OIDC_HOSTS);
    let mut secret = secret;
    secret["stringData"] = Value::Null;
    apply(&c, vec![secret], None).await;
    wait_ready(
        &sim,
        "hub",
        "Deployment",
        "spire",
        "spire-oidc-discovery-provider",
    )
    .await;
    let http = https_via_proxy(&sim, &ca);
    let keys = || async {
        let r = http.get(format!("{ISSUER}/keys")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(keys().await.0, 200);

    // Without a SPIFFE ID for its own pod, the provider has no keys (the discovery document
    // is still served); the same with another trust domain in workload_api.
    hub.delete(
        "spire.spiffe.io/v1alpha1",
        "ClusterSPIFFEID",
        None,
        "ztwim-hub-oidc-discovery-provider",
    )
    .unwrap();
    let provider_pod = name_of(&pod_named(
        &sim,
        "hub",
        "spire",
        "spire-oidc-discovery-provider",
    ));
    wait_for("the provider's identity to go", || {
        hub.pod_spiffe_id("spire", &provider_pod)
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(keys().await, (500, "document not available\n".to_string()));
    let r = http
        .get(format!("{ISSUER}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    apply(
        &c,
        docs(&kubesim_fixture("spire.yaml"))
            .into_iter()
            .filter(|d| d["metadata"]["name"] == "ztwim-hub-oidc-discovery-provider")
            .collect(),
        None,
    )
    .await;
    wait_for("the provider's identity", || {
        hub.pod_spiffe_id("spire", &provider_pod).map(|_| ())
    })
    .await;
    assert_eq!(keys().await.0, 200);
    let mut cm = docs(&kubesim_fixture("oidc-discovery-provider.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    let conf = cm["data"]["oidc-discovery-provider.conf"]
        .as_str()
        .unwrap()
        .replace(
            "\"trust_domain\": \"hub.kind\"",
            "\"trust_domain\": \"other.kind\"",
        );
    cm["data"]["oidc-discovery-provider.conf"] = json!(conf);
    apply(&c, vec![cm], None).await;
    assert_eq!(
        keys().await.0,
        500,
        "workload_api.trust_domain is not the server's"
    );
}

#[tokio::test]
async fn cluster_spiffe_ids_select_render_and_count_and_the_plugin_follows_them() {
    let sim = Sim::start(SimConfig::new().cluster("hub", Profile::kind("1.34"))).unwrap();
    let hub = sim.cluster("hub");
    let c = admin_client(&sim, "hub").await;
    bring_up_hub(&sim, false).await;
    let ns = |name: &str, labels: Value| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    apply(
        &c,
        vec![
            ns("argocd", json!({})),
            ns("team-a", json!({"team": "a"})),
            ns("team-b", json!({"team": "b"})),
            ns("noinit", json!({})),
            ns("nocsi", json!({})),
        ],
        None,
    )
    .await;
    let csid = |name: &str, spec: Value| json!({"apiVersion": "spire.spiffe.io/v1alpha1", "kind": "ClusterSPIFFEID", "metadata": {"name": name}, "spec": spec});
    apply(
        &c,
        vec![
            // Teams: matchExpressions on namespaces and pods, an ID from a label.
            csid("teams", json!({
                "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/team/{{ index .PodMeta.Labels \"app.kubernetes.io/name\" }}/{{ .PodSpec.NodeName }}",
                "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]},
                "podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "Exists"}, {"key": "canary", "operator": "DoesNotExist"}]}})),
            // A template naming a label the pods lack renders an invalid ID.
            csid("broken", json!({
                "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/{{ .PodMeta.Labels.missing }}",
                "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["b", "c"]},
                                                           {"key": "team", "operator": "Exists"}]}})),
            // Another trust domain: the server refuses the entries.
            csid("elsewhere", json!({
                "spiffeIDTemplate": "spiffe://elsewhere.example/{{ .PodMeta.Name }}",
                "namespaceSelector": {"matchLabels": {"team": "b"}}})),
            // The same IDs as ztwim-hub-argocd: masked.
            csid("duplicate", json!({
                "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}",
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "argocd"}}})),
            // kube-system is in the manager's ignoreNamespaces.
            csid("system", json!({
                "spiffeIDTemplate": "spiffe://{{ .TrustDomain }}/system",
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}})),
        ],
        None,
    )
    .await;
    apply(
        &c,
        vec![
            argocd_like("argocd-server", "argocd", "v0.0.6", true, true),
            argocd_like("argocd-server", "team-a", "v0.0.7", true, true),
            argocd_like("argocd-server", "team-b", "v0.0.7", true, true),
            argocd_like("argocd-server", "noinit", "v0.0.7", false, true),
            argocd_like("argocd-server", "nocsi", "v0.0.7", true, false),
        ],
        None,
    )
    .await;
    for ns in ["argocd", "team-a", "team-b", "noinit", "nocsi"] {
        wait_ready(&sim, "hub", "Deployment", ns, "argocd-server").await;
    }
    let stats_of = |name: &str| {
        hub.get("spire.spiffe.io/v1alpha1", "ClusterSPIFFEID", None, name)
            .and_then(|o| o.pointer("/status/stats").cloned())
    };
    // Of two ClusterSPIFFEIDs declaring the same entries, the older one (creation second, then
    // uid) sets them and the other's are masked.
    let n = |name: &str, field: &str| stats_of(name).and_then(|s| s[field].as_i64());
    wait_for("stats for every pod", || {
        let masked = n("duplicate", "entriesMasked")? + n("ztwim-hub-argocd", "entriesMasked")?;
        let set = n("duplicate", "entriesToSet")? + n("ztwim-hub-argocd", "entriesToSet")?;
        (masked == 1
            && set == 1
            && n("teams", "entriesToSet")? == 1
            && n("elsewhere", "entryFailures")? == 1)
            .then_some(())
    })
    .await;
    let st = |name: &str| stats_of(name).unwrap();
    assert_eq!(st("teams")["namespacesSelected"], 1);
    assert_eq!(st("teams")["podsSelected"], 1);
    assert_eq!(st("broken")["podsSelected"], 1);
    assert_eq!(st("broken")["podEntryRenderFailures"], 1);
    assert_eq!(st("broken")["entriesToSet"], 0);
    assert_eq!(st("duplicate")["podsSelected"], 1);
    assert_eq!(st("system")["namespacesSelected"], 1);
    assert_eq!(st("system")["namespacesIgnored"], 1);
    assert_eq!(st("system")["podsSelected"], 0);

    let server_in = |ns: &str| name_of(&pod_named(&sim, "hub", ns, "argocd-server"));
    let run = |ns: &'static str, extra: &'static [&'static str]| {
        let c = c.clone();
        let pod = server_in(ns);
        async move { exec(&c, ns, &pod, "argocd-server", plugin_cmd(extra)).await }
    };
    // v0.0.6 (argocd): the token of ztwim-hub-argocd, expiring after exp (the bug).
    let (out, err, code) = run("argocd", &[]).await;
    assert_eq!(code, 0, "{err}");
    let cred = &docs(&out)[0];
    let cl = claims(cred["status"]["token"].as_str().unwrap());
    assert_eq!(cl["sub"], SERVER_ID);
    assert_eq!(cl["iss"], ISSUER);
    let expiry = cred["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    assert!(
        expiry > cl["exp"].as_i64().unwrap(),
        "v0.0.6 expires after exp"
    );
    // v0.0.7 (team-a): the teams ID, expiring before exp.
    let (out, err, code) = run("team-a", &[]).await;
    assert_eq!(code, 0, "{err}");
    let cred = &docs(&out)[0];
    let cl = claims(cred["status"]["token"].as_str().unwrap());
    let node = pod_named(&sim, "hub", "team-a", "argocd-server")["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        cl["sub"],
        format!("spiffe://hub.kind/team/argocd-server/{node}")
    );
    let expiry = cred["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    assert!(
        expiry < cl["exp"].as_i64().unwrap(),
        "v0.0.7 expires before exp"
    );
    // team-b: only an entry the server refused, so no identity: the plugin waits (until its
    // -timeout, as it would forever without one).
    let (_, err, code) = run("team-b", &["-timeout", "1s"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("context deadline exceeded"), "{err}");
    // No init container: not installed.
    let (_, err, code) = run("noinit", &[]).await;
    assert_eq!(code, 127, "{err}");
    // No CSI volume at the socket's directory: it waits.
    let (_, err, code) = run("nocsi", &["-timeout", "1s"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("context deadline exceeded"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Mixed fleets.

fn preserve_crd(group: &str, kind: &str, plural: &str, scope: &str, version: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": format!("{plural}.{group}")},
           "spec": {"group": group, "scope": scope,
                    "names": {"kind": kind, "plural": plural, "singular": kind.to_ascii_lowercase(), "listKind": format!("{kind}List")},
                    "versions": [{"name": version, "served": true, "storage": true, "subresources": {"status": {}},
                                  "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

/// ZTWIM on an OpenShift hub (the operator Deployment and the operand CRs, put directly);
/// returns the Route-served issuer.
async fn ztwim_hub(sim: &Sim) -> String {
    let hub = sim.cluster("hub");
    let op = "operator.openshift.io";
    for (kind, plural) in [
        (
            "ZeroTrustWorkloadIdentityManager",
            "zerotrustworkloadidentitymanagers",
        ),
        ("SpireServer", "spireservers"),
        ("SpireAgent", "spireagents"),
        ("SpiffeCSIDriver", "spiffecsidrivers"),
        ("SpireOIDCDiscoveryProvider", "spireoidcdiscoveryproviders"),
    ] {
        hub.put(preserve_crd(op, kind, plural, "Cluster", "v1alpha1"))
            .unwrap();
    }
    let ns = "zero-trust-workload-identity-manager";
    hub.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .unwrap();
    hub.put(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "zero-trust-workload-identity-manager-controller-manager", "namespace": ns, "labels": {"name": "zero-trust-workload-identity-manager"}},
        "spec": {"selector": {"matchLabels": {"name": "zero-trust-workload-identity-manager"}},
                 "template": {"metadata": {"labels": {"name": "zero-trust-workload-identity-manager"}},
                              "spec": {"containers": [{"name": "manager", "image": "registry.redhat.io/ztwim/operator:v1"}]}}}}))
        .unwrap();
    let issuer = format!("https://oidc.{}", hub.apps_domain());
    let cr = |kind: &str, spec: Value| json!({"apiVersion": "operator.openshift.io/v1alpha1", "kind": kind, "metadata": {"name": "cluster"}, "spec": spec});
    for obj in [
        cr(
            "ZeroTrustWorkloadIdentityManager",
            json!({"trustDomain": "hub.openshift", "clusterName": "hub"}),
        ),
        cr("SpireServer", json!({"jwtIssuer": issuer})),
        cr("SpireAgent", json!({})),
        cr("SpiffeCSIDriver", json!({})),
        cr("SpireOIDCDiscoveryProvider", json!({"jwtIssuer": issuer})),
    ] {
        hub.put(obj).unwrap();
    }
    wait_for("the OIDC provider to be Ready", || {
        let o = hub.get(
            "operator.openshift.io/v1alpha1",
            "SpireOIDCDiscoveryProvider",
            None,
            "cluster",
        )?;
        cond_true(&o, "Ready").then_some(())
    })
    .await;
    issuer
}

#[tokio::test]
async fn an_openshift_hub_issuer_is_trusted_by_a_kind_spoke() {
    let dir = tempfile::tempdir().unwrap();
    let authn = dir.path().join("authentication-config.yaml");
    let sim = start_pair(Profile::openshift("4.20"), Profile::kind("1.34"), &authn);
    let hub = sim.cluster("hub");
    let spoke = sim.cluster("spoke");
    let issuer = ztwim_hub(&sim).await;
    let sub =
        "spiffe://hub.openshift/ns/ztwim-gitops/sa/openshift-gitops-argocd-application-controller";
    let now = jiff::Timestamp::now().as_second();
    let token = hub.spire_sign(
        &json!({"sub": sub, "aud": [AUDIENCE], "iss": issuer, "iat": now, "exp": now + 300}),
    );
    write_atomically(&authn, &authn_config(&issuer, hub.ingress_ca_pem()));
    wait_for("the spoke to reload its authentication file", || {
        (spoke.oidc_authn().reload_status().successes >= 2).then_some(())
    })
    .await;
    assert_eq!(
        whoami(&sim, "spoke", &token).await,
        Ok(sub.to_string()),
        "{:?}",
        spoke.oidc_authn().last_error()
    );
}

#[tokio::test]
async fn a_kind_hub_issuer_is_trusted_by_an_openshift_spoke() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_pair(
        Profile::kind("1.34"),
        Profile::openshift("4.20"),
        &dir.path().join("unused"),
    );
    let hub = sim.cluster("hub");
    let spoke = sim.cluster("spoke");
    let ca = bring_up_hub(&sim, false).await;
    let admin = admin_client(&sim, "spoke").await;
    apply(
        &admin,
        vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hub-oidc-ca", "namespace": "openshift-config"},
                    "data": {"ca-bundle.crt": ca}})],
        None,
    )
    .await;
    let auth: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &kube::core::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("config.openshift.io", "v1", "Authentication"),
            "authentications",
        ),
    );
    auth.patch(
        "cluster",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"type": "OIDC", "webhookTokenAuthenticator": null, "oidcProviders": [{
            "name": "kind-hub", "issuer": {"issuerURL": ISSUER, "audiences": [AUDIENCE], "issuerCertificateAuthority": {"name": "hub-oidc-ca"}},
            "claimMappings": {"username": {"claim": "sub", "prefixPolicy": "NoPrefix"}}}]}})),
    )
    .await
    .unwrap();
    wait_for("the kube-apiserver rollout", || {
        let co = spoke.get(
            "config.openshift.io/v1",
            "ClusterOperator",
            None,
            "kube-apiserver",
        )?;
        let progressing = co
            .pointer("/status/conditions")?
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Progressing" && c["status"] == "True");
        (spoke.kube_apiserver_revision() == Some(8) && !progressing).then_some(())
    })
    .await;
    let now = jiff::Timestamp::now().as_second();
    let token = hub.spire_sign(
        &json!({"sub": SERVER_ID, "aud": [AUDIENCE], "iss": ISSUER, "iat": now, "exp": now + 300}),
    );
    assert_eq!(
        whoami(&sim, "spoke", &token).await,
        Ok(SERVER_ID.to_string()),
        "{:?}",
        spoke.oidc_authn().last_error()
    );
}

// ---------------------------------------------------------------------------------------------
// The workspace fixtures.

#[test]
fn the_argocd_fixture_is_shaped_like_upstreams_install_yaml() {
    let all = docs(&repo_fixture("argocd-install.yaml"));
    for d in &all {
        assert!(
            d["metadata"].get("namespace").is_none(),
            "no namespace in {} {}",
            d["kind"],
            d["metadata"]["name"]
        );
    }
    let has = |kind: &str, name: &str| {
        all.iter()
            .any(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    };
    for crd in [
        "applications.argoproj.io",
        "applicationsets.argoproj.io",
        "appprojects.argoproj.io",
    ] {
        assert!(has("CustomResourceDefinition", crd), "{crd}");
    }
    for sa in [
        "argocd-server",
        "argocd-application-controller",
        "argocd-repo-server",
        "argocd-redis",
    ] {
        assert!(has("ServiceAccount", sa), "{sa}");
    }
    for cm in ["argocd-cm", "argocd-rbac-cm", "argocd-cmd-params-cm"] {
        assert!(has("ConfigMap", cm), "{cm}");
    }
    assert!(has("Secret", "argocd-secret"));
    for d in ["argocd-server", "argocd-repo-server", "argocd-redis"] {
        assert!(has("Deployment", d), "{d}");
    }
    assert!(has("StatefulSet", "argocd-application-controller"));
    assert!(all.iter().any(|d| d["kind"] == "NetworkPolicy"));
    assert!(all.iter().any(|d| d["kind"] == "Service"));
    let crbs: Vec<&Value> = all
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding")
        .collect();
    assert!(!crbs.is_empty());
    for b in crbs {
        assert_eq!(b["subjects"][0]["namespace"], "argocd", "{b:#}");
    }
    // The pods the simulated exec plugin and application controller look for.
    for (name, container) in kubesim::argocd::UPSTREAM_PODS {
        let w = all
            .iter()
            .find(|d| d["metadata"]["name"] == *name && d["spec"]["template"].is_object())
            .unwrap();
        assert_eq!(
            w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
            *name
        );
        assert_eq!(
            w["spec"]["template"]["spec"]["containers"][0]["name"],
            *container
        );
        assert_eq!(w["spec"]["template"]["spec"]["serviceAccountName"], *name);
    }
    let crds = docs(&repo_fixture("spire-crds.yaml"));
    let kinds: Vec<&str> = crds
        .iter()
        .map(|d| d["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ClusterSPIFFEID",
            "ClusterFederatedTrustDomain",
            "ClusterStaticEntry"
        ]
    );
}
