//! The Zero Trust Workload Identity Manager operator and its SPIRE operands (controller `ztwim`),
//! the SPIRE signing key, and the SPIRE OIDC discovery provider served over HTTPS.
//!
//! Once the operator Deployment (label `name=zero-trust-workload-identity-manager`, installed by
//! OLM) is Available, the five cluster-scoped CRs named `cluster` are reconciled into their
//! namespace's workloads:
//!
//! | CR | creates | Ready when |
//! | --- | --- | --- |
//! | SpireServer | ConfigMaps `spire-server` (`server.conf`, JSON) and `spire-bundle` (`bundle.crt`), StatefulSet and Service `spire-server` | valid https `jwtIssuer`, trust domain known, StatefulSet ready |
//! | SpireAgent | ConfigMap and DaemonSet `spire-agent` | DaemonSet ready on every node |
//! | SpiffeCSIDriver | CSIDriver `csi.spiffe.io`, DaemonSet `spire-spiffe-csi-driver` | DaemonSet ready |
//! | SpireOIDCDiscoveryProvider | ConfigMap, Deployment and Service `spire-spiffe-oidc-discovery-provider`, Route `spire-oidc-discovery-provider` (host = the jwtIssuer host) | valid https `jwtIssuer` equal to the SpireServer's, Deployment available, Route admitted |
//! | ZeroTrustWorkloadIdentityManager | (holds trustDomain, clusterName, bundleConfigMap) | all four operands Ready |
//!
//! Each CR gets `status.conditions` (`Ready` plus the per-part ones such as
//! `ConfigurationValid`, `StatefulSetAvailable`); the ZTWIM CR also gets `status.operands`.
//!
//! The discovery provider is reachable through the env file's `HTTPS_PROXY` as
//! `<route host>:443`, with a `*.apps.<base domain>` certificate signed by the ingress CA:
//! `/.well-known/openid-configuration` and `/keys` (the JWKS of the cluster's SPIRE key).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};

use crate::cluster::Event;
use crate::controllers::Controller;
use crate::sim::ClusterHandle;
use crate::spire::{discovery_document, json_response, parse_go_duration, spire_ca_pem, text};
use crate::workloads::{
    daemonset_ready, deployment_available, ensure, has_condition, is_deleting, meta, owner_ref,
    set_condition, statefulset_ready, update_status,
};

/// API version of the ZTWIM operand CRs.
pub const OPERATOR_API: &str = "operator.openshift.io/v1alpha1";
/// The label value (`name=`) of the ZTWIM operator Deployment.
pub const OPERATOR_LABEL: &str = "zero-trust-workload-identity-manager";
/// The name the product and the runbook give the OIDC discovery Route.
pub const OIDC_ROUTE: &str = "spire-oidc-discovery-provider";
/// The name of the OIDC discovery provider's Deployment, Service and ConfigMap.
pub const OIDC_DEPLOYMENT: &str = "spire-spiffe-oidc-discovery-provider";
/// The socket file the SPIRE agent serves the Workload API on (in the CSI-mounted directory).
pub const AGENT_SOCKET_NAME: &str = "spire-agent.sock";

const MANAGED_BY: &str = "zero-trust-workload-identity-manager";

impl ClusterHandle {
    /// Make the discovery document report `issuer` instead of the SpireOIDCDiscoveryProvider's
    /// `jwtIssuer` (`None` restores it), to test clients that check the issuer.
    pub fn set_oidc_issuer_override(&self, issuer: Option<String>) {
        *self.hub().issuer_override.lock().unwrap() = issuer;
    }

    /// The local address of the OIDC discovery HTTPS listener, once the Route exists.
    pub fn oidc_addr(&self) -> Option<SocketAddr> {
        *self.hub().oidc_addr.lock().unwrap()
    }
}

/// Whether SpireServer asks for an EC P-384 JWT key.
pub(crate) fn jwt_key_p384(c: &ClusterHandle) -> bool {
    get_cr(c, "SpireServer")
        .and_then(|s| {
            s.pointer("/spec/jwtKeyType")
                .and_then(Value::as_str)
                .map(|t| t == "ec-p384")
        })
        .unwrap_or(false)
}

/// The signing settings from SpireServer `cluster`: `jwtIssuer` (required),
/// `defaultJWTValidity` (default 5m) and the trust domain.
pub(crate) fn server_settings(c: &ClusterHandle) -> Option<crate::spire::ServerSettings> {
    let server = get_cr(c, "SpireServer")?;
    let issuer = spec_str(Some(&server), "jwtIssuer")?.to_string();
    let jwt_ttl = spec_str(Some(&server), "defaultJWTValidity")
        .and_then(parse_go_duration)
        .unwrap_or(300.0)
        .round() as i64;
    Some(crate::spire::ServerSettings {
        trust_domain: trust_domain(c)?,
        jwt_issuer: Some(issuer),
        jwt_ttl,
    })
}

/// The identity ZTWIM's agents give a pod: `spiffe://<td>/ns/<ns>/sa/<sa>` once SPIRE is
/// Ready, except in `openshift-*` namespaces.
pub(crate) fn pod_spiffe_id(c: &ClusterHandle, pod: &Value) -> Option<String> {
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str)?;
    if !spire_ready(c) || ns.starts_with("openshift-") {
        return None;
    }
    let td = trust_domain(c)?;
    let sa = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default");
    Some(format!("spiffe://{td}/ns/{ns}/sa/{sa}"))
}

