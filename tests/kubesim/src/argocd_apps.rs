//! The simulated Argo CD application controller (controller `argocd-application-controller`).
//!
//! It runs on every cluster and acts in a namespace once a Ready pod labelled
//! `app.kubernetes.io/name=<instance>-application-controller` with a container
//! `argocd-application-controller` runs there (the Argo CD instance of that namespace: the
//! operator's `<name>-application-controller`, or upstream's `argocd-application-controller`). For each
//! `Application` (argoproj.io/v1alpha1) of the namespace it:
//!
//! 1. finds the destination cluster among the Secrets labelled
//!    `argocd.argoproj.io/secret-type=cluster` (keys `name`, `server`, `config`, optional
//!    `namespaces`/`clusterResources`) by `spec.destination.name` or `.server`;
//! 2. gets credentials: `config.bearerToken`, or `config.execProviderConfig` run as
//!    `env KUBERNETES_EXEC_INFO=... NAME=VALUE ... <command> <args>` in the application
//!    controller container through the cluster's exec table (like client-go: the printed
//!    ExecCredential's apiVersion must match, the token is cached until its
//!    `expirationTimestamp` and dropped on a 401);
//! 3. talks HTTPS to `server` (`https://127.0.0.1:PORT`, or a simulated host name such as a kind
//!    cluster's `https://<name>-control-plane:6443`, resolved through the proxy routes), verifying
//!    the certificate against `tlsClientConfig.caData` unless `insecure` (no caData: the system
//!    roots, which trust no simulated cluster);
//! 4. reads the source: `spec.source.repoURL: file:///abs/dir` with `path` (default `.`), a
//!    local directory of plain YAML/JSON manifests (`directory.recurse` honoured). kubesim does
//!    not simulate Git, Helm or Kustomize;
//! 5. compares like Argo CD's cluster cache: `/version`, discovery, then a cluster-wide LIST of
//!    each target type (per namespace with the Secret's `namespaces`). A failure gives a
//!    `ComparisonError` condition with the spoke's message (e.g. its 401/403), and sync and
//!    health `Unknown`;
//! 6. with `syncPolicy.automated`, syncs what is OutOfSync (create, or JSON merge patch; the
//!    destination namespace first with `CreateNamespace=true`); once per change of the
//!    manifests, again after a failure only with `syncPolicy.retry`, again after drift only
//!    with `selfHeal`. A failed sync gives a `SyncError` condition and
//!    `operationState.phase: Failed`;
//! 7. writes `status.sync.status` (Synced/OutOfSync/Unknown), `status.health.status`
//!    (Healthy/Progressing/Degraded/Missing/Unknown, from Argo CD's built-in checks for
//!    Deployments, StatefulSets, DaemonSets, ReplicaSets, Pods, Jobs, PVCs and Namespaces;
//!    other kinds count as Healthy), `status.resources`, `status.conditions`,
//!    `status.operationState`, `status.reconciledAt`.
//!
//! It reconciles on changes of Applications, cluster Secrets and controller pods, and every
//! [`ArgoCdSettings::resync`]. Deleting an Application with the
//! `resources-finalizer.argocd.argoproj.io` finalizer deletes its resources on the
//! destination first. Pruning and sync waves are not simulated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};

use crate::cluster::{Event, now_rfc3339};
use crate::controllers::Controller;
use crate::exec::{ExecRequest, ExecResult};
use crate::jwt_authn::{
    ClientTls, HttpError, Trust, block_on, https_request, roots_from_pem, system_roots,
};
use crate::sim::ClusterHandle;

/// Name of the controller (for `Fault::ControllerNeverReady`).
pub const APPLICATION_CONTROLLER: &str = "argocd-application-controller";
/// The label of cluster Secrets.
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
const APP_API: &str = "argoproj.io/v1alpha1";

/// Timing of the simulated application controller.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgoCdSettings {
    /// How often every Application is reconciled without a change (Argo CD: 180s).
    pub resync: Duration,
    /// How long an exec credential plugin may run.
    pub exec_timeout: Duration,
    /// Timeout of one request to a destination cluster (Argo CD's client: 32s).
    pub request_timeout: Duration,
}

impl Default for ArgoCdSettings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(2),
            exec_timeout: Duration::from_secs(32),
            request_timeout: Duration::from_secs(32),
        }
    }
}

struct Cred {
    token: String,
    /// Unix seconds (`None`: until a 401).
    expires: Option<i64>,
}

#[derive(Clone)]
struct SyncMemo {
    fingerprint: String,
    succeeded: bool,
    message: String,
}

struct Inner {
    settings: ArgoCdSettings,
    creds: Mutex<HashMap<String, Cred>>,
    memo: Mutex<HashMap<String, SyncMemo>>,
    reconciling: Mutex<()>,
    resync_started: AtomicBool,
}

/// The application controller (see the module docs). One instance per cluster.
pub struct ApplicationController {
    inner: Arc<Inner>,
}

impl ApplicationController {
    pub fn new(settings: ArgoCdSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                creds: Mutex::new(HashMap::new()),
                memo: Mutex::new(HashMap::new()),
                reconciling: Mutex::new(()),
                resync_started: AtomicBool::new(false),
            }),
        }
    }
}

fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/labels")?.get(key)?.as_str()
}

fn meta<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["metadata"][key].as_str().unwrap_or_default()
}

fn is_cluster_secret(obj: &Value) -> bool {
    label(obj, SECRET_TYPE_LABEL) == Some("cluster")
}

