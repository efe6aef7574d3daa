//! Rendered documents become objects: a typed k8s-openapi value where k8s-openapi has the kind, a
//! [`DynamicObject`] otherwise. A built-in object must survive a round trip through its type unchanged,
//! which catches misspelled or misplaced fields in templates (k8s-openapi ignores unknown keys).

use k8s_openapi::Resource;
use k8s_openapi::api::{
    apps::v1 as apps, core::v1 as core, rbac::v1 as rbac, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::DynamicObject;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::kube::kinds::{self, Kind};

macro_rules! objects {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// One Kubernetes object, typed where k8s-openapi has the type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Object {
            $($variant(Box<$ty>),)*
            Dynamic(Box<DynamicObject>),
        }

        impl Object {
            /// Parses a JSON value into the typed or dynamic object for its `apiVersion` and `kind`.
            pub fn from_value(value: Value) -> Result<Object, String> {
                let (api_version, kind) = type_of(&value)?;
                if kinds::find(&api_version, &kind).is_none() {
                    return Err(format!(
                        "{api_version} {kind} is not a kind ztwim-hub knows how to apply"
                    ));
                }
                $(
                    if api_version == <$ty as Resource>::API_VERSION && kind == <$ty as Resource>::KIND {
                        return round_trip::<$ty>(value).map(|o| Object::$variant(Box::new(o)));
                    }
                )*
                round_trip::<DynamicObject>(value).map(|o| Object::Dynamic(Box::new(o)))
            }

            /// The object as JSON, exactly as it is applied.
            pub fn to_value(&self) -> Value {
                let value = match self {
                    $(Object::$variant(o) => serde_json::to_value(o.as_ref()),)*
                    Object::Dynamic(o) => serde_json::to_value(o.as_ref()),
                };
                value.expect("Kubernetes objects serialize to JSON")
            }

            /// Whether this is a typed k8s-openapi object.
            pub fn is_typed(&self) -> bool {
                !matches!(self, Object::Dynamic(_))
            }
        }
    };
}

objects! {
    Namespace(core::Namespace),
    ConfigMap(core::ConfigMap),
    Secret(core::Secret),
    ServiceAccount(core::ServiceAccount),
    Service(core::Service),
    Deployment(apps::Deployment),
    DaemonSet(apps::DaemonSet),
    StatefulSet(apps::StatefulSet),
    ClusterRole(rbac::ClusterRole),
    ClusterRoleBinding(rbac::ClusterRoleBinding),
    Role(rbac::Role),
    RoleBinding(rbac::RoleBinding),
    CsiDriver(storage::CSIDriver),
    CustomResourceDefinition(CustomResourceDefinition),
}

impl Object {
    /// An object from an upstream release manifest: a known kind, kept as published (fields k8s-openapi
    /// does not know are not an error here, unlike in our templates).
    pub fn upstream(value: Value) -> Result<Object, String> {
        let (api_version, kind) = type_of(&value)?;
        if kinds::find(&api_version, &kind).is_none() {
            return Err(format!(
                "{api_version} {kind} is not a kind ztwim-hub knows how to apply"
            ));
        }
        serde_json::from_value::<DynamicObject>(value)
            .map(|o| Object::Dynamic(Box::new(o)))
            .map_err(|e| format!("{api_version} {kind}: {e}"))
    }

    pub fn api_version(&self) -> String {
        self.to_value()["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn kind(&self) -> String {
        self.to_value()["kind"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn name(&self) -> String {
        self.to_value()["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn namespace(&self) -> Option<String> {
        self.to_value()["metadata"]["namespace"]
            .as_str()
            .map(str::to_string)
    }

    /// The known kind (always present: [`Object::from_value`] refuses unknown kinds).
    pub fn known_kind(&self) -> &'static Kind {
        kinds::find(&self.api_version(), &self.kind())
            .expect("objects are only made of known kinds")
    }

    /// `Kind/name` or `Kind/namespace/name`, for messages.
    pub fn display_name(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {}/{}", self.kind(), ns, self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }
}

fn type_of(value: &Value) -> Result<(String, String), String> {
    let field = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("the document has no {key}"))
    };
    let api_version = field("apiVersion")?;
    let kind = field("kind")?;
    if value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(format!("{api_version} {kind} has no metadata.name"));
    }
    Ok((api_version, kind))
}

/// Deserializes `value` as `K` and checks that serializing it back gives the same JSON.
fn round_trip<K>(value: Value) -> Result<K, String>
where
    K: DeserializeOwned + serde::Serialize,
{
    let typed: K = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match first_difference(&value, &back, String::new()) {
        None => Ok(typed),
        Some(path) => Err(format!(
            "field {path} is not part of the {} schema (misspelled or misplaced?)",
            value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("object")
        )),
    }
}

/// The JSON path of the first place where `want` has something `got` lacks or has differently.
fn first_difference(want: &Value, got: &Value, path: String) -> Option<String> {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, av) in a {
                let sub = format!("{path}.{key}");
                match b.get(key) {
                    Some(bv) => {
                        if let Some(p) = first_difference(av, bv, sub) {
                            return Some(p);
                        }
                    }
                    // An explicit null and an absent field are the same to the API server.
                    None if av.is_null() => {}
                    None => return Some(sub),
                }
            }
            b.keys()
                .find(|k| !a.contains_key(*k))
                .map(|k| format!("{path}.{k}"))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(path);
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (av, bv))| first_difference(av, bv, format!("{path}[{i}]")))
        }
        _ if want == got => None,
        _ => Some(if path.is_empty() { ".".into() } else { path }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_in_kinds_are_typed() {
        let obj = Object::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "b"}, "data": {"k": "v"}
        }))
        .unwrap();
        assert!(matches!(obj, Object::ConfigMap(_)));
        assert_eq!(obj.display_name(), "ConfigMap b/a");
    }

    #[test]
    fn a_misspelled_field_of_a_built_in_kind_is_refused_with_its_path() {
        let err = Object::from_value(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "a"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"},
            "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io", "namespce": "x"}]
        }))
        .unwrap_err();
        assert!(err.contains(".subjects[0]"), "{err}");
    }

    #[test]
    fn custom_resources_are_dynamic_and_unknown_kinds_refused() {
        let obj = Object::from_value(json!({
            "apiVersion": "argoproj.io/v1beta1", "kind": "ArgoCD",
            "metadata": {"name": "a", "namespace": "b"}, "spec": {"ha": {"enabled": false}}
        }))
        .unwrap();
        assert!(!obj.is_typed());
        assert_eq!(obj.to_value()["spec"]["ha"]["enabled"], json!(false));
        let err = Object::from_value(
            json!({"apiVersion": "x/v1", "kind": "Y", "metadata": {"name": "a"}}),
        )
        .unwrap_err();
        assert!(err.contains("not a kind"), "{err}");
    }
}
