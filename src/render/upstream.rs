//! Upstream release manifests the kind profile applies as they are published: the spire-controller-manager
//! CRDs and Argo CD's `install.yaml`. They are fetched at run time (an https URL, or a local file or
//! directory for mirrors and air gaps), never committed here. Argo CD's manifest gets its namespace and, on
//! argocd-server and argocd-application-controller, the exec-auth plumbing merged in before it is applied,
//! so one server-side apply owns the result.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use super::object::Object;
use crate::error;
use crate::kube::kinds;

/// Largest manifest accepted (Argo CD's install.yaml is about 1.5 MB, mostly CRDs).
const MAX_BYTES: usize = 32 * 1024 * 1024;

/// A fetched manifest: its documents and where they came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub origin: String,
    pub documents: Vec<Value>,
}

/// Fetches `spec` (`https://...`, a file, or a directory of `*.yaml`/`*.yml`/`*.json`); `flag` names the
/// option in errors.
pub async fn fetch(spec: &str, flag: &str) -> Result<Manifest> {
    let text = if spec.starts_with("https://") {
        download(spec, flag).await?
    } else if spec.contains("://") {
        return Err(error::input(format!(
            "{flag} {spec}: only https:// URLs or local paths are accepted"
        )));
    } else {
        read_path(Path::new(spec), flag)?
    };
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| {
        error::input(format!(
            "{flag} {spec}: not YAML ({})",
            e.to_string().lines().next().unwrap_or_default()
        ))
    })?;
    let mut flat = Vec::new();
    for doc in documents.into_iter().filter(|d| !d.is_null()) {
        // `kind: List` documents (kubectl's output) hold their objects in `items`.
        match doc.get("kind").and_then(Value::as_str) {
            Some("List") => flat.extend(doc["items"].as_array().cloned().unwrap_or_default()),
            _ => flat.push(doc),
        }
    }
    if flat.is_empty() {
        return Err(error::input(format!("{flag} {spec}: holds no objects")));
    }
    Ok(Manifest {
        origin: spec.to_string(),
        documents: flat,
    })
}