fn is_controller_pod(obj: &Value) -> bool {
    label(obj, "app.kubernetes.io/name").is_some_and(|n| n.ends_with("-application-controller"))
}

/// The pod the controller's exec plugin runs in.
struct PodRef {
    namespace: String,
    name: String,
    container: String,
}

fn controller_pod(cluster: &ClusterHandle, ns: &str) -> Option<PodRef> {
    cluster
        .list("v1", "Pod", Some(ns))
        .into_iter()
        .find_map(|p| {
            if !is_controller_pod(&p)
                || p.pointer("/metadata/deletionTimestamp")
                    .is_some_and(|d| !d.is_null())
            {
                return None;
            }
            let ready = p
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            let has_container = p
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["name"] == "argocd-application-controller")
                });
            (ready && has_container).then(|| PodRef {
                namespace: ns.to_string(),
                name: meta(&p, "name").to_string(),
                container: "argocd-application-controller".into(),
            })
        })
}

fn secret_field(secret: &Value, key: &str) -> Option<String> {
    if let Some(s) = secret
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
    {
        return Some(s.to_string());
    }
    let b64 = secret
        .pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// A destination cluster from its Secret.
struct ClusterConn {
    key: String,
    server: String,
    config: Value,
    namespaces: Vec<String>,
    cluster_resources: bool,
}

fn find_cluster(cluster: &ClusterHandle, ns: &str, dest: &Value) -> Result<ClusterConn, String> {
    let name = dest["name"].as_str().filter(|s| !s.is_empty());
    let server = dest["server"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('/'));
    if let (Some(n), Some(s)) = (name, server) {
        return Err(format!(
            "application destination can't have both name and server defined: {n} {s}"
        ));
    }
    let secrets: Vec<Value> = cluster
        .list("v1", "Secret", Some(ns))
        .into_iter()
        .filter(is_cluster_secret)
        .collect();
    let found = secrets.iter().find(|s| match (name, server) {
        (Some(n), _) => secret_field(s, "name").as_deref() == Some(n),
        (None, Some(url)) => {
            secret_field(s, "server").is_some_and(|v| v.trim_end_matches('/') == url)
        }
        (None, None) => false,
    });
    let Some(secret) = found else {
        return Err(match (name, server) {
            (Some("in-cluster"), _) | (None, Some("https://kubernetes.default.svc")) => {
                "kubesim does not simulate the in-cluster destination: register the cluster with a cluster Secret".to_string()
            }
            (Some(n), _) => format!("unable to find destination server: there are no clusters with this name: {n}"),
            (None, Some(s)) => format!("cluster {s:?} has not been configured"),
            (None, None) => "destination.server or destination.name is required".to_string(),
        });
    };
    let config_text = secret_field(secret, "config").unwrap_or_else(|| "{}".into());
    let config: Value = serde_json::from_str(&config_text).map_err(|e| {
        format!(
            "cluster secret {}: invalid config JSON: {e}",
            meta(secret, "name")
        )
    })?;
    let server = secret_field(secret, "server")
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let namespaces = secret_field(secret, "namespaces")
        .map(|n| {
            n.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(ClusterConn {
        key: format!("{ns}/{}/{server}", meta(secret, "name")),
        server,
        config,
        namespaces,
        cluster_resources: secret_field(secret, "clusterResources").as_deref() == Some("true"),
    })
}

/// The TLS settings of `tlsClientConfig`.
fn client_tls(conn: &ClusterConn) -> Result<ClientTls, String> {
    let t = &conn.config["tlsClientConfig"];
    let b64 = |k: &str| -> Result<Option<String>, String> {
        match t[k].as_str().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| format!("tlsClientConfig.{k}: {e}"))?;
                Ok(Some(String::from_utf8_lossy(&bytes).to_string()))
            }
        }
    };
    let trust = if t["insecure"] == true {
        Trust::Insecure
    } else {
        match b64("caData")? {
            Some(pem) => Trust::Roots(Arc::new(
                roots_from_pem(&pem)
                    .map_err(|e| format!("unable to load root certificates: {e}"))?,
            )),
            None => Trust::Roots(Arc::new(system_roots())),
        }
    };
    let client_auth = match (b64("certData")?, b64("keyData")?) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("tlsClientConfig.certData: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("tlsClientConfig.keyData: {e}"))?;
            Some((chain, key))
        }
        _ => None,
    };
    Ok(ClientTls {
        trust,
        client_auth,
        server_name: t["serverName"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

fn go_method(m: &str) -> String {
    let lower = m.to_ascii_lowercase();
    let mut c = lower.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// A client of one destination cluster.
struct SpokeClient<'a> {
    ctl: &'a Inner,
    hub: &'a ClusterHandle,
    pod: &'a PodRef,
    conn: &'a ClusterConn,
    tls: Arc<ClientTls>,
}

/// The message of a failed API response.
fn api_message(status: u16, body: &Value) -> String {
    match body["message"].as_str() {
        Some(m) if !m.is_empty() => m.to_string(),
        _ if status == 401 => "the server has asked for the client to provide credentials".into(),
        _ if status == 403 => "the server does not allow access to the requested resource".into(),
        _ => format!("the server responded with status {status}"),
    }
}

impl SpokeClient<'_> {
    /// A bearer token, from the config or the exec plugin.
    fn token(&self) -> Result<Option<String>, String> {
        if let Some(t) = self.conn.config["bearerToken"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            return Ok(Some(t.to_string()));
        }
        let exec = &self.conn.config["execProviderConfig"];
        if !exec.is_object() {
            return Ok(None);
        }
        let now = jiff::Timestamp::now().as_second();
        if let Some(c) = self.ctl.creds.lock().unwrap().get(&self.conn.key)
            && c.expires.is_none_or(|e| now < e)
        {
            return Ok(Some(c.token.clone()));
        }
        let cred = self.ctl.exec_credential(self.hub, self.pod, exec)?;
        let token = cred.token.clone();
        self.ctl
            .creds
            .lock()
            .unwrap()
            .insert(self.conn.key.clone(), cred);
        Ok(Some(token))
    }

    /// One request; `Err` when there was no HTTP response (in Go's words).
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &Value)>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.conn.server);
        let token = self
            .token()
            .map_err(|e| format!("{} {url:?}: getting credentials: {e}", go_method(method)))?;
        let mut headers = vec![
            ("Accept".to_string(), "application/json".to_string()),
            (
                "User-Agent".to_string(),
                "argocd-application-controller/v3.1.0 (kubesim)".to_string(),
            ),
        ];
        if let Some(t) = token {
            headers.push(("Authorization".to_string(), format!("Bearer {t}")));
        }
        let mut bytes = Vec::new();
        if let Some((ct, v)) = body {
            headers.push(("Content-Type".to_string(), ct.to_string()));
            bytes = serde_json::to_vec(v).unwrap_or_default();
        }
        let tls = self.tls.clone();
        let (m, u, timeout) = (
            method.to_string(),
            url.clone(),
            self.ctl.settings.request_timeout,
        );
        let routes = self.hub.routes().clone();
        let resp = block_on(async move {
            match tokio::time::timeout(
                timeout,
                https_request(&routes, &m, &u, &headers, bytes, &tls),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(HttpError::Timeout),
            }
        })
        .map_err(|e| format!("{} {url:?}: {e}", go_method(method)))?;
        if resp.status == 401 {
            // client-go drops a cached exec credential when the server rejects it.
            self.ctl.creds.lock().unwrap().remove(&self.conn.key);
        }
        let v = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        Ok((resp.status, v))
    }

    /// GET that must succeed.
    fn get_ok(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self.call("GET", path, None)?;
        if status == 200 {
            Ok(body)
        } else {
            Err(api_message(status, &body))
        }
    }
}

