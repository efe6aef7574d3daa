//! Upstream SPIRE on kind clusters (controller `spire-upstream`): the workloads are recognised by
//! their container images, whatever their names and namespace.
//!
//! | image (repository) | recognised as | its configuration |
//! | --- | --- | --- |
//! | `ghcr.io/spiffe/spire-server` | the SPIRE server (a StatefulSet) | `-config PATH`: JSON `server.conf` |
//! | `ghcr.io/spiffe/spire-controller-manager` | the controller manager (a container of the server's pod) | `--config=PATH`: YAML `ControllerManagerConfig` |
//! | `ghcr.io/spiffe/spire-agent` | the agents (a DaemonSet) | `-config PATH`: JSON `agent.conf` |
//! | `ghcr.io/spiffe/spiffe-csi-driver` | the SPIFFE CSI driver (a DaemonSet) | `-plugin-name` (default `csi.spiffe.io`) |
//! | `ghcr.io/spiffe/oidc-discovery-provider` | the OIDC discovery provider (a Deployment) | `-config PATH`: JSON |
//!
//! A configuration file is read from the container's volume mounted at the file's directory
//! (a `configMap`, `secret` or `projected` volume, `items` honoured), as the process would
//! read it. A container whose file is missing or invalid never becomes ready: its status is
//! `waiting` (`CrashLoopBackOff`) with the reason as message, and the pod is not Ready; it is
//! checked again when a ConfigMap or Secret of its namespace changes. **kubesim reads SPIRE's
//! configuration files as JSON only** (SPIRE reads HCL, of which JSON is a subset): an HCL file
//! keeps the pod not Ready with a message saying so.
//!
//! **SPIRE is ready** when the server's StatefulSet is ready with a `spire-controller-manager`
//! container, the agent and CSI driver DaemonSets are ready and the CSIDriver exists. The
//! trust domain, `jwt_issuer` (the `iss` of JWT-SVIDs; none without it),
//! `default_jwt_svid_ttl` (default 5m) and `jwt_key_type` (`ec-p384`, else P-256) come from the
//! server's `server.conf`; the signing key and JWKS are the cluster's ([`crate::spire`]). The
//! `k8sbundle` notifier writes the CA to its ConfigMap (`plugin_data.namespace`/`config_map`/
//! `config_map_key`, default `spire`/`spire-bundle`/`bundle.crt`) once the server runs, if that
//! ConfigMap exists.
//!
//! **ClusterSPIFFEIDs** (`spire.spiffe.io/v1alpha1`) decide who gets which SPIFFE ID, as the
//! controller manager does: `namespaceSelector` and `podSelector` (label selectors), the
//! manager's `ignoreNamespaces` (regular expressions, matched anywhere in the name),
//! `spiffeIDTemplate` rendered with a subset of Go templates (fields and `index`), the ID
//! validated and required to be in the server's trust domain, `fallback` honoured. Pods need a
//! node. Each ClusterSPIFFEID gets `status.stats` (`namespacesSelected`, `namespacesIgnored`,
//! `podsSelected`, `podEntryRenderFailures`, `entriesMasked`, `entriesToSet`, `entryFailures`)
//! while the controller manager runs. A pod selected by several gets the ID of the oldest.
//!
//! **The OIDC discovery provider**: while its Deployment has a Ready pod, kubesim serves HTTPS
//! with the certificate and key of `serving_cert_file` (files of a mounted Secret; reloaded
//! when it changes), `GET /.well-known/openid-configuration` for a `Host` listed in `domains`
//! (else 400 `domain "h" is not allowed`), with `issuer` = `jwt_issuer` or `https://<Host>` and
//! `jwks_uri` `https://<Host>/keys`, and `GET /keys`: the cluster's SPIRE JWKS when the
//! provider's own pod has a SPIFFE ID (`workload_api`) and `workload_api.trust_domain` is the
//! server's, else 500 `document not available`. For every NodePort Service selecting the
//! provider's pods whose `targetPort` is the serving port, `<node name>:<nodePort>` of every
//! node is routed to it (the kind docker network): the env file's proxy and the other simulated
//! clusters reach it there.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::sign::CertifiedKey;
use serde_json::{Value, json};

use crate::cluster::Event;
use crate::controllers::Controller;
use crate::selectors::LabelSelector;
use crate::sim::ClusterHandle;
use crate::spire::{ServerSettings, WorkloadApi, json_response, parse_go_duration, text};
use crate::workloads::{
    daemonset_ready, has_condition, is_deleting, meta, statefulset_ready, update_object,
    update_status,
};

pub const SERVER_IMAGE: &str = "ghcr.io/spiffe/spire-server";
pub const AGENT_IMAGE: &str = "ghcr.io/spiffe/spire-agent";
pub const CSI_DRIVER_IMAGE: &str = "ghcr.io/spiffe/spiffe-csi-driver";
pub const CONTROLLER_MANAGER_IMAGE: &str = "ghcr.io/spiffe/spire-controller-manager";
pub const OIDC_IMAGE: &str = "ghcr.io/spiffe/oidc-discovery-provider";
/// API version of ClusterSPIFFEID, ClusterFederatedTrustDomain and ClusterStaticEntry.
pub const SPIRE_API: &str = "spire.spiffe.io/v1alpha1";
const DEFAULT_CSI_DRIVER: &str = "csi.spiffe.io";

/// Per-cluster state: the OIDC discovery providers' listeners and the routes they own.
#[derive(Default)]
pub(crate) struct UpstreamState {
    providers: Mutex<HashMap<String, Provider>>,
    routes: Mutex<BTreeMap<String, String>>,
}

struct Provider {
    addr: SocketAddr,
    cert: Arc<CertSlot>,
}

/// The serving certificate of a provider (replaced when its Secret changes).
#[derive(Debug, Default)]
struct CertSlot(RwLock<Option<Arc<CertifiedKey>>>);

impl rustls::server::ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Recognising the workloads and reading their configuration files.

/// `image` is `repo`, `repo:tag` or `repo@digest`.
fn image_is(image: &str, repo: &str) -> bool {
    image
        .strip_prefix(repo)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':') || rest.starts_with('@'))
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    spec.get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn container_with_image<'a>(spec: &'a Value, repo: &str) -> Option<&'a Value> {
    containers(spec).find(|ct| ct["image"].as_str().is_some_and(|i| image_is(i, repo)))
}