/// Downloads over verified TLS (system roots, `HTTPS_PROXY`). A failure is like an unreachable cluster:
/// bad input (exit 2), and nothing has been applied yet.
async fn download(url: &str, flag: &str) -> Result<String> {
    let client = crate::verify::oidc::https_client(None, Duration::from_secs(120))?;
    let describe = crate::verify::oidc::describe_reqwest;
    let response = client.get(url).send().await.map_err(|e| {
        error::input(format!(
            "{flag} {url}: cannot download ({}); check the network or HTTPS_PROXY, or give a local copy with {flag} PATH",
            describe(&e)
        ))
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(error::input(format!(
            "{flag} {url}: HTTP {status}; check the version in the profile, or give a local copy with {flag} PATH"
        )));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| error::input(format!("{flag} {url}: {}", describe(&e))))?;
    if bytes.len() > MAX_BYTES {
        return Err(error::input(format!(
            "{flag} {url}: larger than {MAX_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes.to_vec())
        .map_err(|_| error::input(format!("{flag} {url}: not UTF-8 text")))
}

fn read_path(path: &Path, flag: &str) -> Result<String> {
    let unreadable = |e: std::io::Error| {
        error::input(format!("{flag} {}: cannot read it ({e})", path.display()))
    };
    if !path.is_dir() {
        return std::fs::read_to_string(path).map_err(unreadable);
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(error::input(format!(
            "{flag} {}: the directory has no .yaml, .yml or .json file",
            path.display()
        )));
    }
    let mut text = String::new();
    for file in files {
        text.push_str("\n---\n");
        text.push_str(&std::fs::read_to_string(&file).map_err(unreadable)?);
    }
    Ok(text)
}

/// An upstream object: a kind ztwim-hub knows (for its scope), structurally valid for its type, applied as
/// published (fields k8s-openapi does not know are kept).
fn object(value: Value, origin: &str) -> Result<Object> {
    Object::upstream(value).map_err(|why| error::input(format!("{origin}: {why}")))
}

/// The spire-controller-manager CRDs: every document must be a `spire.spiffe.io` CRD.
pub fn spire_crds(manifests: &[Manifest]) -> Result<Vec<(String, Object)>> {
    let mut out = Vec::new();
    for m in manifests {
        for doc in &m.documents {
            let is_crd = doc["apiVersion"] == "apiextensions.k8s.io/v1"
                && doc["kind"] == "CustomResourceDefinition";
            if !is_crd || doc.pointer("/spec/group") != Some(&json!("spire.spiffe.io")) {
                return Err(error::input(format!(
                    "--spire-crds {}: {} {} is not a spire.spiffe.io CustomResourceDefinition",
                    m.origin,
                    doc["kind"].as_str().unwrap_or("(no kind)"),
                    doc.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("(no name)")
                )));
            }
            out.push((m.origin.clone(), object(doc.clone(), &m.origin)?));
        }
    }
    Ok(out)
}

/// The Argo CD components that get the exec-auth plumbing: (kind, name, container).
pub const ARGOCD_PATCHED: &[(&str, &str, &str)] = &[
    ("Deployment", "argocd-server", "argocd-server"),
    (
        "StatefulSet",
        "argocd-application-controller",
        "argocd-application-controller",
    ),
];

/// Argo CD's release manifest for `namespace`, with `plumbing` (`initContainers`, `volumes`,
/// `volumeMounts`: common/hub/exec-auth-plumbing.yaml) merged into the server and application controller.
pub fn argocd(
    manifest: &Manifest,
    namespace: &str,
    upstream_namespace: &str,
    plumbing: &Value,
) -> Result<Vec<Object>> {
    let origin = &manifest.origin;
    let mut objects = Vec::new();
    let mut patched = Vec::new();
    for doc in &manifest.documents {
        let mut doc = doc.clone();
        let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
        let kind_name = doc["kind"].as_str().unwrap_or_default().to_string();
        let kind = kinds::find(&api_version, &kind_name).ok_or_else(|| {
            error::input(format!(
                "--argocd-manifest {origin}: {api_version} {kind_name} is not a kind ztwim-hub knows how to apply (is this Argo CD's install.yaml?)"
            ))
        })?;
        if kind.namespaced {
            doc["metadata"]["namespace"] = json!(namespace);
        }
        // Bindings name the namespace the manifest was made for (kustomize's `namespace:` does the same).
        if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                if s["kind"] == "ServiceAccount" && s["namespace"] == upstream_namespace {
                    s["namespace"] = json!(namespace);
                }
            }
        }
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some((_, _, container)) = ARGOCD_PATCHED
            .iter()
            .find(|(k, n, _)| *k == kind_name && *n == name)
        {
            merge_plumbing(&mut doc, container, plumbing).map_err(|why| {
                error::input(format!(
                    "--argocd-manifest {origin}: {kind_name} {name}: {why}"
                ))
            })?;
            patched.push(name.clone());
        }
        objects.push(object(doc, origin)?);
    }
    for (kind, name, _) in ARGOCD_PATCHED {
        if !patched.iter().any(|p| p == name) {
            return Err(error::input(format!(
                "--argocd-manifest {origin}: no {kind} {name} in it (is this Argo CD's install.yaml?)"
            )));
        }
    }
    Ok(objects)
}

fn merge_plumbing(doc: &mut Value, container: &str, plumbing: &Value) -> Result<(), String> {
    let spec = doc
        .pointer_mut("/spec/template/spec")
        .ok_or("has no pod template")?;
    for key in ["initContainers", "volumes"] {
        let list = spec
            .as_object_mut()
            .ok_or("pod spec is not a mapping")?
            .entry(key)
            .or_insert_with(|| json!([]));
        let list = list.as_array_mut().ok_or(format!("{key} is not a list"))?;
        for item in plumbing[key].as_array().cloned().unwrap_or_default() {
            upsert_named(list, item);
        }
    }
    let main = spec["containers"]
        .as_array_mut()
        .and_then(|cs| cs.iter_mut().find(|c| c["name"] == container))
        .ok_or(format!("has no container {container}"))?;
    let mounts = main
        .as_object_mut()
        .ok_or("container is not a mapping")?
        .entry("volumeMounts")
        .or_insert_with(|| json!([]));
    let mounts = mounts.as_array_mut().ok_or("volumeMounts is not a list")?;
    for item in plumbing["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        upsert_named(mounts, item);
    }
    Ok(())
}

/// Replaces the entry with the same `name`, or appends.
fn upsert_named(list: &mut Vec<Value>, item: Value) {
    match list.iter_mut().find(|x| x["name"] == item["name"]) {
        Some(existing) => *existing = item,
        None => list.push(item),
    }
}