impl Inner {
    fn exec_credential(
        &self,
        hub: &ClusterHandle,
        pod: &PodRef,
        exec: &Value,
    ) -> Result<Cred, String> {
        let command = exec["command"]
            .as_str()
            .filter(|c| !c.is_empty())
            .ok_or("exec plugin: invalid command")?
            .to_string();
        let api_version = exec["apiVersion"].as_str().unwrap_or_default();
        if !matches!(
            api_version,
            "client.authentication.k8s.io/v1" | "client.authentication.k8s.io/v1beta1"
        ) {
            return Err(format!("exec plugin: invalid apiVersion {api_version:?}"));
        }
        let info = json!({"kind": "ExecCredential", "apiVersion": api_version, "spec": {"interactive": false}});
        let mut argv = vec!["env".to_string(), format!("KUBERNETES_EXEC_INFO={info}")];
        match &exec["env"] {
            // Argo CD's execProviderConfig.env is a map; kubeconfig's is a list of {name, value}.
            Value::Object(m) => argv.extend(
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())),
            ),
            Value::Array(l) => argv.extend(l.iter().map(|e| {
                format!(
                    "{}={}",
                    e["name"].as_str().unwrap_or_default(),
                    e["value"].as_str().unwrap_or_default()
                )
            })),
            _ => {}
        }
        argv.push(command.clone());
        argv.extend(
            exec["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string),
        );
        let req = ExecRequest {
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            container: pod.container.clone(),
            command: argv,
            stdin: Vec::new(),
            tty: false,
        };
        let table = hub.core().exec.clone();
        let (tx, rx) = std::sync::mpsc::channel::<ExecResult>();
        std::thread::spawn(move || {
            let _ = tx.send(table.run(&req));
        });
        let timeout = self.settings.exec_timeout;
        let timed_out = || {
            format!(
                "exec: executable {command} failed: the plugin did not return within {timeout:?}"
            )
        };
        let started = std::time::Instant::now();
        let result = rx.recv_timeout(timeout).map_err(|_| timed_out())?;
        if result.hang {
            std::thread::sleep(timeout.saturating_sub(started.elapsed()));
            return Err(timed_out());
        }
        if let Some(d) = result.delay {
            let left = timeout.saturating_sub(started.elapsed());
            if d > left {
                std::thread::sleep(left);
                return Err(timed_out());
            }
            std::thread::sleep(d);
        }
        if result.exit_code != 0 {
            let stderr = String::from_utf8_lossy(&result.stderr).trim().to_string();
            let detail = if stderr.is_empty() {
                String::new()
            } else {
                format!(" (stderr: {stderr})")
            };
            return Err(format!(
                "exec: executable {command} failed with exit code {}{detail}",
                result.exit_code
            ));
        }
        let text = String::from_utf8_lossy(&result.stdout).to_string();
        let doc = crate::schema::parse_yaml_documents(&text)
            .ok()
            .and_then(|d| d.into_iter().next())
            .ok_or_else(|| {
                "decoding stdout: couldn't get version/kind; json parse error".to_string()
            })?;
        let got = doc["apiVersion"].as_str().unwrap_or_default();
        if got != api_version {
            return Err(format!(
                "exec plugin is configured to use API version {api_version}, plugin returned version {got}"
            ));
        }
        if doc["kind"] != "ExecCredential" {
            return Err(format!(
                "decoding stdout: no kind {:?} is registered for version {got:?}",
                doc["kind"]
            ));
        }
        let status = doc
            .get("status")
            .filter(|s| s.is_object())
            .ok_or("exec plugin didn't return a status field")?;
        let token = status["token"].as_str().unwrap_or_default().to_string();
        if token.is_empty() {
            if status["clientCertificateData"].is_string() {
                return Err(
                    "kubesim: exec plugins returning client certificates are not simulated".into(),
                );
            }
            return Err("exec plugin didn't return a token or cert/key pair".into());
        }
        let expires = match status["expirationTimestamp"].as_str() {
            Some(ts) => Some(
                ts.parse::<jiff::Timestamp>()
                    .map_err(|e| format!("decoding stdout: expirationTimestamp {ts:?}: {e}"))?
                    .as_second(),
            ),
            None => None,
        };
        Ok(Cred { token, expires })
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests and comparison.

fn load_manifests(spec: &Value) -> Result<Vec<Value>, String> {
    let src = &spec["source"];
    if !src.is_object() {
        return Err(if spec["sources"].is_array() {
            "kubesim simulates only spec.source (not spec.sources)".into()
        } else {
            "spec.source is required".into()
        });
    }
    for tool in ["helm", "kustomize", "plugin"] {
        if src.get(tool).is_some_and(|v| !v.is_null())
            || src.get("chart").is_some_and(|v| !v.is_null())
        {
            return Err(format!(
                "kubesim simulates only directories of plain manifests, not {tool} sources"
            ));
        }
    }
    let repo = src["repoURL"].as_str().unwrap_or_default();
    let Some(root) = repo.strip_prefix("file://") else {
        return Err(format!(
            "rpc error: code = Unknown desc = kubesim simulates only file:// repoURLs (a local directory of plain YAML manifests), not {repo:?}"
        ));
    };
    let path = src["path"]
        .as_str()
        .filter(|p| !p.is_empty())
        .unwrap_or(".");
    let dir = std::path::Path::new(root).join(path);
    if !dir.is_dir() {
        return Err(format!(
            "rpc error: code = Unknown desc = {path}: app path does not exist"
        ));
    }
    let recurse = src.pointer("/directory/recurse") == Some(&Value::Bool(true));
    let mut files = Vec::new();
    let mut dirs = vec![dir];
    while let Some(d) = dirs.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| {
            format!(
                "rpc error: code = Unknown desc = reading {}: {e}",
                d.display()
            )
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if recurse {
                    dirs.push(p);
                }
            } else if p
                .extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| {
            format!(
                "rpc error: code = Unknown desc = reading {}: {e}",
                f.display()
            )
        })?;
        let docs = crate::schema::parse_yaml_documents(&text).map_err(|e| {
            format!(
                "rpc error: code = Unknown desc = failed to unmarshal {:?}: {e:#}",
                f.file_name().unwrap_or_default()
            )
        })?;
        for d in docs {
            if d["kind"].as_str().is_none_or(str::is_empty)
                || d["apiVersion"].as_str().is_none_or(str::is_empty)
                || meta(&d, "name").is_empty()
            {
                return Err(format!(
                    "rpc error: code = Unknown desc = {:?}: a manifest needs apiVersion, kind and metadata.name",
                    f.file_name().unwrap_or_default()
                ));
            }
            out.push(d);
        }
    }
    Ok(out)
}

