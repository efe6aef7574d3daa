//! Authentication (client certificates, bearer tokens) and RBAC authorisation.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Value, json};

use crate::cluster::Store;
use crate::selectors::{FieldSelector, LabelSelector};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl Identity {
    pub fn new(user: &str, groups: &[&str]) -> Self {
        Self {
            user: user.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            uid: None,
            extra: Default::default(),
        }
    }
    pub fn anonymous() -> Self {
        Self::new("system:anonymous", &["system:unauthenticated"])
    }
    /// Add `system:authenticated` (as kube-apiserver does for every authenticated user).
    pub fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
    pub fn user_info_json(&self) -> Value {
        let mut v = json!({"username": self.user, "groups": self.groups});
        if let Some(uid) = &self.uid {
            v["uid"] = json!(uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }
}

/// A bearer-token authenticator. Part 2 plugs in the OIDC (JWT) authenticator of each cluster.
pub trait TokenAuthenticator: Send + Sync + 'static {
    /// `Some` when this authenticator accepts the token.
    fn authenticate(&self, token: &str) -> Option<Identity>;
}

impl<F> TokenAuthenticator for F
where
    F: Fn(&str) -> Option<Identity> + Send + Sync + 'static,
{
    fn authenticate(&self, token: &str) -> Option<Identity> {
        self(token)
    }
}

/// Static tokens registered by tests.
#[derive(Default)]
pub struct StaticTokens(Mutex<HashMap<String, Identity>>);

impl StaticTokens {
    pub fn add(&self, token: &str, id: Identity) {
        self.0.lock().unwrap().insert(token.to_string(), id);
    }
}

impl TokenAuthenticator for StaticTokens {
    fn authenticate(&self, token: &str) -> Option<Identity> {
        self.0.lock().unwrap().get(token).cloned()
    }
}

/// The authenticators of a cluster, tried in order.
#[derive(Default)]
pub struct Authenticators {
    pub static_tokens: Arc<StaticTokens>,
    extra: RwLock<Vec<Arc<dyn TokenAuthenticator>>>,
}

impl Authenticators {
    pub fn add(&self, a: Arc<dyn TokenAuthenticator>) {
        self.extra.write().unwrap().push(a);
    }
    pub fn authenticate_token(&self, token: &str) -> Option<Identity> {
        if let Some(id) = self.static_tokens.authenticate(token) {
            return Some(id);
        }
        let extra = self.extra.read().unwrap().clone();
        extra.iter().find_map(|a| a.authenticate(token))
    }
}

/// What a request does, for authorisation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Non-resource requests: the URL path.
    pub path: String,
}

