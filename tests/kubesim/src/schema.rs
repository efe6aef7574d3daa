//! Validation of custom resources against the `openAPIV3Schema` of their CRD.
//!
//! Each CRD version's structural schema is converted to a JSON Schema (2020-12) for the
//! `jsonschema` crate, with the kube-apiserver semantics that matter for tests:
//!
//! - `nullable: true` allows `null`;
//! - `x-kubernetes-int-or-string: true` allows an integer or a string;
//! - an object with `properties` rejects unknown fields (as kube-apiserver does with
//!   `fieldValidation=Strict`) unless it has `x-kubernetes-preserve-unknown-fields: true`
//!   or `additionalProperties`;
//! - `x-kubernetes-preserve-unknown-fields: true` without `properties` accepts anything;
//! - the root `metadata` is validated as an `ObjectMeta`;
//! - `x-kubernetes-embedded-resource: true` objects may carry `apiVersion`, `kind`, `metadata`;
//! - CEL rules (`x-kubernetes-validations`) are ignored, except the trivial singleton rule
//!   `self.metadata.name == '<name>'` on the root, which is enforced.
//!
//! Patterns are compiled with the Rust `regex` engine, which has RE2 syntax like Go's
//! (so `^(?i)https?://[^\s?#]+$` works as it does in kube-apiserver).
//!
//! Schemas are compiled lazily, once per kind and version, and cached: the Argo CD CRDs are
//! megabytes of schema and tests only pay for the kinds they validate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value, json};

/// Environment variable naming the reference directory (with `crds/` and `samples/`).
pub const REFERENCE_ENV: &str = "ZTWIM_HUB_REFERENCE";
/// When set to `1`, a missing reference directory is a hard error.
pub const REQUIRE_REFERENCE_ENV: &str = "ZTWIM_HUB_REQUIRE_REFERENCE";
/// The message tests print when they skip for lack of the reference directory.
pub const SKIP_MESSAGE: &str = "skipped: reference directory not found (set ZTWIM_HUB_REFERENCE)";

/// The reference directory: `$ZTWIM_HUB_REFERENCE` if set, else `<workspace root>/../shared/reference`.
///
/// Returns `None` if neither exists. Panics instead if `ZTWIM_HUB_REQUIRE_REFERENCE=1`.
pub fn reference_dir() -> Option<PathBuf> {
    let candidate = match std::env::var_os(REFERENCE_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("..").join("shared").join("reference"),
    };
    if candidate.is_dir() {
        return Some(candidate.canonicalize().unwrap_or(candidate));
    }
    if std::env::var(REQUIRE_REFERENCE_ENV).as_deref() == Ok("1") {
        panic!(
            "reference directory not found at {} and {REQUIRE_REFERENCE_ENV}=1 (set {REFERENCE_ENV})",
            candidate.display()
        );
    }
    None
}

/// The Cargo workspace root (the directory holding the product's `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// `reference_dir()/crds` loaded once per process and shared (`None` if the reference is absent).
///
/// Loading the reference CRDs parses several megabytes of YAML; tests that validate objects
/// should use this rather than `load_dir` each time.
pub fn reference_schemas() -> Option<Arc<CrdSchemas>> {
    static CACHE: OnceLock<Option<Arc<CrdSchemas>>> = OnceLock::new();
    let dir = reference_dir()?;
    CACHE
        .get_or_init(|| {
            let schemas = CrdSchemas::load_dir(&dir.join("crds"))
                .unwrap_or_else(|e| panic!("loading reference CRDs from {}: {e:#}", dir.display()));
            Some(Arc::new(schemas))
        })
        .clone()
}

/// Parse a YAML (or JSON) stream of one or more documents into JSON values, skipping empty documents.
pub fn parse_yaml_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: None,
            max_events: 100_000_000,
            max_nodes: 100_000_000,
            max_depth: 10_000,
            max_total_scalar_bytes: 1 << 30,
        },
    };
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| anyhow!("invalid YAML: {e}"))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Scope of a custom resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