/// One desired resource, resolved against the destination's discovery.
#[derive(Clone)]
struct Target {
    obj: Value,
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
    namespace: String,
    name: String,
}

impl Target {
    fn collection(&self, ns: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match ns {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", self.plural),
            None => format!("{base}/{}", self.plural),
        }
    }
    fn path(&self) -> String {
        let ns = self.namespaced.then_some(self.namespace.as_str());
        format!("{}/{}", self.collection(ns), self.name)
    }
    fn resource_json(&self) -> Value {
        let mut v = json!({"group": self.group, "version": self.version, "kind": self.kind, "name": self.name});
        if self.namespaced {
            v["namespace"] = json!(self.namespace);
        }
        v
    }
    fn describe(&self) -> String {
        format!("{}/{}", self.kind.to_ascii_lowercase(), self.name)
    }
}

/// `want` is part of `live`.
fn contained(live: &Value, want: &Value) -> bool {
    match (want, live) {
        (Value::Object(w), Value::Object(l)) => w.iter().all(|(k, v)| match l.get(k) {
            Some(lv) => contained(lv, v),
            None => v.is_null(),
        }),
        (Value::Array(w), Value::Array(l)) => {
            w.len() == l.len() && w.iter().zip(l).all(|(a, b)| contained(b, a))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == live,
    }
}

fn in_sync(target: &Target, live: Option<&Value>) -> bool {
    let Some(live) = live else { return false };
    let mut want = target.obj.clone();
    if let Some(m) = want.as_object_mut() {
        m.remove("status");
    }
    if let Some(md) = want["metadata"].as_object_mut() {
        md.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations"));
    }
    contained(live, &want)
}

fn num(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn has_condition(o: &Value, ty: &str, status: &str) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == status))
}

