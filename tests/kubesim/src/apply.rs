//! Server-side apply, managed fields, and the patch formats.
//!
//! Field ownership is tracked per manager and operation as a set of leaf paths. Lists are
//! atomic (owned as a whole), which is stricter than kube-apiserver for `listType: map`
//! lists: two managers owning different entries of one list conflict here.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// Metadata keys whose ownership is tracked.
const TRACKED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// The leaf paths of an object, as field ownership sees them.
pub fn leaf_paths(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(map) = obj {
        for (k, v) in map {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if let Value::Object(meta) = v {
                        for key in TRACKED_METADATA {
                            if let Some(v) = meta.get(*key) {
                                collect(v, vec!["metadata".into(), key.to_string()], &mut out);
                            }
                        }
                    }
                }
                _ => collect(v, vec![k.clone()], &mut out),
            }
        }
    }
    out
}

fn collect(v: &Value, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let mut p = path.clone();
                p.push(k.clone());
                collect(child, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.as_object()?.get(seg)?;
    }
    Some(cur)
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    match value_at_mut(obj, parents).and_then(Value::as_object_mut) {
        Some(map) => {
            map.remove(last);
        }
        None => return,
    }
    // Drop parents left empty by the removal (they were created for this field).
    for depth in (1..parents.len() + 1).rev() {
        let parent_path = &path[..depth];
        if value_at(obj, parent_path).is_some_and(|v| v.as_object().is_some_and(Map::is_empty)) {
            let (last, pp) = parent_path.split_last().unwrap();
            if let Some(Value::Object(m)) = value_at_mut(obj, pp) {
                m.remove(last);
            }
        } else {
            break;
        }
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.as_object_mut()?.get_mut(seg)?;
    }
    Some(cur)
}

/// Deep-merge `patch` into `target`: objects merge, everything else replaces.
pub fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Encode a field set as `fieldsV1`.
pub fn to_fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            cur = entry.as_object_mut().expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

/// Decode `fieldsV1` into leaf paths.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: Path, out: &mut FieldSet) {
        let Some(map) = v.as_object() else { return };
        let children: Vec<_> = map
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("f:").map(|k| (k, v)))
            .collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path);
            }
            return;
        }
        for (k, child) in children {
            let mut p = path.clone();
            p.push(k.to_string());
            walk(child, p, out);
        }
    }
    let mut out = FieldSet::new();
    walk(v, Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Managed {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

pub fn read_managed(obj: &Value) -> Vec<Managed> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| Managed {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().map(str::to_string),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub fn write_managed(obj: &mut Value, managed: &[Managed]) {
    let entries: Vec<Value> = managed
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            });
            if let Some(s) = &m.subresource {
                e["subresource"] = json!(s);
            }
            e
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

fn related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A conflict between the applier and another manager.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

fn dotted(path: &[String]) -> String {
    format!(".{}", path.join("."))
}

/// Apply `applied` as `manager`. Returns the merged object (managedFields updated) or the conflicts.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) -> Result<Value, Vec<Conflict>> {
    let applied_fields = leaf_paths(applied);
    let base = current.cloned().unwrap_or_else(|| json!({}));
    let mut managers = read_managed(&base);
    let mut conflicts = Vec::new();
    for m in &managers {
        if m.manager == manager && m.operation == "Apply" {
            continue;
        }
        for owned in &m.fields {
            for path in &applied_fields {
                if !related(owned, path) {
                    continue;
                }
                let shorter = if owned.len() <= path.len() {
                    owned
                } else {
                    path
                };
                if value_at(&base, shorter) != value_at(applied, shorter) {
                    conflicts.push(Conflict {
                        manager: m.manager.clone(),
                        path: dotted(shorter),
                    });
                }
            }
        }
    }
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let mut result = base.clone();
    let previous: FieldSet = managers
        .iter()
        .find(|m| m.manager == manager && m.operation == "Apply")
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&applied_fields) {
        let owned_by_other = managers.iter().any(|m| {
            !(m.manager == manager && m.operation == "Apply")
                && m.fields.iter().any(|f| related(f, path))
        });
        if !owned_by_other {
            remove_path(&mut result, path);
        }
    }
    deep_merge(&mut result, applied);
    // Ownership: the applier owns what it applied; on force it takes conflicting fields.
    if force {
        for m in managers.iter_mut() {
            if m.manager == manager && m.operation == "Apply" {
                continue;
            }
            let lost: Vec<Path> = m
                .fields
                .iter()
                .filter(|f| {
                    conflicts.iter().any(|c| c.path == dotted(f)) || {
                        applied_fields.iter().any(|p| related(f, p))
                            && value_at(&base, f) != value_at(&result, f)
                    }
                })
                .cloned()
                .collect();
            for f in lost {
                m.fields.remove(&f);
            }
        }
    }
    match managers
        .iter_mut()
        .find(|m| m.manager == manager && m.operation == "Apply")
    {
        Some(m) => {
            if m.fields != applied_fields || m.api_version != api_version {
                m.fields = applied_fields;
                m.api_version = api_version.to_string();
                m.time = now.to_string();
            }
        }
        None => managers.push(Managed {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: subresource.map(str::to_string),
            fields: applied_fields,
        }),
    }
    write_managed(&mut result, &managers);
    Ok(result)
}