/// Validate a JWT issuer as the simulated operator does: an `https` URL with a host and
/// without query or fragment.
pub(crate) fn validate_issuer(issuer: &str) -> Result<url::Url, String> {
    if issuer.is_empty() {
        return Err("issuer URL cannot be empty".into());
    }
    let u = url::Url::parse(issuer).map_err(|e| format!("invalid URL format: {e}"))?;
    if u.scheme() != "https" {
        return Err(format!(
            "scheme must be https, got: {} (the OIDC discovery provider is only served over TLS)",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("host is required".into());
    }
    if u.fragment().is_some() {
        return Err("fragments are not allowed".into());
    }
    if u.query().is_some() {
        return Err("query parameters are not allowed".into());
    }
    Ok(u)
}

fn normalise_issuer(issuer: &str) -> String {
    match url::Url::parse(issuer) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default().to_ascii_lowercase(),
            u.path().trim_end_matches('/')
        ),
        Err(_) => issuer.to_string(),
    }
}

fn get_cr(c: &ClusterHandle, kind: &str) -> Option<Value> {
    c.get(OPERATOR_API, kind, None, "cluster")
        .filter(|o| !is_deleting(o))
}

fn spec_str<'a>(obj: Option<&'a Value>, field: &str) -> Option<&'a str> {
    obj?.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The trust domain (ZeroTrustWorkloadIdentityManager `spec.trustDomain`, or the older
/// SpireServer `spec.trustDomain`).
pub(crate) fn trust_domain(c: &ClusterHandle) -> Option<String> {
    let ztwim = get_cr(c, "ZeroTrustWorkloadIdentityManager");
    let server = get_cr(c, "SpireServer");
    spec_str(ztwim.as_ref(), "trustDomain")
        .or_else(|| spec_str(server.as_ref(), "trustDomain"))
        .map(str::to_string)
}

/// The CSI driver name workloads mount the Workload API socket with.
pub(crate) fn csi_plugin_name(c: &ClusterHandle) -> String {
    spec_str(get_cr(c, "SpiffeCSIDriver").as_ref(), "pluginName")
        .unwrap_or("csi.spiffe.io")
        .to_string()
}

/// Whether SPIRE issues identities: SpireServer, SpireAgent and SpiffeCSIDriver are Ready.
pub(crate) fn spire_ready(c: &ClusterHandle) -> bool {
    ["SpireServer", "SpireAgent", "SpiffeCSIDriver"]
        .iter()
        .all(|k| get_cr(c, k).is_some_and(|o| has_condition(&o, "Ready", "True")))
        && trust_domain(c).is_some()
}

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": "spire",
        "app.kubernetes.io/part-of": "zero-trust-workload-identity-manager",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": component,
    })
}

fn selector(component: &str) -> Value {
    json!({"app.kubernetes.io/name": component, "app.kubernetes.io/instance": "spire"})
}

/// The simulated ZTWIM operator.
pub struct Ztwim;

impl Controller for Ztwim {
    fn name(&self) -> &str {
        "ztwim"
    }

    fn handle(&self, c: &ClusterHandle, ev: &Event) {
        let relevant = match ev.storage_key.as_str() {
            "operator.openshift.io/zerotrustworkloadidentitymanagers"
            | "operator.openshift.io/spireservers"
            | "operator.openshift.io/spireagents"
            | "operator.openshift.io/spiffecsidrivers"
            | "operator.openshift.io/spireoidcdiscoveryproviders" => true,
            "apps/deployments"
            | "apps/statefulsets"
            | "apps/daemonsets"
            | "route.openshift.io/routes"
            | "/configmaps" => {
                let l = ev.object.pointer("/metadata/labels");
                l.and_then(|l| l.get("name")) == Some(&json!(OPERATOR_LABEL))
                    || l.and_then(|l| l.get("app.kubernetes.io/managed-by"))
                        == Some(&json!(MANAGED_BY))
            }
            _ => false,
        };
        // Deletions count too: the ZTWIM CR then reports the missing operand, and a deleted
        // workload is recreated.
        if relevant {
            reconcile(c);
        }
    }
}

/// The running ZTWIM operator Deployment, if any.
fn operator_deployment(c: &ClusterHandle) -> Option<Value> {
    c.list("apps/v1", "Deployment", None).into_iter().find(|d| {
        d.pointer("/metadata/labels/name") == Some(&json!(OPERATOR_LABEL)) && !is_deleting(d)
    })
}

/// Conditions of one operand, in order; `Ready` is derived from them.
#[derive(Default)]
struct Conds(Vec<(String, bool, String, String)>);

impl Conds {
    fn add(&mut self, t: &str, ok: bool, reason: &str, message: impl Into<String>) {
        self.0.push((t.into(), ok, reason.into(), message.into()));
    }
    fn ready(&self) -> (bool, String) {
        match self.0.iter().find(|c| !c.1) {
            Some((t, _, _, m)) => (false, format!("{t}: {m}")),
            None => (true, "All components are ready".into()),
        }
    }
    /// Write the conditions (and `Ready`) to the CR's status.
    fn write(&self, c: &ClusterHandle, kind: &str) -> (bool, String) {
        let (ready, message) = self.ready();
        update_status(c, OPERATOR_API, kind, None, "cluster", |o| {
            if !o["status"].is_object() {
                o["status"] = json!({});
            }
            let conds = &mut o["status"]["conditions"];
            for (t, ok, reason, m) in &self.0 {
                set_condition(conds, t, if *ok { "True" } else { "False" }, reason, m);
            }
            if ready {
                set_condition(conds, "Ready", "True", "Ready", &message);
            } else {
                set_condition(conds, "Ready", "False", "Failed", &message);
            }
        });
        (ready, message)
    }
}

