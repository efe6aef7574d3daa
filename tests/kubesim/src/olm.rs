//! A simulated Operator Lifecycle Manager (controller `olm`).
//!
//! A Subscription is resolved against the seeded PackageManifests (`spec.source` /
//! `spec.sourceNamespace` / `spec.name` / `spec.channel`, default channel when empty):
//!
//! - no such catalog, package or channel: condition `ResolutionFailed=True`
//!   (reason `ConstraintsNotSatisfiable`, OLM's message), no InstallPlan, no CSV;
//! - otherwise an InstallPlan `install-xxxxx` (approved when `installPlanApproval` is
//!   `Automatic`, else `RequiresApproval` until `spec.approved: true`) that, once handled,
//!   creates the operator's CRDs (the upstream ones from the reference directory, or minimal
//!   ones with `x-kubernetes-preserve-unknown-fields`) and the CSV named after the channel's
//!   `currentCSV`; the Subscription then reports `state: AtLatestKnown`, `installedCSV`,
//!   `currentCSV` and `installPlanRef`.
//! - The CSV goes `Pending` (until an OperatorGroup exists and the CRDs are Established) →
//!   `InstallReady` → `Installing` (the operator Deployment is created, with the Subscription's
//!   `spec.config.env`) → `Succeeded` once that Deployment is Available. Without an
//!   OperatorGroup in the namespace the CSV is `Failed` with reason `NoOperatorGroup` (and
//!   recovers when one appears); with two, `TooManyOperatorGroups`.
//!
//! Each step happens when the controller handles the previous step's event, so every phase
//! lasts at least the configured controller delay.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

use crate::cluster::{Event, EventType, now_rfc3339};
use crate::controllers::{Controller, is_established};
use crate::sim::ClusterHandle;
use crate::workloads::{
    deployment_available, ensure, is_deleting, meta, owner_ref, random_suffix, set_condition,
    update_status,
};

const OLM: &str = "operators.coreos.com/v1alpha1";

/// A CRD an operator owns.
struct CrdDef {
    file: &'static str,
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    /// `(version, storage)`.
    versions: &'static [(&'static str, bool)],
    short_names: &'static [&'static str],
}

/// What installing a package puts on the cluster.
struct OperatorDef {
    package: &'static str,
    deployment: &'static str,
    labels: &'static [(&'static str, &'static str)],
    container: &'static str,
    image: &'static str,
    crds: &'static [CrdDef],
}

const fn cluster_crd(
    file: &'static str,
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
) -> CrdDef {
    CrdDef {
        file,
        group,
        kind,
        plural,
        namespaced: false,
        versions: &[("v1alpha1", true)],
        short_names: &[],
    }
}

