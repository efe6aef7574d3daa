//! The simulated kube-controller-manager and kubelets of every cluster, and the OpenShift
//! router (controller `workloads`):
//!
//! - Deployments get a ReplicaSet per pod template (`<name>-<hash>`, older ones scaled to 0),
//!   ReplicaSets, StatefulSets (`<name>-<ordinal>`, volumeClaimTemplates as Bound PVCs) and
//!   DaemonSets (one pod per matching node) get pods on the seeded nodes. Pods start `Pending`
//!   and become `Running` and `Ready` when the controller handles their own event (one
//!   controller delay later); then the owners' status follows (`readyReplicas`, `numberReady`,
//!   the Deployment `Available` condition, ...). On kind, containers of the upstream SPIRE
//!   images whose configuration kubesim cannot use stay waiting and keep their pod not Ready
//!   ([`crate::spire_upstream`]).
//! - Garbage collection: deleting an object deletes the objects whose `ownerReferences` name
//!   it (workloads, pods, services, config maps, secrets, service accounts, routes).
//! - Routes (OpenShift only) are admitted: `spec.host` defaults to `<name>-<namespace>.<apps domain>` and
//!   `status.ingress[0]` gets the host and an `Admitted=True` condition.
//!
//! Also the helpers the other hub controllers (`olm`, `ztwim`, `argocd-operator`) share:
//! level-triggered create-or-update and status updates with optimistic concurrency.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::cluster::{Event, EventType, WriteOptions, now_rfc3339};
use crate::controllers::Controller;
use crate::sim::ClusterHandle;

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// `metadata.<key>` as a string.
pub(crate) fn meta<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether the object is being deleted.
pub(crate) fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// An owner reference to `owner` (as its controller).
pub(crate) fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta(owner, "name"),
        "uid": meta(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The controller owner reference of `obj`, if any.
pub(crate) fn controller_of(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r["controller"] == true)
}

/// Whether `obj` lists `uid` among its owners.
pub(crate) fn owned_by(obj: &Value, uid: &str) -> bool {
    !uid.is_empty()
        && obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

/// Whether a condition of `obj` (`status.conditions`) has `type` and `status`.
pub(crate) fn has_condition(obj: &Value, ctype: &str, status: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == ctype && c["status"] == status)
        })
}