/// Argo CD's built-in health of one resource.
fn health(kind: &str, live: Option<&Value>) -> &'static str {
    let Some(o) = live else { return "Missing" };
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        return "Progressing";
    }
    let generation_seen = num(o, "/status/observedGeneration") >= num(o, "/metadata/generation");
    let replicas = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    match kind {
        "Namespace" => match o.pointer("/status/phase").and_then(Value::as_str) {
            None | Some("Active") => "Healthy",
            _ => "Progressing",
        },
        "Deployment" => {
            if o.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded"
                    })
                })
            {
                "Degraded"
            } else if generation_seen
                && num(o, "/status/updatedReplicas") >= replicas
                && num(o, "/status/availableReplicas") >= replicas
            {
                "Healthy"
            } else {
                "Progressing"
            }
        }
        "StatefulSet" | "ReplicaSet" => {
            if generation_seen && num(o, "/status/readyReplicas") >= replicas {
                "Healthy"
            } else {
                "Progressing"
            }
        }
        "DaemonSet" => {
            if generation_seen
                && num(o, "/status/numberReady") >= num(o, "/status/desiredNumberScheduled")
            {
                "Healthy"
            } else {
                "Progressing"
            }
        }
        "Pod" => match o.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => "Healthy",
            Some("Failed") => "Degraded",
            Some("Running") if has_condition(o, "Ready", "True") => "Healthy",
            _ => "Progressing",
        },
        "PersistentVolumeClaim" => match o.pointer("/status/phase").and_then(Value::as_str) {
            Some("Bound") => "Healthy",
            Some("Lost") => "Degraded",
            _ => "Progressing",
        },
        "Job" => {
            if has_condition(o, "Complete", "True") {
                "Healthy"
            } else if has_condition(o, "Failed", "True") {
                "Degraded"
            } else {
                "Progressing"
            }
        }
        _ => "Healthy",
    }
}

const HEALTH_ORDER: &[&str] = &[
    "Healthy",
    "Suspended",
    "Progressing",
    "Missing",
    "Degraded",
    "Unknown",
];

fn worst<'a>(a: &'a str, b: &'a str) -> &'a str {
    let rank = |h: &str| HEALTH_ORDER.iter().position(|x| *x == h).unwrap_or(0);
    if rank(b) > rank(a) { b } else { a }
}

