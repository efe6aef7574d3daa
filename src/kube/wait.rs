//! Waits are watches: a kube-rs watcher with backoff (so a 404 before a CRD is served, a dropped stream or
//! a 5xx only delay the wait), bounded by a deadline. On timeout the error says what was awaited and the
//! last state observed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::{WatchStreamExt, watcher};

use super::client::{Cluster, describe_kube_error};
use super::kinds::{self, Kind};
use crate::error::Error;

/// Whether what a wait looks at is ready yet; `NotReady` says what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    NotReady(String),
}

/// What to watch.
pub struct Target<'a> {
    pub kind: &'a Kind,
    pub namespace: Option<&'a str>,
    /// One object by name, or every object matching a label selector.
    pub name: Option<&'a str>,
    pub label_selector: Option<&'a str>,
}

/// Watches `target` until `check` says ready, for at most `timeout`. `what` describes the wait for
/// messages ("CRD spireservers.operator.openshift.io Established").
pub async fn until<F>(
    cluster: &Cluster,
    target: Target<'_>,
    what: &str,
    timeout: Duration,
    check: F,
) -> Result<Vec<DynamicObject>>
where
    F: Fn(&[DynamicObject]) -> Readiness,
{
    let api = super::apply::api_for(cluster, target.kind, target.namespace);
    let mut config = watcher::Config::default();
    if let Some(name) = target.name {
        config = config.fields(&format!("metadata.name={name}"));
    }
    if let Some(selector) = target.label_selector {
        config = config.labels(selector);
    }
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut objects: BTreeMap<String, DynamicObject> = BTreeMap::new();
    let mut pending: BTreeMap<String, DynamicObject> = BTreeMap::new();
    let mut last_state = "nothing observed yet".to_string();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(next)) => next,
            Ok(None) => {
                return Err(anyhow::anyhow!(
                    "the watch for {what} on {} ended",
                    cluster.context
                ));
            }
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "timed out after {} waiting for {what} on {}; last seen: {last_state}",
                    humantime(timeout),
                    cluster.context
                ))
                .into());
            }
        };
        let key = |o: &DynamicObject| {
            format!(
                "{}/{}",
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default()
            )
        };
        let settled = match next {
            Ok(watcher::Event::Apply(obj)) => {
                objects.insert(key(&obj), obj);
                true
            }
            Ok(watcher::Event::Delete(obj)) => {
                objects.remove(&key(&obj));
                true
            }
            Ok(watcher::Event::Init) => {
                pending.clear();
                false
            }
            Ok(watcher::Event::InitApply(obj)) => {
                pending.insert(key(&obj), obj);
                false
            }
            Ok(watcher::Event::InitDone) => {
                objects = std::mem::take(&mut pending);
                true
            }
            Err(e) => {
                last_state = format!("watch error: {}", describe_watch_error(&e));
                false
            }
        };
        if !settled {
            continue;
        }
        let current: Vec<DynamicObject> = objects.values().cloned().collect();
        match check(&current) {
            Readiness::Ready => return Ok(current),
            Readiness::NotReady(state) => last_state = state,
        }
    }
}

fn describe_watch_error(err: &watcher::Error) -> String {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => describe_kube_error(e),
        other => other.to_string(),
    }
}

/// `90s`, `5m`, `1h30m`.
pub fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// The status of condition `type_` in `.status.conditions`, with its reason and message.
pub fn condition(obj: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let conditions = obj.data.pointer("/status/conditions")?.as_array()?;
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

/// Ready when condition `type_` is `True`; otherwise says what it is.
pub fn condition_true(objects: &[DynamicObject], type_: &str) -> Readiness {
    let Some(obj) = objects.first() else {
        return Readiness::NotReady("it does not exist yet".into());
    };
    match condition(obj, type_) {
        Some((status, _, _)) if status == "True" => Readiness::Ready,
        Some((status, reason, message)) => Readiness::NotReady(format!(
            "condition {type_}={status} reason={reason:?} message={message:?}"
        )),
        None => Readiness::NotReady(format!("no {type_} condition yet")),
    }
}

/// Waits until the `apps/v1` workload `kind` `namespace/name` has all its pods ready ([`workload_ready`]).
pub async fn workload(
    cluster: &Cluster,
    kind: &str,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    until(
        cluster,
        Target {
            kind: kinds::known("apps/v1", kind),
            namespace: Some(namespace),
            name: Some(name),
            label_selector: None,
        },
        &format!("{kind} {namespace}/{name} ready"),
        timeout,
        workload_ready,
    )
    .await
    .map(|_| ())
}

/// Ready when the Deployment, StatefulSet or DaemonSet has all its pods ready.
pub fn workload_ready(objects: &[DynamicObject]) -> Readiness {
    let Some(obj) = objects.first() else {
        return Readiness::NotReady("it does not exist yet".into());
    };
    let kind = obj
        .types
        .as_ref()
        .map(|t| t.kind.as_str())
        .unwrap_or_default();
    let num = |path: &str| {
        obj.data
            .pointer(path)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
    };
    let generation = obj.metadata.generation.unwrap_or(0);
    if num("/status/observedGeneration") < generation {
        return Readiness::NotReady("the controller has not observed the latest spec yet".into());
    }
    match kind {
        "DaemonSet" => {
            let (desired, ready) = (
                num("/status/desiredNumberScheduled"),
                num("/status/numberReady"),
            );
            if desired > 0 && ready >= desired {
                Readiness::Ready
            } else {
                Readiness::NotReady(format!("{ready}/{desired} pods ready"))
            }
        }
        "StatefulSet" | "Deployment" => {
            let want = obj
                .data
                .pointer("/spec/replicas")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(1);
            let ready = num("/status/readyReplicas");
            if ready >= want {
                Readiness::Ready
            } else {
                Readiness::NotReady(format!("{ready}/{want} replicas ready"))
            }
        }
        other => Readiness::NotReady(format!("cannot judge the readiness of a {other}")),
    }
}

/// Ready when at least one pod exists and every pod has condition Ready=True.
pub fn pods_ready(objects: &[DynamicObject]) -> Readiness {
    if objects.is_empty() {
        return Readiness::NotReady("no pods yet".into());
    }
    let not_ready: Vec<String> = objects
        .iter()
        .filter(|p| !matches!(condition(p, "Ready"), Some((s, _, _)) if s == "True"))
        .map(|p| {
            let phase = p
                .data
                .pointer("/status/phase")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("Pending");
            format!("{} ({phase})", p.metadata.name.clone().unwrap_or_default())
        })
        .collect();
    if not_ready.is_empty() {
        Readiness::Ready
    } else {
        Readiness::NotReady(format!("not ready: {}", not_ready.join(", ")))
    }
}

/// A Ready pod matching `selector` in `namespace` (waits for one).
pub async fn ready_pod(
    cluster: &Cluster,
    namespace: &str,
    selector: &str,
    timeout: Duration,
) -> Result<DynamicObject> {
    let pod_kind = super::kinds::known("v1", "Pod");
    let is_ready =
        |p: &DynamicObject| matches!(condition(p, "Ready"), Some((s, _, _)) if s == "True");
    let pods = until(
        cluster,
        Target {
            kind: pod_kind,
            namespace: Some(namespace),
            name: None,
            label_selector: Some(selector),
        },
        &format!("a Ready pod {selector} in {namespace}"),
        timeout,
        |objs| {
            if objs.iter().any(is_ready) {
                Readiness::Ready
            } else {
                pods_ready(objs)
            }
        },
    )
    .await?;
    Ok(pods
        .into_iter()
        .find(is_ready)
        .expect("the wait returned a Ready pod"))
}