fn subject_matches(subject: &Value, id: &Identity, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str().unwrap_or_default() {
        "User" => name == id.user,
        "Group" => id.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject["namespace"].as_str().unwrap_or(binding_ns);
            id.user == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn contains(list: &Value, want: &str) -> bool {
    list.as_array().is_some_and(|l| {
        l.iter()
            .any(|v| v.as_str() == Some("*") || v.as_str() == Some(want))
    })
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !contains(&rule["verbs"], &a.verb) {
        return false;
    }
    if a.resource_request {
        if !contains(&rule["apiGroups"], &a.api_group) {
            return false;
        }
        let resources = rule["resources"].as_array();
        let full = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource_ok = resources.is_some_and(|rs| {
            rs.iter().filter_map(Value::as_str).any(|r| {
                r == "*"
                    || r == full
                    || (!a.subresource.is_empty() && r == format!("*/{}", a.subresource))
            })
        });
        if !resource_ok {
            return false;
        }
        match rule["resourceNames"].as_array() {
            Some(names) if !names.is_empty() => names.iter().any(|n| n.as_str() == Some(&a.name)),
            _ => true,
        }
    } else {
        rule["nonResourceURLs"].as_array().is_some_and(|urls| {
            urls.iter().filter_map(Value::as_str).any(|u| {
                u == "*"
                    || u == a.path
                    || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
            })
        })
    }
}

/// The rules of a ClusterRole, with aggregation resolved.
fn cluster_role_rules(
    roles: &[Value],
    name: &str,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<Value>,
) {
    if !seen.insert(name.to_string()) {
        return;
    }
    let Some(role) = roles.iter().find(|r| r["metadata"]["name"] == name) else {
        return;
    };
    out.extend(role["rules"].as_array().cloned().unwrap_or_default());
    if let Some(selectors) = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    {
        for sel in selectors {
            let sel = LabelSelector::from_object(sel);
            if sel.is_empty() {
                continue;
            }
            for r in roles.iter().filter(|r| sel.matches(r)) {
                let n = r["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                cluster_role_rules(roles, &n, seen, out);
            }
        }
    }
}

/// RBAC: is `id` allowed to do `a`? Members of `system:masters` always are.
pub fn authorize(store: &Store, id: &Identity, a: &Attributes) -> bool {
    if id.groups.iter().any(|g| g == "system:masters") {
        return true;
    }
    let reg = store.registry();
    let list = |plural: &str, ns: Option<&str>| -> Vec<Value> {
        reg.get("rbac.authorization.k8s.io", "v1", plural)
            .map(|rt| {
                store
                    .list(
                        &rt,
                        ns,
                        &LabelSelector::default(),
                        &FieldSelector::default(),
                    )
                    .0
            })
            .unwrap_or_default()
    };
    let cluster_roles = list("clusterroles", None);
    let allowed_by = |role_ref: &Value, ns: &str| -> bool {
        let name = role_ref["name"].as_str().unwrap_or_default();
        let mut rules = Vec::new();
        match role_ref["kind"].as_str().unwrap_or_default() {
            "ClusterRole" => {
                cluster_role_rules(&cluster_roles, name, &mut BTreeSet::new(), &mut rules)
            }
            "Role" => {
                if let Some(r) = list("roles", Some(ns))
                    .into_iter()
                    .find(|r| r["metadata"]["name"] == name)
                {
                    rules = r["rules"].as_array().cloned().unwrap_or_default();
                }
            }
            _ => {}
        }
        rules.iter().any(|r| rule_allows(r, a))
    };
    for b in list("clusterrolebindings", None) {
        let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
        if subjects.iter().any(|s| subject_matches(s, id, "")) && allowed_by(&b["roleRef"], "") {
            return true;
        }
    }
    if a.resource_request && !a.namespace.is_empty() {
        for b in list("rolebindings", Some(&a.namespace)) {
            let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
            if subjects
                .iter()
                .any(|s| subject_matches(s, id, &a.namespace))
                && allowed_by(&b["roleRef"], &a.namespace)
            {
                return true;
            }
        }
    }
    false
}

/// The default RBAC objects of every profile: `cluster-admin`, aggregated `admin`/`edit`/`view`,
/// discovery and self-review rights for authenticated users, and `system:masters` bindings.
pub fn default_rbac() -> Vec<Value> {
    let cr = |name: &str, labels: Value, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels}, "rules": rules})
    };
    let aggregated = |name: &str, labels: Value, selector: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {selector: "true"}}]},
               "rules": []})
    };
    let crb = |name: &str, role: &str, subjects: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": subjects})
    };
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    vec![
        cr(
            "cluster-admin",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults"}),
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}
            ]),
        ),
        aggregated(
            "admin",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults"}),
            "rbac.authorization.k8s.io/aggregate-to-admin",
        ),
        aggregated(
            "edit",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            "rbac.authorization.k8s.io/aggregate-to-edit",
        ),
        aggregated(
            "view",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults", "rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            "rbac.authorization.k8s.io/aggregate-to-view",
        ),
        cr(
            "system:aggregate-to-admin",
            json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
            json!([
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]}
            ]),
        ),
        cr(
            "system:aggregate-to-edit",
            json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
            json!([
                {"apiGroups": [""], "resources": ["pods", "pods/exec", "pods/attach", "pods/portforward", "configmaps", "secrets", "services", "serviceaccounts", "persistentvolumeclaims", "endpoints"], "verbs": write},
                {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "statefulsets", "replicasets", "deployments/scale"], "verbs": write},
                {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": write},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": write},
                {"apiGroups": ["route.openshift.io"], "resources": ["routes"], "verbs": write},
                {"apiGroups": [""], "resources": ["secrets"], "verbs": read}
            ]),
        ),
        cr(
            "system:aggregate-to-view",
            json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
            json!([
                {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/status", "configmaps", "services", "serviceaccounts", "persistentvolumeclaims", "endpoints", "events", "namespaces", "resourcequotas", "limitranges"], "verbs": read},
                {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets", "statefulsets", "replicasets"], "verbs": read},
                {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": read},
                {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": read},
                {"apiGroups": ["route.openshift.io"], "resources": ["routes"], "verbs": read}
            ]),
        ),
        cr(
            "system:discovery",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults"}),
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        cr(
            "system:basic-user",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults"}),
            json!([
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}
            ]),
        ),
        cr(
            "system:public-info-viewer",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults"}),
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/", "/.well-known/openid-configuration", "/openid/v1/jwks"], "verbs": ["get"]}]),
        ),
        crb(
            "cluster-admin",
            "cluster-admin",
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]),
        ),
        crb(
            "system:discovery",
            "system:discovery",
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]),
        ),
        crb(
            "system:basic-user",
            "system:basic-user",
            json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]),
        ),
        crb(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"},
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}
            ]),
        ),
    ]
}