fn template_spec(workload: &Value) -> &Value {
    workload
        .pointer("/spec/template/spec")
        .unwrap_or(&Value::Null)
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The value of a Go flag (`-name V`, `--name V`, `-name=V`, `--name=V`) in the command and args.
fn flag(ct: &Value, name: &str) -> Option<String> {
    let mut argv = str_list(&ct["command"]);
    argv.extend(str_list(&ct["args"]));
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let Some(f) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        if f == name {
            return it.next().cloned();
        }
        if let Some(v) = f.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

/// One file of a ConfigMap or Secret: `Ok(None)` when the key is absent.
fn object_key(
    c: &ClusterHandle,
    kind: &str,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, String> {
    let Some(obj) = c.get("v1", kind, Some(ns), name) else {
        return Err(format!(
            "MountVolume.SetUp failed: {} \"{name}\" not found",
            kind.to_ascii_lowercase()
        ));
    };
    let b64 = |field: &str| {
        obj.pointer(&format!("/{field}/{key}"))
            .and_then(Value::as_str)
            .and_then(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .ok()
            })
            .map(|b| String::from_utf8_lossy(&b).to_string())
    };
    let plain = |field: &str| {
        obj.pointer(&format!("/{field}/{key}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(if kind == "Secret" {
        b64("data").or_else(|| plain("stringData"))
    } else {
        plain("data").or_else(|| b64("binaryData"))
    })
}

/// The content of `path` as `ct` (a container of a pod spec in `ns`) sees it: the file of the
/// ConfigMap, Secret or projected volume mounted at its directory.
fn mounted_file(
    c: &ClusterHandle,
    ns: &str,
    spec: &Value,
    ct: &Value,
    path: &str,
) -> Result<String, String> {
    let missing = || format!("open {path}: no such file or directory");
    let mounts = ct["volumeMounts"].as_array().cloned().unwrap_or_default();
    let (mount, rel) = mounts
        .iter()
        .filter_map(|m| {
            let mp = m["mountPath"].as_str()?.trim_end_matches('/');
            if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
                return (path == mp).then(|| (m, sub.to_string()));
            }
            let rel = path.strip_prefix(mp)?.strip_prefix('/')?;
            Some((m, rel.to_string()))
        })
        .max_by_key(|(m, _)| m["mountPath"].as_str().map(str::len).unwrap_or(0))
        .ok_or_else(missing)?;
    let vol_name = mount["name"].as_str().unwrap_or_default();
    let volume = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == vol_name)
        .ok_or_else(|| format!("volume \"{vol_name}\" not found in the pod spec"))?;
    let mut sources: Vec<(&str, &Value)> = Vec::new();
    if let Some(cm) = volume.get("configMap") {
        sources.push(("ConfigMap", cm));
    } else if let Some(s) = volume.get("secret") {
        sources.push(("Secret", s));
    } else if let Some(p) = volume
        .pointer("/projected/sources")
        .and_then(Value::as_array)
    {
        for s in p {
            if let Some(cm) = s.get("configMap") {
                sources.push(("ConfigMap", cm));
            } else if let Some(sec) = s.get("secret") {
                sources.push(("Secret", sec));
            }
        }
    } else {
        return Err(format!(
            "kubesim reads configuration files only from configMap, secret and projected volumes ({path} is on volume {vol_name:?})"
        ));
    }
    for (kind, src) in sources {
        let name = src
            .get(if kind == "Secret" {
                "secretName"
            } else {
                "name"
            })
            .and_then(Value::as_str)
            .unwrap_or_default();
        let key = match src.get("items").and_then(Value::as_array) {
            Some(items) => match items.iter().find(|i| i["path"] == rel.as_str()) {
                Some(i) => i["key"].as_str().unwrap_or_default().to_string(),
                None => continue,
            },
            None => rel.clone(),
        };
        if let Some(text) = object_key(c, kind, ns, name, &key)? {
            return Ok(text);
        }
    }
    Err(missing())
}

/// The JSON configuration file named by `-config` of `ct`.
fn json_config(
    c: &ClusterHandle,
    ns: &str,
    spec: &Value,
    ct: &Value,
    program: &str,
) -> Result<Value, String> {
    let path = flag(ct, "config").ok_or_else(|| {
        format!("kubesim: the {program} container has no -config argument (kubesim reads the file it names)")
    })?;
    let text = mounted_file(c, ns, spec, ct, &path)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "kubesim reads SPIRE configuration files as JSON only: {path} is not JSON ({e}); SPIRE's HCL syntax is not simulated, write the file as JSON"
        )
    })?;
    if !v.is_object() {
        return Err(format!(
            "kubesim reads SPIRE configuration files as JSON only: {path} is not a JSON object"
        ));
    }
    Ok(v)
}

fn conf_str<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn valid_trust_domain(td: &str) -> Result<(), String> {
    if td.is_empty() {
        return Err("trust domain is missing".into());
    }
    if !td
        .chars()
        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '-' | '_'))
    {
        return Err(
            "trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
                .into(),
        );
    }
    Ok(())
}

/// The SPIRE server's configuration (what kubesim uses of it).
#[derive(Debug, Clone)]
struct ServerConf {
    trust_domain: String,
    jwt_issuer: Option<String>,
    jwt_ttl: i64,
    p384: bool,
    /// `commonName`, `country`, `organization` of `ca_subject`.
    ca_subject: Value,
    /// The k8sbundle notifier: `(namespace, config map, key)`.
    bundle: Option<(String, String, String)>,
}

fn plugin_data<'a>(conf: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    let section = conf.pointer(&format!("/plugins/{kind}"))?;
    let entries: Vec<&Value> = match section {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    entries.into_iter().find_map(|e| e.get(name)).map(|p| {
        p.get("plugin_data")
            .filter(|d| d.is_object())
            .unwrap_or(&Value::Null)
    })
}

fn first_str(v: &Value) -> Option<&str> {
    match v {
        Value::String(s) => Some(s),
        Value::Array(a) => a.first().and_then(Value::as_str),
        _ => None,
    }
}

fn server_conf(v: &Value) -> Result<ServerConf, String> {
    let td = conf_str(v, "/server/trust_domain").ok_or("trust_domain must be configured")?;
    valid_trust_domain(td).map_err(|e| format!("could not parse trust_domain {td:?}: {e}"))?;
    let jwt_issuer = conf_str(v, "/server/jwt_issuer").map(str::to_string);
    if let Some(iss) = &jwt_issuer
        && url::Url::parse(iss)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .is_none()
    {
        return Err(format!("the jwt_issuer url {iss:?} could not be parsed"));
    }
    let jwt_ttl = match conf_str(v, "/server/default_jwt_svid_ttl") {
        Some(t) => parse_go_duration(t)
            .ok_or_else(|| format!("could not parse default_jwt_svid_ttl {t:?}"))?
            .round() as i64,
        None => 300,
    };
    let subject = match v.pointer("/server/ca_subject") {
        Some(Value::Array(a)) => a.first().cloned().unwrap_or(Value::Null),
        Some(o) => o.clone(),
        None => Value::Null,
    };
    let ca_subject = json!({
        "commonName": first_str(&subject["common_name"]),
        "country": first_str(&subject["country"]),
        "organization": first_str(&subject["organization"]),
    });
    let bundle = plugin_data(v, "Notifier", "k8sbundle").map(|d| {
        let s =
            |k: &str, default: &str| conf_str(d, &format!("/{k}")).unwrap_or(default).to_string();
        (
            s("namespace", "spire"),
            s("config_map", "spire-bundle"),
            s("config_map_key", "bundle.crt"),
        )
    });
    Ok(ServerConf {
        trust_domain: td.to_string(),
        jwt_issuer,
        jwt_ttl,
        p384: conf_str(v, "/server/jwt_key_type") == Some("ec-p384"),
        ca_subject,
        bundle,
    })
}