fn workload_condition(
    kind: &str,
    obj: Option<&Value>,
    name: &str,
    ns: &str,
) -> (bool, String, String) {
    let int = |o: &Value, p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    match (kind, obj) {
        (_, None) => (
            false,
            format!("{kind}NotFound"),
            format!("Failed to get {kind} {ns}/{name}: not found"),
        ),
        ("StatefulSet", Some(s)) => {
            let want = s
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if statefulset_ready(s) {
                (
                    true,
                    "StatefulSetReady".into(),
                    format!(
                        "StatefulSet {name} is healthy with {}/{want} replicas ready",
                        int(s, "/status/readyReplicas")
                    ),
                )
            } else {
                (
                    false,
                    "StatefulSetNotReady".into(),
                    format!(
                        "StatefulSet has {}/{want} replicas ready",
                        int(s, "/status/readyReplicas")
                    ),
                )
            }
        }
        ("DaemonSet", Some(d)) => {
            let desired = int(d, "/status/desiredNumberScheduled");
            if daemonset_ready(d) {
                (
                    true,
                    "DaemonSetReady".into(),
                    format!(
                        "DaemonSet {name} is healthy with {}/{desired} pods ready",
                        int(d, "/status/numberReady")
                    ),
                )
            } else if desired == 0 {
                (
                    false,
                    "DaemonSetNotReady".into(),
                    "DaemonSet has no pods scheduled".into(),
                )
            } else {
                (
                    false,
                    "DaemonSetNotReady".into(),
                    format!(
                        "DaemonSet has {}/{desired} pods ready",
                        int(d, "/status/numberReady")
                    ),
                )
            }
        }
        (_, Some(d)) => {
            let want = d
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if deployment_available(d) {
                (
                    true,
                    "DeploymentReady".into(),
                    format!(
                        "Deployment {name} is healthy with {}/{want} replicas ready",
                        int(d, "/status/readyReplicas")
                    ),
                )
            } else {
                (
                    false,
                    "DeploymentNotReady".into(),
                    format!(
                        "Deployment has {}/{want} replicas ready",
                        int(d, "/status/readyReplicas")
                    ),
                )
            }
        }
    }
}

/// Reconcile every operand (they are singletons; their state depends on each other).
fn reconcile(c: &ClusterHandle) {
    let Some(op) = operator_deployment(c) else {
        return;
    };
    if !deployment_available(&op) {
        return;
    }
    let ns = meta(&op, "namespace").to_string();
    let ztwim = get_cr(c, "ZeroTrustWorkloadIdentityManager");
    let server = get_cr(c, "SpireServer");
    let td = trust_domain(c);
    let cluster_name = spec_str(ztwim.as_ref(), "clusterName")
        .or_else(|| spec_str(server.as_ref(), "clusterName"))
        .unwrap_or("cluster")
        .to_string();
    let bundle_cm = spec_str(ztwim.as_ref(), "bundleConfigMap")
        .unwrap_or("spire-bundle")
        .to_string();
    let server_issuer = spec_str(server.as_ref(), "jwtIssuer").map(str::to_string);

    let mut results: Vec<(&str, Option<(bool, String)>)> = Vec::new();
    results.push((
        "SpireServer",
        server
            .as_ref()
            .map(|s| reconcile_server(c, &ns, s, td.as_deref(), &cluster_name, &bundle_cm)),
    ));
    let agent = get_cr(c, "SpireAgent");
    results.push((
        "SpireAgent",
        agent
            .as_ref()
            .map(|a| reconcile_agent(c, &ns, a, td.as_deref(), &cluster_name)),
    ));
    let csi = get_cr(c, "SpiffeCSIDriver");
    results.push((
        "SpiffeCSIDriver",
        csi.as_ref().map(|d| reconcile_csi(c, &ns, d)),
    ));
    let oidc = get_cr(c, "SpireOIDCDiscoveryProvider");
    results.push((
        "SpireOIDCDiscoveryProvider",
        oidc.as_ref()
            .map(|o| reconcile_oidc(c, &ns, o, td.as_deref(), server_issuer.as_deref())),
    ));
    if ztwim.is_some() {
        let operands: Vec<Value> = results
            .iter()
            .map(|(kind, r)| {
                let (ready, message) = r.clone().unwrap_or((false, format!("{kind} cluster not found")));
                json!({"kind": kind, "name": "cluster", "ready": ready.to_string(), "message": message})
            })
            .collect();
        let problems: Vec<String> = results
            .iter()
            .filter_map(|(kind, r)| match r {
                Some((true, _)) => None,
                Some((false, m)) => Some(format!("{kind}: {m}")),
                None => Some(format!("{kind}: not found (create {kind} cluster)")),
            })
            .collect();
        update_status(
            c,
            OPERATOR_API,
            "ZeroTrustWorkloadIdentityManager",
            None,
            "cluster",
            |o| {
                if !o["status"].is_object() {
                    o["status"] = json!({});
                }
                // Keep each operand's entry stable (the list is a map keyed by kind).
                o["status"]["operands"] = json!(operands);
                let conds = &mut o["status"]["conditions"];
                if problems.is_empty() {
                    set_condition(conds, "Ready", "True", "Ready", "All operands are ready");
                } else {
                    set_condition(
                        conds,
                        "Ready",
                        "False",
                        "OperandsNotReady",
                        &problems.join("; "),
                    );
                }
            },
        );
    }
}