/// Set a condition in the array at `conditions` (created if absent). `lastTransitionTime`
/// only changes when the status does, and a `lastUpdateTime` (Deployment style, present in
/// the stored condition) only when the status, reason or message does, so that reconciling
/// an unchanged state writes nothing.
pub(crate) fn set_condition(
    conditions: &mut Value,
    ctype: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("array");
    let now = now_rfc3339();
    match list.iter_mut().find(|c| c["type"] == ctype) {
        Some(c) => {
            let changed = c["status"] != status || c["reason"] != reason || c["message"] != message;
            if c["status"] != status {
                c["lastTransitionTime"] = json!(now);
            }
            if changed && c.get("lastUpdateTime").is_some() {
                c["lastUpdateTime"] = json!(now);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => list.push(json!({
            "type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": now
        })),
    }
}

/// Like [`set_condition`], for conditions that also carry `lastUpdateTime` (Deployments).
pub(crate) fn set_condition_with_update_time(
    conditions: &mut Value,
    ctype: &str,
    status: &str,
    reason: &str,
    message: &str,
) {
    let existed = conditions
        .as_array()
        .is_some_and(|l| l.iter().any(|c| c["type"] == ctype));
    set_condition(conditions, ctype, status, reason, message);
    if !existed
        && let Some(c) = conditions
            .as_array_mut()
            .and_then(|l| l.iter_mut().find(|c| c["type"] == ctype))
    {
        c["lastUpdateTime"] = c["lastTransitionTime"].clone();
    }
}

/// Create `desired`, or bring the stored object in line with it: every top-level field of
/// `desired` but `metadata` and `status` replaces the stored one, labels and annotations are
/// merged in, `ownerReferences` replaced when given. Status and server-set metadata stay.
/// Writes nothing when nothing changes. Returns the stored object.
pub(crate) fn ensure(c: &ClusterHandle, desired: Value) -> Option<Value> {
    let av = desired["apiVersion"].as_str()?.to_string();
    let kind = desired["kind"].as_str()?.to_string();
    let name = meta(&desired, "name").to_string();
    let ns = desired
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let store = &c.core().store;
    let rt = store.type_of(&av, &kind)?;
    let ns = if rt.namespaced { ns } else { None };
    for _ in 0..20 {
        match store.get(&rt, ns.as_deref(), &name) {
            Err(_) => match store.create(
                &rt,
                ns.as_deref(),
                desired.clone(),
                &WriteOptions::internal(),
            ) {
                Ok(out) => return Some(out.object),
                Err(e) if e.code == 409 => continue,
                Err(_) => return None,
            },
            Ok(existing) => {
                if is_deleting(&existing) {
                    return None;
                }
                let mut merged = existing.clone();
                for (k, v) in desired.as_object()? {
                    if !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind") {
                        merged[k.as_str()] = v.clone();
                    }
                }
                for key in ["labels", "annotations"] {
                    if let Some(extra) = desired["metadata"].get(key).and_then(Value::as_object) {
                        if !merged["metadata"].get(key).is_some_and(Value::is_object) {
                            merged["metadata"][key] = json!({});
                        }
                        for (k, v) in extra {
                            merged["metadata"][key][k.as_str()] = v.clone();
                        }
                    }
                }
                if let Some(refs) = desired.pointer("/metadata/ownerReferences") {
                    merged["metadata"]["ownerReferences"] = refs.clone();
                }
                if merged == existing {
                    return Some(existing);
                }
                match store.update(
                    &rt,
                    ns.as_deref(),
                    &name,
                    merged,
                    None,
                    &WriteOptions::internal(),
                ) {
                    Ok(out) => return Some(out.object),
                    Err(e) if e.code == 409 => continue,
                    Err(_) => return None,
                }
            }
        }
    }
    None
}

/// Change the status of an object with `f` (which sees the whole object), with optimistic
/// concurrency; writes nothing when `f` changes nothing. Returns the stored object.
pub(crate) fn update_status(
    c: &ClusterHandle,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
    f: impl Fn(&mut Value),
) -> Option<Value> {
    let store = &c.core().store;
    let rt = store.type_of(api_version, kind)?;
    let ns = if rt.namespaced { ns } else { None };
    for _ in 0..20 {
        let existing = store.get(&rt, ns, name).ok()?;
        let mut changed = existing.clone();
        f(&mut changed);
        if changed == existing {
            return Some(existing);
        }
        match store.update(
            &rt,
            ns,
            name,
            changed,
            Some("status"),
            &WriteOptions::internal(),
        ) {
            Ok(out) => return Some(out.object),
            Err(e) if e.code == 409 => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Change the whole object with `f` (spec and metadata), with optimistic concurrency.
pub(crate) fn update_object(
    c: &ClusterHandle,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
    f: impl Fn(&mut Value),
) -> Option<Value> {
    let store = &c.core().store;
    let rt = store.type_of(api_version, kind)?;
    let ns = if rt.namespaced { ns } else { None };
    for _ in 0..20 {
        let existing = store.get(&rt, ns, name).ok()?;
        let mut changed = existing.clone();
        f(&mut changed);
        if changed == existing {
            return Some(existing);
        }
        match store.update(&rt, ns, name, changed, None, &WriteOptions::internal()) {
            Ok(out) => return Some(out.object),
            Err(e) if e.code == 409 => continue,
            Err(_) => return None,
        }
    }
    None
}

/// A random lowercase suffix as Kubernetes makes them (`generateName`).
pub(crate) fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// JSON with object keys sorted (stable whatever the map ordering).
fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// A short stable hash of a pod template (as `pod-template-hash` and revision names).
pub(crate) fn template_hash(template: &Value) -> String {
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical(template).bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    for _ in 0..10 {
        out.push(ALPHABET[(h % ALPHABET.len() as u64) as usize] as char);
        h /= ALPHABET.len() as u64;
    }
    out
}

fn list(c: &ClusterHandle, av: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
    c.list(av, kind, ns)
}

fn int_at(obj: &Value, ptr: &str, default: i64) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(default)
}

fn pod_ready(pod: &Value) -> bool {
    !is_deleting(pod) && has_condition(pod, "Ready", "True")
}

/// Whether a Deployment reports `Available=True` for its current generation.
pub(crate) fn deployment_available(d: &Value) -> bool {
    let generation = int_at(d, "/metadata/generation", 1);
    int_at(d, "/status/observedGeneration", 0) >= generation
        && has_condition(d, "Available", "True")
        && int_at(d, "/status/availableReplicas", 0) >= int_at(d, "/spec/replicas", 1)
}

/// Whether a StatefulSet has all replicas ready and updated for its current generation.
pub(crate) fn statefulset_ready(s: &Value) -> bool {
    let replicas = int_at(s, "/spec/replicas", 1);
    int_at(s, "/status/observedGeneration", 0) >= int_at(s, "/metadata/generation", 1)
        && int_at(s, "/status/readyReplicas", 0) == replicas
        && int_at(s, "/status/updatedReplicas", 0) == replicas
}

/// Whether a DaemonSet has a ready, updated pod on every node it should run on.
pub(crate) fn daemonset_ready(d: &Value) -> bool {
    let desired = int_at(d, "/status/desiredNumberScheduled", 0);
    desired > 0
        && int_at(d, "/status/observedGeneration", 0) >= int_at(d, "/metadata/generation", 1)
        && int_at(d, "/status/numberReady", 0) == desired
        && int_at(d, "/status/updatedNumberScheduled", 0) == desired
        && int_at(d, "/status/numberAvailable", 0) == desired
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Workload controllers, garbage collection and route admission (see the module docs).
pub struct Workloads;

impl Controller for Workloads {
    fn name(&self) -> &str {
        "workloads"
    }

    fn handle(&self, c: &ClusterHandle, ev: &Event) {
        let ns = ev.namespace().unwrap_or_default().to_string();
        let name = ev.name().to_string();
        if ev.event_type == EventType::Deleted {
            collect_garbage(c, &ev.object);
        }
        match ev.storage_key.as_str() {
            "apps/deployments" => reconcile_deployment(c, &ns, &name),
            "apps/replicasets" => {
                reconcile_replicaset(c, &ns, &name);
                if let Some(owner) = controller_of(&ev.object).filter(|o| o["kind"] == "Deployment")
                {
                    reconcile_deployment(c, &ns, owner["name"].as_str().unwrap_or_default());
                }
            }
            "apps/statefulsets" => reconcile_statefulset(c, &ns, &name),
            "apps/daemonsets" => reconcile_daemonset(c, &ns, &name),
            "/pods" => {
                if ev.event_type != EventType::Deleted {
                    start_pod(c, &ns, &name);
                }
                if let Some(owner) = controller_of(&ev.object) {
                    let owner_name = owner["name"].as_str().unwrap_or_default();
                    match owner["kind"].as_str() {
                        Some("ReplicaSet") => reconcile_replicaset(c, &ns, owner_name),
                        Some("StatefulSet") => reconcile_statefulset(c, &ns, owner_name),
                        Some("DaemonSet") => reconcile_daemonset(c, &ns, owner_name),
                        _ => {}
                    }
                }
            }
            "/nodes" => {
                for ds in list(c, "apps/v1", "DaemonSet", None) {
                    reconcile_daemonset(c, meta(&ds, "namespace"), meta(&ds, "name"));
                }
            }
            "route.openshift.io/routes" if ev.event_type != EventType::Deleted => {
                admit_route(c, &ns, &name)
            }
            _ => {}
        }
    }
}

/// Kinds the simulated garbage collector looks at.
const DEPENDENT_KINDS: &[(&str, &str)] = &[
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("v1", "Pod"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("route.openshift.io/v1", "Route"),
    ("storage.k8s.io/v1", "CSIDriver"),
];

/// Delete what the deleted object owned (background propagation).
fn collect_garbage(c: &ClusterHandle, deleted: &Value) {
    let uid = meta(deleted, "uid");
    if uid.is_empty() {
        return;
    }
    let ns = deleted
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    for (av, kind) in DEPENDENT_KINDS {
        let Some(rt) = c.core().store.type_of(av, kind) else {
            continue;
        };
        // Namespaced owners only own objects of their namespace; cluster-scoped ones any.
        let scope = if rt.namespaced { ns } else { None };
        for obj in list(c, av, kind, scope) {
            if owned_by(&obj, uid) && !is_deleting(&obj) {
                let obj_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
                let _ = c.delete(av, kind, obj_ns, meta(&obj, "name"));
            }
        }
    }
}

fn nodes(c: &ClusterHandle) -> Vec<Value> {
    list(c, "v1", "Node", None)
}

fn node_matches(node: &Value, selector: Option<&Value>) -> bool {
    selector.and_then(Value::as_object).is_none_or(|sel| {
        sel.iter()
            .all(|(k, v)| node.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v))
    })
}

/// A pod for a workload: the template's metadata and spec, on `node`.
fn pod_from_template(
    owner: &Value,
    template: &Value,
    name: &str,
    node: &str,
    extra_labels: &[(&str, &str)],
) -> Value {
    let ns = meta(owner, "namespace");
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str))
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(sa);
    spec["serviceAccount"] = json!(sa);
    spec["nodeName"] = json!(node);
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
    ] {
        if spec.get(k).is_none() {
            spec[k] = v;
        }
    }
    let mut metadata = json!({"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner_ref(owner)]});
    if let Some(a) = template.pointer("/metadata/annotations") {
        metadata["annotations"] = a.clone();
    }
    let now = now_rfc3339();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}],
            "qosClass": "Burstable",
        }
    })
}

