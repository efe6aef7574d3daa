//! The resource types a simulated cluster serves: built-in kinds, OpenShift/OLM kinds, and
//! the kinds of the CRDs created at run time.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

use crate::schema::{ResourceValidator, Scope};

/// Where a resource type came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Served by the simulated kube-apiserver itself.
    BuiltIn,
    /// Served because a CRD with this name exists.
    Crd(String),
}

/// A lazily compiled validator.
pub struct LazyValidator {
    openapi: Value,
    compiled: OnceLock<Result<Arc<ResourceValidator>, String>>,
}

impl LazyValidator {
    pub fn new(openapi: Value) -> Self {
        Self {
            openapi,
            compiled: OnceLock::new(),
        }
    }
    pub fn openapi(&self) -> &Value {
        &self.openapi
    }
    pub fn get(&self) -> Result<Arc<ResourceValidator>, String> {
        self.compiled
            .get_or_init(|| {
                ResourceValidator::new(&self.openapi)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

/// One served resource (one group/version/plural).
#[derive(Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub status_subresource: bool,
    pub origin: Origin,
    pub validator: Option<Arc<LazyValidator>>,
    /// CRD `additionalPrinterColumns` of this version.
    pub printer_columns: Vec<Value>,
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.group_version(), self.plural, self.kind)
    }
}

pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceType {
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// The storage key shared by every version of a resource: `group/plural`.
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }
    pub fn scope(&self) -> Scope {
        if self.namespaced {
            Scope::Namespaced
        } else {
            Scope::Cluster
        }
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    pub fn is_read_only(&self) -> bool {
        !self.verbs.iter().any(|v| v == "create")
    }
    /// Whether objects of this type are reviews (create-only, never stored).
    pub fn is_review(&self) -> bool {
        matches!(
            (self.group.as_str(), self.plural.as_str()),
            (
                "authentication.k8s.io",
                "selfsubjectreviews" | "tokenreviews"
            ) | (
                "authorization.k8s.io",
                "selfsubjectaccessreviews"
                    | "subjectaccessreviews"
                    | "localsubjectaccessreviews"
                    | "selfsubjectrulesreviews"
            )
        )
    }
}

fn builtin(
    gv: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    let (group, version) = match gv.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), gv.to_string()),
    };
    ResourceType {
        group,
        version,
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: Vec::new(),
        verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
        status_subresource: status,
        origin: Origin::BuiltIn,
        validator: None,
        printer_columns: Vec::new(),
    }
}

/// Kubernetes kinds every profile serves.
pub fn kubernetes_builtins() -> Vec<ResourceType> {
    let mut v = vec![
        builtin("v1", "Namespace", "namespaces", false, &["ns"], true),
        builtin("v1", "Pod", "pods", true, &["po"], true),
        builtin("v1", "Service", "services", true, &["svc"], true),
        builtin("v1", "ConfigMap", "configmaps", true, &["cm"], false),
        builtin("v1", "Secret", "secrets", true, &[], false),
        builtin(
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
        ),
        builtin("v1", "Node", "nodes", false, &["no"], true),
        builtin("v1", "Event", "events", true, &["ev"], false),
        builtin("v1", "Endpoints", "endpoints", true, &["ep"], false),
        builtin(
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
            &["pvc"],
            true,
        ),
        builtin(
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            false,
            &["pv"],
            true,
        ),
        builtin(
            "apps/v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            true,
        ),
        builtin("apps/v1", "DaemonSet", "daemonsets", true, &["ds"], true),
        builtin(
            "apps/v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            true,
        ),
        builtin("apps/v1", "ReplicaSet", "replicasets", true, &["rs"], true),
        builtin("batch/v1", "Job", "jobs", true, &[], true),
        builtin(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io/v1",
            "Role",
            "roles",
            true,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            false,
        ),
        builtin(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
        ),
        builtin(
            "storage.k8s.io/v1",
            "CSIDriver",
            "csidrivers",
            false,
            &[],
            false,
        ),
        builtin(
            "storage.k8s.io/v1",
            "StorageClass",
            "storageclasses",
            false,
            &["sc"],
            false,
        ),
        builtin(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
            &[],
            false,
        ),
        builtin(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            false,
            &[],
            false,
        ),
        builtin(
            "coordination.k8s.io/v1",
            "Lease",
            "leases",
            true,
            &[],
            false,
        ),
        builtin(
            "networking.k8s.io/v1",
            "Ingress",
            "ingresses",
            true,
            &["ing"],
            true,
        ),
        builtin(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            &["netpol"],
            false,
        ),
    ];
    for (gv, kind, plural) in [
        (
            "authentication.k8s.io/v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
        ),
        ("authentication.k8s.io/v1", "TokenReview", "tokenreviews"),
        (
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
        ),
        (
            "authorization.k8s.io/v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
        ),
    ] {
        let mut r = builtin(gv, kind, plural, false, &[], false);
        r.verbs = vec!["create".to_string()];
        v.push(r);
    }
    for r in &mut v {
        if r.plural == "pods" || r.plural == "deployments" || r.plural == "services" {
            r.categories = vec!["all".to_string()];
        }
    }
    v
}