fn reconcile_server(
    c: &ClusterHandle,
    ns: &str,
    cr: &Value,
    td: Option<&str>,
    cluster_name: &str,
    bundle_cm: &str,
) -> (bool, String) {
    let mut conds = Conds::default();
    let issuer = spec_str(Some(cr), "jwtIssuer").unwrap_or_default();
    let Some(td) = td else {
        conds.add(
            "ConfigurationValid",
            false,
            "TrustDomainMissing",
            "no trust domain: create ZeroTrustWorkloadIdentityManager cluster with spec.trustDomain",
        );
        return conds.write(c, "SpireServer");
    };
    if let Err(e) = validate_issuer(issuer) {
        conds.add(
            "ConfigurationValid",
            false,
            "InvalidJWTIssuerURL",
            format!("JWT issuer URL validation failed: {e}"),
        );
        return conds.write(c, "SpireServer");
    }
    conds.add(
        "ConfigurationValid",
        true,
        "Ready",
        "Configuration validation passed",
    );
    let s = |f: &str, d: &str| spec_str(Some(cr), f).unwrap_or(d).to_string();
    let subject = cr.pointer("/spec/caSubject");
    let subj = |k: &str| subject.and_then(|s| s.get(k)).cloned().unwrap_or(json!(""));
    let server_conf = json!({
        "health_checks": {"bind_address": "0.0.0.0", "bind_port": "8080", "listener_enabled": true, "live_path": "/live", "ready_path": "/ready"},
        "plugins": {
            "DataStore": [{"sql": {"plugin_data": {
                "database_type": cr.pointer("/spec/datastore/databaseType").cloned().unwrap_or(json!("sqlite3")),
                "connection_string": cr.pointer("/spec/datastore/connectionString").cloned().unwrap_or(json!("/run/spire/data/datastore.sqlite3")),
            }}}],
            "KeyManager": [{"disk": {"plugin_data": {"keys_path": "/run/spire/data/keys.json"}}}],
            "NodeAttestor": [{"k8s_psat": {"plugin_data": {"clusters": [{cluster_name: {"service_account_allow_list": [format!("{ns}:spire-agent")]}}]}}}],
            "Notifier": [{"k8sbundle": {"plugin_data": {"config_map": bundle_cm, "namespace": ns}}}],
        },
        "server": {
            "audit_log_enabled": false,
            "bind_address": "0.0.0.0",
            "bind_port": "8081",
            "ca_key_type": s("caKeyType", "rsa-2048"),
            "ca_subject": [{"common_name": subj("commonName"), "country": [subj("country")], "organization": [subj("organization")]}],
            "ca_ttl": s("caValidity", "24h"),
            "data_dir": "/run/spire/data",
            "default_jwt_svid_ttl": s("defaultJWTValidity", "5m"),
            "default_x509_svid_ttl": s("defaultX509Validity", "1h"),
            "jwt_issuer": issuer,
            "jwt_key_type": s("jwtKeyType", "rsa-2048"),
            "log_format": s("logFormat", "text"),
            "log_level": s("logLevel", "info"),
            "trust_domain": td,
        },
        "telemetry": {"Prometheus": {"host": "0.0.0.0", "port": "9402"}},
    });
    let conf_text = serde_json::to_string_pretty(&server_conf).expect("server.conf serialises");
    let owner = vec![owner_ref(cr)];
    let cm_ok = ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "spire-server", "namespace": ns, "labels": labels("spire-server"), "ownerReferences": owner},
               "data": {"server.conf": conf_text}}),
    )
    .is_some();
    let bundle = spire_ca_pem(c, td, subject);
    let bundle_ok = ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": bundle_cm, "namespace": ns, "labels": labels("spire-server"), "ownerReferences": owner},
               "data": {"bundle.crt": bundle}}),
    )
    .is_some();
    conds.add(
        "ConfigMapAvailable",
        cm_ok && bundle_ok,
        if cm_ok && bundle_ok {
            "SpireServerConfigMapReady"
        } else {
            "SpireServerConfigMapFailed"
        },
        if cm_ok && bundle_ok {
            format!("ConfigMaps spire-server and {bundle_cm} are available")
        } else {
            format!("failed to create ConfigMaps spire-server/{bundle_cm}")
        },
    );
    ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "spire-server", "namespace": ns, "labels": labels("spire-server"), "ownerReferences": owner}}),
    );
    ensure(
        c,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "spire-server", "namespace": ns, "labels": labels("spire-server"), "ownerReferences": owner},
               "spec": {"type": "ClusterIP", "selector": selector("spire-server"),
                        "ports": [{"name": "grpc", "port": 443, "targetPort": "grpc", "protocol": "TCP"}]}}),
    );
    let storage = cr
        .pointer("/spec/persistence/size")
        .cloned()
        .unwrap_or(json!("1Gi"));
    let access = cr
        .pointer("/spec/persistence/accessMode")
        .cloned()
        .unwrap_or(json!("ReadWriteOnce"));
    let mut pvc_spec =
        json!({"accessModes": [access], "resources": {"requests": {"storage": storage}}});
    if let Some(sc) = spec_str(Some(cr), "persistence/storageClass") {
        pvc_spec["storageClassName"] = json!(sc);
    }
    let config_hash = crate::workloads::template_hash(&json!(conf_text));
    let sts = ensure(
        c,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "spire-server", "namespace": ns, "labels": labels("spire-server"), "ownerReferences": owner},
        "spec": {
            "replicas": 1,
            "serviceName": "spire-server",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "selector": {"matchLabels": selector("spire-server")},
            "template": {
                "metadata": {"labels": labels("spire-server"), "annotations": {"ztwim.openshift.io/spire-server-config-hash": config_hash, "kubectl.kubernetes.io/default-container": "spire-server"}},
                "spec": {
                    "serviceAccountName": "spire-server",
                    "shareProcessNamespace": true,
                    "containers": [
                        {"name": "spire-server", "image": "registry.redhat.io/zero-trust-workload-identity-manager/spiffe-spire-server-rhel9:v1.0.0",
                         "args": ["-expandEnv", "-config", "/run/spire/config/server.conf"],
                         "ports": [{"name": "grpc", "containerPort": 8081, "protocol": "TCP"}, {"name": "healthz", "containerPort": 8080, "protocol": "TCP"}],
                         "volumeMounts": [{"name": "spire-config", "mountPath": "/run/spire/config", "readOnly": true},
                                          {"name": "spire-data", "mountPath": "/run/spire/data"},
                                          {"name": "spire-server-socket", "mountPath": "/tmp/spire-server/private"}]},
                        {"name": "spire-controller-manager", "image": "registry.redhat.io/zero-trust-workload-identity-manager/spiffe-spire-controller-manager-rhel9:v1.0.0",
                         "args": ["--config=controller-manager-config.yaml"],
                         "volumeMounts": [{"name": "spire-server-socket", "mountPath": "/tmp/spire-server/private", "readOnly": true}]}
                    ],
                    "volumes": [{"name": "spire-config", "configMap": {"name": "spire-server"}},
                                {"name": "spire-server-socket", "emptyDir": {}}]
                }
            },
            "volumeClaimTemplates": [{"metadata": {"name": "spire-data"}, "spec": pvc_spec}]
        }}),
    );
    let (ok, reason, message) = workload_condition("StatefulSet", sts.as_ref(), "spire-server", ns);
    conds.add("StatefulSetAvailable", ok, &reason, message);
    conds.write(c, "SpireServer")
}