/// Why each container of `pod` does not run (kind: the upstream SPIRE images' configuration,
/// see [`crate::spire_upstream`]), by container name.
fn container_problems(c: &ClusterHandle, pod: &Value) -> BTreeMap<String, String> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ct| {
            let why = crate::spire_upstream::container_problem(c, pod, ct)?;
            Some((ct["name"].as_str().unwrap_or_default().to_string(), why))
        })
        .collect()
}

/// The problems the pod's status reports now (containers waiting in `CrashLoopBackOff`).
fn reported_problems(pod: &Value) -> BTreeMap<String, String> {
    pod.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s.pointer("/state/waiting/reason") == Some(&json!("CrashLoopBackOff")))
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_string(),
                s.pointer("/state/waiting/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Check the pods of `ns` whose containers do not run again (their ConfigMaps or Secrets may
/// have changed).
pub(crate) fn recheck_pods(c: &ClusterHandle, ns: &str) {
    for p in list(c, "v1", "Pod", Some(ns)) {
        if !reported_problems(&p).is_empty() {
            start_pod(c, ns, meta(&p, "name"));
        }
    }
}

/// A pending workload pod starts: its init containers complete, its containers run and are
/// ready, except those [`container_problems`] names, which wait in `CrashLoopBackOff` (the pod
/// is then not Ready). A pod with such containers is started again when its problems change.
fn start_pod(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(pod) = c.get("v1", "Pod", Some(ns), name) else {
        return;
    };
    let managed = controller_of(&pod).is_some_and(|o| {
        matches!(
            o["kind"].as_str(),
            Some("ReplicaSet" | "StatefulSet" | "DaemonSet")
        )
    });
    if !managed || is_deleting(&pod) {
        return;
    }
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    let problems = container_problems(c, &pod);
    let restart = phase == Some("Running") && {
        let reported = reported_problems(&pod);
        !reported.is_empty() && reported != problems
    };
    if phase != Some("Pending") && !restart {
        return;
    }
    // Upstream Argo CD's pods run the exec plugin as soon as they are Ready.
    crate::argocd::register_upstream_pod(c, &pod);
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let host_ip = c
        .get("v1", "Node", None, &node)
        .and_then(|n| {
            n.pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                .map(|a| a["address"].clone())
        })
        .unwrap_or(json!("10.0.0.10"));
    let pod_ip = pod.pointer("/status/podIP").cloned().unwrap_or_else(|| {
        json!(format!(
            "10.128.{}.{}",
            rand::random_range(0..=255u8),
            rand::random_range(2..=254u8)
        ))
    });
    update_status(c, "v1", "Pod", Some(ns), name, |p| {
        let now = now_rfc3339();
        let statuses = |key: &str, init: bool| -> Vec<Value> {
            p.pointer(&format!("/spec/{key}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|ct| {
                    let cname = ct["name"].as_str().unwrap_or_default();
                    let problem = (!init).then(|| problems.get(cname)).flatten();
                    let state = if init {
                        json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}})
                    } else if let Some(why) = problem {
                        json!({"waiting": {"reason": "CrashLoopBackOff", "message": why}})
                    } else {
                        json!({"running": {"startedAt": now}})
                    };
                    let mut st = json!({
                        "name": ct["name"], "image": ct["image"], "imageID": "", "containerID": format!("cri-o://{}", crate::cluster::new_uid().replace('-', "")),
                        "ready": !init && problem.is_none(), "started": !init && problem.is_none(), "restartCount": 0, "state": state
                    });
                    if let Some(why) = problem {
                        st["restartCount"] = json!(1);
                        st["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "message": why, "startedAt": now, "finishedAt": now}});
                    }
                    st
                })
                .collect()
        };
        let containers = statuses("containers", false);
        let init = statuses("initContainers", true);
        let mut status = json!({
            "phase": "Running",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": p.pointer("/status/startTime").cloned().unwrap_or(json!(now)),
            "qosClass": p.pointer("/status/qosClass").cloned().unwrap_or(json!("Burstable")),
            "conditions": p.pointer("/status/conditions").cloned().unwrap_or(json!([])),
            "containerStatuses": containers,
        });
        if !init.is_empty() {
            status["initContainerStatuses"] = json!(init);
        }
        for t in ["PodReadyToStartContainers", "Initialized", "PodScheduled"] {
            set_condition(&mut status["conditions"], t, "True", "", "");
        }
        if problems.is_empty() {
            for t in ["ContainersReady", "Ready"] {
                set_condition(&mut status["conditions"], t, "True", "", "");
            }
        } else {
            let names: Vec<&str> = problems.keys().map(String::as_str).collect();
            let message = format!("containers with unready status: [{}]", names.join(" "));
            for t in ["ContainersReady", "Ready"] {
                set_condition(
                    &mut status["conditions"],
                    t,
                    "False",
                    "ContainersNotReady",
                    &message,
                );
            }
        }
        p["status"] = status;
    });
    if problems.is_empty()
        && let Some(started) = c.get("v1", "Pod", Some(ns), name)
    {
        crate::spire_upstream::pod_started(c, &started);
    }
}

