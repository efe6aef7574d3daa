//! The OpenShift spoke: external OIDC authentication of the simulated kube-apiserver.
//!
//! - Controller `kube-apiserver-operator`: a change to `Authentication cluster`
//!   (config.openshift.io/v1), to the CA ConfigMap it names, or to the feature set rolls out a
//!   new kube-apiserver revision. ClusterOperator `kube-apiserver` first reports
//!   `Progressing=True` ("... 0 nodes have achieved new revision N+1") for one controller delay,
//!   then `Available=True`, `Progressing=False`, `Degraded=False` at revision N+1. From then on
//!   (not before) the new configuration is what authenticates bearer tokens: with
//!   `spec.type: OIDC`, JWTs of `spec.oidcProviders[0]` (see [`crate::jwt_authn`]) and no OAuth
//!   tokens; otherwise OAuth tokens and no JWTs. Client certificates and static tokens always
//!   work. A CA ConfigMap that is missing or holds no certificate blocks the rollout and
//!   degrades ClusterOperator `authentication` instead.
//! - Controller `cluster-config-operator`: `FeatureGate cluster` `spec.featureSet:
//!   TechPreviewNoUpgrade` (or DevPreviewNoUpgrade, or CustomNoUpgrade enabling it) enables
//!   `ExternalOIDC` in `status.featureGates[0].enabled` (4.20+ has it on by default) and makes
//!   ClusterVersion report `Upgradeable=False`.
//! - Admission: while `ExternalOIDC` is off, an Authentication with `type: OIDC` or
//!   `oidcProviders` is rejected (422); the CRD's CEL rules on providers and on
//!   `FeatureGate.spec.featureSet` (it cannot be changed back) are enforced (422).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::auth::Identity;
use crate::cluster::{ApiError, ApiResult, Event, now_rfc3339};
use crate::controllers::Controller;
use crate::jwt_authn::{
    Cel, ClaimRule, ClaimSource, JwtAuthenticator, JwtConfig, PrefixedClaim, roots_from_pem,
};
use crate::registry::ResourceType;
use crate::sim::{ClusterHandle, Profile};

/// Name of the rollout controller (for `Fault::ControllerNeverReady`).
pub const KUBE_APISERVER_OPERATOR: &str = "kube-apiserver-operator";
/// Name of the feature-gate controller (for `Fault::ControllerNeverReady`).
pub const CLUSTER_CONFIG_OPERATOR: &str = "cluster-config-operator";

/// The revision seeded in ClusterOperator `kube-apiserver`.
const SEEDED_REVISION: u64 = 7;
const CO: &str = "config.openshift.io/v1";

impl ClusterHandle {
    /// Accept an OpenShift OAuth access token (as `oc login` gets) as `user` with `groups` while
    /// `Authentication cluster` is not of type `OIDC`; it stops working once an OIDC rollout
    /// completes (unlike [`ClusterHandle::add_static_token`], which models service account tokens).
    pub fn add_oauth_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.oidc_authn()
            .add_oauth_token(token, Identity::new(user, groups))
    }

    /// The kube-apiserver revision the simulated OpenShift cluster serves (`None` on kind).
    pub fn kube_apiserver_revision(&self) -> Option<u64> {
        let co = self.get(CO, "ClusterOperator", None, "kube-apiserver")?;
        let msg = condition(&co, "Progressing")?["message"]
            .as_str()?
            .to_string();
        revision_in(&msg)
    }
}

fn revision_in(msg: &str) -> Option<u64> {
    let rest = msg.split("nodes are at revision ").nth(1)?;
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

/// Set a condition, keeping `lastTransitionTime` unless the status changes.
fn set_condition(obj: &mut Value, ty: &str, status: &str, reason: &str, message: &str) {
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let conds = obj["status"]["conditions"].as_array_mut().unwrap();
    let now = now_rfc3339();
    match conds.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => conds.push(json!({"type": ty, "status": status, "reason": reason, "message": message, "lastTransitionTime": now})),
    }
}

/// Whether `ExternalOIDC` is on, shared by the controllers and the admission check.
#[derive(Default)]
struct Gates {
    external_oidc: AtomicBool,
}