/// The kind order of a sync (namespaces and CRDs first).
fn kind_rank(kind: &str) -> usize {
    const ORDER: &[&str] = &[
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodSecurityPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "SecretList",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleList",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "Role",
        "RoleList",
        "RoleBinding",
        "RoleBindingList",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "Ingress",
        "APIService",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

fn has_option(spec: &Value, opt: &str) -> bool {
    spec.pointer("/syncPolicy/syncOptions")
        .and_then(Value::as_array)
        .is_some_and(|o| o.iter().any(|x| x.as_str() == Some(opt)))
}

/// The outcome of a comparison.
struct Comparison {
    targets: Vec<(Target, Option<Value>)>,
    namespace_missing: bool,
}

impl Inner {
    /// Resolve the targets and read their live state, as Argo CD's cluster cache does.
    fn compare(
        &self,
        client: &SpokeClient,
        desired: &[Value],
        dest_ns: &str,
        create_ns: bool,
    ) -> Result<Comparison, String> {
        let server = &client.conn.server;
        let cache_err = |what: &str, e: String| {
            format!(
                "Failed to load live state: failed to get cluster info for {server:?}: error synchronizing cache state : failed to sync cluster {server}: failed to load initial state of resource {what}: {e}"
            )
        };
        client.get_ok("/version").map_err(|e| {
            format!("Failed to load live state: failed to get cluster info for {server:?}: {e}")
        })?;
        // Discovery of every group/version the manifests use.
        let mut discovery: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut gvs: Vec<String> = desired
            .iter()
            .map(|d| d["apiVersion"].as_str().unwrap_or_default().to_string())
            .collect();
        gvs.push("v1".into());
        gvs.sort();
        gvs.dedup();
        for gv in gvs {
            let path = if gv.contains('/') {
                format!("/apis/{gv}")
            } else {
                format!("/api/{gv}")
            };
            let (status, body) = client.call("GET", &path, None).map_err(|e| {
                format!("Failed to load live state: failed to get cluster info for {server:?}: {e}")
            })?;
            let resources = match status {
                200 => body["resources"].as_array().cloned().unwrap_or_default(),
                404 => Vec::new(),
                _ => {
                    return Err(format!(
                        "Failed to load live state: failed to get cluster info for {server:?}: {}",
                        api_message(status, &body)
                    ));
                }
            };
            discovery.insert(gv, resources);
        }
        let mut targets = Vec::new();
        for d in desired {
            let gv = d["apiVersion"].as_str().unwrap_or_default();
            let kind = d["kind"].as_str().unwrap_or_default();
            let (group, version) = gv.split_once('/').unwrap_or(("", gv));
            let res = discovery.get(gv).and_then(|rs| {
                rs.iter().find(|r| {
                    r["kind"] == kind && !r["name"].as_str().unwrap_or_default().contains('/')
                })
            });
            let name = meta(d, "name").to_string();
            let Some(res) = res else {
                let ns = d["metadata"]["namespace"].as_str().unwrap_or(dest_ns);
                return Err(format!(
                    "The Kubernetes API could not find {group}/{kind} for requested resource {ns}/{name}. Make sure the \"{kind}\" CRD is installed on the destination cluster."
                ));
            };
            let namespaced = res["namespaced"] == true;
            let namespace = if namespaced {
                d["metadata"]["namespace"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(if dest_ns.is_empty() {
                        "default"
                    } else {
                        dest_ns
                    })
                    .to_string()
            } else {
                String::new()
            };
            let mut obj = d.clone();
            if namespaced {
                obj["metadata"]["namespace"] = json!(namespace);
            }
            if !client.conn.namespaces.is_empty() {
                if !namespaced && !client.conn.cluster_resources {
                    return Err(format!(
                        "cluster level {kind} {name:?} can not be managed when in namespaced mode"
                    ));
                }
                if namespaced && !client.conn.namespaces.contains(&namespace) {
                    return Err(format!(
                        "namespace {namespace:?} for {kind} {name:?} is not managed"
                    ));
                }
            }
            targets.push(Target {
                obj,
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                plural: res["name"].as_str().unwrap_or_default().to_string(),
                namespaced,
                namespace,
                name,
            });
        }
        // The live state: LIST every target type (cluster-wide, or per managed namespace).
        let mut live: HashMap<String, Vec<Value>> = HashMap::new();
        let mut types: Vec<&Target> = Vec::new();
        for t in &targets {
            if !types
                .iter()
                .any(|x| x.group == t.group && x.plural == t.plural)
            {
                types.push(t);
            }
        }
        for t in &types {
            let what = if t.group.is_empty() {
                t.kind.clone()
            } else {
                format!("{}.{}", t.kind, t.group)
            };
            let paths: Vec<String> = if client.conn.namespaces.is_empty() || !t.namespaced {
                vec![t.collection(None)]
            } else {
                client
                    .conn
                    .namespaces
                    .iter()
                    .map(|ns| t.collection(Some(ns)))
                    .collect()
            };
            let mut items = Vec::new();
            for p in paths {
                let body = client.get_ok(&p).map_err(|e| cache_err(&what, e))?;
                items.extend(body["items"].as_array().cloned().unwrap_or_default());
            }
            live.insert(format!("{}/{}", t.group, t.plural), items);
        }
        let mut namespace_missing = false;
        if create_ns && !dest_ns.is_empty() {
            let (status, body) = client
                .call("GET", &format!("/api/v1/namespaces/{dest_ns}"), None)
                .map_err(|e| cache_err("Namespace", e))?;
            match status {
                200 => {}
                404 => namespace_missing = true,
                _ => return Err(cache_err("Namespace", api_message(status, &body))),
            }
        }
        let targets = targets
            .into_iter()
            .map(|t| {
                let found = live
                    .get(&format!("{}/{}", t.group, t.plural))
                    .and_then(|items| {
                        items
                            .iter()
                            .find(|o| {
                                meta(o, "name") == t.name
                                    && (!t.namespaced || meta(o, "namespace") == t.namespace)
                            })
                            .cloned()
                    });
                (t, found)
            })
            .collect();
        Ok(Comparison {
            targets,
            namespace_missing,
        })
    }

    /// Apply what is out of sync. `Err` is the reason of the first failure.
    fn sync(
        &self,
        client: &SpokeClient,
        cmp: &Comparison,
        dest_ns: &str,
        create_ns: bool,
    ) -> (Vec<Value>, Result<(), String>) {
        let mut results = Vec::new();
        if create_ns && cmp.namespace_missing {
            let body =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dest_ns}});
            match client.call(
                "POST",
                "/api/v1/namespaces",
                Some(("application/json", &body)),
            ) {
                Ok((s, _)) if s == 201 || s == 200 || s == 409 => {}
                Ok((s, b)) => return (results, Err(api_message(s, &b))),
                Err(e) => return (results, Err(e)),
            }
        }
        let mut order: Vec<&(Target, Option<Value>)> = cmp.targets.iter().collect();
        order.sort_by_key(|(t, _)| kind_rank(&t.kind));
        let mut failure = None;
        for (t, live) in order {
            if in_sync(t, live.as_ref()) {
                results.push(json!({"group": t.group, "version": t.version, "kind": t.kind, "namespace": t.namespace, "name": t.name,
                                    "status": "Synced", "message": format!("{} unchanged", t.describe()), "hookPhase": "Running", "syncPhase": "Sync"}));
                continue;
            }
            let outcome = match live {
                None => {
                    let ns = t.namespaced.then_some(t.namespace.as_str());
                    match client.call(
                        "POST",
                        &t.collection(ns),
                        Some(("application/json", &t.obj)),
                    ) {
                        // Created meanwhile (e.g. the destination namespace, by CreateNamespace=true):
                        // Argo CD applies, which updates what exists.
                        Ok((409, _)) => client
                            .call(
                                "PATCH",
                                &t.path(),
                                Some(("application/merge-patch+json", &t.obj)),
                            )
                            .map(|r| (r, "configured")),
                        other => other.map(|r| (r, "created")),
                    }
                }
                Some(_) => client
                    .call(
                        "PATCH",
                        &t.path(),
                        Some(("application/merge-patch+json", &t.obj)),
                    )
                    .map(|r| (r, "configured")),
            };
            let (status, message) = match outcome {
                Ok(((s, _), verb)) if (200..300).contains(&s) => {
                    ("Synced", format!("{} {verb}", t.describe()))
                }
                Ok(((s, b), _)) => ("SyncFailed", api_message(s, &b)),
                Err(e) => ("SyncFailed", e),
            };
            if status == "SyncFailed" && failure.is_none() {
                failure = Some(message.clone());
            }
            results.push(json!({"group": t.group, "version": t.version, "kind": t.kind, "namespace": t.namespace, "name": t.name,
                                "status": status, "message": message, "hookPhase": if status == "Synced" { "Running" } else { "Failed" }, "syncPhase": "Sync"}));
        }
        (results, failure.map_or(Ok(()), Err))
    }

    /// The new status of `app`, or `None` to leave it alone (no controller runs there).
    fn compute(&self, hub: &ClusterHandle, app: &Value) -> Option<Value> {
        let ns = meta(app, "namespace");
        let pod = controller_pod(hub, ns)?;
        let spec = &app["spec"];
        let dest = &spec["destination"];
        let dest_ns = dest["namespace"].as_str().unwrap_or_default();
        let key = format!("{ns}/{}", meta(app, "name"));
        let previous_op = app.pointer("/status/operationState").cloned();
        let base = |sync: &str, health: &str| {
            let mut s = json!({
                "sync": {"status": sync, "comparedTo": {"source": spec["source"], "destination": dest}, "revision": ""},
                "health": {"status": health},
                "reconciledAt": now_rfc3339(),
                "sourceType": "Directory",
                "summary": {}
            });
            if let Some(op) = &previous_op {
                s["operationState"] = op.clone();
            }
            s
        };
        let with_condition = |mut s: Value, ty: &str, message: String| {
            s["conditions"] =
                json!([{"type": ty, "message": message, "lastTransitionTime": now_rfc3339()}]);
            s
        };
        let conn = match find_cluster(hub, ns, dest) {
            Ok(c) => c,
            Err(e) => {
                return Some(with_condition(
                    base("Unknown", "Unknown"),
                    "InvalidSpecError",
                    e,
                ));
            }
        };
        let desired = match load_manifests(spec) {
            Ok(d) => d,
            Err(e) => {
                return Some(with_condition(
                    base("Unknown", "Unknown"),
                    "ComparisonError",
                    format!("Failed to load target state: {e}"),
                ));
            }
        };
        let tls = match client_tls(&conn) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                return Some(with_condition(
                    base("Unknown", "Unknown"),
                    "ComparisonError",
                    e,
                ));
            }
        };
        let client = SpokeClient {
            ctl: self,
            hub,
            pod: &pod,
            conn: &conn,
            tls,
        };
        let create_ns = has_option(spec, "CreateNamespace=true");
        let mut cmp = match self.compare(&client, &desired, dest_ns, create_ns) {
            Ok(c) => c,
            Err(e) => {
                return Some(with_condition(
                    base("Unknown", "Unknown"),
                    "ComparisonError",
                    e,
                ));
            }
        };
        let out_of_sync =
            cmp.namespace_missing || cmp.targets.iter().any(|(t, l)| !in_sync(t, l.as_ref()));
        let fingerprint = serde_json::to_string(&json!([desired, dest])).unwrap_or_default();
        let automated = spec
            .pointer("/syncPolicy/automated")
            .is_some_and(|a| !a.is_null());
        let memo = self.memo.lock().unwrap().get(&key).cloned();
        let should_sync = automated
            && out_of_sync
            && match &memo {
                Some(m) if m.fingerprint == fingerprint => {
                    if m.succeeded {
                        spec.pointer("/syncPolicy/automated/selfHeal") == Some(&Value::Bool(true))
                    } else {
                        spec.pointer("/syncPolicy/retry")
                            .is_some_and(|r| !r.is_null())
                    }
                }
                _ => true,
            };
        let mut operation = previous_op.clone();
        if should_sync {
            let started = now_rfc3339();
            let (results, outcome) = self.sync(&client, &cmp, dest_ns, create_ns);
            let (phase, message) = match &outcome {
                Ok(()) => (
                    "Succeeded",
                    "successfully synced (all tasks run)".to_string(),
                ),
                Err(e) => (
                    "Failed",
                    format!("one or more objects failed to apply, reason: {e}"),
                ),
            };
            self.memo.lock().unwrap().insert(
                key.clone(),
                SyncMemo {
                    fingerprint: fingerprint.clone(),
                    succeeded: outcome.is_ok(),
                    message: message.clone(),
                },
            );
            operation = Some(json!({
                "operation": {"sync": {"revision": "", "syncOptions": spec.pointer("/syncPolicy/syncOptions").cloned().unwrap_or(json!([]))},
                              "initiatedBy": {"automated": true}, "retry": {}},
                "phase": phase,
                "message": message,
                "syncResult": {"resources": results, "revision": "", "source": spec["source"]},
                "startedAt": started,
                "finishedAt": now_rfc3339()
            }));
            match self.compare(&client, &desired, dest_ns, create_ns) {
                Ok(c) => cmp = c,
                Err(e) => {
                    let mut s = with_condition(base("Unknown", "Unknown"), "ComparisonError", e);
                    s["operationState"] = operation.unwrap_or(Value::Null);
                    return Some(s);
                }
            }
        }
        let mut app_health = "Healthy";
        let mut all_synced = !cmp.namespace_missing;
        let mut resources = Vec::new();
        for (t, live) in &cmp.targets {
            let synced = in_sync(t, live.as_ref());
            all_synced &= synced;
            let h = health(&t.kind, live.as_ref());
            app_health = worst(app_health, h);
            let mut r = t.resource_json();
            r["status"] = json!(if synced { "Synced" } else { "OutOfSync" });
            r["health"] = json!({"status": h});
            resources.push(r);
        }
        let mut status = base(if all_synced { "Synced" } else { "OutOfSync" }, app_health);
        status["resources"] = Value::Array(resources);
        match operation {
            Some(op) => status["operationState"] = op,
            None => {
                if let Some(m) = status.as_object_mut() {
                    m.remove("operationState");
                }
            }
        }
        let memo = self.memo.lock().unwrap().get(&key).cloned();
        if let Some(m) = memo.filter(|m| !m.succeeded && m.fingerprint == fingerprint) {
            status = with_condition(
                status,
                "SyncError",
                format!("Failed sync attempt: {}", m.message),
            );
        }
        Some(status)
    }

    /// Delete the resources of an Application being deleted with the resources finalizer.
    fn finalize(&self, hub: &ClusterHandle, app: &Value) -> Result<(), String> {
        let ns = meta(app, "namespace");
        let Some(pod) = controller_pod(hub, ns) else {
            return Err("no application controller".into());
        };
        let conn = find_cluster(hub, ns, &app["spec"]["destination"])?;
        let tls = Arc::new(client_tls(&conn)?);
        let client = SpokeClient {
            ctl: self,
            hub,
            pod: &pod,
            conn: &conn,
            tls,
        };
        let desired = load_manifests(&app["spec"]).unwrap_or_default();
        let dest_ns = app
            .pointer("/spec/destination/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let cmp = self.compare(&client, &desired, dest_ns, false)?;
        let mut targets: Vec<&(Target, Option<Value>)> =
            cmp.targets.iter().filter(|(_, l)| l.is_some()).collect();
        targets.sort_by_key(|(t, _)| std::cmp::Reverse(kind_rank(&t.kind)));
        for (t, _) in targets {
            let (status, body) = client.call("DELETE", &t.path(), None)?;
            if !(200..300).contains(&status) && status != 404 {
                return Err(api_message(status, &body));
            }
        }
        Ok(())
    }

    fn reconcile_app(&self, hub: &ClusterHandle, ns: &str, name: &str) {
        let _one_at_a_time = self.reconciling.lock().unwrap();
        let Some(app) = hub.get(APP_API, "Application", Some(ns), name) else {
            return;
        };
        if app
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|d| !d.is_null())
        {
            let finalizers: Vec<String> = app
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            if !finalizers
                .iter()
                .any(|f| f.starts_with(RESOURCES_FINALIZER))
            {
                return;
            }
            let mut cur = app.clone();
            match self.finalize(hub, &app) {
                Ok(()) => {
                    let kept: Vec<&String> = finalizers
                        .iter()
                        .filter(|f| !f.starts_with(RESOURCES_FINALIZER))
                        .collect();
                    cur["metadata"]["finalizers"] = json!(kept);
                }
                Err(e) => {
                    cur["status"]["conditions"] = json!([{"type": "DeletionError", "message": e, "lastTransitionTime": now_rfc3339()}]);
                }
            }
            if cur != app {
                let _ = hub.put(cur);
            }
            self.memo.lock().unwrap().remove(&format!("{ns}/{name}"));
            return;
        }
        let Some(mut status) = self.compute(hub, &app) else {
            return;
        };
        // Re-read: the spec may have changed meanwhile; keep timestamps of what did not change.
        let Some(mut cur) = hub.get(APP_API, "Application", Some(ns), name) else {
            return;
        };
        let old = cur.get("status").cloned().unwrap_or(Value::Null);
        if let (Some(new_c), Some(old_c)) = (
            status["conditions"].as_array_mut(),
            old["conditions"].as_array(),
        ) {
            for c in new_c.iter_mut() {
                if let Some(o) = old_c
                    .iter()
                    .find(|o| o["type"] == c["type"] && o["message"] == c["message"])
                {
                    c["lastTransitionTime"] = o["lastTransitionTime"].clone();
                }
            }
        }
        if comparable(&old) == comparable(&status) {
            return;
        }
        cur["status"] = status;
        let _ = hub.put(cur);
    }

    fn reconcile_namespace(&self, hub: &ClusterHandle, ns: Option<&str>) {
        for app in hub.list(APP_API, "Application", ns) {
            self.reconcile_app(hub, meta(&app, "namespace"), meta(&app, "name"));
        }
    }
}