fn owned_pods(c: &ClusterHandle, owner: &Value) -> Vec<Value> {
    let uid = meta(owner, "uid");
    list(c, "v1", "Pod", Some(meta(owner, "namespace")))
        .into_iter()
        .filter(|p| controller_of(p).is_some_and(|r| r["uid"] == uid))
        .collect()
}

fn reconcile_deployment(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(d) = c.get("apps/v1", "Deployment", Some(ns), name) else {
        return;
    };
    if is_deleting(&d) {
        return;
    }
    let replicas = int_at(&d, "/spec/replicas", 1);
    let template = d
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = template_hash(&template);
    let rs_name = format!("{name}-{hash}");
    let uid = meta(&d, "uid").to_string();
    let owned: Vec<Value> = list(c, "apps/v1", "ReplicaSet", Some(ns))
        .into_iter()
        .filter(|r| controller_of(r).is_some_and(|o| o["uid"] == uid.as_str()))
        .collect();
    for old in owned.iter().filter(|r| meta(r, "name") != rs_name) {
        if int_at(old, "/spec/replicas", 1) != 0 {
            update_object(
                c,
                "apps/v1",
                "ReplicaSet",
                Some(ns),
                meta(old, "name"),
                |r| {
                    r["spec"]["replicas"] = json!(0);
                },
            );
        }
    }
    let revision = owned
        .iter()
        .find(|r| meta(r, "name") == rs_name)
        .and_then(|r| {
            r.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                .cloned()
        })
        .unwrap_or_else(|| {
            let max = owned
                .iter()
                .filter_map(|r| {
                    r.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse::<u64>().ok())
                })
                .max()
                .unwrap_or(0);
            json!((max + 1).to_string())
        });
    let mut rs_template = template.clone();
    rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    let mut selector = d
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    selector["matchLabels"]["pod-template-hash"] = json!(hash);
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    labels["pod-template-hash"] = json!(hash);
    ensure(
        c,
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": rs_name, "namespace": ns, "labels": labels,
                         "annotations": {"deployment.kubernetes.io/revision": revision, "deployment.kubernetes.io/desired-replicas": replicas.to_string()},
                         "ownerReferences": [owner_ref(&d)]},
            "spec": {"replicas": replicas, "selector": selector, "template": rs_template}
        }),
    );
    let all: Vec<Value> = list(c, "apps/v1", "ReplicaSet", Some(ns))
        .into_iter()
        .filter(|r| controller_of(r).is_some_and(|o| o["uid"] == uid.as_str()))
        .collect();
    let sum = |ptr: &str| all.iter().map(|r| int_at(r, ptr, 0)).sum::<i64>();
    let current = all.iter().find(|r| meta(r, "name") == rs_name);
    let updated = current
        .map(|r| int_at(r, "/status/replicas", 0))
        .unwrap_or(0);
    let updated_available = current
        .map(|r| int_at(r, "/status/availableReplicas", 0))
        .unwrap_or(0);
    let total = sum("/status/replicas");
    let ready = sum("/status/readyReplicas");
    let available = sum("/status/availableReplicas");
    let generation = int_at(&d, "/metadata/generation", 1);
    update_status(c, "apps/v1", "Deployment", Some(ns), name, |obj| {
        let st = &mut obj["status"];
        if !st.is_object() {
            *st = json!({});
        }
        st["observedGeneration"] = json!(generation);
        st["replicas"] = json!(total);
        st["updatedReplicas"] = json!(updated);
        st["readyReplicas"] = json!(ready);
        st["availableReplicas"] = json!(available);
        let unavailable = (replicas - available).max(0);
        if unavailable > 0 {
            st["unavailableReplicas"] = json!(unavailable);
        } else if let Some(m) = st.as_object_mut() {
            m.remove("unavailableReplicas");
        }
        if available >= replicas {
            set_condition_with_update_time(
                &mut st["conditions"],
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            );
        } else {
            set_condition_with_update_time(
                &mut st["conditions"],
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            );
        }
        if updated_available >= replicas && total == updated {
            set_condition_with_update_time(
                &mut st["conditions"],
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            );
        } else {
            set_condition_with_update_time(
                &mut st["conditions"],
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
            );
        }
    });
}