fn reconcile_agent(
    c: &ClusterHandle,
    ns: &str,
    cr: &Value,
    td: Option<&str>,
    cluster_name: &str,
) -> (bool, String) {
    let mut conds = Conds::default();
    let Some(td) = td else {
        conds.add(
            "ConfigurationValid",
            false,
            "TrustDomainMissing",
            "no trust domain: create ZeroTrustWorkloadIdentityManager cluster with spec.trustDomain",
        );
        return conds.write(c, "SpireAgent");
    };
    conds.add(
        "ConfigurationValid",
        true,
        "Ready",
        "Configuration validation passed",
    );
    let socket_dir = spec_str(Some(cr), "socketPath")
        .unwrap_or("/run/spire/agent-sockets")
        .to_string();
    let verification = cr
        .pointer("/spec/workloadAttestors/workloadAttestorsVerification/type")
        .and_then(Value::as_str)
        .unwrap_or("auto");
    let agent_conf = json!({
        "agent": {"data_dir": "/var/lib/spire", "log_level": spec_str(Some(cr), "logLevel").unwrap_or("info"),
                  "server_address": format!("spire-server.{ns}"), "server_port": "443",
                  "socket_path": format!("/tmp/spire-agent/public/{AGENT_SOCKET_NAME}"),
                  "trust_bundle_path": "/run/spire/bundle/bundle.crt", "trust_domain": td},
        "plugins": {
            "KeyManager": [{"memory": {"plugin_data": null}}],
            "NodeAttestor": [{"k8s_psat": {"plugin_data": {"cluster": cluster_name}}}],
            "WorkloadAttestor": [{"k8s": {"plugin_data": {"disable_container_selectors": false, "node_name_env": "MY_NODE_NAME",
                                                          "skip_kubelet_verification": verification == "skip", "use_new_container_locator": true}}}],
        },
        "health_checks": {"bind_address": "0.0.0.0", "bind_port": "9982", "listener_enabled": true, "live_path": "/live", "ready_path": "/ready"},
        "telemetry": {"Prometheus": {"host": "0.0.0.0", "port": "9402"}},
    });
    let conf_text = serde_json::to_string_pretty(&agent_conf).expect("agent.conf serialises");
    let owner = vec![owner_ref(cr)];
    let cm_ok = ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "spire-agent", "namespace": ns, "labels": labels("spire-agent"), "ownerReferences": owner},
               "data": {"agent.conf": conf_text}}),
    )
    .is_some();
    conds.add(
        "ConfigMapAvailable",
        cm_ok,
        if cm_ok {
            "SpireAgentConfigMapReady"
        } else {
            "SpireAgentConfigMapFailed"
        },
        "ConfigMap spire-agent",
    );
    ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "spire-agent", "namespace": ns, "labels": labels("spire-agent"), "ownerReferences": owner}}),
    );
    let ds = ensure(
        c,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "spire-agent", "namespace": ns, "labels": labels("spire-agent"), "ownerReferences": owner},
        "spec": {
            "selector": {"matchLabels": selector("spire-agent")},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels("spire-agent"), "annotations": {"ztwim.openshift.io/spire-agent-config-hash": crate::workloads::template_hash(&json!(conf_text))}},
                "spec": {
                    "serviceAccountName": "spire-agent",
                    "hostPID": true,
                    "containers": [{"name": "spire-agent", "image": "registry.redhat.io/zero-trust-workload-identity-manager/spiffe-spire-agent-rhel9:v1.0.0",
                                    "args": ["-config", "/opt/spire/conf/agent/agent.conf"],
                                    "volumeMounts": [{"name": "spire-config", "mountPath": "/opt/spire/conf/agent", "readOnly": true},
                                                     {"name": "spire-agent-socket-dir", "mountPath": "/tmp/spire-agent/public"},
                                                     {"name": "spire-bundle", "mountPath": "/run/spire/bundle", "readOnly": true}]}],
                    "volumes": [{"name": "spire-config", "configMap": {"name": "spire-agent"}},
                                {"name": "spire-bundle", "configMap": {"name": "spire-bundle"}},
                                {"name": "spire-agent-socket-dir", "hostPath": {"path": socket_dir, "type": "DirectoryOrCreate"}}]
                }
            }
        }}),
    );
    let (ok, reason, message) = workload_condition("DaemonSet", ds.as_ref(), "spire-agent", ns);
    conds.add("DaemonSetAvailable", ok, &reason, message);
    conds.write(c, "SpireAgent")
}