/// The socket file name of the agent's Workload API (`agent.socket_path`).
fn agent_conf(v: &Value) -> Result<String, String> {
    let td = conf_str(v, "/agent/trust_domain").ok_or("trust_domain must be configured")?;
    valid_trust_domain(td).map_err(|e| format!("could not parse trust_domain {td:?}: {e}"))?;
    let socket = conf_str(v, "/agent/socket_path").unwrap_or("/tmp/spire-agent/public/api.sock");
    Ok(socket.rsplit('/').next().unwrap_or(socket).to_string())
}

/// The controller manager's configuration.
#[derive(Debug, Clone)]
struct ManagerConf {
    trust_domain: String,
    cluster_name: String,
    cluster_domain: String,
    ignore: Vec<Arc<jsonschema::Validator>>,
}

impl ManagerConf {
    fn ignores(&self, ns: &str) -> bool {
        self.ignore.iter().any(|re| re.is_valid(&json!(ns)))
    }
}

fn manager_conf(
    c: &ClusterHandle,
    ns: &str,
    spec: &Value,
    ct: &Value,
) -> Result<ManagerConf, String> {
    let Some(path) = flag(ct, "config") else {
        return Err("trust domain is required configuration (kubesim: the spire-controller-manager container has no --config argument)".into());
    };
    let text = mounted_file(c, ns, spec, ct, &path)?;
    let doc = crate::schema::parse_yaml_documents(&text)
        .ok()
        .and_then(|d| d.into_iter().next())
        .filter(Value::is_object)
        .ok_or_else(|| format!("unable to load the config file: {path} is not a YAML object"))?;
    let td = conf_str(&doc, "/trustDomain").ok_or("trust domain is required configuration")?;
    valid_trust_domain(td).map_err(|e| format!("invalid trust domain name: {e}"))?;
    let cluster = conf_str(&doc, "/clusterName").ok_or("cluster name is required configuration")?;
    let mut ignore = Vec::new();
    for pattern in str_list(&doc["ignoreNamespaces"]) {
        let re = jsonschema::options()
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&json!({"type": "string", "pattern": pattern}))
            .map_err(|e| format!("unable to compile ignore namespaces regex: {e}"))?;
        ignore.push(Arc::new(re));
    }
    Ok(ManagerConf {
        trust_domain: td.to_string(),
        cluster_name: cluster.to_string(),
        cluster_domain: conf_str(&doc, "/clusterDomain")
            .unwrap_or("cluster.local")
            .to_string(),
        ignore,
    })
}

/// The OIDC discovery provider's configuration.
#[derive(Debug, Clone)]
struct ProviderConf {
    domains: Vec<String>,
    jwt_issuer: Option<String>,
    port: u16,
    cert_file: String,
    key_file: String,
    /// `workload_api.trust_domain` (`None`: `server_api`).
    workload_td: Option<String>,
}

fn provider_conf(v: &Value) -> Result<ProviderConf, String> {
    let domains = str_list(&v["domains"]);
    if domains.is_empty() {
        return Err("domains must be configured".into());
    }
    if v.get("acme").is_some() {
        return Err(
            "kubesim does not simulate ACME: configure serving_cert_file (a certificate from a Secret)"
                .into(),
        );
    }
    let Some(serving) = v.get("serving_cert_file").filter(|s| s.is_object()) else {
        return Err(
            if v.get("insecure_addr").is_some() || v.get("listen_socket_path").is_some() {
                "kubesim serves the OIDC discovery provider over HTTPS only: configure serving_cert_file".into()
            } else {
                "either acme, serving_cert_file, insecure_addr or listen_socket_path must be configured".into()
            },
        );
    };
    let cert_file = conf_str(serving, "/cert_file_path")
        .ok_or("serving_cert_file.cert_file_path must be configured")?;
    let key_file = conf_str(serving, "/key_file_path")
        .ok_or("serving_cert_file.key_file_path must be configured")?;
    let addr = conf_str(serving, "/addr").unwrap_or(":443");
    let port: u16 = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("invalid serving_cert_file.addr {addr:?}"))?;
    let workload_td = match (v.get("workload_api"), v.get("server_api")) {
        (Some(_), Some(_)) => {
            return Err("the server_api and workload_api sections are mutually exclusive".into());
        }
        (None, None) => {
            return Err("one of the server_api or workload_api sections must be configured".into());
        }
        (Some(w), None) => {
            conf_str(w, "/socket_path").ok_or("workload_api.socket_path must be configured")?;
            Some(
                conf_str(w, "/trust_domain")
                    .ok_or("workload_api.trust_domain must be configured")?
                    .to_string(),
            )
        }
        (None, Some(_)) => None,
    };
    let jwt_issuer = conf_str(v, "/jwt_issuer").map(str::to_string);
    if let Some(iss) = &jwt_issuer
        && url::Url::parse(iss).is_err()
    {
        return Err(format!("the jwt_issuer url {iss:?} could not be parsed"));
    }
    Ok(ProviderConf {
        domains,
        jwt_issuer,
        port,
        cert_file: cert_file.to_string(),
        key_file: key_file.to_string(),
        workload_td,
    })
}