fn reconcile_replicaset(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(rs) = c.get("apps/v1", "ReplicaSet", Some(ns), name) else {
        return;
    };
    if is_deleting(&rs) {
        return;
    }
    let replicas = int_at(&rs, "/spec/replicas", 1).max(0) as usize;
    let template = rs
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut pods: Vec<Value> = owned_pods(c, &rs)
        .into_iter()
        .filter(|p| !is_deleting(p))
        .collect();
    let node_names: Vec<String> = nodes(c)
        .iter()
        .map(|n| meta(n, "name").to_string())
        .collect();
    while pods.len() < replicas && !node_names.is_empty() {
        let node = &node_names[pods.len() % node_names.len()];
        let pod = pod_from_template(
            &rs,
            &template,
            &format!("{name}-{}", random_suffix(5)),
            node,
            &[],
        );
        match c.put(pod) {
            Ok(p) => pods.push(p),
            Err(_) => break,
        }
    }
    while pods.len() > replicas {
        let p = pods.pop().expect("non-empty");
        let _ = c.delete("v1", "Pod", Some(ns), meta(&p, "name"));
    }
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let generation = int_at(&rs, "/metadata/generation", 1);
    update_status(c, "apps/v1", "ReplicaSet", Some(ns), name, |obj| {
        obj["status"] = json!({
            "replicas": pods.len(),
            "fullyLabeledReplicas": pods.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": generation,
        });
    });
}