/// Record an `Update` by `manager` that turned `old` into `new` (modifies `new`'s managedFields).
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
    subresource: Option<&str>,
) {
    let mut managers = old.map(read_managed).unwrap_or_default();
    let old_paths = old.map(leaf_paths).unwrap_or_default();
    let new_paths = leaf_paths(new);
    let changed: FieldSet = new_paths
        .iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    let removed: FieldSet = old_paths.difference(&new_paths).cloned().collect();
    for m in managers.iter_mut() {
        m.fields.retain(|f| !removed.contains(f));
        if !(m.manager == manager && m.operation == "Update") {
            m.fields.retain(|f| !changed.iter().any(|c| related(c, f)));
        }
    }
    if !changed.is_empty() {
        match managers
            .iter_mut()
            .find(|m| m.manager == manager && m.operation == "Update")
        {
            Some(m) => {
                m.fields.extend(changed);
                m.time = now.to_string();
                m.api_version = api_version.to_string();
            }
            None => managers.push(Managed {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    write_managed(new, &managers);
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// An approximation of strategic merge patch: a merge patch in which lists of objects that
/// all have a `name` are merged by name, and `$patch`/`$setElementOrder` directives are
/// honoured for the common cases (`$patch: delete` on a list element, `$patch: replace`).
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut clean = p.clone();
                clean.remove("$patch");
                *t = clean;
                return;
            }
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                if let Some(rest) = k.strip_prefix("$deleteFromPrimitiveList/") {
                    let _ = rest;
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        strategic_merge_patch(existing, v)
                    }
                    Some(Value::Array(existing)) if v.is_array() && named_list(existing, v) => {
                        merge_named_list(existing, v.as_array().unwrap());
                    }
                    _ => {
                        let mut clean = v.clone();
                        strip_directives(&mut clean);
                        t.insert(k.clone(), clean);
                    }
                }
            }
        }
        (t, p) => {
            let mut clean = p.clone();
            strip_directives(&mut clean);
            *t = clean;
        }
    }
}

fn named_list(existing: &[Value], patch: &Value) -> bool {
    let has_name = |v: &Value| v.get("name").is_some_and(Value::is_string);
    !existing.is_empty()
        && existing.iter().all(has_name)
        && patch.as_array().is_some_and(|p| p.iter().all(has_name))
}

fn merge_named_list(existing: &mut Vec<Value>, patch: &[Value]) {
    for item in patch {
        let name = item["name"].as_str().unwrap_or_default();
        let pos = existing
            .iter()
            .position(|e| e["name"].as_str() == Some(name));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (Some(i), false) => strategic_merge_patch(&mut existing[i], item),
            (None, true) => {}
            (None, false) => {
                let mut clean = item.clone();
                strip_directives(&mut clean);
                existing.push(clean);
            }
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            m.values_mut().for_each(strip_directives);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "b"}}, "data": {"k": "v", "l": "w"}});
        let fields = leaf_paths(&obj);
        assert_eq!(fields.len(), 3);
        assert_eq!(from_fields_v1(&to_fields_v1(&fields)), fields);
    }

    #[test]
    fn apply_conflicts_and_force() {
        let a = json!({"metadata": {"name": "x"}, "data": {"k": "1"}});
        let first = apply(None, &a, "alice", false, "v1", "t0", None).unwrap();
        // Same manager, same object: identical result.
        assert_eq!(
            apply(Some(&first), &a, "alice", false, "v1", "t1", None).unwrap(),
            first
        );
        let b = json!({"metadata": {"name": "x"}, "data": {"k": "2"}});
        let conflicts = apply(Some(&first), &b, "bob", false, "v1", "t1", None).unwrap_err();
        assert_eq!(
            conflicts,
            vec![Conflict {
                manager: "alice".into(),
                path: ".data.k".into()
            }]
        );
        let forced = apply(Some(&first), &b, "bob", true, "v1", "t1", None).unwrap();
        assert_eq!(forced["data"]["k"], "2");
        let managers = read_managed(&forced);
        assert_eq!(managers.len(), 1, "{managers:?}");
        assert_eq!(managers[0].manager, "bob");
        // Same value from another manager is shared, not a conflict.
        let shared = apply(Some(&first), &a, "carol", false, "v1", "t1", None).unwrap();
        assert_eq!(read_managed(&shared).len(), 2);
    }

    #[test]
    fn apply_removes_fields_no_longer_applied() {
        let a = json!({"metadata": {"name": "x"}, "data": {"k": "1", "gone": "x"}});
        let first = apply(None, &a, "alice", false, "v1", "t0", None).unwrap();
        let a2 = json!({"metadata": {"name": "x"}, "data": {"k": "1"}});
        let second = apply(Some(&first), &a2, "alice", false, "v1", "t1", None).unwrap();
        assert_eq!(second["data"], json!({"k": "1"}));
    }

    #[test]
    fn strategic_merge_by_name() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}});
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "3"}]}}),
        );
        assert_eq!(t["spec"]["containers"].as_array().unwrap().len(), 3);
        assert_eq!(t["spec"]["containers"][1]["image"], "2");
        strategic_merge_patch(
            &mut t,
            &json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
        );
        assert_eq!(t["spec"]["containers"].as_array().unwrap().len(), 2);
    }
}