fn reconcile_csi(c: &ClusterHandle, ns: &str, cr: &Value) -> (bool, String) {
    let mut conds = Conds::default();
    let plugin = spec_str(Some(cr), "pluginName")
        .unwrap_or("csi.spiffe.io")
        .to_string();
    let socket_dir = spec_str(Some(cr), "agentSocketPath")
        .unwrap_or("/run/spire/agent-sockets")
        .to_string();
    let owner = vec![owner_ref(cr)];
    let driver = ensure(
        c,
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
               "metadata": {"name": plugin, "labels": labels("spiffe-csi-driver"), "ownerReferences": owner},
               "spec": {"attachRequired": false, "podInfoOnMount": true, "fsGroupPolicy": "None", "volumeLifecycleModes": ["Ephemeral"]}}),
    );
    conds.add(
        "CSIDriverAvailable",
        driver.is_some(),
        if driver.is_some() {
            "CSIDriverReady"
        } else {
            "CSIDriverFailed"
        },
        format!("CSIDriver {plugin}"),
    );
    ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "spire-spiffe-csi-driver", "namespace": ns, "labels": labels("spiffe-csi-driver"), "ownerReferences": owner}}),
    );
    let ds = ensure(
        c,
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "spire-spiffe-csi-driver", "namespace": ns, "labels": labels("spiffe-csi-driver"), "ownerReferences": owner},
        "spec": {
            "selector": {"matchLabels": selector("spiffe-csi-driver")},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels("spiffe-csi-driver")},
                "spec": {
                    "serviceAccountName": "spire-spiffe-csi-driver",
                    "containers": [
                        {"name": "spiffe-csi-driver", "image": "registry.redhat.io/zero-trust-workload-identity-manager/spiffe-csi-driver-rhel9:v1.0.0",
                         "args": ["-workload-api-socket-dir", "/spire-agent-socket", "-plugin-name", plugin, "-csi-socket-path", "/spiffe-csi/csi.sock"],
                         "volumeMounts": [{"name": "spire-agent-socket-dir", "mountPath": "/spire-agent-socket", "readOnly": true},
                                          {"name": "spiffe-csi-socket-dir", "mountPath": "/spiffe-csi"},
                                          {"name": "mountpoint-dir", "mountPath": "/var/lib/kubelet/pods", "mountPropagation": "Bidirectional"}]},
                        {"name": "node-driver-registrar", "image": "registry.redhat.io/openshift4/ose-csi-node-driver-registrar-rhel9:latest",
                         "args": ["-csi-address", "/spiffe-csi/csi.sock", "-kubelet-registration-path", format!("/var/lib/kubelet/plugins/{plugin}/csi.sock")]}
                    ],
                    "volumes": [{"name": "spire-agent-socket-dir", "hostPath": {"path": socket_dir, "type": "DirectoryOrCreate"}},
                                {"name": "spiffe-csi-socket-dir", "hostPath": {"path": format!("/var/lib/kubelet/plugins/{plugin}"), "type": "DirectoryOrCreate"}},
                                {"name": "mountpoint-dir", "hostPath": {"path": "/var/lib/kubelet/pods", "type": "Directory"}}]
                }
            }
        }}),
    );
    let (ok, reason, message) =
        workload_condition("DaemonSet", ds.as_ref(), "spire-spiffe-csi-driver", ns);
    conds.add("DaemonSetAvailable", ok, &reason, message);
    conds.write(c, "SpiffeCSIDriver")
}