struct Entry {
    crd_name: String,
    scope: Scope,
    openapi: Value,
    singleton_name: Option<String>,
    compiled: OnceLock<Result<Arc<jsonschema::Validator>, String>>,
}

/// The schemas of a set of CRDs, by `apiVersion` and `kind`.
#[derive(Default)]
pub struct CrdSchemas {
    // key: (group/version, kind)
    entries: BTreeMap<(String, String), Arc<Entry>>,
}

impl std::fmt::Debug for CrdSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdSchemas")
            .field("kinds", &self.entries.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CrdSchemas {
    /// Load every `*.yaml`/`*.yml`/`*.json` file under `dir` (recursively) that holds a CRD.
    ///
    /// Files that are not `CustomResourceDefinition`s are ignored. When two files define the same
    /// `apiVersion`/`kind` (e.g. feature-set variants), the first in path order wins.
    pub fn load_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        collect_files(dir, &mut files).with_context(|| format!("reading {}", dir.display()))?;
        files.sort();
        let mut crds = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let docs = parse_yaml_documents(&text)
                .with_context(|| format!("parsing {}", file.display()))?;
            crds.extend(docs.into_iter().filter(is_crd));
        }
        if crds.is_empty() {
            bail!("no CustomResourceDefinition found under {}", dir.display());
        }
        Self::from_crds(&crds)
    }

    /// Build from CRD objects (`apiextensions.k8s.io/v1` `CustomResourceDefinition` as JSON).
    pub fn from_crds(crds: &[Value]) -> anyhow::Result<Self> {
        let mut schemas = Self::default();
        for crd in crds {
            schemas.add_crd(crd)?;
        }
        Ok(schemas)
    }

    /// Add (or keep, if already present) the versions of one CRD.
    pub fn add_crd(&mut self, crd: &Value) -> anyhow::Result<()> {
        for (key, entry) in crd_entries(crd)? {
            self.entries.entry(key).or_insert(entry);
        }
        Ok(())
    }

    /// Replace the versions of one CRD (used by the simulated API server when a CRD is updated).
    pub fn replace_crd(&mut self, crd: &Value) -> anyhow::Result<()> {
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.remove_crd(&name);
        for (key, entry) in crd_entries(crd)? {
            self.entries.insert(key, entry);
        }
        Ok(())
    }

    /// Remove every version of the CRD named `crd_name` (`<plural>.<group>`).
    pub fn remove_crd(&mut self, crd_name: &str) {
        self.entries.retain(|_, e| e.crd_name != crd_name);
    }

    /// Whether a schema is known for this `apiVersion` and `kind`.
    pub fn has(&self, api_version: &str, kind: &str) -> bool {
        self.entries
            .contains_key(&(api_version.to_string(), kind.to_string()))
    }

    /// The scope of the kind, if known.
    pub fn scope(&self, api_version: &str, kind: &str) -> Option<Scope> {
        self.entries
            .get(&(api_version.to_string(), kind.to_string()))
            .map(|e| e.scope)
    }

    /// Every known `(apiVersion, kind)`.
    pub fn kinds(&self) -> Vec<(String, String)> {
        self.entries.keys().cloned().collect()
    }

    /// The raw `openAPIV3Schema` of a kind and version.
    pub fn openapi_schema(&self, api_version: &str, kind: &str) -> Option<&Value> {
        self.entries
            .get(&(api_version.to_string(), kind.to_string()))
            .map(|e| &e.openapi)
    }

    /// Validate an object against the schema of its `apiVersion` and `kind`.
    ///
    /// Each error starts with the JSON path of the offending field (`spec.foo[0].bar: ...`).
    /// An object whose kind is unknown is an error too.
    pub fn validate(&self, obj: &Value) -> Result<(), Vec<String>> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str);
        let kind = obj.get("kind").and_then(Value::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            return Err(vec![
                "(root): apiVersion and kind must be set to strings".to_string(),
            ]);
        };
        let Some(entry) = self
            .entries
            .get(&(api_version.to_string(), kind.to_string()))
        else {
            return Err(vec![format!(
                "(root): no CRD schema for apiVersion {api_version:?} kind {kind:?}"
            )]);
        };
        let validator = entry
            .compiled
            .get_or_init(|| compile(&entry.openapi).map(Arc::new))
            .clone()
            .map_err(|e| {
                vec![format!(
                    "(root): schema of {api_version} {kind} does not compile: {e}"
                )]
            })?;
        let mut errors = validation_errors(&validator, obj);
        if let Some(required) = &entry.singleton_name {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str);
            if name != Some(required.as_str()) {
                errors.push(format!(
                    "metadata.name: Invalid value: {}: {kind} is a singleton, .metadata.name must be '{required}'",
                    name.map(|n| format!("{n:?}"))
                        .unwrap_or_else(|| "null".to_string())
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn is_crd(doc: &Value) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
        && doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("apiextensions.k8s.io/"))
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

type EntryList = Vec<((String, String), Arc<Entry>)>;

fn crd_entries(crd: &Value) -> anyhow::Result<EntryList> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("CRD without metadata.name"))?;
    let spec = crd
        .get("spec")
        .ok_or_else(|| anyhow!("CRD {name} without spec"))?;
    let group = spec
        .get("group")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("CRD {name} without spec.group"))?;
    let kind = spec
        .pointer("/names/kind")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("CRD {name} without spec.names.kind"))?;
    let scope = match spec.get("scope").and_then(Value::as_str) {
        Some("Cluster") => Scope::Cluster,
        _ => Scope::Namespaced,
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("CRD {name} without spec.versions"))?;
    let mut out = Vec::new();
    for version in versions {
        let vname = version
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("CRD {name}: a version without name"))?;
        let openapi = version
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or_else(
                || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            );
        let singleton_name = singleton_rule(&openapi);
        out.push((
            (format!("{group}/{vname}"), kind.to_string()),
            Arc::new(Entry {
                crd_name: name.to_string(),
                scope,
                openapi,
                singleton_name,
                compiled: OnceLock::new(),
            }),
        ));
    }
    Ok(out)
}