const OPERATORS: &[OperatorDef] = &[
    OperatorDef {
        package: "openshift-zero-trust-workload-identity-manager",
        deployment: "zero-trust-workload-identity-manager-controller-manager",
        labels: &[("name", "zero-trust-workload-identity-manager")],
        container: "zero-trust-workload-identity-manager",
        image: "registry.redhat.io/zero-trust-workload-identity-manager/zero-trust-workload-identity-manager-rhel9-operator:v1.0.0",
        crds: &[
            cluster_crd(
                "operator.openshift.io/zerotrustworkloadidentitymanagers.yaml",
                "operator.openshift.io",
                "ZeroTrustWorkloadIdentityManager",
                "zerotrustworkloadidentitymanagers",
            ),
            cluster_crd(
                "operator.openshift.io/spireservers.yaml",
                "operator.openshift.io",
                "SpireServer",
                "spireservers",
            ),
            cluster_crd(
                "operator.openshift.io/spireagents.yaml",
                "operator.openshift.io",
                "SpireAgent",
                "spireagents",
            ),
            cluster_crd(
                "operator.openshift.io/spiffecsidrivers.yaml",
                "operator.openshift.io",
                "SpiffeCSIDriver",
                "spiffecsidrivers",
            ),
            cluster_crd(
                "operator.openshift.io/spireoidcdiscoveryproviders.yaml",
                "operator.openshift.io",
                "SpireOIDCDiscoveryProvider",
                "spireoidcdiscoveryproviders",
            ),
            cluster_crd(
                "spire.spiffe.io/clusterspiffeids.yaml",
                "spire.spiffe.io",
                "ClusterSPIFFEID",
                "clusterspiffeids",
            ),
            cluster_crd(
                "spire.spiffe.io/clusterstaticentries.yaml",
                "spire.spiffe.io",
                "ClusterStaticEntry",
                "clusterstaticentries",
            ),
            cluster_crd(
                "spire.spiffe.io/clusterfederatedtrustdomains.yaml",
                "spire.spiffe.io",
                "ClusterFederatedTrustDomain",
                "clusterfederatedtrustdomains",
            ),
        ],
    },
    OperatorDef {
        package: "openshift-gitops-operator",
        deployment: "openshift-gitops-operator-controller-manager",
        labels: &[("control-plane", "gitops-operator")],
        container: "manager",
        image: "registry.redhat.io/openshift-gitops-1/gitops-rhel9-operator:v1.18.0",
        crds: &[
            CrdDef {
                file: "argoproj.io/argocds.yaml",
                group: "argoproj.io",
                kind: "ArgoCD",
                plural: "argocds",
                namespaced: true,
                versions: &[("v1alpha1", false), ("v1beta1", true)],
                short_names: &["argocd", "argocds"],
            },
            CrdDef {
                file: "argoproj.io/applications.yaml",
                group: "argoproj.io",
                kind: "Application",
                plural: "applications",
                namespaced: true,
                versions: &[("v1alpha1", true)],
                short_names: &["app", "apps"],
            },
            CrdDef {
                file: "argoproj.io/applicationsets.yaml",
                group: "argoproj.io",
                kind: "ApplicationSet",
                plural: "applicationsets",
                namespaced: true,
                versions: &[("v1alpha1", true)],
                short_names: &["appset", "appsets"],
            },
            CrdDef {
                file: "argoproj.io/appprojects.yaml",
                group: "argoproj.io",
                kind: "AppProject",
                plural: "appprojects",
                namespaced: true,
                versions: &[("v1alpha1", true)],
                short_names: &["appproj", "appprojs"],
            },
        ],
    },
];

fn operator_def(package: &str) -> Option<&'static OperatorDef> {
    OPERATORS.iter().find(|o| o.package == package)
}

/// The upstream CRD from the reference directory (parsed once per process), if present.
fn reference_crd(file: &str) -> Option<Value> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap().get(file) {
        return hit.clone();
    }
    let loaded = crate::schema::reference_dir().and_then(|dir| {
        let text = std::fs::read_to_string(dir.join("crds").join(file)).ok()?;
        let mut crd = crate::schema::parse_yaml_documents(&text)
            .ok()?
            .into_iter()
            .next()?;
        if let Some(m) = crd.as_object_mut() {
            m.remove("status");
        }
        if let Some(m) = crd["metadata"].as_object_mut() {
            m.remove("creationTimestamp");
        }
        Some(crd)
    });
    cache
        .lock()
        .unwrap()
        .insert(file.to_string(), loaded.clone());
    loaded
}

/// A CRD that accepts anything (used when the reference directory is absent).
fn minimal_crd(d: &CrdDef) -> Value {
    let schema = json!({"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    }}});
    let versions: Vec<Value> = d
        .versions
        .iter()
        .map(|(v, storage)| json!({"name": v, "served": true, "storage": storage, "schema": schema, "subresources": {"status": {}}}))
        .collect();
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{}", d.plural, d.group), "annotations": {"kubesim.io/minimal": "true"}},
        "spec": {
            "group": d.group,
            "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
            "names": {"kind": d.kind, "listKind": format!("{}List", d.kind), "plural": d.plural,
                      "singular": d.kind.to_lowercase(), "shortNames": d.short_names},
            "versions": versions,
        }
    })
}