fn reconcile_oidc(
    c: &ClusterHandle,
    ns: &str,
    cr: &Value,
    td: Option<&str>,
    server_issuer: Option<&str>,
) -> (bool, String) {
    let mut conds = Conds::default();
    let issuer = spec_str(Some(cr), "jwtIssuer")
        .unwrap_or_default()
        .to_string();
    let url = match validate_issuer(&issuer) {
        Ok(u) => u,
        Err(e) => {
            conds.add(
                "ConfigurationValid",
                false,
                "InvalidJWTIssuerURL",
                format!("JWT issuer URL validation failed: {e}"),
            );
            return conds.write(c, "SpireOIDCDiscoveryProvider");
        }
    };
    match server_issuer {
        Some(s) if normalise_issuer(s) != normalise_issuer(&issuer) => {
            conds.add(
                "ConfigurationValid",
                false,
                "JWTIssuerMismatch",
                format!(
                    "spec.jwtIssuer {issuer:?} differs from SpireServer cluster spec.jwtIssuer {s:?}: the discovery document would not match the iss of the tokens SPIRE issues"
                ),
            );
            return conds.write(c, "SpireOIDCDiscoveryProvider");
        }
        None => {
            conds.add(
                "ConfigurationValid",
                false,
                "SpireServerNotFound",
                "SpireServer cluster (which signs the tokens) not found",
            );
            return conds.write(c, "SpireOIDCDiscoveryProvider");
        }
        Some(_) => {}
    }
    let Some(td) = td else {
        conds.add(
            "ConfigurationValid",
            false,
            "TrustDomainMissing",
            "no trust domain: create ZeroTrustWorkloadIdentityManager cluster with spec.trustDomain",
        );
        return conds.write(c, "SpireOIDCDiscoveryProvider");
    };
    conds.add(
        "ConfigurationValid",
        true,
        "Ready",
        "Configuration validation passed",
    );
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let csi_driver = spec_str(Some(cr), "csiDriverName")
        .unwrap_or("csi.spiffe.io")
        .to_string();
    let replicas = cr
        .pointer("/spec/replicaCount")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let owner = vec![owner_ref(cr)];
    let conf = json!({
        "domains": [host, OIDC_DEPLOYMENT, format!("{OIDC_DEPLOYMENT}.{ns}"), format!("{OIDC_DEPLOYMENT}.{ns}.svc.cluster.local")],
        "health_checks": {"bind_port": "8008", "live_path": "/live", "ready_path": "/ready"},
        "jwt_issuer": issuer,
        "log_level": spec_str(Some(cr), "logLevel").unwrap_or("info"),
        "serving_cert_file": {"addr": ":8443", "cert_file_path": "/etc/oidc/tls/tls.crt", "key_file_path": "/etc/oidc/tls/tls.key"},
        "workload_api": {"socket_path": format!("/spiffe-workload-api/{AGENT_SOCKET_NAME}"), "trust_domain": td},
    });
    let conf_text = serde_json::to_string_pretty(&conf).expect("oidc config serialises");
    let cm_ok = ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": OIDC_DEPLOYMENT, "namespace": ns, "labels": labels(OIDC_DEPLOYMENT), "ownerReferences": owner},
               "data": {"oidc-discovery-provider.conf": conf_text}}),
    )
    .is_some();
    conds.add(
        "ConfigMapAvailable",
        cm_ok,
        if cm_ok {
            "SpireOIDCConfigMapReady"
        } else {
            "SpireOIDCConfigMapFailed"
        },
        format!("ConfigMap {OIDC_DEPLOYMENT}"),
    );
    ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OIDC_DEPLOYMENT, "namespace": ns, "labels": labels(OIDC_DEPLOYMENT), "ownerReferences": owner}}),
    );
    ensure(
        c,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": OIDC_DEPLOYMENT, "namespace": ns, "labels": labels(OIDC_DEPLOYMENT), "ownerReferences": owner,
                            "annotations": {"service.beta.openshift.io/serving-cert-secret-name": "oidc-serving-cert"}},
               "spec": {"type": "ClusterIP", "selector": selector(OIDC_DEPLOYMENT),
                        "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]}}),
    );
    let dep = ensure(
        c,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": OIDC_DEPLOYMENT, "namespace": ns, "labels": labels(OIDC_DEPLOYMENT), "ownerReferences": owner},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(OIDC_DEPLOYMENT)},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels(OIDC_DEPLOYMENT), "annotations": {"ztwim.openshift.io/spire-oidc-discovery-provider-config-hash": crate::workloads::template_hash(&json!(conf_text))}},
                "spec": {
                    "serviceAccountName": OIDC_DEPLOYMENT,
                    "containers": [{"name": OIDC_DEPLOYMENT, "image": "registry.redhat.io/zero-trust-workload-identity-manager/spiffe-spire-oidc-discovery-provider-rhel9:v1.0.0",
                                    "args": ["-config", "/run/spire/oidc/config/oidc-discovery-provider.conf"],
                                    "ports": [{"name": "https", "containerPort": 8443, "protocol": "TCP"}, {"name": "healthz", "containerPort": 8008, "protocol": "TCP"}],
                                    "volumeMounts": [{"name": "spiffe-workload-api", "mountPath": "/spiffe-workload-api", "readOnly": true},
                                                     {"name": "spire-oidc-config", "mountPath": "/run/spire/oidc/config", "readOnly": true},
                                                     {"name": "tls-certs", "mountPath": "/etc/oidc/tls", "readOnly": true}]}],
                    "volumes": [{"name": "spiffe-workload-api", "csi": {"driver": csi_driver, "readOnly": true}},
                                {"name": "spire-oidc-config", "configMap": {"name": OIDC_DEPLOYMENT}},
                                {"name": "tls-certs", "secret": {"secretName": "oidc-serving-cert"}}]
                }
            }
        }}),
    );
    let (ok, reason, message) = workload_condition("Deployment", dep.as_ref(), OIDC_DEPLOYMENT, ns);
    conds.add("DeploymentAvailable", ok, &reason, message);
    let managed_route = spec_str(Some(cr), "managedRoute").unwrap_or("true") != "false";
    if managed_route {
        let route = ensure(
            c,
            json!({"apiVersion": "route.openshift.io/v1", "kind": "Route",
                   "metadata": {"name": OIDC_ROUTE, "namespace": ns, "labels": labels(OIDC_DEPLOYMENT), "ownerReferences": owner},
                   "spec": {"host": host, "to": {"kind": "Service", "name": OIDC_DEPLOYMENT, "weight": 100},
                            "port": {"targetPort": "https"},
                            "tls": {"termination": "reencrypt", "insecureEdgeTerminationPolicy": "Redirect"},
                            "wildcardPolicy": "None"}}),
        );
        let admitted = route.as_ref().is_some_and(|r| {
            r.pointer("/status/ingress/0/host") == Some(&json!(host))
                && r.pointer("/status/ingress/0/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Admitted" && c["status"] == "True")
                    })
        });
        if route.is_some() {
            serve_oidc_host(c, &host);
        }
        conds.add(
            "RouteAvailable",
            admitted,
            if admitted {
                "RouteReady"
            } else {
                "RouteNotAdmitted"
            },
            if admitted {
                format!("Route {OIDC_ROUTE} is admitted for host {host}")
            } else {
                format!("Route {OIDC_ROUTE} for host {host} is not admitted yet")
            },
        );
    } else {
        let _ = c.delete("route.openshift.io/v1", "Route", Some(ns), OIDC_ROUTE);
        conds.add(
            "RouteAvailable",
            true,
            "ManagedRouteDisabled",
            "managedRoute is \"false\": no Route is managed",
        );
    }
    conds.write(c, "SpireOIDCDiscoveryProvider")
}