fn load_cert(
    c: &ClusterHandle,
    ns: &str,
    spec: &Value,
    ct: &Value,
    conf: &ProviderConf,
) -> Result<Arc<CertifiedKey>, String> {
    let fail = |e: String| format!("unable to load the serving certificate: {e}");
    let cert = mounted_file(c, ns, spec, ct, &conf.cert_file).map_err(fail)?;
    let key = mounted_file(c, ns, spec, ct, &conf.key_file).map_err(fail)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if chain.is_empty() {
        return Err(fail(format!(
            "{}: tls: failed to find any PEM data in certificate input",
            conf.cert_file
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| {
        fail(format!(
            "{}: tls: failed to find any PEM data in key input",
            conf.key_file
        ))
    })?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map(Arc::new)
        .map_err(|e| fail(format!("tls: private key does not match public key ({e})")))
}

/// Why `ct` (a container of `pod`) would not run, for the upstream SPIRE images (`None`: it
/// runs). kind only.
pub(crate) fn container_problem(c: &ClusterHandle, pod: &Value, ct: &Value) -> Option<String> {
    if c.profile().is_openshift() {
        return None;
    }
    let ns = meta(pod, "namespace");
    let spec = &pod["spec"];
    let image = ct["image"].as_str()?;
    let result = if image_is(image, SERVER_IMAGE) {
        json_config(c, ns, spec, ct, "spire-server").and_then(|v| server_conf(&v).map(|_| ()))
    } else if image_is(image, AGENT_IMAGE) {
        json_config(c, ns, spec, ct, "spire-agent").and_then(|v| agent_conf(&v).map(|_| ()))
    } else if image_is(image, CONTROLLER_MANAGER_IMAGE) {
        manager_conf(c, ns, spec, ct).map(|_| ())
    } else if image_is(image, OIDC_IMAGE) {
        json_config(c, ns, spec, ct, "oidc-discovery-provider")
            .and_then(|v| provider_conf(&v))
            .and_then(|conf| load_cert(c, ns, spec, ct, &conf).map(|_| ()))
    } else {
        Ok(())
    };
    result.err()
}

// ---------------------------------------------------------------------------------------------
// The state of the deployment.

/// The SPIRE server's StatefulSet and its configuration.
fn server(c: &ClusterHandle) -> Option<(String, Value, ServerConf)> {
    let mut all = c.list("apps/v1", "StatefulSet", None);
    all.sort_by(|a, b| {
        (meta(a, "namespace"), meta(a, "name")).cmp(&(meta(b, "namespace"), meta(b, "name")))
    });
    let sts = all.into_iter().find(|s| {
        !is_deleting(s) && container_with_image(template_spec(s), SERVER_IMAGE).is_some()
    })?;
    let ns = meta(&sts, "namespace").to_string();
    let spec = template_spec(&sts);
    let ct = container_with_image(spec, SERVER_IMAGE)?;
    let conf = json_config(c, &ns, spec, ct, "spire-server")
        .and_then(|v| server_conf(&v))
        .ok()?;
    Some((ns, sts, conf))
}

pub(crate) fn server_settings(c: &ClusterHandle) -> Option<ServerSettings> {
    let (_, _, conf) = server(c)?;
    Some(ServerSettings {
        trust_domain: conf.trust_domain,
        jwt_issuer: conf.jwt_issuer,
        jwt_ttl: conf.jwt_ttl,
    })
}

pub(crate) fn jwt_key_p384(c: &ClusterHandle) -> bool {
    server(c).is_some_and(|(_, _, conf)| conf.p384)
}

fn daemonset_with(c: &ClusterHandle, repo: &str) -> Option<Value> {
    let mut all: Vec<Value> = c
        .list("apps/v1", "DaemonSet", None)
        .into_iter()
        .filter(|d| !is_deleting(d) && container_with_image(template_spec(d), repo).is_some())
        .collect();
    all.sort_by_key(|d| !daemonset_ready(d));
    all.into_iter().next()
}

fn csi_driver_name(c: &ClusterHandle) -> String {
    daemonset_with(c, CSI_DRIVER_IMAGE)
        .and_then(|d| {
            container_with_image(template_spec(&d), CSI_DRIVER_IMAGE)
                .and_then(|ct| flag(ct, "plugin-name"))
        })
        .unwrap_or_else(|| DEFAULT_CSI_DRIVER.to_string())
}

pub(crate) fn workload_api(c: &ClusterHandle) -> WorkloadApi {
    let socket_name = daemonset_with(c, AGENT_IMAGE)
        .and_then(|d| {
            let spec = template_spec(&d);
            let ct = container_with_image(spec, AGENT_IMAGE)?;
            json_config(c, meta(&d, "namespace"), spec, ct, "spire-agent")
                .and_then(|v| agent_conf(&v))
                .ok()
        })
        .unwrap_or_else(|| "api.sock".to_string());
    WorkloadApi {
        csi_driver: csi_driver_name(c),
        socket_name,
    }
}

/// Upstream SPIRE, when it is ready to issue identities.
struct Ready {
    server: ServerConf,
    manager: ManagerConf,
}

/// The server's StatefulSet runs (with the controller manager), and so do the agents and the
/// CSI driver: the manager's configuration and the server's.
fn ready(c: &ClusterHandle) -> Option<Ready> {
    let (ns, sts, server) = server(c)?;
    let spec = template_spec(&sts);
    let cm = container_with_image(spec, CONTROLLER_MANAGER_IMAGE)?;
    if !statefulset_ready(&sts) {
        return None;
    }
    let manager = manager_conf(c, &ns, spec, cm).ok()?;
    if !daemonset_with(c, AGENT_IMAGE).is_some_and(|d| daemonset_ready(&d))
        || !daemonset_with(c, CSI_DRIVER_IMAGE).is_some_and(|d| daemonset_ready(&d))
    {
        return None;
    }
    let driver = csi_driver_name(c);
    c.get("storage.k8s.io/v1", "CSIDriver", None, &driver)
        .filter(|d| !is_deleting(d))?;
    Some(Ready { server, manager })
}

/// The server's pod runs (the bundle notifier is part of it).
fn server_running(c: &ClusterHandle) -> Option<ServerConf> {
    let (_, sts, conf) = server(c)?;
    statefulset_ready(&sts).then_some(conf)
}

// ---------------------------------------------------------------------------------------------
// Go templates (the subset the controller manager's templates use).

/// A value a template expression evaluates to.
#[derive(Debug, Clone)]
enum Tv<'a> {
    /// A Go struct (ObjectMeta, PodSpec, NodeSpec): fields by their Go names.
    Struct(&'static str, &'a Value),
    /// A `map[string]string` (labels, annotations, nodeSelector).
    Map(&'a Value),
    Str(String),
    /// A missing map key (`<no value>` when printed).
    NoValue,
}

const META_FIELDS: &[&str] = &[
    "Name",
    "GenerateName",
    "Namespace",
    "UID",
    "ResourceVersion",
    "Generation",
    "Labels",
    "Annotations",
];
const POD_SPEC_FIELDS: &[&str] = &[
    "ServiceAccountName",
    "DeprecatedServiceAccount",
    "NodeName",
    "Hostname",
    "Subdomain",
    "SchedulerName",
    "PriorityClassName",
    "RestartPolicy",
    "DNSPolicy",
    "RuntimeClassName",
    "HostNetwork",
    "HostPID",
    "HostIPC",
    "NodeSelector",
];
const NODE_SPEC_FIELDS: &[&str] = &["PodCIDR", "ProviderID", "Unschedulable"];
const MAP_FIELDS: &[&str] = &["Labels", "Annotations", "NodeSelector"];

/// `ServiceAccountName` → `serviceAccountName`, `UID` → `uid`, `DNSPolicy` → `dnsPolicy`.
fn json_name(go: &str) -> String {
    if go == "DeprecatedServiceAccount" {
        return "serviceAccount".into();
    }
    let chars: Vec<char> = go.chars().collect();
    let upper_run = chars.iter().take_while(|c| c.is_ascii_uppercase()).count();
    let lower_to = if upper_run == chars.len() || upper_run <= 1 {
        upper_run
    } else {
        upper_run - 1
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            if i < lower_to.max(1) {
                ch.to_ascii_lowercase()
            } else {
                *ch
            }
        })
        .collect()
}

/// The data a ClusterSPIFFEID template sees.
struct TemplateData<'a> {
    trust_domain: &'a str,
    cluster_name: &'a str,
    cluster_domain: &'a str,
    pod: &'a Value,
    node: &'a Value,
}

fn scalar(v: Option<&Value>) -> Tv<'static> {
    match v {
        None | Some(Value::Null) => Tv::Str(String::new()),
        Some(Value::String(s)) => Tv::Str(s.clone()),
        Some(Value::Bool(b)) => Tv::Str(b.to_string()),
        Some(Value::Number(n)) => Tv::Str(n.to_string()),
        Some(other) => Tv::Str(other.to_string()),
    }
}