/// The name required by a root rule `self.metadata.name == '<name>'`, if there is one.
fn singleton_rule(openapi: &Value) -> Option<String> {
    let rules = openapi.get("x-kubernetes-validations")?.as_array()?;
    rules.iter().find_map(|r| {
        let rule = r.get("rule")?.as_str()?.trim();
        let rest = rule.strip_prefix("self.metadata.name")?.trim_start();
        let rest = rest.strip_prefix("==")?.trim();
        let quoted = rest
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .or_else(|| rest.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
        (!quoted.contains(['\'', '"', '\\'])).then(|| quoted.to_string())
    })
}

/// Compile a CRD `openAPIV3Schema` (of a whole resource) into a validator.
fn compile(openapi: &Value) -> Result<jsonschema::Validator, String> {
    let schema = to_json_schema_root(openapi);
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(false)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
        .map_err(|e| e.to_string())
}

/// A compiled validator for a single CRD version schema (used by the simulated API server).
pub struct ResourceValidator {
    validator: jsonschema::Validator,
    singleton_name: Option<String>,
}

impl ResourceValidator {
    /// Compile the `openAPIV3Schema` of one CRD version.
    pub fn new(openapi: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            validator: compile(openapi).map_err(|e| anyhow!(e))?,
            singleton_name: singleton_rule(openapi),
        })
    }

    /// Validate a whole object; errors are `path: message`.
    pub fn validate(&self, obj: &Value) -> Result<(), Vec<String>> {
        let mut errors = validation_errors(&self.validator, obj);
        if let Some(required) = &self.singleton_name {
            let name = obj.pointer("/metadata/name").and_then(Value::as_str);
            if name != Some(required.as_str()) {
                errors.push(format!(
                    "metadata.name: Invalid value: {:?}: must be '{required}' (singleton)",
                    name.unwrap_or_default()
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Convert a CRD `openAPIV3Schema` (root of a resource) to JSON Schema 2020-12.
pub fn to_json_schema_root(openapi: &Value) -> Value {
    let mut root = convert(openapi, true);
    if let Value::Object(map) = &mut root {
        let props = map
            .entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(props) = props {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
            let mut meta = object_meta_schema();
            if let Some(name_schema) = openapi.pointer("/properties/metadata/properties/name") {
                meta["properties"]["name"] =
                    json!({"allOf": [{"type": "string"}, convert(name_schema, false)]});
            }
            props.insert("metadata".into(), meta);
        }
        map.entry("type").or_insert(json!("object"));
        if !map.contains_key("additionalProperties")
            && openapi.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true))
        {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    root
}

/// The schema of `metadata` (ObjectMeta), accepting the standard keys only.
pub fn object_meta_schema() -> Value {
    let string_map =
        json!({"type": ["object", "null"], "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string"},
            "generateName": {"type": "string"},
            "namespace": {"type": "string"},
            "selfLink": {"type": "string"},
            "uid": {"type": "string"},
            "resourceVersion": {"type": "string"},
            "generation": {"type": "integer"},
            "creationTimestamp": {"type": ["string", "null"]},
            "deletionTimestamp": {"type": ["string", "null"]},
            "deletionGracePeriodSeconds": {"type": ["integer", "null"]},
            "labels": string_map.clone(),
            "annotations": string_map,
            "ownerReferences": {
                "type": ["array", "null"],
                "items": {
                    "type": "object",
                    "required": ["apiVersion", "kind", "name", "uid"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "uid": {"type": "string"},
                        "controller": {"type": "boolean"},
                        "blockOwnerDeletion": {"type": "boolean"}
                    },
                    "additionalProperties": false
                }
            },
            "finalizers": {"type": ["array", "null"], "items": {"type": "string"}},
            "managedFields": {"type": ["array", "null"], "items": {"type": "object"}}
        }
    })
}

/// Convert one structural-schema node. `structural` is false inside `allOf`/`anyOf`/`oneOf`/`not`,
/// where Kubernetes only allows value validations (unknown-field pruning is decided by the main
/// schema, so no `additionalProperties: false` is added there).
fn convert(node: &Value, structural: bool) -> Value {
    let Value::Object(src) = node else {
        return json!({});
    };
    let mut out = Map::new();
    let preserve = src.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = src.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let nullable = src.get("nullable") == Some(&Value::Bool(true));
    let embedded = src.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));

    if int_or_string {
        out.insert("type".into(), json!(["integer", "string"]));
    } else if let Some(Value::String(t)) = src.get("type") {
        if nullable {
            out.insert("type".into(), json!([t, "null"]));
        } else {
            out.insert("type".into(), json!(t));
        }
    }

    for (key, value) in src {
        match key.as_str() {
            "properties" => {
                if let Value::Object(props) = value {
                    let mut converted: Map<String, Value> = props
                        .iter()
                        .map(|(k, v)| (k.clone(), convert(v, structural)))
                        .collect();
                    if embedded {
                        converted
                            .entry("apiVersion")
                            .or_insert(json!({"type": "string"}));
                        converted.entry("kind").or_insert(json!({"type": "string"}));
                        converted
                            .entry("metadata")
                            .or_insert(json!({"type": "object"}));
                    }
                    out.insert("properties".into(), Value::Object(converted));
                }
            }
            "items" => {
                out.insert("items".into(), convert(value, structural));
            }
            "additionalProperties" => {
                let v = match value {
                    Value::Bool(b) => Value::Bool(*b),
                    other => convert(other, structural),
                };
                out.insert("additionalProperties".into(), v);
            }
            "allOf" | "anyOf" | "oneOf" => {
                if let Value::Array(list) = value {
                    let mut list: Vec<Value> = list.iter().map(|v| convert(v, false)).collect();
                    if nullable {
                        // `nullable` on the node also lets null through the value validations.
                        list = list
                            .into_iter()
                            .map(|s| json!({"anyOf": [{"type": "null"}, s]}))
                            .collect();
                    }
                    out.insert(key.clone(), Value::Array(list));
                }
            }
            "not" => {
                out.insert("not".into(), convert(value, false));
            }
            "required" | "enum" | "pattern" | "minLength" | "maxLength" | "minimum" | "maximum"
            | "minItems" | "maxItems" | "uniqueItems" | "minProperties" | "maxProperties"
            | "multipleOf" => match value {
                Value::Array(values) if key == "enum" && nullable => {
                    let mut values = values.clone();
                    values.push(Value::Null);
                    out.insert("enum".into(), Value::Array(values));
                }
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            },
            "exclusiveMinimum" | "exclusiveMaximum" => {
                // OpenAPI v3.0 has boolean exclusive bounds; JSON Schema 2020-12 has numbers.
                let bound = if key == "exclusiveMinimum" {
                    "minimum"
                } else {
                    "maximum"
                };
                match value {
                    Value::Bool(true) => {
                        if let Some(limit) = src.get(bound) {
                            out.insert(key.clone(), limit.clone());
                        }
                    }
                    Value::Number(_) => {
                        out.insert(key.clone(), value.clone());
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    // A boolean exclusive bound replaces the inclusive one.
    for (excl, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if src.get(excl) == Some(&Value::Bool(true)) {
            out.remove(bound);
        }
    }
    if int_or_string {
        // The anyOf [{type: integer}, {type: string}] that usually accompanies it is redundant.
        out.remove("anyOf");
    }
    if structural
        && out.contains_key("properties")
        && !preserve
        && !src.contains_key("additionalProperties")
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    Value::Object(out)
}

fn validation_errors(validator: &jsonschema::Validator, obj: &Value) -> Vec<String> {
    let mut errors: Vec<String> = validator
        .iter_errors(obj)
        .flat_map(|e| describe(&e))
        .collect();
    errors.sort();
    errors.dedup();
    errors
}

fn describe(error: &jsonschema::ValidationError<'_>) -> Vec<String> {
    use jsonschema::error::ValidationErrorKind as K;
    let segments: Vec<String> = error
        .instance_path()
        .iter()
        .map(|s| match s {
            jsonschema::paths::LocationSegment::Property(p) => p.to_string(),
            jsonschema::paths::LocationSegment::Index(i) => format!("[{i}]"),
        })
        .collect();
    let path_of = |extra: Option<&str>| {
        let mut path = String::new();
        for seg in segments.iter().map(String::as_str).chain(extra) {
            if seg.starts_with('[') {
                path.push_str(seg);
            } else {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(seg);
            }
        }
        if path.is_empty() {
            "(root)".to_string()
        } else {
            path
        }
    };
    match error.kind() {
        K::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|field| {
                let path = path_of(Some(field));
                format!("{path}: unknown field \"{path}\" (field not declared in schema)")
            })
            .collect(),
        K::Required { property } => {
            let name = property
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| property.to_string());
            vec![format!("{}: Required value", path_of(Some(&name)))]
        }
        _ => vec![format!(
            "{}: Invalid value: {}: {}",
            path_of(None),
            short_json(error.instance()),
            error.to_string()
        )],
    }
}

fn short_json(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        let mut cut = 77;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &text[..cut])
    } else {
        text
    }
}

/// A process-wide cache of loaded directories, keyed by path (for callers that load the same
/// directory from many tests).
pub fn load_dir_cached(dir: &Path) -> anyhow::Result<Arc<CrdSchemas>> {
    static CACHE: OnceLock<Mutex<BTreeMap<PathBuf, Arc<CrdSchemas>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if let Some(found) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(found.clone());
    }
    let loaded = Arc::new(CrdSchemas::load_dir(dir)?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, loaded.clone());
    Ok(loaded)
}