fn minor(profile: &Profile) -> u32 {
    match profile {
        Profile::OpenShift { version } | Profile::Kind { version } => version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
    }
}

fn gate_listed(fg: &Value, list: &str, gate: &str) -> bool {
    fg.pointer(&format!("/status/featureGates/0/{list}"))
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|g| g["name"] == gate))
}

/// The controllers of an OpenShift cluster (called once per cluster, after seeding), with the
/// admission check registered on its store.
pub(crate) fn install(cluster: &ClusterHandle) -> Vec<Arc<dyn Controller>> {
    let gates = Arc::new(Gates::default());
    let fg = cluster
        .get(CO, "FeatureGate", None, "cluster")
        .unwrap_or(Value::Null);
    gates.external_oidc.store(
        gate_listed(&fg, "enabled", "ExternalOIDC"),
        Ordering::SeqCst,
    );
    let g = gates.clone();
    cluster.add_admission(Arc::new(
        move |rt: &ResourceType, old: Option<&Value>, new: &Value| admit(&g, rt, old, new),
    ));
    let operator = KubeApiserverOperator {
        state: Mutex::new(OperatorState {
            revision: SEEDED_REVISION,
            active: desired(cluster).unwrap_or(Value::Null),
            pending: None,
        }),
    };
    vec![
        Arc::new(operator),
        Arc::new(ClusterConfigOperator {
            gates,
            minor: minor(cluster.profile()),
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Admission.

fn invalid(rt: &ResourceType, obj: &Value, errors: Vec<String>) -> ApiResult<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Err(ApiError::invalid(rt, name, &errors))
}

fn admit(gates: &Gates, rt: &ResourceType, old: Option<&Value>, new: &Value) -> ApiResult<()> {
    if rt.group != "config.openshift.io" {
        return Ok(());
    }
    match rt.plural.as_str() {
        "featuregates" => invalid(rt, new, featuregate_errors(old, new)),
        "authentications" => {
            let spec = &new["spec"];
            if old.is_some_and(|o| o["spec"] == *spec) {
                return Ok(()); // status or metadata only
            }
            let mut errors = Vec::new();
            let providers = spec.get("oidcProviders").filter(|p| !p.is_null());
            if !gates.external_oidc.load(Ordering::SeqCst) {
                if spec["type"] == "OIDC" {
                    errors.push(
                        "spec.type: Unsupported value: \"OIDC\": supported values: \"\", \"IntegratedOAuth\", \"None\" (type OIDC needs the ExternalOIDC feature gate: on OpenShift 4.19 set FeatureGate cluster spec.featureSet to TechPreviewNoUpgrade)".to_string(),
                    );
                }
                if providers.is_some() {
                    errors.push(
                        "spec.oidcProviders: Forbidden: oidcProviders needs the ExternalOIDC feature gate, which on OpenShift 4.19 only the TechPreviewNoUpgrade feature set enables".to_string(),
                    );
                }
                return invalid(rt, new, errors);
            }
            for (i, p) in providers
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                errors.extend(provider_errors(&format!("spec.oidcProviders[{i}]"), p));
            }
            invalid(rt, new, errors)
        }
        _ => Ok(()),
    }
}

/// The CEL rules of the FeatureGate CRD on `spec.featureSet`.
fn featuregate_errors(old: Option<&Value>, new: &Value) -> Vec<String> {
    let Some(old) = old else { return Vec::new() };
    let before = old.pointer("/spec/featureSet").and_then(Value::as_str);
    let after = new.pointer("/spec/featureSet").and_then(Value::as_str);
    let mut errors = Vec::new();
    if before.is_some() && after.is_none() {
        errors.push(
            "spec: Invalid value: \"object\": .spec.featureSet cannot be removed".to_string(),
        );
    }
    for locked in [
        "CustomNoUpgrade",
        "TechPreviewNoUpgrade",
        "DevPreviewNoUpgrade",
    ] {
        if before == Some(locked) && after.is_some() && after != Some(locked) {
            errors.push(format!(
                "spec.featureSet: Invalid value: \"string\": {locked} may not be changed"
            ));
        }
    }
    if before == Some("OKD") && after == Some("") {
        errors.push(
            "spec.featureSet: Invalid value: \"string\": OKD cannot transition to Default"
                .to_string(),
        );
    }
    errors
}

fn is_https_url(s: &str) -> Result<(), &'static str> {
    let uri: http::Uri = s.parse().map_err(|_| "must be a valid URL")?;
    if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
        return Err("must use the 'https' scheme");
    }
    if uri.query().is_some() {
        return Err("must not have a query");
    }
    if s.contains('#') {
        return Err("must not have a fragment");
    }
    if s.contains('@') {
        return Err("must not have user info");
    }
    Ok(())
}