impl<'a> TemplateData<'a> {
    fn root(&self, field: &str) -> Result<Tv<'a>, String> {
        Ok(match field {
            "TrustDomain" => Tv::Str(self.trust_domain.to_string()),
            "ClusterName" => Tv::Str(self.cluster_name.to_string()),
            "ClusterDomain" => Tv::Str(self.cluster_domain.to_string()),
            "PodMeta" => Tv::Struct("ObjectMeta", &self.pod["metadata"]),
            "PodSpec" => Tv::Struct("PodSpec", &self.pod["spec"]),
            "NodeMeta" => Tv::Struct("ObjectMeta", &self.node["metadata"]),
            "NodeSpec" => Tv::Struct("NodeSpec", &self.node["spec"]),
            other => {
                return Err(format!(
                    "template: can't evaluate field {other} in type *spirev1alpha1.templateData"
                ));
            }
        })
    }
}

fn field<'a>(v: Tv<'a>, name: &str) -> Result<Tv<'a>, String> {
    match v {
        Tv::Struct(ty, obj) => {
            let known = match ty {
                "ObjectMeta" => META_FIELDS,
                "PodSpec" => POD_SPEC_FIELDS,
                _ => NODE_SPEC_FIELDS,
            };
            if !known.contains(&name) {
                return Err(format!(
                    "template: can't evaluate field {name} in type v1.{ty} (kubesim knows {})",
                    known.join(", ")
                ));
            }
            let value = obj.get(json_name(name));
            if MAP_FIELDS.contains(&name) {
                Ok(Tv::Map(value.unwrap_or(&Value::Null)))
            } else {
                Ok(scalar(value))
            }
        }
        Tv::Map(m) => Ok(match m.get(name) {
            Some(v) => scalar(Some(v)),
            None => Tv::NoValue,
        }),
        Tv::Str(_) | Tv::NoValue => Err(format!(
            "template: can't evaluate field {name} in type string"
        )),
    }
}

fn eval_chain<'a>(data: &TemplateData<'a>, chain: &str) -> Result<Tv<'a>, String> {
    let Some(rest) = chain.strip_prefix('.') else {
        return Err(format!(
            "kubesim: unsupported template expression {chain:?}"
        ));
    };
    let mut parts = rest.split('.');
    let first = parts.next().unwrap_or_default();
    let mut v = data.root(first)?;
    for p in parts {
        if p.is_empty() || !p.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            return Err(format!(
                "kubesim: unsupported template expression {chain:?}"
            ));
        }
        v = field(v, p)?;
    }
    Ok(v)
}

fn unquote(s: &str) -> Option<String> {
    if s.len() >= 2 && s.starts_with('`') && s.ends_with('`') {
        return Some(s[1..s.len() - 1].to_string());
    }
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        return serde_json::from_str(s).ok();
    }
    None
}

fn eval_action(data: &TemplateData, action: &str) -> Result<String, String> {
    let words: Vec<&str> = action.split_whitespace().collect();
    let v = match words.as_slice() {
        [chain] => eval_chain(data, chain)?,
        ["index", target, keys @ ..] if !keys.is_empty() => {
            let mut v = eval_chain(data, target)?;
            for k in keys {
                let key = unquote(k).ok_or_else(|| {
                    format!("kubesim: unsupported index key {k} (use a quoted string)")
                })?;
                v = match v {
                    // index of a missing key is the map's zero value.
                    Tv::Map(m) => scalar(m.get(&key)),
                    _ => {
                        return Err(format!(
                            "template: error calling index: cannot index {target} with {key:?}"
                        ));
                    }
                };
            }
            v
        }
        _ => {
            return Err(format!(
                "kubesim: unsupported template action {{{{ {action} }}}} (kubesim evaluates fields such as .PodMeta.Name and index .PodMeta.Labels \"key\")"
            ));
        }
    };
    match v {
        Tv::Str(s) => Ok(s),
        Tv::NoValue => Ok("<no value>".into()),
        Tv::Map(_) | Tv::Struct(..) => Err(format!(
            "kubesim: {action} is not a string (printing maps and structs is not simulated)"
        )),
    }
}

/// Render a ClusterSPIFFEID template: literal text and `{{ ... }}` actions (with `{{-`/`-}}`
/// trimming and `{{/* comments */}}`); actions are a field chain (`.TrustDomain`,
/// `.ClusterName`, `.ClusterDomain`, `.PodMeta.Name`, `.PodMeta.Namespace`, `.PodMeta.UID`,
/// `.PodMeta.Labels.app`, `.PodSpec.ServiceAccountName`, `.PodSpec.NodeName`,
/// `.NodeMeta.Name`, ...) or `index <chain> "key"...`. A missing label prints `<no value>`
/// through a field and nothing through `index`, as in Go. Anything else is an error.
fn render_template(template: &str, data: &TemplateData) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let mut literal = &rest[..start];
        let after = &rest[start + 2..];
        let trim_left = after.starts_with('-') && after[1..].starts_with(char::is_whitespace);
        if trim_left {
            literal = literal.trim_end();
        }
        out.push_str(literal);
        let end = after
            .find("}}")
            .ok_or_else(|| "template: unclosed action".to_string())?;
        let mut inner = &after[..end];
        let mut next = &after[end + 2..];
        if trim_left {
            inner = &inner[1..];
        }
        if inner.ends_with('-') && inner[..inner.len() - 1].ends_with(char::is_whitespace) {
            inner = &inner[..inner.len() - 1];
            next = next.trim_start();
        }
        let inner = inner.trim();
        if !(inner.starts_with("/*") && inner.ends_with("*/")) {
            out.push_str(&eval_action(data, inner)?);
        }
        rest = next;
    }
    out.push_str(rest);
    Ok(out)
}