fn crd_for(d: &CrdDef) -> Value {
    reference_crd(d.file).unwrap_or_else(|| minimal_crd(d))
}

fn crd_name(d: &CrdDef) -> String {
    format!("{}.{}", d.plural, d.group)
}

/// The simulated OLM.
pub struct Olm;

impl Controller for Olm {
    fn name(&self) -> &str {
        "olm"
    }

    fn handle(&self, c: &ClusterHandle, ev: &Event) {
        let ns = ev.namespace().unwrap_or_default().to_string();
        let name = ev.name().to_string();
        let deleted = ev.event_type == EventType::Deleted;
        match ev.storage_key.as_str() {
            "operators.coreos.com/subscriptions" if !deleted => {
                reconcile_subscription(c, &ns, &name)
            }
            "operators.coreos.com/installplans" if !deleted => reconcile_installplan(c, &ns, &name),
            "operators.coreos.com/clusterserviceversions" if !deleted => {
                reconcile_csv(c, &ns, &name, &[])
            }
            "operators.coreos.com/operatorgroups" => {
                if !deleted {
                    reconcile_operatorgroup(c, &ns, &name);
                }
                for csv in c.list(OLM, "ClusterServiceVersion", Some(&ns)) {
                    reconcile_csv(c, &ns, meta(&csv, "name"), &["Pending", "Failed"]);
                }
            }
            "apiextensions.k8s.io/customresourcedefinitions" => {
                for csv in c.list(OLM, "ClusterServiceVersion", None) {
                    reconcile_csv(c, meta(&csv, "namespace"), meta(&csv, "name"), &["Pending"]);
                }
            }
            "apps/deployments" => {
                let labels = ev.object.pointer("/metadata/labels");
                let owner = labels
                    .and_then(|l| l.get("olm.owner"))
                    .and_then(Value::as_str);
                if let Some(csv) = owner {
                    reconcile_csv(c, &ns, csv, &["Installing", "Succeeded"]);
                }
            }
            "packages.operators.coreos.com/packagemanifests"
            | "operators.coreos.com/catalogsources" => {
                for sub in c.list(OLM, "Subscription", None) {
                    reconcile_subscription(c, meta(&sub, "namespace"), meta(&sub, "name"));
                }
            }
            _ => {}
        }
    }
}

fn reconcile_operatorgroup(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(og) = c.get("operators.coreos.com/v1", "OperatorGroup", Some(ns), name) else {
        return;
    };
    let targets = og
        .pointer("/spec/targetNamespaces")
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
        .cloned()
        .unwrap_or_else(|| vec![json!("")]);
    update_status(
        c,
        "operators.coreos.com/v1",
        "OperatorGroup",
        Some(ns),
        name,
        |o| {
            if o.pointer("/status/namespaces") != Some(&json!(targets)) {
                o["status"] = json!({"namespaces": targets, "lastUpdated": now_rfc3339()});
            }
        },
    );
}