/// OpenShift and OLM kinds: `(apiVersion, kind, plural, namespaced, read_only)`.
///
/// On an OpenShift profile these are installed as CRDs from the reference directory when it
/// is present (so writes are validated against the upstream schemas), and served as plain
/// built-in types otherwise. `packages.operators.coreos.com` is an aggregated, read-only API.
pub const OPENSHIFT_KINDS: &[(&str, &str, &str, bool, bool)] = &[
    ("config.openshift.io/v1", "DNS", "dnses", false, false),
    (
        "config.openshift.io/v1",
        "ClusterVersion",
        "clusterversions",
        false,
        false,
    ),
    (
        "config.openshift.io/v1",
        "FeatureGate",
        "featuregates",
        false,
        false,
    ),
    (
        "config.openshift.io/v1",
        "Authentication",
        "authentications",
        false,
        false,
    ),
    (
        "config.openshift.io/v1",
        "ClusterOperator",
        "clusteroperators",
        false,
        false,
    ),
    (
        "config.openshift.io/v1",
        "Ingress",
        "ingresses",
        false,
        false,
    ),
    ("route.openshift.io/v1", "Route", "routes", true, false),
    (
        "operators.coreos.com/v1alpha1",
        "CatalogSource",
        "catalogsources",
        true,
        false,
    ),
    (
        "operators.coreos.com/v1alpha1",
        "Subscription",
        "subscriptions",
        true,
        false,
    ),
    (
        "operators.coreos.com/v1alpha1",
        "ClusterServiceVersion",
        "clusterserviceversions",
        true,
        false,
    ),
    (
        "operators.coreos.com/v1alpha1",
        "InstallPlan",
        "installplans",
        true,
        false,
    ),
    (
        "operators.coreos.com/v1",
        "OperatorGroup",
        "operatorgroups",
        true,
        false,
    ),
    (
        "packages.operators.coreos.com/v1",
        "PackageManifest",
        "packagemanifests",
        true,
        true,
    ),
];

/// A built-in type for an OpenShift kind (used when no reference CRD is available).
pub fn openshift_builtin(entry: &(&str, &str, &str, bool, bool)) -> ResourceType {
    let (gv, kind, plural, namespaced, read_only) = *entry;
    let mut r = builtin(gv, kind, plural, namespaced, &[], true);
    if read_only {
        r.verbs = vec!["get".into(), "list".into(), "watch".into()];
        r.status_subresource = false;
    }
    match kind {
        "ClusterOperator" => r.short_names = vec!["co".into()],
        "ClusterServiceVersion" => r.short_names = vec!["csv".into(), "csvs".into()],
        "Subscription" => r.short_names = vec!["sub".into(), "subs".into()],
        "OperatorGroup" => r.short_names = vec!["og".into()],
        "InstallPlan" => r.short_names = vec!["ip".into()],
        "CatalogSource" => r.short_names = vec!["catsrc".into()],
        _ => {}
    }
    r
}

/// The resource types of one CRD object (one per served version).
pub fn types_from_crd(crd: &Value) -> Vec<ResourceType> {
    let Some(spec) = crd.get("spec") else {
        return Vec::new();
    };
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let s = |p: &str| {
        spec.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let list = |p: &str| -> Vec<String> {
        spec.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let kind = s("/names/kind");
    let plural = s("/names/plural");
    let singular = {
        let v = s("/names/singular");
        if v.is_empty() { kind.to_lowercase() } else { v }
    };
    let mut out = Vec::new();
    for version in spec
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if version.get("served") == Some(&Value::Bool(false)) {
            continue;
        }
        let vname = version
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let validator = version
            .pointer("/schema/openAPIV3Schema")
            .map(|s| Arc::new(LazyValidator::new(s.clone())));
        out.push(ResourceType {
            group: s("/group"),
            version: vname,
            kind: kind.clone(),
            plural: plural.clone(),
            singular: singular.clone(),
            namespaced: s("/scope") != "Cluster",
            short_names: list("/names/shortNames"),
            categories: list("/names/categories"),
            verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
            status_subresource: version.pointer("/subresources/status").is_some(),
            origin: Origin::Crd(name.clone()),
            validator,
            printer_columns: version
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        });
    }
    out
}

/// The set of served types of one cluster.
#[derive(Clone, Default)]
pub struct Registry {
    // (group, version, plural)
    types: BTreeMap<(String, String, String), Arc<ResourceType>>,
}

impl Registry {
    pub fn add(&mut self, t: ResourceType) {
        self.types.insert(
            (t.group.clone(), t.version.clone(), t.plural.clone()),
            Arc::new(t),
        );
    }
    pub fn remove_crd(&mut self, crd_name: &str) {
        self.types
            .retain(|_, t| t.origin != Origin::Crd(crd_name.to_string()));
    }
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
            .cloned()
    }
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|t| t.group_version() == api_version && t.kind == kind)
            .cloned()
    }
    /// Any version of a group's plural (the first in version order).
    pub fn by_group_plural(&self, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .values()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
    }
    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }
    /// Served group versions: `group -> [versions]`, preferred first.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values() {
            let versions = out.entry(t.group.clone()).or_default();
            if !versions.contains(&t.version) {
                versions.push(t.version.clone());
            }
        }
        for versions in out.values_mut() {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a Arc<ResourceType>> + 'a {
        self.types
            .values()
            .filter(move |t| t.group == group && t.version == version)
    }
}

/// Kubernetes version ordering: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        (3, major, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, major, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, major, n.parse().unwrap_or(0))
    } else {
        (0, major, 0)
    }
}

/// The `APIResource` entry for legacy discovery.
pub fn api_resource_json(t: &ResourceType) -> Value {
    let mut v = json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": t.verbs,
    });
    if !t.short_names.is_empty() {
        v["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        v["categories"] = json!(t.categories);
    }
    v
}