/// Validate a SPIFFE ID as go-spiffe does; returns its trust domain.
fn spiffe_id_trust_domain(id: &str) -> Result<&str, String> {
    let rest = id
        .strip_prefix("spiffe://")
        .ok_or("scheme is missing or invalid")?;
    let (td, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    valid_trust_domain(td)?;
    if path.is_empty() {
        return Ok(td);
    }
    if path.ends_with('/') {
        return Err("path cannot have a trailing slash".into());
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() {
            return Err("path cannot contain empty segments".into());
        }
        if seg == "." || seg == ".." {
            return Err("path cannot contain dot segments".into());
        }
        if !seg
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_'))
        {
            return Err(
                "path segment characters are limited to letters, numbers, dots, dashes, and underscores"
                    .into(),
            );
        }
    }
    Ok(td)
}

// ---------------------------------------------------------------------------------------------
// Registration entries.

#[derive(Debug, Clone, Default, PartialEq)]
struct Stats {
    namespaces_selected: u64,
    namespaces_ignored: u64,
    pods_selected: u64,
    render_failures: u64,
    entries_masked: u64,
    entries_to_set: u64,
    entry_failures: u64,
}

impl Stats {
    fn to_json(&self) -> Value {
        json!({
            "namespacesSelected": self.namespaces_selected,
            "namespacesIgnored": self.namespaces_ignored,
            "podsSelected": self.pods_selected,
            "podEntryRenderFailures": self.render_failures,
            "entriesMasked": self.entries_masked,
            "entriesToSet": self.entries_to_set,
            "entryFailures": self.entry_failures,
        })
    }
}

/// What the controller manager computes: stats per ClusterSPIFFEID and, per pod uid, the
/// SPIFFE IDs the server issues (most preferred first).
struct Registrations {
    stats: BTreeMap<String, Stats>,
    pod_ids: BTreeMap<String, Vec<String>>,
}

fn registrations(c: &ClusterHandle, up: &Ready) -> Registrations {
    let mut crs: Vec<Value> = if c
        .core()
        .store
        .type_of(SPIRE_API, "ClusterSPIFFEID")
        .is_some()
    {
        c.list(SPIRE_API, "ClusterSPIFFEID", None)
    } else {
        Vec::new()
    };
    // The controller prefers the oldest object (then the smallest uid).
    crs.sort_by(|a, b| {
        (meta(a, "creationTimestamp"), meta(a, "uid"))
            .cmp(&(meta(b, "creationTimestamp"), meta(b, "uid")))
    });
    let namespaces = c.list("v1", "Namespace", None);
    let nodes: BTreeMap<String, Value> = c
        .list("v1", "Node", None)
        .into_iter()
        .map(|n| (meta(&n, "name").to_string(), n))
        .collect();
    let mut pods_by_ns: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in c.list("v1", "Pod", None) {
        pods_by_ns
            .entry(meta(&p, "namespace").to_string())
            .or_default()
            .push(p);
    }
    let mut stats: BTreeMap<String, Stats> = BTreeMap::new();
    // (pod uid, spiffe id) → declared by (index into crs), fallback or not.
    let mut declared: Vec<(String, String, usize, bool)> = Vec::new();
    for (i, cr) in crs.iter().enumerate() {
        let name = meta(cr, "name").to_string();
        let st = stats.entry(name).or_default();
        if is_deleting(cr) {
            continue;
        }
        let spec = &cr["spec"];
        let template = spec["spiffeIDTemplate"].as_str().unwrap_or_default();
        let fallback = spec["fallback"] == true;
        let ns_sel = LabelSelector::from_object(&spec["namespaceSelector"]);
        let pod_sel = LabelSelector::from_object(&spec["podSelector"]);
        for ns in namespaces
            .iter()
            .filter(|n| ns_sel.matches(n) && !is_deleting(n))
        {
            st.namespaces_selected += 1;
            let ns_name = meta(ns, "name");
            if up.manager.ignores(ns_name) {
                st.namespaces_ignored += 1;
                continue;
            }
            for pod in pods_by_ns
                .get(ns_name)
                .into_iter()
                .flatten()
                .filter(|p| pod_sel.matches(p))
            {
                st.pods_selected += 1;
                let node_name = pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let Some(node) = nodes.get(node_name) else {
                    continue; // no node: no entry (yet)
                };
                let data = TemplateData {
                    trust_domain: &up.manager.trust_domain,
                    cluster_name: &up.manager.cluster_name,
                    cluster_domain: &up.manager.cluster_domain,
                    pod,
                    node,
                };
                match render_template(template, &data)
                    .and_then(|id| spiffe_id_trust_domain(&id).map(|_| id.clone()))
                {
                    Ok(id) => declared.push((meta(pod, "uid").to_string(), id, i, fallback)),
                    Err(_) => st.render_failures += 1,
                }
            }
        }
    }
    // Fallback entries only for pods no other ClusterSPIFFEID covers.
    let covered: std::collections::BTreeSet<String> = declared
        .iter()
        .filter(|d| !d.3)
        .map(|d| d.0.clone())
        .collect();
    declared.retain(|d| !d.3 || !covered.contains(&d.0));
    let mut pod_ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen: std::collections::BTreeSet<(String, String)> = Default::default();
    // `declared` is in preference order (crs are sorted).
    for (pod, id, i, _) in declared {
        let st = stats
            .get_mut(meta(&crs[i], "name"))
            .expect("stats for every ClusterSPIFFEID");
        if !seen.insert((pod.clone(), id.clone())) {
            st.entries_masked += 1;
            continue;
        }
        st.entries_to_set += 1;
        if spiffe_id_trust_domain(&id).ok() != Some(up.server.trust_domain.as_str()) {
            // The server only registers IDs of its own trust domain.
            st.entry_failures += 1;
            continue;
        }
        pod_ids.entry(pod).or_default().push(id);
    }
    Registrations { stats, pod_ids }
}

/// The SPIFFE ID the agent gives `pod` (kind): its first registration entry, once SPIRE is ready.
pub(crate) fn pod_spiffe_id(c: &ClusterHandle, pod: &Value) -> Option<String> {
    let up = ready(c)?;
    registrations(c, &up)
        .pod_ids
        .remove(meta(pod, "uid"))?
        .into_iter()
        .next()
}

impl ClusterHandle {
    /// The SPIFFE ID SPIRE would give pod `namespace/name` now (`None`: none). OpenShift: the
    /// ZTWIM rule; kind: the ClusterSPIFFEIDs (see [`crate::spire_upstream`]).
    pub fn pod_spiffe_id(&self, namespace: &str, name: &str) -> Option<String> {
        let pod = self.get("v1", "Pod", Some(namespace), name)?;
        crate::spire::pod_spiffe_id(self, &pod)
    }
}

// ---------------------------------------------------------------------------------------------
// The controller.

/// Upstream SPIRE on kind (see the module docs).
pub struct SpireUpstream;

impl Controller for SpireUpstream {
    fn name(&self) -> &str {
        "spire-upstream"
    }

    fn handle(&self, c: &ClusterHandle, ev: &Event) {
        match ev.storage_key.as_str() {
            "/configmaps" | "/secrets" => {
                if let Some(ns) = ev.namespace() {
                    crate::workloads::recheck_pods(c, ns);
                }
            }
            "apps/statefulsets"
            | "apps/daemonsets"
            | "apps/deployments"
            | "/pods"
            | "/services"
            | "/namespaces"
            | "/nodes"
            | "storage.k8s.io/csidrivers"
            | "spire.spiffe.io/clusterspiffeids" => {}
            _ => return,
        }
        notify_bundle(c);
        write_stats(c);
        reconcile_providers(c);
    }
}

/// The k8sbundle notifier: the CA into its ConfigMap, once the server runs.
fn notify_bundle(c: &ClusterHandle) {
    let Some(conf) = server_running(c) else {
        return;
    };
    let Some((ns, name, key)) = conf.bundle.clone() else {
        return;
    };
    if c.get("v1", "ConfigMap", Some(&ns), &name).is_none() {
        return; // the notifier updates an existing ConfigMap only
    }
    let pem = crate::spire::spire_ca_pem(c, &conf.trust_domain, Some(&conf.ca_subject));
    update_object(c, "v1", "ConfigMap", Some(&ns), &name, |cm| {
        if !cm["data"].is_object() {
            cm["data"] = json!({});
        }
        cm["data"][key.as_str()] = json!(pem);
    });
}

fn write_stats(c: &ClusterHandle) {
    if c.core()
        .store
        .type_of(SPIRE_API, "ClusterSPIFFEID")
        .is_none()
    {
        return;
    }
    let Some(up) = ready(c) else {
        return;
    };
    let regs = registrations(c, &up);
    for (name, st) in regs.stats {
        let stats = st.to_json();
        update_status(c, SPIRE_API, "ClusterSPIFFEID", None, &name, |o| {
            if !o["status"].is_object() {
                o["status"] = json!({});
            }
            o["status"]["stats"] = stats.clone();
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The OIDC discovery provider.

/// The port number a Service port's `targetPort` names on the provider's container.
fn target_port(port: &Value, ct: &Value) -> Option<u16> {
    match &port["targetPort"] {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => match name.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => ct["ports"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == name.as_str())?["containerPort"]
                .as_u64()
                .and_then(|n| u16::try_from(n).ok()),
        },
        _ => port["port"].as_u64().and_then(|n| u16::try_from(n).ok()),
    }
}

fn selects(svc: &Value, labels: &Value) -> bool {
    let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
        return false;
    };
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Listeners for the available providers, and the NodePort routes to them.
fn reconcile_providers(c: &ClusterHandle) {
    let mut desired: BTreeMap<String, (String, SocketAddr)> = BTreeMap::new();
    let nodes = c.node_names();
    let services = c.list("v1", "Service", None);
    for d in c.list("apps/v1", "Deployment", None) {
        let spec = template_spec(&d);
        let Some(ct) = container_with_image(spec, OIDC_IMAGE) else {
            continue;
        };
        if is_deleting(&d) || ready_pods(c, &d).is_empty() {
            continue;
        }
        let ns = meta(&d, "namespace").to_string();
        let key = format!("{ns}/{}", meta(&d, "name"));
        let Ok(conf) = json_config(c, &ns, spec, ct, "oidc-discovery-provider")
            .and_then(|v| provider_conf(&v))
        else {
            continue;
        };
        let Ok(cert) = load_cert(c, &ns, spec, ct, &conf) else {
            continue; // the pods keep serving the certificate they loaded
        };
        let Some(addr) = provider_listener(c, &key, cert) else {
            continue;
        };
        let labels = d
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or(Value::Null);
        for svc in services.iter().filter(|s| {
            meta(s, "namespace") == ns
                && !is_deleting(s)
                && s.pointer("/spec/type") == Some(&json!("NodePort"))
                && selects(s, &labels)
        }) {
            for port in svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(node_port) = port["nodePort"].as_u64() else {
                    continue;
                };
                if target_port(port, ct) != Some(conf.port) {
                    continue; // nothing listens there
                }
                for node in &nodes {
                    desired.insert(format!("{node}:{node_port}"), (key.clone(), addr));
                }
            }
        }
    }
    let hub = c.hub();
    let mut owned = hub.upstream.routes.lock().unwrap();
    for (route, _) in owned.iter() {
        if !desired.contains_key(route) {
            c.routes().remove(route);
        }
    }
    owned.clear();
    for (route, (key, addr)) in desired {
        c.add_proxy_route(&route, addr);
        owned.insert(route, key);
    }
}

/// The Ready pods of a Deployment (the endpoints of a Service selecting them).
fn ready_pods(c: &ClusterHandle, d: &Value) -> Vec<Value> {
    let selector = LabelSelector::from_object(d.pointer("/spec/selector").unwrap_or(&Value::Null));
    if selector.is_empty() {
        return Vec::new();
    }
    c.list("v1", "Pod", Some(meta(d, "namespace")))
        .into_iter()
        .filter(|p| selector.matches(p) && !is_deleting(p) && has_condition(p, "Ready", "True"))
        .collect()
}

/// A pod started (called by the workloads controller right after it made a pod Ready, so that
/// a provider is routed before its Deployment reports Available, as kube-proxy follows the
/// endpoints).
pub(crate) fn pod_started(c: &ClusterHandle, pod: &Value) {
    if !c.profile().is_openshift() && container_with_image(&pod["spec"], OIDC_IMAGE).is_some() {
        reconcile_providers(c);
    }
}

/// The provider's HTTPS listener (started once per Deployment), now serving `cert`.
fn provider_listener(c: &ClusterHandle, key: &str, cert: Arc<CertifiedKey>) -> Option<SocketAddr> {
    let mut providers = c.hub().upstream.providers.lock().unwrap();
    if let Some(p) = providers.get(key) {
        *p.cert.0.write().unwrap() = Some(cert);
        return Some(p.addr);
    }
    let slot = Arc::new(CertSlot(RwLock::new(Some(cert))));
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_no_client_auth()
    .with_cert_resolver(slot.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let weak = c.downgrade();
    let (ns, name) = key.split_once('/')?;
    let (ns, name) = (ns.to_string(), name.to_string());
    let addr = crate::spire::serve_https(
        Arc::new(tls),
        Arc::new(move |_sni, req| match weak.upgrade() {
            Some(cluster) => serve_provider(&cluster, &ns, &name, req),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "cluster stopped\n",
            ),
        }),
    )?;
    providers.insert(key.to_string(), Provider { addr, cert: slot });
    Some(addr)
}

fn plain(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    text(code, "text/plain; charset=utf-8", body)
}

/// Whether the provider has keys to serve: `server_api`, or a pod of its own with a SPIFFE ID
/// and the server's trust domain in `workload_api.trust_domain`.
fn provider_has_keys(c: &ClusterHandle, d: &Value, conf: &ProviderConf) -> bool {
    let Some(server) = server_running(c) else {
        return false;
    };
    let Some(td) = &conf.workload_td else {
        return true;
    };
    if *td != server.trust_domain {
        return false;
    }
    ready_pods(c, d)
        .iter()
        .any(|p| pod_spiffe_id(c, p).is_some())
}

/// One request to the provider of Deployment `ns/name`, as the real provider answers it.
fn serve_provider(
    c: &ClusterHandle,
    ns: &str,
    name: &str,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let Some(d) = c
        .get("apps/v1", "Deployment", Some(ns), name)
        .filter(|d| !ready_pods(c, d).is_empty() && !is_deleting(d))
    else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available\n".into(),
        );
    };
    let spec = template_spec(&d);
    let conf = container_with_image(spec, OIDC_IMAGE)
        .ok_or_else(String::new)
        .and_then(|ct| json_config(c, ns, spec, ct, "oidc-discovery-provider"))
        .and_then(|v| provider_conf(&v));
    let Ok(conf) = conf else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available\n".into(),
        );
    };
    let path = req.uri().path();
    if path != "/.well-known/openid-configuration" && path != "/keys" {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n".into());
    }
    if req.method() != hyper::Method::GET {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        );
    }
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if path == "/keys" {
        return if provider_has_keys(c, &d, &conf) {
            json_response(&c.spire_jwks())
        } else {
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "document not available\n".into(),
            )
        };
    }
    let domain = host
        .rsplit_once(':')
        .filter(|(_, p)| p.chars().all(|ch| ch.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(&host);
    if !conf.domains.iter().any(|d| d == domain) {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("domain {domain:?} is not allowed\n"),
        );
    }
    let issuer = conf
        .jwt_issuer
        .clone()
        .unwrap_or_else(|| format!("https://{host}"));
    json_response(&crate::spire::discovery_document(
        &issuer,
        &format!("https://{host}/keys"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data<'a>(pod: &'a Value, node: &'a Value) -> TemplateData<'a> {
        TemplateData {
            trust_domain: "hub.kind",
            cluster_name: "hub",
            cluster_domain: "cluster.local",
            pod,
            node,
        }
    }

    #[test]
    fn templates_render_like_go() {
        let pod = json!({"metadata": {"name": "p-0", "namespace": "argocd", "uid": "u-1", "labels": {"app": "web", "app.kubernetes.io/name": "argocd-server"}},
                         "spec": {"serviceAccountName": "argocd-server", "nodeName": "hub-worker", "dnsPolicy": "ClusterFirst"}});
        let node = json!({"metadata": {"name": "hub-worker", "uid": "n-1"}, "spec": {"podCIDR": "10.244.1.0/24"}});
        let d = data(&pod, &node);
        let r = |t: &str| render_template(t, &d);
        assert_eq!(
            r("spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}").unwrap(),
            "spiffe://hub.kind/ns/argocd/sa/argocd-server"
        );
        assert_eq!(
            r("spiffe://{{.TrustDomain}}/{{ .PodSpec.NodeName }}/{{ .PodMeta.Name }}/{{.PodMeta.UID}}").unwrap(),
            "spiffe://hub.kind/hub-worker/p-0/u-1"
        );
        assert_eq!(r("{{ .PodMeta.Labels.app }}").unwrap(), "web");
        assert_eq!(
            r(r#"{{ index .PodMeta.Labels "app.kubernetes.io/name" }}"#).unwrap(),
            "argocd-server"
        );
        assert_eq!(r("{{ .PodMeta.Labels.missing }}").unwrap(), "<no value>");
        assert_eq!(r(r#"{{ index .PodMeta.Labels "missing" }}"#).unwrap(), "");
        assert_eq!(r("a {{- .ClusterName -}} b").unwrap(), "ahubb");
        assert_eq!(r("x{{/* note */}}y").unwrap(), "xy");
        assert_eq!(
            r("{{ .NodeMeta.Name }} {{ .NodeSpec.PodCIDR }} {{ .PodSpec.DNSPolicy }}").unwrap(),
            "hub-worker 10.244.1.0/24 ClusterFirst"
        );
        assert_eq!(r("{{ .ClusterDomain }}").unwrap(), "cluster.local");
        assert!(r("{{ .PodMeta.Name | printf \"%s\" }}").is_err());
        assert!(r("{{ .PodMeta.Bogus }}").is_err());
        assert!(r("{{ .Nope }}").is_err());
        assert!(r("{{ .PodMeta.Labels }}").is_err());
        assert!(r("{{ .PodMeta.Name").is_err());
        assert_eq!(json_name("UID"), "uid");
        assert_eq!(json_name("DNSPolicy"), "dnsPolicy");
        assert_eq!(json_name("PodCIDR"), "podCIDR");
        assert_eq!(json_name("HostIPC"), "hostIPC");
    }

    #[test]
    fn spiffe_ids_are_validated() {
        assert_eq!(
            spiffe_id_trust_domain("spiffe://hub.kind/ns/a/sa/b"),
            Ok("hub.kind")
        );
        assert_eq!(spiffe_id_trust_domain("spiffe://td"), Ok("td"));
        assert!(spiffe_id_trust_domain("spiffe://hub.kind/ns/a/<no value>").is_err());
        assert!(spiffe_id_trust_domain("spiffe://hub.kind/ns/a/").is_err());
        assert!(spiffe_id_trust_domain("spiffe://hub.kind/ns//a").is_err());
        assert!(spiffe_id_trust_domain("spiffe://Hub/ns").is_err());
        assert!(spiffe_id_trust_domain("https://hub/ns").is_err());
        assert!(spiffe_id_trust_domain("spiffe://hub/./x").is_err());
    }

    #[test]
    fn flags_and_images() {
        let ct = json!({"args": ["-config", "/run/spire/config/server.conf", "--plugin-name=csi.example"]});
        assert_eq!(
            flag(&ct, "config").as_deref(),
            Some("/run/spire/config/server.conf")
        );
        assert_eq!(flag(&ct, "plugin-name").as_deref(), Some("csi.example"));
        assert_eq!(flag(&ct, "nope"), None);
        assert!(image_is("ghcr.io/spiffe/spire-server:1.13.3", SERVER_IMAGE));
        assert!(image_is(
            "ghcr.io/spiffe/spire-server@sha256:abc",
            SERVER_IMAGE
        ));
        assert!(!image_is("ghcr.io/spiffe/spire-server-x:1", SERVER_IMAGE));
    }

    #[test]
    fn server_and_provider_configs() {
        let s = server_conf(&json!({"server": {"trust_domain": "hub.kind", "jwt_issuer": "https://hub-control-plane:30443", "default_jwt_svid_ttl": "10m", "jwt_key_type": "ec-p384",
                                                 "ca_subject": [{"common_name": "CA", "country": ["US"], "organization": ["o"]}]},
                                    "plugins": {"Notifier": [{"k8sbundle": {"plugin_data": {"namespace": "spire", "config_map": "b"}}}]}}))
            .unwrap();
        assert_eq!(s.trust_domain, "hub.kind");
        assert_eq!(s.jwt_ttl, 600);
        assert!(s.p384);
        assert_eq!(s.ca_subject["country"], "US");
        assert_eq!(
            s.bundle,
            Some(("spire".into(), "b".into(), "bundle.crt".into()))
        );
        assert!(server_conf(&json!({"server": {}})).is_err());
        assert!(server_conf(&json!({"server": {"trust_domain": "Bad Domain"}})).is_err());
        let p = provider_conf(&json!({"domains": ["h"], "serving_cert_file": {"addr": ":8443", "cert_file_path": "/c", "key_file_path": "/k"},
                                      "workload_api": {"socket_path": "/s", "trust_domain": "hub.kind"}})).unwrap();
        assert_eq!(p.port, 8443);
        assert_eq!(p.workload_td.as_deref(), Some("hub.kind"));
        assert!(provider_conf(&json!({"domains": ["h"], "acme": {}})).is_err());
        assert!(provider_conf(&json!({"domains": [], "serving_cert_file": {}})).is_err());
        assert!(provider_conf(&json!({"domains": ["h"], "serving_cert_file": {"cert_file_path": "/c", "key_file_path": "/k"}})).is_err());
    }
}