/// A status without the timestamps that change on every reconciliation.
fn comparable(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(m) = s.as_object_mut() {
        m.remove("reconciledAt");
    }
    s
}

impl Controller for ApplicationController {
    fn name(&self) -> &str {
        APPLICATION_CONTROLLER
    }

    fn handle(&self, cluster: &ClusterHandle, event: &Event) {
        let ns = match event.storage_key.as_str() {
            "argoproj.io/applications" => {
                let spec_unchanged = event.old.as_ref().is_some_and(|o| {
                    o["spec"] == event.object["spec"]
                        && o["metadata"]["deletionTimestamp"]
                            == event.object["metadata"]["deletionTimestamp"]
                        && o["metadata"]["annotations"] == event.object["metadata"]["annotations"]
                });
                if spec_unchanged {
                    return; // e.g. our own status write
                }
                self.start_resync(cluster);
                event.namespace()
            }
            "/secrets"
                if is_cluster_secret(&event.object)
                    || event.old.as_ref().is_some_and(is_cluster_secret) =>
            {
                event.namespace()
            }
            "/pods" if is_controller_pod(&event.object) => event.namespace(),
            _ => return,
        };
        if ns.is_some() {
            self.inner.reconcile_namespace(cluster, ns);
        }
    }
}

impl ApplicationController {
    /// Reconcile everything every `resync` (started with the first Application).
    fn start_resync(&self, cluster: &ClusterHandle) {
        if self.inner.resync_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = self.inner.clone();
        let cluster = cluster.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(inner.settings.resync).await;
                if cluster
                    .core()
                    .faults
                    .controller_never_ready(APPLICATION_CONTROLLER)
                {
                    continue;
                }
                let (i, c) = (inner.clone(), cluster.clone());
                if tokio::task::spawn_blocking(move || i.reconcile_namespace(&c, None))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}