/// The CEL rules of the Authentication CRD on one OIDC provider.
fn provider_errors(path: &str, p: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let issuer = &p["issuer"];
    let url = issuer["issuerURL"].as_str().unwrap_or_default();
    if let Err(m) = is_https_url(url) {
        errors.push(format!(
            "{path}.issuer.issuerURL: Invalid value: \"string\": {m}"
        ));
    }
    if let Some(d) = issuer["discoveryURL"].as_str().filter(|d| !d.is_empty()) {
        if let Err(m) = is_https_url(d) {
            errors.push(format!(
                "{path}.issuer.discoveryURL: Invalid value: \"string\": discoveryURL {}",
                m.trim_start_matches("must ")
            ));
        }
        if d.trim_end_matches('/') == url.trim_end_matches('/') {
            errors.push(format!("{path}.issuer: Invalid value: \"object\": discoveryURL must be different from issuerURL"));
        }
    }
    let u = &p["claimMappings"]["username"];
    let has = |v: &Value, k: &str| v.get(k).is_some_and(|x| !x.is_null());
    if has(u, "claim") == has(u, "expression") {
        errors.push(format!("{path}.claimMappings.username: Invalid value: \"object\": precisely one of claim or expression must be set"));
    }
    let policy = u["prefixPolicy"].as_str().unwrap_or_default();
    if has(u, "expression") && policy == "Prefix" {
        errors.push(format!("{path}.claimMappings.username: Invalid value: \"object\": prefixPolicy must not be set to 'Prefix' when expression is set"));
    }
    let prefix_ok = if policy == "Prefix" {
        u.pointer("/prefix/prefixString")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    } else {
        !has(u, "prefix")
    };
    if !prefix_ok {
        errors.push(format!(
            "{path}.claimMappings.username: Invalid value: \"object\": prefix must be set if prefixPolicy is 'Prefix', but must remain unset otherwise"
        ));
    }
    let g = &p["claimMappings"]["groups"];
    if g["expression"].as_str().is_some_and(|e| !e.is_empty()) {
        if g["claim"].as_str().is_some_and(|c| !c.is_empty()) {
            errors.push(format!("{path}.claimMappings.groups: Invalid value: \"object\": expression must not be set if claim is specified and is not an empty string"));
        }
        if g["prefix"].as_str().is_some_and(|c| !c.is_empty()) {
            errors.push(format!("{path}.claimMappings.groups: Invalid value: \"object\": prefix must not be set to a non-empty value when expression is set"));
        }
    }
    for (i, r) in p["claimValidationRules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ty = r["type"].as_str().unwrap_or_default();
        if (ty == "CEL") != has(r, "cel") {
            errors.push(format!("{path}.claimValidationRules[{i}]: Invalid value: \"object\": cel must be set when type is 'CEL', and forbidden otherwise"));
        }
        if (ty == "RequiredClaim") != has(r, "requiredClaim") {
            errors.push(format!("{path}.claimValidationRules[{i}]: Invalid value: \"object\": requiredClaim must be set when type is 'RequiredClaim', and forbidden otherwise"));
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------------
// What the kube-apiserver should run.

/// The configuration a revision is made of: the Authentication spec, the contents of the CA
/// ConfigMaps it names, and the feature set. `Err` when a CA ConfigMap is unusable.
fn desired(cluster: &ClusterHandle) -> Result<Value, String> {
    let auth = cluster
        .get(CO, "Authentication", None, "cluster")
        .unwrap_or(Value::Null);
    let spec = &auth["spec"];
    let mut cas = Vec::new();
    if spec["type"] == "OIDC" {
        for p in spec["oidcProviders"].as_array().into_iter().flatten() {
            let Some(name) = p
                .pointer("/issuer/issuerCertificateAuthority/name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                cas.push(Value::Null);
                continue;
            };
            let cm = cluster
                .get("v1", "ConfigMap", Some("openshift-config"), name)
                .ok_or_else(|| format!("could not get configmap \"openshift-config/{name}\": configmap \"{name}\" not found"))?;
            let pem = cm
                .pointer("/data/ca-bundle.crt")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("configmap \"openshift-config/{name}\" has no key \"ca-bundle.crt\"")
                })?;
            roots_from_pem(pem).map_err(|e| {
                format!("configmap \"openshift-config/{name}\" key \"ca-bundle.crt\": {e}")
            })?;
            cas.push(json!(pem));
        }
    }
    let fg = cluster
        .get(CO, "FeatureGate", None, "cluster")
        .unwrap_or(Value::Null);
    Ok(json!({
        "type": spec["type"],
        "oidcProviders": spec["oidcProviders"],
        "webhookTokenAuthenticator": spec["webhookTokenAuthenticator"],
        "caBundles": cas,
        "featureSet": fg.pointer("/spec/featureSet").cloned().unwrap_or(Value::Null),
    }))
}

fn claim_source(v: &Value, what: &str) -> Result<Option<ClaimSource>, String> {
    if let Some(c) = v["claim"].as_str().filter(|c| !c.is_empty()) {
        return Ok(Some(ClaimSource::Claim(c.to_string())));
    }
    if let Some(e) = v["expression"].as_str().filter(|e| !e.is_empty()) {
        return Cel::parse(e)
            .map(|c| Some(ClaimSource::Expression(c)))
            .map_err(|err| format!("{what}: {err}"));
    }
    Ok(None)
}

/// The JWT authenticator of an OIDC provider (`ca_pem` from its CA ConfigMap).
fn provider_config(p: &Value, ca_pem: Option<&str>) -> Result<JwtConfig, String> {
    let issuer = &p["issuer"];
    let issuer_url = issuer["issuerURL"].as_str().unwrap_or_default().to_string();
    let u = &p["claimMappings"]["username"];
    let source = claim_source(u, "claimMappings.username")?
        .ok_or("claimMappings.username: no claim or expression")?;
    let prefix = match u["prefixPolicy"].as_str().unwrap_or_default() {
        "NoPrefix" => String::new(),
        "Prefix" => u
            .pointer("/prefix/prefixString")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        // No opinion: OpenShift prepends "{issuerURL}#" unless the claim is email.
        _ => match &source {
            ClaimSource::Claim(c) if c == "email" => String::new(),
            ClaimSource::Expression(_) => String::new(),
            ClaimSource::Claim(_) => format!("{issuer_url}#"),
        },
    };
    let g = &p["claimMappings"]["groups"];
    let groups = claim_source(g, "claimMappings.groups")?.map(|source| PrefixedClaim {
        source,
        prefix: g["prefix"].as_str().unwrap_or_default().to_string(),
    });
    let uid = match p["claimMappings"].get("uid").filter(|v| !v.is_null()) {
        Some(v) => claim_source(v, "claimMappings.uid")?,
        // The platform default: the sub claim.
        None => Some(ClaimSource::Claim("sub".into())),
    };
    let mut claim_rules = Vec::new();
    for r in p["claimValidationRules"].as_array().into_iter().flatten() {
        match r["type"].as_str().unwrap_or_default() {
            "RequiredClaim" => claim_rules.push(ClaimRule::Required {
                claim: r
                    .pointer("/requiredClaim/claim")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                value: r
                    .pointer("/requiredClaim/requiredValue")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            "CEL" => claim_rules.push(ClaimRule::Expression {
                expr: Cel::parse(
                    r.pointer("/cel/expression")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                )?,
                message: r
                    .pointer("/cel/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => {}
        }
    }
    Ok(JwtConfig {
        issuer_url,
        discovery_url: issuer["discoveryURL"]
            .as_str()
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        ca_pem: ca_pem.map(str::to_string),
        audiences: issuer["audiences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        username: PrefixedClaim { source, prefix },
        groups,
        uid,
        claim_rules,
    })
}

// ---------------------------------------------------------------------------------------------
// The rollout controller.

struct Rollout {
    target: u64,
    config: Value,
    /// The resourceVersion of the `Progressing=True` write: handling any event at or after it
    /// means one controller delay has passed.
    progressing_rv: u64,
}

struct OperatorState {
    revision: u64,
    active: Value,
    pending: Option<Rollout>,
}

/// Rolls out kube-apiserver revisions (see the module docs).
struct KubeApiserverOperator {
    state: Mutex<OperatorState>,
}

fn relevant(event: &Event) -> bool {
    match event.storage_key.as_str() {
        "config.openshift.io/authentications" | "config.openshift.io/featuregates" => {
            event.name() == "cluster"
        }
        "config.openshift.io/clusteroperators" => event.name() == "kube-apiserver",
        "/configmaps" => event.namespace() == Some("openshift-config"),
        _ => false,
    }
}

impl KubeApiserverOperator {
    fn write_status(
        &self,
        cluster: &ClusterHandle,
        current: u64,
        target: Option<u64>,
    ) -> Option<u64> {
        let mut co = cluster.get(CO, "ClusterOperator", None, "kube-apiserver")?;
        match target {
            Some(t) => {
                let nodes = format!(
                    "3 nodes are at revision {current}; 0 nodes have achieved new revision {t}"
                );
                set_condition(
                    &mut co,
                    "Available",
                    "True",
                    "AsExpected",
                    &format!("StaticPodsAvailable: 3 nodes are active; {nodes}"),
                );
                set_condition(
                    &mut co,
                    "Progressing",
                    "True",
                    "NodeInstaller",
                    &format!("NodeInstallerProgressing: {nodes}"),
                );
            }
            None => {
                let nodes = format!("3 nodes are at revision {current}");
                set_condition(
                    &mut co,
                    "Available",
                    "True",
                    "AsExpected",
                    &format!("StaticPodsAvailable: 3 nodes are active; {nodes}"),
                );
                set_condition(
                    &mut co,
                    "Progressing",
                    "False",
                    "AsExpected",
                    &format!("NodeInstallerProgressing: {nodes}"),
                );
            }
        }
        set_condition(
            &mut co,
            "Degraded",
            "False",
            "AsExpected",
            "NodeControllerDegraded: All master nodes are ready",
        );
        let stored = cluster.put(co).ok()?;
        stored
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|rv| rv.parse().ok())
    }

    /// Report (or clear) an unusable OIDC configuration on ClusterOperator `authentication`.
    fn authentication_degraded(cluster: &ClusterHandle, problem: Option<&str>) {
        let existing = cluster.get(CO, "ClusterOperator", None, "authentication");
        if existing.is_none() && problem.is_none() {
            return;
        }
        let mut co = existing.unwrap_or_else(|| {
            json!({"apiVersion": CO, "kind": "ClusterOperator", "metadata": {"name": "authentication"}, "spec": {}, "status": {"conditions": []}})
        });
        let before = co.clone();
        match problem {
            Some(msg) => set_condition(
                &mut co,
                "Degraded",
                "True",
                "ExternalOIDCController_SyncError",
                &format!("ExternalOIDCControllerDegraded: {msg}"),
            ),
            None => set_condition(&mut co, "Degraded", "False", "AsExpected", "All is well"),
        }
        set_condition(&mut co, "Available", "True", "AsExpected", "All is well");
        if co != before {
            let _ = cluster.put(co);
        }
    }

    /// Make `config` what authenticates tokens.
    fn activate(cluster: &ClusterHandle, config: &Value) -> Result<(), String> {
        let authn = cluster.oidc_authn();
        if config["type"] == "OIDC" {
            let mut list = Vec::new();
            let cas = config["caBundles"].as_array().cloned().unwrap_or_default();
            // OpenShift supports one provider today.
            if let Some(p) = config["oidcProviders"].as_array().and_then(|ps| ps.first()) {
                let ca = cas.first().and_then(Value::as_str);
                list.push(Arc::new(JwtAuthenticator::new(
                    provider_config(p, ca)?,
                    cluster.routes().clone(),
                )));
            }
            authn.set_jwt_authenticators(list);
            authn.set_oauth_enabled(false);
        } else {
            authn.set_jwt_authenticators(Vec::new());
            authn.set_oauth_enabled(true);
        }
        Ok(())
    }
}

impl Controller for KubeApiserverOperator {
    fn name(&self) -> &str {
        KUBE_APISERVER_OPERATOR
    }

    fn handle(&self, cluster: &ClusterHandle, event: &Event) {
        if !relevant(event) {
            return;
        }
        let mut st = self.state.lock().unwrap();
        if let Some(p) = st.pending.take() {
            if event.rv < p.progressing_rv {
                st.pending = Some(p);
                return;
            }
            // The new revision is live on every node.
            match Self::activate(cluster, &p.config) {
                Ok(()) => {
                    st.revision = p.target;
                    st.active = p.config;
                    self.write_status(cluster, st.revision, None);
                }
                Err(e) => {
                    st.active = p.config;
                    Self::authentication_degraded(cluster, Some(&e));
                    self.write_status(cluster, st.revision, None);
                }
            }
        }
        let want = match desired(cluster) {
            Ok(w) => w,
            Err(problem) => {
                Self::authentication_degraded(cluster, Some(&problem));
                return;
            }
        };
        Self::authentication_degraded(cluster, None);
        if want == st.active {
            return;
        }
        let target = st.revision + 1;
        if let Some(rv) = self.write_status(cluster, st.revision, Some(target)) {
            st.pending = Some(Rollout {
                target,
                config: want,
                progressing_rv: rv,
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The feature-gate controller.

struct ClusterConfigOperator {
    gates: Arc<Gates>,
    minor: u32,
}

fn listed_in_spec(fg: &Value, list: &str, gate: &str) -> bool {
    fg.pointer(&format!("/spec/customNoUpgrade/{list}"))
        .and_then(Value::as_array)
        .is_some_and(|l| l.iter().any(|g| g == gate))
}

impl Controller for ClusterConfigOperator {
    fn name(&self) -> &str {
        CLUSTER_CONFIG_OPERATOR
    }

    fn handle(&self, cluster: &ClusterHandle, event: &Event) {
        if event.storage_key != "config.openshift.io/featuregates" || event.name() != "cluster" {
            return;
        }
        let Some(mut fg) = cluster.get(CO, "FeatureGate", None, "cluster") else {
            return;
        };
        let set = fg
            .pointer("/spec/featureSet")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let on = match set.as_str() {
            "TechPreviewNoUpgrade" | "DevPreviewNoUpgrade" => true,
            "CustomNoUpgrade" => {
                (self.minor >= 20 || listed_in_spec(&fg, "enabled", "ExternalOIDC"))
                    && !listed_in_spec(&fg, "disabled", "ExternalOIDC")
            }
            _ => self.minor >= 20,
        };
        // Admission follows the gate before anyone can see it in the status.
        self.gates.external_oidc.store(on, Ordering::SeqCst);
        let before = fg.clone();
        let (add, remove) = if on {
            ("enabled", "disabled")
        } else {
            ("disabled", "enabled")
        };
        if !fg
            .pointer("/status/featureGates/0")
            .is_some_and(Value::is_object)
        {
            fg["status"]["featureGates"] = json!([{"version": "", "enabled": [], "disabled": []}]);
        }
        let entry = &mut fg["status"]["featureGates"][0];
        if let Some(l) = entry[remove].as_array_mut() {
            l.retain(|g| g["name"] != "ExternalOIDC");
        }
        if !entry[add].is_array() {
            entry[add] = json!([]);
        }
        let l = entry[add].as_array_mut().unwrap();
        if !l.iter().any(|g| g["name"] == "ExternalOIDC") {
            l.push(json!({"name": "ExternalOIDC"}));
        }
        if fg != before {
            let _ = cluster.put(fg);
        }
        if !set.is_empty()
            && set != "OKD"
            && let Some(mut cv) = cluster.get(CO, "ClusterVersion", None, "version")
        {
            {
                let before = cv.clone();
                set_condition(
                    &mut cv,
                    "Upgradeable",
                    "False",
                    &format!("FeatureGates_RestrictedFeatureGates_{set}"),
                    &format!(
                        "Cluster operator config-operator should not be upgraded between minor versions: FeatureGatesUpgradeable: \"{set}\" does not allow updates"
                    ),
                );
                if cv != before {
                    let _ = cluster.put(cv);
                }
            }
        }
    }
}
