//! The state of one simulated cluster: the registry of served types, the object store, the
//! watch event history, and the write semantics of kube-apiserver.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{Value, json};

use crate::apply;
use crate::registry::{Origin, Registry, ResourceType, types_from_crd};
use crate::selectors::{FieldSelector, LabelSelector};

/// How many watch events a cluster keeps; older resourceVersions get `410 Gone`.
pub const EVENT_HISTORY: usize = 10_000;

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// Boxed: keeps `Result<_, ApiError>` small (serde_json's `preserve_order` makes `Value` large).
    pub details: Option<Box<Value>>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }
    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some(Box::new(
            json!({"name": name, "group": rt.group, "kind": rt.plural}),
        ));
        self
    }
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        let what = if rt.group.is_empty() {
            rt.plural.clone()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        };
        Self::new(404, "NotFound", format!("{what} \"{name}\" not found")).with_details(rt, name)
    }
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let what = if rt.group.is_empty() {
            rt.plural.clone()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        };
        Self::new(
            409,
            "AlreadyExists",
            format!("{what} \"{name}\" already exists"),
        )
        .with_details(rt, name)
    }
    pub fn conflict(rt: &ResourceType, name: &str, msg: &str) -> Self {
        let what = if rt.group.is_empty() {
            rt.plural.clone()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        };
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {what} \"{name}\": {msg}"),
        )
        .with_details(rt, name)
    }
    pub fn invalid(rt: &ResourceType, name: &str, errors: &[String]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| {
                let (field, message) = e.split_once(": ").unwrap_or(("", e));
                json!({"reason": "FieldValueInvalid", "message": message, "field": field})
            })
            .collect();
        let what = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{what} \"{name}\" is invalid: {}", errors.join(", ")),
        )
        .with_details(rt, name);
        if let Some(d) = e.details.as_mut() {
            d["kind"] = json!(rt.kind);
            d["causes"] = Value::Array(causes);
        }
        e
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }
    pub fn method_not_allowed(msg: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", msg)
    }
    pub fn status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.as_ref().clone();
        }
        v
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Who is writing: API requests count as stored changes; library/controller writes do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Api,
    Internal,
}

/// `fieldValidation` of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// Options of one write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
    pub force: bool,
    pub actor: Actor,
}

impl WriteOptions {
    pub fn internal() -> Self {
        Self {
            dry_run: false,
            field_manager: "kubesim".into(),
            field_validation: FieldValidation::Ignore,
            force: true,
            actor: Actor::Internal,
        }
    }
}

/// A stored change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One entry of the watch history.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub event_type: EventType,
    /// `group/plural` of the object.
    pub storage_key: String,
    pub object: Value,
    pub old: Option<Value>,
    pub at: Instant,
}

impl Event {
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Request counters of a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Mutating API requests received (create, update, patch, delete, deletecollection),
    /// whatever their outcome, excluding dry runs and access/identity reviews.
    pub mutating_requests: u64,
    /// Changes stored through the API (each bumped the resourceVersion).
    pub stored_changes: u64,
    /// Mutating requests with `dryRun=All`.
    pub dry_run_requests: u64,
    /// Changes stored by the library (`put`, `delete`) and by controllers.
    pub internal_changes: u64,
}

#[derive(Default)]
pub(crate) struct CounterCells {
    pub mutating_requests: AtomicU64,
    pub stored_changes: AtomicU64,
    pub dry_run_requests: AtomicU64,
    pub internal_changes: AtomicU64,
}

impl CounterCells {
    pub fn snapshot(&self) -> Counters {
        Counters {
            mutating_requests: self.mutating_requests.load(Ordering::SeqCst),
            stored_changes: self.stored_changes.load(Ordering::SeqCst),
            dry_run_requests: self.dry_run_requests.load(Ordering::SeqCst),
            internal_changes: self.internal_changes.load(Ordering::SeqCst),
        }
    }
    pub fn reset(&self) {
        for c in [
            &self.mutating_requests,
            &self.stored_changes,
            &self.dry_run_requests,
            &self.internal_changes,
        ] {
            c.store(0, Ordering::SeqCst);
        }
    }
}

type ObjKey = (String, String);

