//! Simulated controllers: driven by the store's watch events, each after a configurable delay.
//!
//! Part 1 has one controller, `crd-establishing`, which marks CRDs `Established`. Part 2 adds
//! OLM, ZTWIM/SPIRE, Argo CD and the OpenShift kube-apiserver OIDC rollout as more
//! [`Controller`]s. The fault `Fault::ControllerNeverReady { controller }` silences one.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Event, EventType, now_rfc3339};
use crate::sim::ClusterHandle;

/// A controller reacting to stored changes.
pub trait Controller: Send + Sync + 'static {
    /// Name used by the `controller-never-ready` fault.
    fn name(&self) -> &str;
    /// Called for each stored change, `delay` after it happened. Writes go through `cluster`
    /// (library writes: they do not count as API stored changes).
    fn handle(&self, cluster: &ClusterHandle, event: &Event);
}

/// Run `controller` on `cluster` until the runtime stops.
pub(crate) fn spawn(
    rt: &tokio::runtime::Handle,
    cluster: ClusterHandle,
    controller: Arc<dyn Controller>,
    delay: Duration,
) {
    rt.spawn(async move {
        let store = &cluster.core().store;
        let mut notify = store.subscribe();
        let mut last = 0u64;
        loop {
            let events = match store.events_since(last) {
                Ok(e) => e,
                Err(crate::cluster::Gone) => {
                    last = store.current_rv();
                    continue;
                }
            };
            for ev in events {
                last = ev.rv;
                let due = tokio::time::Instant::from_std(ev.at + delay);
                tokio::time::sleep_until(due).await;
                if cluster
                    .core()
                    .faults
                    .controller_never_ready(controller.name())
                {
                    continue;
                }
                let c = controller.clone();
                let handle = cluster.clone();
                // Controllers are synchronous; keep them off the I/O threads.
                let _ = tokio::task::spawn_blocking(move || c.handle(&handle, &ev)).await;
            }
            if notify.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Marks CRDs `Established` (and `NamesAccepted`).
pub struct CrdEstablishing;

impl Controller for CrdEstablishing {
    fn name(&self) -> &str {
        "crd-establishing"
    }
    fn handle(&self, cluster: &ClusterHandle, event: &Event) {
        if event.storage_key != "apiextensions.k8s.io/customresourcedefinitions"
            || event.event_type == EventType::Deleted
        {
            return;
        }
        let Some(mut crd) = cluster.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            event.name(),
        ) else {
            return;
        };
        if crd
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
            || is_established(&crd)
        {
            return;
        }
        let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let now = now_rfc3339();
        crd["status"]["acceptedNames"] = names;
        crd["status"]["conditions"] = json!([
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}
        ]);
        let _ = cluster.put(crd);
    }
}

pub fn is_established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}