fn reconcile_statefulset(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(sts) = c.get("apps/v1", "StatefulSet", Some(ns), name) else {
        return;
    };
    if is_deleting(&sts) {
        return;
    }
    let replicas = int_at(&sts, "/spec/replicas", 1).max(0);
    let template = sts
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let revision = format!("{name}-{}", template_hash(&template));
    let node_names: Vec<String> = nodes(c)
        .iter()
        .map(|n| meta(n, "name").to_string())
        .collect();
    let mut pods: BTreeMap<i64, Value> = BTreeMap::new();
    for p in owned_pods(c, &sts) {
        let pname = meta(&p, "name").to_string();
        let ordinal = pname
            .strip_prefix(&format!("{name}-"))
            .and_then(|o| o.parse::<i64>().ok());
        match ordinal {
            Some(o) if o < replicas && !is_deleting(&p) => {
                let rev = p
                    .pointer("/metadata/labels/controller-revision-hash")
                    .and_then(Value::as_str);
                if rev == Some(revision.as_str()) {
                    pods.insert(o, p);
                } else {
                    // Rolling update: replace the pod; it comes back with the new revision.
                    let _ = c.delete("v1", "Pod", Some(ns), &pname);
                }
            }
            _ => {
                let _ = c.delete("v1", "Pod", Some(ns), &pname);
            }
        }
    }
    if !node_names.is_empty() {
        for o in 0..replicas {
            let pname = format!("{name}-{o}");
            if pods.contains_key(&o) || c.get("v1", "Pod", Some(ns), &pname).is_some() {
                continue;
            }
            let node = &node_names[o as usize % node_names.len()];
            let mut pod = pod_from_template(
                &sts,
                &template,
                &pname,
                node,
                &[
                    ("controller-revision-hash", &revision),
                    ("statefulset.kubernetes.io/pod-name", &pname),
                ],
            );
            pod["spec"]["hostname"] = json!(pname);
            if let Some(svc) = sts.pointer("/spec/serviceName") {
                pod["spec"]["subdomain"] = svc.clone();
            }
            // volumeClaimTemplates: one bound claim per pod, `<template>-<pod>`.
            for t in sts
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let tname = meta(t, "name");
                let claim = format!("{tname}-{pname}");
                if c.get("v1", "PersistentVolumeClaim", Some(ns), &claim)
                    .is_none()
                {
                    let spec = t.get("spec").cloned().unwrap_or_else(|| json!({}));
                    let _ = c.put(json!({
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": {"name": claim, "namespace": ns, "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({}))},
                        "spec": spec,
                        "status": {"phase": "Bound", "accessModes": spec.get("accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
                                   "capacity": {"storage": spec.pointer("/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))}}
                    }));
                }
                let volumes = &mut pod["spec"]["volumes"];
                if !volumes.is_array() {
                    *volumes = json!([]);
                }
                if let Some(list) = volumes.as_array_mut() {
                    list.retain(|v| v["name"] != tname);
                    list.push(
                        json!({"name": tname, "persistentVolumeClaim": {"claimName": claim}}),
                    );
                }
            }
            if let Ok(p) = c.put(pod) {
                pods.insert(o, p);
            }
        }
    }
    let count = pods.len();
    let ready = pods.values().filter(|p| pod_ready(p)).count();
    let generation = int_at(&sts, "/metadata/generation", 1);
    update_status(c, "apps/v1", "StatefulSet", Some(ns), name, |obj| {
        obj["status"] = json!({
            "observedGeneration": generation,
            "replicas": count,
            "readyReplicas": ready,
            "currentReplicas": count,
            "updatedReplicas": count,
            "availableReplicas": ready,
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
        });
    });
}

fn reconcile_daemonset(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(ds) = c.get("apps/v1", "DaemonSet", Some(ns), name) else {
        return;
    };
    if is_deleting(&ds) {
        return;
    }
    let template = ds
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = template_hash(&template);
    let selector = template.pointer("/spec/nodeSelector");
    let targets: Vec<String> = nodes(c)
        .iter()
        .filter(|n| node_matches(n, selector))
        .map(|n| meta(n, "name").to_string())
        .collect();
    let mut on_node: BTreeMap<String, Value> = BTreeMap::new();
    for p in owned_pods(c, &ds) {
        if is_deleting(&p) {
            continue;
        }
        let node = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let current = p.pointer("/metadata/labels/controller-revision-hash") == Some(&json!(hash));
        if !targets.contains(&node) || !current || on_node.contains_key(&node) {
            let _ = c.delete("v1", "Pod", Some(ns), meta(&p, "name"));
        } else {
            on_node.insert(node, p);
        }
    }
    for node in &targets {
        if on_node.contains_key(node) {
            continue;
        }
        let mut pod = pod_from_template(
            &ds,
            &template,
            &format!("{name}-{}", random_suffix(5)),
            node,
            &[
                ("controller-revision-hash", &hash),
                (
                    "pod-template-generation",
                    &int_at(&ds, "/metadata/generation", 1).to_string(),
                ),
            ],
        );
        pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
        if let Ok(p) = c.put(pod) {
            on_node.insert(node.clone(), p);
        }
    }
    let desired = targets.len();
    let scheduled = on_node.len();
    let ready = on_node.values().filter(|p| pod_ready(p)).count();
    let generation = int_at(&ds, "/metadata/generation", 1);
    update_status(c, "apps/v1", "DaemonSet", Some(ns), name, |obj| {
        let mut st = json!({
            "observedGeneration": generation,
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": scheduled,
            "updatedNumberScheduled": scheduled,
            "numberReady": ready,
            "numberAvailable": ready,
            "numberMisscheduled": 0,
        });
        if desired > ready {
            st["numberUnavailable"] = json!(desired - ready);
        }
        obj["status"] = st;
    });
}

/// The OpenShift router admits every route (the default router, wildcard policy None).
fn admit_route(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(route) = c.get("route.openshift.io/v1", "Route", Some(ns), name) else {
        return;
    };
    if is_deleting(&route) {
        return;
    }
    let apps = c.apps_domain();
    let host = match route
        .pointer("/spec/host")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
    {
        Some(h) => h.to_string(),
        None => {
            let h = format!("{name}-{ns}.{apps}");
            update_object(c, "route.openshift.io/v1", "Route", Some(ns), name, |r| {
                r["spec"]["host"] = json!(h);
            });
            h
        }
    };
    let policy = route
        .pointer("/spec/wildcardPolicy")
        .cloned()
        .unwrap_or(json!("None"));
    update_status(c, "route.openshift.io/v1", "Route", Some(ns), name, |r| {
        let mut conditions = r
            .pointer("/status/ingress/0/conditions")
            .cloned()
            .unwrap_or(json!([]));
        if r.pointer("/status/ingress/0/host") != Some(&json!(host)) {
            conditions = json!([]);
        }
        set_condition(&mut conditions, "Admitted", "True", "", "");
        // The router's Admitted condition carries no reason or message.
        for cond in conditions.as_array_mut().into_iter().flatten() {
            if let Some(m) = cond.as_object_mut() {
                m.retain(|k, _| k != "reason" && k != "message");
            }
        }
        r["status"] = json!({"ingress": [{
            "host": host,
            "routerName": "default",
            "routerCanonicalHostname": format!("router-default.{apps}"),
            "wildcardPolicy": policy,
            "conditions": conditions,
        }]});
    });
}