pub(crate) struct State {
    pub rv: u64,
    pub registry: Registry,
    pub objects: BTreeMap<String, BTreeMap<ObjKey, Value>>,
    pub events: VecDeque<Arc<Event>>,
    /// Watches from a resourceVersion below this are `410 Gone`.
    pub compacted_rv: u64,
}

/// The store and write semantics of one cluster.
pub struct Store {
    state: Mutex<State>,
    rv_tx: tokio::sync::watch::Sender<u64>,
    pub(crate) counters: CounterCells,
    admission: std::sync::RwLock<Vec<Admission>>,
}

/// A validating admission check on API writes (after schema validation, dry runs included):
/// `(type, old object or None on create, new object)`. It runs under the store lock: it must
/// not call back into the store.
pub type Admission =
    Arc<dyn Fn(&ResourceType, Option<&Value>, &Value) -> ApiResult<()> + Send + Sync>;

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(key)?.as_str()
}

/// The object without fields that change on every write (for no-op detection).
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if let Some(Value::Array(mf)) = meta.get_mut("managedFields") {
            for e in mf {
                if let Some(m) = e.as_object_mut() {
                    m.remove("time");
                }
            }
        }
    }
    o
}

fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

/// Remove fields not declared in a structural schema (kube-apiserver pruning).
pub fn prune(obj: &mut Value, schema: &Value, root: bool) {
    let Some(s) = schema.as_object() else { return };
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        && !s.contains_key("properties")
    {
        return;
    }
    match obj {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = s.get("properties") {
                let preserve =
                    s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
                let embedded = s.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
                map.retain(|k, _| {
                    preserve
                        || props.contains_key(k)
                        || ((root || embedded)
                            && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                });
                for (k, v) in map.iter_mut() {
                    if root && k == "metadata" {
                        continue;
                    }
                    if let Some(ps) = props.get(k) {
                        prune(v, ps, false);
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|v| v.is_object()) {
                for v in map.values_mut() {
                    prune(v, ap, false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for v in items {
                    prune(v, is, false);
                }
            }
        }
        _ => {}
    }
}

/// A watch from a resourceVersion older than the retained history (`410 Gone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Outcome of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
    /// False when nothing changed (no resourceVersion bump).
    pub stored: bool,
}

impl Store {
    pub fn new(registry: Registry) -> Self {
        let (rv_tx, _) = tokio::sync::watch::channel(1);
        Self {
            state: Mutex::new(State {
                rv: 1,
                registry,
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                compacted_rv: 0,
            }),
            rv_tx,
            counters: CounterCells::default(),
            admission: Default::default(),
        }
    }

    /// Add a validating admission check (see [`Admission`]).
    pub fn add_admission(&self, a: Admission) {
        self.admission.write().unwrap().push(a);
    }

    fn admit(&self, rt: &ResourceType, old: Option<&Value>, new: &Value) -> ApiResult<()> {
        let checks = self.admission.read().unwrap().clone();
        checks.iter().try_for_each(|a| a(rt, old, new))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.rv_tx.subscribe()
    }

    /// Events with a resourceVersion greater than `rv`, or `Err(())` if `rv` is too old.
    pub fn events_since(&self, rv: u64) -> Result<Vec<Arc<Event>>, Gone> {
        let st = self.lock();
        if rv < st.compacted_rv {
            return Err(Gone);
        }
        let start = st.events.partition_point(|e| e.rv <= rv);
        Ok(st.events.range(start..).cloned().collect())
    }

    /// Forget the whole watch history: watches from an older resourceVersion get `410 Gone`.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.events.clear();
        st.compacted_rv = st.rv;
    }

    fn notify(&self, rv: u64) {
        self.rv_tx.send_replace(rv);
    }

    /// Present a stored object as the version `rt` serves.
    pub fn present(rt: &ResourceType, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = json!(rt.group_version());
        o["kind"] = json!(rt.kind);
        o
    }

    pub fn get(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> ApiResult<Value> {
        let st = self.lock();
        st.objects
            .get(&rt.storage_key())
            .and_then(|m| m.get(&(ns.unwrap_or_default().to_string(), name.to_string())))
            .map(|o| Self::present(rt, o))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// List objects (all namespaces when `ns` is `None`). Returns the items and the list resourceVersion.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> (Vec<Value>, u64) {
        let st = self.lock();
        let items = st
            .objects
            .get(&rt.storage_key())
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|ns| n == ns))
                    .filter(|(_, o)| labels.matches(o) && fields.matches(o))
                    .map(|(_, o)| Self::present(rt, o))
                    .collect()
            })
            .unwrap_or_default();
        (items, st.rv)
    }

    fn find_type(st: &State, obj: &Value) -> ApiResult<Arc<ResourceType>> {
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        st.registry.by_kind(api_version, kind).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({api_version} {kind})"),
            )
        })
    }

    /// The resource type of an `apiVersion`/`kind`.
    pub fn type_of(&self, api_version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.by_kind(api_version, kind)
    }

    /// Store `obj` (or delete when `None`), bump the resourceVersion, record the event.
    fn commit(
        &self,
        st: &mut State,
        rt: &ResourceType,
        key: ObjKey,
        obj: Option<Value>,
        old: Option<Value>,
        actor: Actor,
    ) -> Value {
        st.rv += 1;
        let rv = st.rv;
        let storage_key = rt.storage_key();
        let (event_type, mut object) = match (&obj, &old) {
            (Some(o), None) => (EventType::Added, o.clone()),
            (Some(o), Some(_)) => (EventType::Modified, o.clone()),
            (None, Some(o)) => (EventType::Deleted, o.clone()),
            (None, None) => unreachable!("commit of nothing"),
        };
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let bucket = st.objects.entry(storage_key.clone()).or_default();
        if obj.is_some() {
            bucket.insert(key, object.clone());
        } else {
            bucket.remove(&key);
        }
        st.events.push_back(Arc::new(Event {
            rv,
            event_type,
            storage_key,
            object: object.clone(),
            old,
            at: Instant::now(),
        }));
        while st.events.len() > EVENT_HISTORY {
            if let Some(e) = st.events.pop_front() {
                st.compacted_rv = e.rv;
            }
        }
        match actor {
            Actor::Api => self.counters.stored_changes.fetch_add(1, Ordering::SeqCst),
            Actor::Internal => self
                .counters
                .internal_changes
                .fetch_add(1, Ordering::SeqCst),
        };
        object
    }

    fn validate(
        rt: &ResourceType,
        obj: &mut Value,
        mode: FieldValidation,
    ) -> ApiResult<Vec<String>> {
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let mut warnings = Vec::new();
        if let Some(v) = &rt.validator {
            let validator = v
                .get()
                .map_err(|e| ApiError::new(500, "InternalError", format!("schema: {e}")))?;
            if mode != FieldValidation::Strict {
                // Unknown fields are pruned (with a warning) rather than rejected.
                let before = obj.clone();
                prune(obj, v.openapi(), true);
                if mode == FieldValidation::Warn
                    && before != *obj
                    && let Err(errors) = validator.validate(&before)
                {
                    warnings.extend(errors.into_iter().filter(|e| e.contains("unknown field")));
                }
            }
            if let Err(errors) = validator.validate(obj) {
                return Err(ApiError::invalid(rt, &name, &errors));
            }
        }
        Self::builtin_checks(rt, obj)?;
        Ok(warnings)
    }

    fn builtin_checks(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
        let name = meta_str(obj, "name").unwrap_or_default();
        let mut errors = Vec::new();
        if name.is_empty() {
            errors.push("metadata.name: Required value: name or generateName is required".into());
        } else if (name.len() > 253
            || !name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')
            }))
            && rt.origin == Origin::BuiltIn
            && !matches!(
                rt.plural.as_str(),
                "clusterroles" | "clusterrolebindings" | "roles" | "rolebindings"
            )
        {
            errors.push(format!(
                    "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ));
        }
        if matches!(rt.plural.as_str(), "configmaps" | "secrets") && rt.group.is_empty() {
            for key in ["data", "stringData"] {
                if let Some(map) = obj.get(key).and_then(Value::as_object) {
                    for (k, v) in map {
                        if !v.is_string() {
                            errors.push(format!("{key}.{k}: Invalid value: must be a string"));
                        }
                    }
                }
            }
        }
        if rt.plural == "customresourcedefinitions" {
            let group = obj
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let plural = obj
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if name != format!("{plural}.{group}") {
                errors.push(format!(
                    "metadata.name: Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"
                ));
            }
            if obj
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .is_none()
            {
                errors.push("spec.names.kind: Required value".into());
            }
            let versions = obj.pointer("/spec/versions").and_then(Value::as_array);
            if versions.is_none_or(|v| v.is_empty()) {
                errors.push("spec.versions: Invalid value: must have exactly one version marked as storage version".into());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(rt, name, &errors))
        }
    }

    fn check_namespace(st: &State, rt: &ResourceType, ns: &str) -> ApiResult<()> {
        let nsobj = st
            .objects
            .get("/namespaces")
            .and_then(|m| m.get(&(String::new(), ns.to_string())));
        match nsobj {
            None => Err(
                ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
                    .with_details(&crate::registry::kubernetes_builtins()[0], ns),
            ),
            Some(o)
                if o.pointer("/metadata/deletionTimestamp")
                    .is_some_and(|v| !v.is_null()) =>
            {
                let _ = rt;
                Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        rt.plural
                    ),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    fn normalise_identity(
        rt: &ResourceType,
        ns: Option<&str>,
        obj: &mut Value,
    ) -> ApiResult<ObjKey> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
            && av != rt.group_version()
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.group_version()
            )));
        }
        if let Some(k) = obj.get("kind").and_then(Value::as_str)
            && k != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        obj["apiVersion"] = json!(rt.group_version());
        obj["kind"] = json!(rt.kind);
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let meta = obj["metadata"].as_object_mut().unwrap();
        if rt.namespaced {
            let body_ns = meta
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_string);
            let ns = match (ns, body_ns) {
                (Some(p), Some(b)) if p != b => {
                    return Err(ApiError::bad_request(format!(
                        "the namespace of the provided object does not match the namespace sent on the request ({b} vs {p})"
                    )));
                }
                (Some(p), _) => p.to_string(),
                (None, Some(b)) => b,
                (None, None) => "default".to_string(),
            };
            meta.insert("namespace".into(), json!(ns));
        } else {
            meta.remove("namespace");
        }
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        {
            let suffix: String = (0..5)
                .map(|_| {
                    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
                    alphabet[rand::random_range(0..alphabet.len())] as char
                })
                .collect();
            meta.insert("name".into(), json!(format!("{prefix}{suffix}")));
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok((ns, name))
    }

    /// Create an object (POST).
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<WriteOutcome> {
        if rt.is_read_only() {
            return Err(ApiError::method_not_allowed(format!(
                "create is not supported on {}",
                rt.plural
            )));
        }
        let key = Self::normalise_identity(rt, ns, &mut obj)?;
        let mut st = self.lock();
        let out = self.create_locked(&mut st, rt, key, obj, opts, false);
        drop(st);
        self.notify_now();
        out
    }

    fn create_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        key: ObjKey,
        mut obj: Value,
        opts: &WriteOptions,
        keep_managed: bool,
    ) -> ApiResult<WriteOutcome> {
        if rt.namespaced {
            Self::check_namespace(st, rt, &key.0)?;
        }
        if key.1.is_empty() {
            Self::builtin_checks(rt, &obj)?;
        }
        if st
            .objects
            .get(&rt.storage_key())
            .is_some_and(|m| m.contains_key(&key))
        {
            return Err(ApiError::already_exists(rt, &key.1));
        }
        let now = now_rfc3339();
        {
            let meta = obj["metadata"].as_object_mut().unwrap();
            meta.insert("uid".into(), json!(new_uid()));
            meta.insert("creationTimestamp".into(), json!(now));
            meta.insert("generation".into(), json!(1));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
            meta.remove("selfLink");
            if !keep_managed {
                meta.remove("managedFields");
            }
        }
        if opts.actor == Actor::Api
            && rt.status_subresource
            && rt.plural != "namespaces"
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        let warnings = if opts.actor == Actor::Api {
            let w = Self::validate(rt, &mut obj, opts.field_validation)?;
            self.admit(rt, None, &obj)?;
            w
        } else {
            Self::builtin_checks(rt, &obj)?;
            Vec::new()
        };
        if opts.actor == Actor::Api && !keep_managed && read_managed_is_empty(&obj) {
            apply::record_update(
                None,
                &mut obj,
                &opts.field_manager,
                &rt.group_version(),
                &now,
                None,
            );
        }
        self.on_create_defaults(rt, &mut obj);
        if opts.dry_run {
            return Ok(WriteOutcome {
                object: obj,
                warnings,
                created: true,
                stored: false,
            });
        }
        if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
            register_crd(st, &obj);
        }
        let stored = self.commit(st, rt, key, Some(obj), None, opts.actor);
        Ok(WriteOutcome {
            object: Self::present(rt, &stored),
            warnings,
            created: true,
            stored: true,
        })
    }

    fn on_create_defaults(&self, rt: &ResourceType, obj: &mut Value) {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "namespaces") => {
                if obj.pointer("/spec/finalizers").is_none() {
                    obj["spec"] = json!({"finalizers": ["kubernetes"]});
                }
                obj["status"] = json!({"phase": "Active"});
                let name = meta_str(obj, "name").unwrap_or_default().to_string();
                let labels = obj["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .entry("labels")
                    .or_insert_with(|| json!({}));
                if let Some(l) = labels.as_object_mut() {
                    l.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
                let established = obj
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    });
                if !established {
                    obj["status"] = json!({
                        "acceptedNames": names,
                        "storedVersions": obj.pointer("/spec/versions").and_then(Value::as_array)
                            .map(|vs| vs.iter().filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>())
                            .unwrap_or_default(),
                        "conditions": [{
                            "type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                            "message": "no conflicts found", "lastTransitionTime": now_rfc3339()
                        }, {
                            "type": "Established", "status": "False", "reason": "Installing",
                            "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()
                        }]
                    });
                }
            }
            _ => {}
        }
    }

    /// Replace an object (PUT), the main resource or a subresource (`status`).
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<WriteOutcome> {
        if rt.is_read_only() {
            return Err(ApiError::method_not_allowed(format!(
                "update is not supported on {}",
                rt.plural
            )));
        }
        let key = Self::normalise_identity(rt, ns, &mut obj)?;
        if key.1 != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                key.1
            )));
        }
        let mut st = self.lock();
        let Some(old) = st
            .objects
            .get(&rt.storage_key())
            .and_then(|m| m.get(&key))
            .cloned()
        else {
            return Err(ApiError::not_found(rt, name));
        };
        if let Some(rv) = meta_str(&obj, "resourceVersion")
            && rv != meta_str(&old, "resourceVersion").unwrap_or_default()
        {
            return Err(ApiError::conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let body_has_managed = obj.pointer("/metadata/managedFields").is_some();
        if !body_has_managed {
            obj["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
        }
        let out = self.update_locked(&mut st, rt, key, old, obj, subresource, opts, true);
        drop(st);
        self.notify_now();
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn update_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        key: ObjKey,
        old: Value,
        mut obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
        record_manager: bool,
    ) -> ApiResult<WriteOutcome> {
        // Carry over what clients cannot change.
        {
            let meta = obj["metadata"].as_object_mut().unwrap();
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ] {
                match old["metadata"].get(k) {
                    Some(v) => {
                        meta.insert(k.into(), v.clone());
                    }
                    None => {
                        meta.remove(k);
                    }
                }
            }
            meta.remove("resourceVersion");
        }
        if opts.actor == Actor::Api || subresource.is_some() {
            if subresource == Some("status") {
                let status = obj.get("status").cloned();
                let mut merged = old.clone();
                match status {
                    Some(s) => merged["status"] = s,
                    None => {
                        merged.as_object_mut().unwrap().remove("status");
                    }
                }
                merged["metadata"]["managedFields"] = obj["metadata"]["managedFields"].clone();
                obj = merged;
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
            } else if rt.status_subresource && opts.actor == Actor::Api {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        obj.as_object_mut().unwrap().remove("status");
                    }
                }
            }
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            // kube-apiserver keeps this label on every namespace (set on create and update).
            let name = key.1.clone();
            let meta = obj["metadata"].as_object_mut().unwrap();
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        if spec_part(&obj) != spec_part(&old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            obj["metadata"]["generation"] = json!(generation + 1);
        }
        let now = now_rfc3339();
        let warnings = if opts.actor == Actor::Api {
            let w = Self::validate(rt, &mut obj, opts.field_validation)?;
            self.admit(rt, Some(&old), &obj)?;
            w
        } else {
            Vec::new()
        };
        if record_manager && opts.actor == Actor::Api {
            apply::record_update(
                Some(&old),
                &mut obj,
                &opts.field_manager,
                &rt.group_version(),
                &now,
                subresource,
            );
        }
        if comparable(&obj)
            == comparable(&{
                let mut o = old.clone();
                o["apiVersion"] = obj["apiVersion"].clone();
                o
            })
        {
            return Ok(WriteOutcome {
                object: Self::present(rt, &old),
                warnings,
                created: false,
                stored: false,
            });
        }
        if opts.dry_run {
            return Ok(WriteOutcome {
                object: obj,
                warnings,
                created: false,
                stored: false,
            });
        }
        let terminating = obj
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let no_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
            register_crd(st, &obj);
        }
        if terminating && no_finalizers && !(rt.group.is_empty() && rt.plural == "namespaces") {
            let gone = self.commit(st, rt, key.clone(), None, Some(obj), opts.actor);
            self.after_delete(st, rt, &key, opts.actor);
            return Ok(WriteOutcome {
                object: Self::present(rt, &gone),
                warnings,
                created: false,
                stored: true,
            });
        }
        let stored = self.commit(st, rt, key.clone(), Some(obj), Some(old), opts.actor);
        if terminating && rt.group.is_empty() && rt.plural == "namespaces" {
            self.reap_namespace(st, &key.1, opts.actor);
        }
        Ok(WriteOutcome {
            object: Self::present(rt, &stored),
            warnings,
            created: false,
            stored: true,
        })
    }

    /// Patch an object: `content_type` is one of the Kubernetes patch media types.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        content_type: &str,
        patch: &Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<WriteOutcome> {
        let out = self.patch_inner(rt, ns, name, content_type, patch, subresource, opts);
        self.notify_now();
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn patch_inner(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        content_type: &str,
        patch: &Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<WriteOutcome> {
        if rt.is_read_only() {
            return Err(ApiError::method_not_allowed(format!(
                "patch is not supported on {}",
                rt.plural
            )));
        }
        let nskey = if rt.namespaced {
            ns.unwrap_or("default").to_string()
        } else {
            String::new()
        };
        let key = (nskey, name.to_string());
        let mut st = self.lock();
        let old = st
            .objects
            .get(&rt.storage_key())
            .and_then(|m| m.get(&key))
            .cloned();
        let ct = content_type.split(';').next().unwrap_or_default().trim();
        if ct == "application/apply-patch+yaml" {
            let mut applied = patch.clone();
            let key2 = Self::normalise_identity(rt, ns, &mut applied)?;
            if key2.1 != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    key2.1
                )));
            }
            if let Some(m) = applied["metadata"].as_object_mut() {
                for k in [
                    "resourceVersion",
                    "managedFields",
                    "uid",
                    "creationTimestamp",
                    "generation",
                ] {
                    m.remove(k);
                }
                if m.get("namespace").is_some() && !rt.namespaced {
                    m.remove("namespace");
                }
            }
            if subresource == Some("status") {
                let status = applied.get("status").cloned().unwrap_or(json!({}));
                let mut only = json!({"apiVersion": applied["apiVersion"], "kind": applied["kind"], "metadata": {"name": name}});
                only["status"] = status;
                applied = only;
            } else if rt.status_subresource {
                applied.as_object_mut().unwrap().remove("status");
            }
            let now = now_rfc3339();
            let merged = apply::apply(
                old.as_ref(),
                &applied,
                &opts.field_manager,
                opts.force,
                &rt.group_version(),
                &now,
                subresource,
            )
            .map_err(|conflicts| {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.path}))
                    .collect();
                let list: Vec<String> = conflicts
                    .iter()
                    .map(|c| format!("- {}", c.path))
                    .collect();
                let mut e = ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflict{}: conflict with \"{}\": {}",
                        conflicts.len(),
                        if conflicts.len() == 1 { "" } else { "s" },
                        conflicts[0].manager,
                        list.join("\n")
                    ),
                );
                e.details = Some(Box::new(json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes})));
                e
            })?;
            return match old {
                None => {
                    if subresource.is_some() {
                        return Err(ApiError::not_found(rt, name));
                    }
                    let mut obj = merged;
                    obj["apiVersion"] = json!(rt.group_version());
                    obj["kind"] = json!(rt.kind);
                    self.create_locked(&mut st, rt, key, obj, opts, true)
                }
                Some(old) => {
                    self.update_locked(&mut st, rt, key, old, merged, subresource, opts, false)
                }
            };
        }
        let Some(old) = old else {
            return Err(ApiError::not_found(rt, name));
        };
        let mut obj = old.clone();
        match ct {
            "application/merge-patch+json" => apply::merge_patch(&mut obj, patch),
            "application/strategic-merge-patch+json" => {
                apply::strategic_merge_patch(&mut obj, patch)
            }
            "application/json-patch+json" => {
                let p: json_patch::Patch = serde_json::from_value(patch.clone())
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut obj, &p).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the JSON patch could not be applied: {e}"),
                    )
                })?;
            }
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
                    ),
                ));
            }
        }
        if let Some(rv) = meta_str(patch, "resourceVersion")
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                rt,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let key2 = Self::normalise_identity(rt, ns, &mut obj)?;
        if key2 != key {
            return Err(ApiError::bad_request(
                "a patch cannot change the name or namespace",
            ));
        }
        self.update_locked(&mut st, rt, key, old, obj, subresource, opts, true)
    }

    /// Delete an object. Objects with finalizers are marked for deletion instead.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if rt.is_read_only() {
            return Err(ApiError::method_not_allowed(format!(
                "delete is not supported on {}",
                rt.plural
            )));
        }
        let nskey = if rt.namespaced {
            ns.unwrap_or("default").to_string()
        } else {
            String::new()
        };
        let key = (nskey, name.to_string());
        let mut st = self.lock();
        let out = self.delete_locked(&mut st, rt, key, opts);
        drop(st);
        self.notify_now();
        out
    }

    fn delete_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        key: ObjKey,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let Some(old) = st
            .objects
            .get(&rt.storage_key())
            .and_then(|m| m.get(&key))
            .cloned()
        else {
            return Err(ApiError::not_found(rt, &key.1));
        };
        if opts.dry_run {
            return Ok(Self::present(rt, &old));
        }
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers || is_namespace {
            if old
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                return Ok(Self::present(rt, &old));
            }
            let mut obj = old.clone();
            obj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if is_namespace {
                obj["status"]["phase"] = json!("Terminating");
            }
            let stored = self.commit(st, rt, key.clone(), Some(obj), Some(old), opts.actor);
            if is_namespace {
                self.reap_namespace(st, &key.1, opts.actor);
                if let Some(o) = st.objects.get(&rt.storage_key()).and_then(|m| m.get(&key)) {
                    return Ok(Self::present(rt, o));
                }
            }
            return Ok(Self::present(rt, &stored));
        }
        let gone = self.commit(st, rt, key.clone(), None, Some(old), opts.actor);
        self.after_delete(st, rt, &key, opts.actor);
        Ok(Self::present(rt, &gone))
    }

    fn after_delete(&self, st: &mut State, rt: &ResourceType, key: &ObjKey, actor: Actor) {
        if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
            let crd_name = key.1.clone();
            let types: Vec<Arc<ResourceType>> = st
                .registry
                .all()
                .filter(|t| t.origin == Origin::Crd(crd_name.clone()))
                .cloned()
                .collect();
            if let Some(t) = types.first() {
                let keys: Vec<ObjKey> = st
                    .objects
                    .get(&t.storage_key())
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                for k in keys {
                    self.commit(
                        st,
                        t,
                        k.clone(),
                        None,
                        st.objects[&t.storage_key()].get(&k).cloned(),
                        actor,
                    );
                }
            }
            st.registry.remove_crd(&crd_name);
        }
        if rt.namespaced {
            self.reap_namespace(st, &key.0, actor);
        }
    }

    /// Delete what a terminating namespace holds, and the namespace once it is empty.
    fn reap_namespace(&self, st: &mut State, ns: &str, actor: Actor) {
        let ns_key = (String::new(), ns.to_string());
        let Some(nsobj) = st
            .objects
            .get("/namespaces")
            .and_then(|m| m.get(&ns_key))
            .cloned()
        else {
            return;
        };
        if nsobj
            .pointer("/metadata/deletionTimestamp")
            .is_none_or(|v| v.is_null())
        {
            return;
        }
        let types: Vec<Arc<ResourceType>> = {
            let mut seen = std::collections::BTreeSet::new();
            st.registry
                .all()
                .filter(|t| t.namespaced && seen.insert(t.storage_key()))
                .cloned()
                .collect()
        };
        let mut remaining = 0;
        for t in &types {
            let keys: Vec<ObjKey> = st
                .objects
                .get(&t.storage_key())
                .map(|m| m.keys().filter(|(n, _)| n == ns).cloned().collect())
                .unwrap_or_default();
            for k in keys {
                let obj = st.objects[&t.storage_key()][&k].clone();
                let has_finalizers = obj
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
                if has_finalizers {
                    remaining += 1;
                    if obj
                        .pointer("/metadata/deletionTimestamp")
                        .is_none_or(Value::is_null)
                    {
                        let mut marked = obj.clone();
                        marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                        self.commit(st, t, k, Some(marked), Some(obj), actor);
                    }
                } else {
                    self.commit(st, t, k, None, Some(obj), actor);
                }
            }
        }
        let ns_finalizers = nsobj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if remaining == 0 && !ns_finalizers {
            let ns_type = st
                .registry
                .get("", "v1", "namespaces")
                .expect("namespaces are served");
            self.commit(st, &ns_type, ns_key, None, Some(nsobj), actor);
        }
    }

    /// Delete every object matching the selectors (deletecollection).
    pub fn delete_collection(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &WriteOptions,
    ) -> ApiResult<Vec<Value>> {
        let (items, _) = self.list(rt, ns, labels, fields);
        let mut st = self.lock();
        let mut out = Vec::new();
        for item in items {
            let key = (
                meta_str(&item, "namespace").unwrap_or_default().to_string(),
                meta_str(&item, "name").unwrap_or_default().to_string(),
            );
            if let Ok(v) = self.delete_locked(&mut st, rt, key, opts) {
                out.push(v);
            }
        }
        drop(st);
        self.notify_now();
        Ok(out)
    }

    /// Library write: create or replace `obj` as is (no validation, no status stripping).
    pub fn put(&self, mut obj: Value) -> ApiResult<Value> {
        let mut st = self.lock();
        let rt = Self::find_type(&st, &obj)?;
        let ns = meta_str(&obj, "namespace").map(str::to_string);
        let key = Self::normalise_identity(&rt, ns.as_deref(), &mut obj)?;
        let old = st
            .objects
            .get(&rt.storage_key())
            .and_then(|m| m.get(&key))
            .cloned();
        let opts = WriteOptions::internal();
        let out = match old {
            None => {
                if rt.namespaced
                    && !st
                        .objects
                        .get("/namespaces")
                        .is_some_and(|m| m.contains_key(&(String::new(), key.0.clone())))
                {
                    return Err(ApiError::new(
                        404,
                        "NotFound",
                        format!("namespaces \"{}\" not found", key.0),
                    ));
                }
                self.create_locked(&mut st, &rt, key, obj, &opts, true)?
            }
            Some(old) => {
                if obj.pointer("/metadata/managedFields").is_none() {
                    obj["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
                    if obj["metadata"]["managedFields"].is_null() {
                        obj["metadata"]
                            .as_object_mut()
                            .unwrap()
                            .remove("managedFields");
                    }
                }
                self.update_locked(&mut st, &rt, key, old, obj, None, &opts, false)?
            }
        };
        drop(st);
        self.notify_now();
        Ok(out.object)
    }

    /// Library delete (honours finalizers and namespace cascading).
    pub fn delete_internal(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        let rt = self.type_of(api_version, kind).ok_or_else(|| {
            ApiError::new(404, "NotFound", format!("no type {api_version} {kind}"))
        })?;
        let out = self.delete(&rt, ns, name, &WriteOptions::internal());
        self.notify_now();
        out
    }

    /// Wake watchers after writes.
    pub fn notify_now(&self) {
        let rv = self.current_rv();
        self.notify(rv);
    }
}

fn read_managed_is_empty(obj: &Value) -> bool {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty())
}

/// Serve the types of a CRD (called on create and update of the CRD).
fn register_crd(st: &mut State, crd: &Value) {
    let name = meta_str(crd, "name").unwrap_or_default().to_string();
    st.registry.remove_crd(&name);
    for t in types_from_crd(crd) {
        st.registry.add(t);
    }
}