/// Resolve the Subscription's package and channel in its catalog: `Ok((package manifest,
/// channel entry))` or the `ResolutionFailed` message.
fn resolve(c: &ClusterHandle, sub: &Value) -> Result<(Value, Value), String> {
    let name = meta(sub, "name");
    let spec = |k: &str| {
        sub.pointer(&format!("/spec/{k}"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (source, source_ns, package) = (spec("source"), spec("sourceNamespace"), spec("name"));
    let source_ns = if source_ns.is_empty() {
        "openshift-marketplace"
    } else {
        source_ns
    };
    let tail = format!("referenced by subscription {name}, subscription {name} exists");
    if c.get(OLM, "CatalogSource", Some(source_ns), source)
        .is_none()
    {
        return Err(format!(
            "constraints not satisfiable: no operators found from catalog {source} in namespace {source_ns} {tail}"
        ));
    }
    let pm = c
        .list(
            "packages.operators.coreos.com/v1",
            "PackageManifest",
            Some(source_ns),
        )
        .into_iter()
        .find(|p| {
            meta(p, "name") == package && p.pointer("/status/catalogSource") == Some(&json!(source))
        });
    let Some(pm) = pm else {
        return Err(format!(
            "constraints not satisfiable: no operators found in package {package} in the catalog {tail}"
        ));
    };
    let channels = pm
        .pointer("/status/channels")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut channel = spec("channel").to_string();
    if channel.is_empty() {
        channel = pm
            .pointer("/status/defaultChannel")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if channel.is_empty() && channels.len() == 1 {
            channel = channels[0]["name"].as_str().unwrap_or_default().to_string();
        }
    }
    match channels.iter().find(|ch| ch["name"] == channel.as_str()) {
        Some(ch) => Ok((pm.clone(), ch.clone())),
        None => Err(format!(
            "constraints not satisfiable: no operators found in channel {channel} of package {package} in the catalog {tail}"
        )),
    }
}

fn reconcile_subscription(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(sub) = c.get(OLM, "Subscription", Some(ns), name) else {
        return;
    };
    if is_deleting(&sub) {
        return;
    }
    let catalog_health = |healthy: bool| {
        let source = sub.pointer("/spec/source").cloned().unwrap_or(json!(""));
        let source_ns = sub
            .pointer("/spec/sourceNamespace")
            .cloned()
            .unwrap_or(json!("openshift-marketplace"));
        let uid = c
            .get(
                OLM,
                "CatalogSource",
                source_ns.as_str(),
                source.as_str().unwrap_or_default(),
            )
            .map(|cs| json!(meta(&cs, "uid")))
            .unwrap_or(json!(""));
        json!([{"catalogSourceRef": {"apiVersion": OLM, "kind": "CatalogSource", "name": source, "namespace": source_ns, "uid": uid},
                "healthy": healthy, "lastUpdated": now_rfc3339()}])
    };
    if sub.pointer("/status/installPlanRef").is_some() {
        // Already resolved: the InstallPlan drives the rest (no upgrades are simulated).
        return;
    }
    match resolve(c, &sub) {
        Err(message) => {
            let catalog_missing = message.contains("no operators found from catalog");
            update_status(c, OLM, "Subscription", Some(ns), name, |o| {
                if !o["status"].is_object() {
                    o["status"] = json!({});
                }
                let st = &mut o["status"];
                if st.get("catalogHealth").is_none() || st["conditions"].is_null() {
                    st["catalogHealth"] = catalog_health(!catalog_missing);
                    st["lastUpdated"] = json!(now_rfc3339());
                }
                if catalog_missing {
                    set_condition(
                        &mut st["conditions"],
                        "CatalogSourcesUnhealthy",
                        "True",
                        "UnhealthyCatalogSourceFound",
                        "targeted catalogsource missing",
                    );
                } else {
                    set_condition(
                        &mut st["conditions"],
                        "CatalogSourcesUnhealthy",
                        "False",
                        "AllCatalogSourcesHealthy",
                        "all available catalogsources are healthy",
                    );
                }
                set_condition(
                    &mut st["conditions"],
                    "ResolutionFailed",
                    "True",
                    "ConstraintsNotSatisfiable",
                    &message,
                );
            });
        }
        Ok((pm, channel)) => {
            let csv = channel["currentCSV"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let automatic = sub
                .pointer("/spec/installPlanApproval")
                .and_then(Value::as_str)
                != Some("Manual");
            let ip_name = format!("install-{}", random_suffix(5));
            let ip = ensure(
                c,
                json!({"apiVersion": OLM, "kind": "InstallPlan",
                       "metadata": {"name": ip_name, "namespace": ns, "ownerReferences": [owner_ref(&sub)],
                                    "labels": {format!("operators.coreos.com/{}.{ns}", meta(&pm, "name")): ""}},
                       "spec": {"approval": if automatic { "Automatic" } else { "Manual" }, "approved": automatic,
                                "clusterServiceVersionNames": [csv], "generation": 1},
                       "status": {"phase": if automatic { "Installing" } else { "RequiresApproval" },
                                  "catalogSources": [sub.pointer("/spec/source").cloned().unwrap_or(json!(""))],
                                  "bundleLookups": [], "plan": []}}),
            );
            let Some(ip) = ip else { return };
            let ip_ref = json!({"apiVersion": OLM, "kind": "InstallPlan", "name": ip_name, "namespace": ns,
                                "uid": meta(&ip, "uid"), "resourceVersion": meta(&ip, "resourceVersion")});
            update_status(c, OLM, "Subscription", Some(ns), name, |o| {
                if !o["status"].is_object() {
                    o["status"] = json!({});
                }
                let st = &mut o["status"];
                st["state"] = json!("UpgradePending");
                st["currentCSV"] = json!(csv);
                st["installPlanRef"] = ip_ref.clone();
                st["installplan"] = json!({"apiVersion": OLM, "kind": "InstallPlan", "name": ip_name, "uuid": meta(&ip, "uid")});
                st["installPlanGeneration"] = json!(1);
                st["catalogHealth"] = catalog_health(true);
                st["lastUpdated"] = json!(now_rfc3339());
                if let Some(list) = st["conditions"].as_array_mut() {
                    list.retain(|c| c["type"] != "ResolutionFailed");
                }
                set_condition(
                    &mut st["conditions"],
                    "CatalogSourcesUnhealthy",
                    "False",
                    "AllCatalogSourcesHealthy",
                    "all available catalogsources are healthy",
                );
                if automatic {
                    set_condition(
                        &mut st["conditions"],
                        "InstallPlanPending",
                        "True",
                        "Installing",
                        "",
                    );
                } else {
                    set_condition(
                        &mut st["conditions"],
                        "InstallPlanPending",
                        "True",
                        "RequiresApproval",
                        "",
                    );
                }
            });
        }
    }
}

/// The Subscription that created an InstallPlan.
fn subscription_of(c: &ClusterHandle, ns: &str, ip_name: &str) -> Option<Value> {
    c.list(OLM, "Subscription", Some(ns))
        .into_iter()
        .find(|s| s.pointer("/status/installPlanRef/name") == Some(&json!(ip_name)))
}

fn reconcile_installplan(c: &ClusterHandle, ns: &str, name: &str) {
    let Some(ip) = c.get(OLM, "InstallPlan", Some(ns), name) else {
        return;
    };
    if is_deleting(&ip) {
        return;
    }
    let phase = ip
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let approved = ip.pointer("/spec/approved") == Some(&json!(true));
    match phase {
        "RequiresApproval" if approved => {
            update_status(c, OLM, "InstallPlan", Some(ns), name, |o| {
                o["status"]["phase"] = json!("Installing")
            });
        }
        "Installing" => {
            let Some(sub) = subscription_of(c, ns, name) else {
                return;
            };
            let package = sub
                .pointer("/spec/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let Ok((_, channel)) = resolve(c, &sub) else {
                return;
            };
            let csv_name = ip
                .pointer("/spec/clusterServiceVersionNames/0")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let def = operator_def(&package);
            let mut steps = Vec::new();
            for d in def.map(|d| d.crds).unwrap_or_default() {
                let crd = crd_for(d);
                if c.get(
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    None,
                    &crd_name(d),
                )
                .is_none()
                {
                    let _ = c.put(crd);
                }
                steps.push(json!({"resolving": csv_name, "resource": {"group": "apiextensions.k8s.io", "version": "v1",
                                  "kind": "CustomResourceDefinition", "name": crd_name(d), "sourceName": sub["spec"]["source"],
                                  "sourceNamespace": sub["spec"]["sourceNamespace"]}, "status": "Created"}));
            }
            let desc = &channel["currentCSVDesc"];
            let owned: Vec<Value> = def
                .map(|d| d.crds)
                .unwrap_or_default()
                .iter()
                .map(|d| {
                    let storage = d
                        .versions
                        .iter()
                        .find(|v| v.1)
                        .map(|v| v.0)
                        .unwrap_or("v1alpha1");
                    json!({"name": crd_name(d), "kind": d.kind, "version": storage})
                })
                .collect();
            let deployment = def
                .map(|d| d.deployment.to_string())
                .unwrap_or_else(|| format!("{package}-controller-manager"));
            let csv = json!({
                "apiVersion": OLM, "kind": "ClusterServiceVersion",
                "metadata": {"name": csv_name, "namespace": ns,
                             "labels": {format!("operators.coreos.com/{package}.{ns}"): ""},
                             "annotations": {"olm.skipRange": "", "operatorframework.io/properties": ""}},
                "spec": {
                    "displayName": desc.get("displayName").cloned().unwrap_or(json!(package)),
                    "version": desc.get("version").cloned().unwrap_or(json!("0.0.0")),
                    "provider": desc.get("provider").cloned().unwrap_or(json!({"name": "kubesim"})),
                    "installModes": desc.get("installModes").cloned().unwrap_or(json!([])),
                    "customresourcedefinitions": {"owned": owned},
                    "install": {"strategy": "deployment", "spec": {"deployments": [{"name": deployment}]}},
                },
                "status": phase_status(None, "Pending", "RequirementsUnknown", "requirements not yet checked"),
            });
            if c.get(OLM, "ClusterServiceVersion", Some(ns), &csv_name)
                .is_none()
            {
                let _ = c.put(csv);
            }
            steps.push(json!({"resolving": csv_name, "resource": {"group": "operators.coreos.com", "version": "v1alpha1",
                              "kind": "ClusterServiceVersion", "name": csv_name, "sourceName": sub["spec"]["source"],
                              "sourceNamespace": sub["spec"]["sourceNamespace"]}, "status": "Created"}));
            update_status(c, OLM, "InstallPlan", Some(ns), name, |o| {
                o["status"]["phase"] = json!("Complete");
                o["status"]["plan"] = json!(steps);
                set_condition(&mut o["status"]["conditions"], "Installed", "True", "", "");
            });
            let sub_name = meta(&sub, "name").to_string();
            update_status(c, OLM, "Subscription", Some(ns), &sub_name, |o| {
                let st = &mut o["status"];
                st["state"] = json!("AtLatestKnown");
                st["installedCSV"] = json!(csv_name);
                st["currentCSV"] = json!(csv_name);
                st["lastUpdated"] = json!(now_rfc3339());
                if let Some(list) = st["conditions"].as_array_mut() {
                    list.retain(|c| c["type"] != "InstallPlanPending");
                }
            });
        }
        _ => {}
    }
}

/// A CSV status for a phase (keeping the phase history in `conditions`, as OLM does).
fn phase_status(old: Option<&Value>, phase: &str, reason: &str, message: &str) -> Value {
    let now = now_rfc3339();
    let mut history = old
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    history.push(json!({"phase": phase, "reason": reason, "message": message, "lastTransitionTime": now, "lastUpdateTime": now}));
    let mut st = old
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    st["phase"] = json!(phase);
    st["reason"] = json!(reason);
    st["message"] = json!(message);
    st["lastTransitionTime"] = json!(now);
    st["lastUpdateTime"] = json!(now);
    st["conditions"] = json!(history);
    st
}

fn set_phase(c: &ClusterHandle, ns: &str, name: &str, phase: &str, reason: &str, message: &str) {
    update_status(c, OLM, "ClusterServiceVersion", Some(ns), name, |o| {
        let st = o.get("status");
        let same = st.is_some_and(|s| {
            s["phase"] == phase && s["reason"] == reason && s["message"] == message
        });
        if !same {
            o["status"] = phase_status(st, phase, reason, message);
        }
    });
}

/// Advance a CSV one phase. `only` limits the phases acted on (empty: any).
fn reconcile_csv(c: &ClusterHandle, ns: &str, name: &str, only: &[&str]) {
    let Some(csv) = c.get(OLM, "ClusterServiceVersion", Some(ns), name) else {
        return;
    };
    if is_deleting(&csv) {
        return;
    }
    let phase = csv
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending")
        .to_string();
    let reason = csv
        .pointer("/status/reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !only.is_empty() && !only.contains(&phase.as_str()) {
        return;
    }
    let package = csv
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .and_then(|l| {
            l.keys().find_map(|k| {
                k.strip_prefix("operators.coreos.com/")
                    .map(|p| p.trim_end_matches(&format!(".{ns}")).to_string())
            })
        })
        .unwrap_or_default();
    let def = operator_def(&package);
    let deployment = def
        .map(|d| d.deployment.to_string())
        .unwrap_or_else(|| format!("{package}-controller-manager"));
    match phase.as_str() {
        "Pending" | "Failed" => {
            if phase == "Failed"
                && !matches!(
                    reason.as_str(),
                    "NoOperatorGroup" | "TooManyOperatorGroups" | "UnsupportedOperatorGroup"
                )
            {
                return;
            }
            let ogs = c.list("operators.coreos.com/v1", "OperatorGroup", Some(ns));
            if ogs.is_empty() {
                set_phase(
                    c,
                    ns,
                    name,
                    "Failed",
                    "NoOperatorGroup",
                    "csv in namespace with no operatorgroups",
                );
                return;
            }
            if ogs.len() > 1 {
                set_phase(
                    c,
                    ns,
                    name,
                    "Failed",
                    "TooManyOperatorGroups",
                    "csv created in namespace with multiple operatorgroups, can't pick one automatically",
                );
                return;
            }
            let targets = ogs[0]
                .pointer("/spec/targetNamespaces")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            if targets > 1 {
                set_phase(
                    c,
                    ns,
                    name,
                    "Failed",
                    "UnsupportedOperatorGroup",
                    &format!(
                        "MultiNamespace InstallModeType not supported, cannot configure to watch {targets} namespaces"
                    ),
                );
                return;
            }
            if phase == "Failed" {
                set_phase(
                    c,
                    ns,
                    name,
                    "Pending",
                    "RequirementsUnknown",
                    "requirements not yet checked",
                );
                return;
            }
            let missing: Vec<String> = def
                .map(|d| d.crds)
                .unwrap_or_default()
                .iter()
                .map(crd_name)
                .filter(|n| {
                    !c.get(
                        "apiextensions.k8s.io/v1",
                        "CustomResourceDefinition",
                        None,
                        n,
                    )
                    .is_some_and(|crd| is_established(&crd))
                })
                .collect();
            if !missing.is_empty() {
                set_phase(
                    c,
                    ns,
                    name,
                    "Pending",
                    "RequirementsNotMet",
                    "one or more requirements couldn't be found",
                );
                let reqs: Vec<Value> = missing
                    .iter()
                    .map(|n| json!({"group": "apiextensions.k8s.io", "version": "v1", "kind": "CustomResourceDefinition", "name": n,
                                   "status": "NotPresent", "message": "CRD is not present"}))
                    .collect();
                update_status(c, OLM, "ClusterServiceVersion", Some(ns), name, |o| {
                    o["status"]["requirementStatus"] = json!(reqs)
                });
                return;
            }
            update_status(c, OLM, "ClusterServiceVersion", Some(ns), name, |o| {
                if let Some(m) = o["status"].as_object_mut() {
                    m.remove("requirementStatus");
                }
            });
            set_phase(
                c,
                ns,
                name,
                "InstallReady",
                "AllRequirementsMet",
                "all requirements found, attempting install",
            );
        }
        "InstallReady" => {
            install_deployment(c, ns, &csv, def, &package, &deployment);
            set_phase(
                c,
                ns,
                name,
                "Installing",
                "InstallWaiting",
                &format!(
                    "installing: waiting for deployment {deployment} to become ready: deployment \"{deployment}\" not available: Deployment does not have minimum availability."
                ),
            );
        }
        "Installing" | "Succeeded" => {
            let dep = c.get("apps/v1", "Deployment", Some(ns), &deployment);
            match dep {
                None => {
                    // Someone deleted the operator: OLM puts it back.
                    install_deployment(c, ns, &csv, def, &package, &deployment);
                    set_phase(
                        c,
                        ns,
                        name,
                        "Installing",
                        "InstallWaiting",
                        &format!(
                            "installing: waiting for deployment {deployment} to become ready: deployment \"{deployment}\" not found"
                        ),
                    );
                }
                Some(d) if deployment_available(&d) => {
                    if phase == "Installing" {
                        set_phase(
                            c,
                            ns,
                            name,
                            "Succeeded",
                            "InstallSucceeded",
                            "install strategy completed with no errors",
                        );
                    }
                }
                Some(_) => {}
            }
        }
        _ => {}
    }
}

/// The operator's controller Deployment, with the Subscription's `spec.config.env`.
fn install_deployment(
    c: &ClusterHandle,
    ns: &str,
    csv: &Value,
    def: Option<&OperatorDef>,
    package: &str,
    deployment: &str,
) {
    let sub = c.list(OLM, "Subscription", Some(ns)).into_iter().find(|s| {
        s.pointer("/status/installedCSV").and_then(Value::as_str) == Some(meta(csv, "name"))
    });
    let mut env = vec![
        json!({"name": "OPERATOR_CONDITION_NAME", "value": meta(csv, "name")}),
        json!({"name": "OPERATOR_NAME", "value": package}),
    ];
    if let Some(extra) = sub
        .as_ref()
        .and_then(|s| s.pointer("/spec/config/env"))
        .and_then(Value::as_array)
    {
        env.extend(extra.iter().cloned());
    }
    let mut labels = json!({"olm.owner": meta(csv, "name"), "olm.owner.kind": "ClusterServiceVersion", "olm.owner.namespace": ns,
                            format!("operators.coreos.com/{package}.{ns}"): ""});
    let mut pod_labels = json!({});
    for (k, v) in def.map(|d| d.labels).unwrap_or_default() {
        labels[*k] = json!(v);
        pod_labels[*k] = json!(v);
    }
    if pod_labels.as_object().is_some_and(|m| m.is_empty()) {
        pod_labels["name"] = json!(deployment);
    }
    let container = def.map(|d| d.container).unwrap_or("manager");
    let image = def
        .map(|d| d.image)
        .unwrap_or("registry.example/operator:latest");
    let mut spec = json!({
        "replicas": 1,
        "selector": {"matchLabels": pod_labels},
        "strategy": {"type": "RollingUpdate"},
        "template": {"metadata": {"labels": pod_labels, "annotations": {"olm.operatorGroup": "", "kubectl.kubernetes.io/default-container": container}},
                     "spec": {"serviceAccountName": deployment,
                              "containers": [{"name": container, "image": image, "env": env}]}},
    });
    if let Some(res) = sub
        .as_ref()
        .and_then(|s| s.pointer("/spec/config/resources"))
    {
        spec["template"]["spec"]["containers"][0]["resources"] = res.clone();
    }
    ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": deployment, "namespace": ns, "ownerReferences": [owner_ref(csv)]}}),
    );
    ensure(
        c,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": deployment, "namespace": ns, "labels": labels, "ownerReferences": [owner_ref(csv)]},
               "spec": spec}),
    );
}