// ---------------------------------------------------------------------------------------------
// The OIDC discovery provider over HTTPS
// ---------------------------------------------------------------------------------------------

/// Start the cluster's OIDC listener (once) and route `<host>:443` of the proxy to it.
fn serve_oidc_host(c: &ClusterHandle, host: &str) {
    let addr = {
        let mut slot = c.hub().oidc_addr.lock().unwrap();
        match *slot {
            Some(a) => a,
            None => match start_oidc_listener(c) {
                Some(a) => {
                    *slot = Some(a);
                    a
                }
                None => return,
            },
        }
    };
    c.add_proxy_route(&format!("{host}:443"), addr);
}

fn oidc_tls(c: &ClusterHandle) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let apps = c.apps_domain();
    let pair = c
        .ingress_ca()
        .issue_server(&[format!("*.{apps}").as_str()], &[])?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn start_oidc_listener(c: &ClusterHandle) -> Option<SocketAddr> {
    let tls = oidc_tls(c).ok()?;
    let cluster = c.clone();
    crate::spire::serve_https(
        tls,
        Arc::new(move |sni, req| serve_oidc_request(&cluster, sni, req)),
    )
}

const NOT_AVAILABLE: &str = "<html><head><title>Application is not available</title></head><body><h1>Application is not available</h1><p>The application is currently not serving requests at this endpoint. It may not have been started or is still starting.</p></body></html>\n";

/// What the router and the discovery provider answer for one request.
fn serve_oidc_request<B>(
    c: &ClusterHandle,
    sni: Option<&str>,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let host = crate::spire::request_host(req, sni);
    // The router only forwards to an admitted Route for this host with an available backend.
    let route = c
        .list("route.openshift.io/v1", "Route", None)
        .into_iter()
        .find(|r| {
            meta(r, "name") == OIDC_ROUTE
                && r.pointer("/spec/host") == Some(&json!(host))
                && !is_deleting(r)
        });
    let backend_up = route.as_ref().is_some_and(|r| {
        c.get(
            "apps/v1",
            "Deployment",
            Some(meta(r, "namespace")),
            OIDC_DEPLOYMENT,
        )
        .is_some_and(|d| deployment_available(&d))
    });
    let Some(provider) = get_cr(c, "SpireOIDCDiscoveryProvider").filter(|_| backend_up) else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "text/html", NOT_AVAILABLE);
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed\n",
        );
    }
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            let issuer = c
                .hub()
                .issuer_override
                .lock()
                .unwrap()
                .clone()
                .or_else(|| spec_str(Some(&provider), "jwtIssuer").map(str::to_string))
                .unwrap_or_default();
            json_response(&discovery_document(
                &issuer,
                &format!("https://{host}/keys"),
            ))
        }
        "/keys" => json_response(&c.spire_jwks()),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n",
        ),
    }
}
