//! The Argo CD operator of OpenShift GitOps (controller `argocd-operator`) and the
//! `k8s-spiffe-workload-jwt-exec-auth` exec plugin inside its pods.
//!
//! Once the GitOps operator Deployment (label `control-plane=gitops-operator`, installed by
//! OLM) is Available, it creates the default `ArgoCD openshift-gitops` in namespace
//! `openshift-gitops` unless its environment has `DISABLE_DEFAULT_ARGOCD_INSTANCE=true` (OLM
//! copies the Subscription's `spec.config.env` there), and reconciles every `ArgoCD`:
//!
//! - service accounts `<name>-argocd-server`, `<name>-argocd-application-controller` (and the
//!   dex and applicationset ones when those are enabled);
//! - Deployments `<name>-server`, `<name>-repo-server`, `<name>-redis` (plus
//!   `<name>-applicationset-controller`, `<name>-dex-server`) and the StatefulSet
//!   `<name>-application-controller`, whose pods are labelled
//!   `app.kubernetes.io/name=<workload name>`; the server and application controller pods carry
//!   the CR's `initContainers`, `volumes`, `volumeMounts`, `env` and `resources`;
//! - the server Route when `spec.server.route.enabled`, ConfigMaps `argocd-cm` and
//!   `argocd-rbac-cm`, the `<name>-cluster` Secret;
//! - `status`: one field per component (`Running`/`Pending`), `phase: Available` once all run.
//!
//! In the pods of an Argo CD namespace, `/binaries/k8s-spiffe-workload-jwt-exec-auth` (run
//! directly, through `env NAME=VALUE ...`, or `sh -c`/`bash -c "NAME=VALUE ... <plugin>"`)
//! behaves like the real plugin, see [`exec_plugin`]. The same plugin runs in the pods of
//! upstream Argo CD (`install.yaml`, any cluster, no operator): `argocd-server` and
//! `argocd-application-controller`, registered per pod from its spec by [`ArgoCdPods`]. The
//! SVID's SPIFFE ID is what SPIRE gives the pod ([`ClusterHandle::pod_spiffe_id`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::{Event, EventType};
use crate::controllers::Controller;
use crate::exec::{ExecRequest, ExecResult};
use crate::sim::{ClusterHandle, WeakClusterHandle};
use crate::spire::{mint_svid, pod_spiffe_id, workload_api};
use crate::workloads::{
    controller_of, deployment_available, ensure, is_deleting, meta, owner_ref, random_suffix,
    set_condition, statefulset_ready, update_status,
};

/// API version of `ArgoCD`.
pub const ARGOCD_API: &str = "argoproj.io/v1beta1";
/// The plugin's file name.
pub const PLUGIN: &str = "k8s-spiffe-workload-jwt-exec-auth";
/// The label of the GitOps operator Deployment (`control-plane=gitops-operator`).
pub const OPERATOR_LABEL: &str = "gitops-operator";
/// The default instance (and its namespace) the GitOps operator creates unless disabled.
pub const DEFAULT_INSTANCE: &str = "openshift-gitops";

/// The simulated Argo CD operator.
pub struct ArgoCdOperator;

impl Controller for ArgoCdOperator {
    fn name(&self) -> &str {
        "argocd-operator"
    }

    fn handle(&self, c: &ClusterHandle, ev: &Event) {
        let ns = ev.namespace().unwrap_or_default().to_string();
        match ev.storage_key.as_str() {
            "argoproj.io/argocds" if ev.event_type != EventType::Deleted => {
                reconcile_instance(c, &ns, ev.name())
            }
            "apps/deployments" | "apps/statefulsets" | "route.openshift.io/routes" => {
                if ev.object.pointer("/metadata/labels/control-plane")
                    == Some(&json!(OPERATOR_LABEL))
                {
                    operator_changed(c);
                } else if let Some(owner) =
                    controller_of(&ev.object).filter(|o| o["kind"] == "ArgoCD")
                {
                    reconcile_instance(c, &ns, owner["name"].as_str().unwrap_or_default());
                }
            }
            _ => {}
        }
    }
}

/// The GitOps operator Deployment if it is running.
fn running_operator(c: &ClusterHandle) -> Option<Value> {
    c.list("apps/v1", "Deployment", None)
        .into_iter()
        .find(|d| {
            d.pointer("/metadata/labels/control-plane") == Some(&json!(OPERATOR_LABEL))
                && !is_deleting(d)
        })
        .filter(deployment_available)
}

fn operator_env(op: &Value, name: &str) -> Option<String> {
    op.pointer("/spec/template/spec/containers/0/env")
        .and_then(Value::as_array)?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str())
        .map(str::to_string)
}

fn operator_changed(c: &ClusterHandle) {
    let Some(op) = running_operator(c) else {
        return;
    };
    if operator_env(&op, "DISABLE_DEFAULT_ARGOCD_INSTANCE").as_deref() != Some("true")
        && c.get(
            ARGOCD_API,
            "ArgoCD",
            Some(DEFAULT_INSTANCE),
            DEFAULT_INSTANCE,
        )
        .is_none()
    {
        if c.get("v1", "Namespace", None, DEFAULT_INSTANCE).is_none() {
            let _ = c.put(json!({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": DEFAULT_INSTANCE, "labels": {"openshift.io/cluster-monitoring": "true"}}}));
        }
        let _ = c.put(json!({
            "apiVersion": ARGOCD_API, "kind": "ArgoCD",
            "metadata": {"name": DEFAULT_INSTANCE, "namespace": DEFAULT_INSTANCE},
            "spec": {
                "applicationSet": {},
                "controller": {},
                "ha": {"enabled": false},
                "rbac": {"defaultPolicy": "", "policy": "g, system:cluster-admins, role:admin\ng, cluster-admins, role:admin\n", "scopes": "[groups]"},
                "redis": {},
                "repo": {},
                "server": {"route": {"enabled": true}},
                "sso": {"provider": "dex", "dex": {"openShiftOAuth": true}},
            }
        }));
    }
    for cr in c.list(ARGOCD_API, "ArgoCD", None) {
        reconcile_instance(c, meta(&cr, "namespace"), meta(&cr, "name"));
    }
}

struct Component {
    /// Workload name suffix (`<name>-<suffix>`).
    suffix: &'static str,
    stateful: bool,
    container: &'static str,
    /// Service account suffix (`<name>-<sa>`), or `None` for `default`.
    sa: Option<&'static str>,
    /// The key of this component in `ArgoCD.spec`.
    spec_key: &'static str,
    /// The key of this component in `ArgoCD.status`.
    status_key: &'static str,
    port: i64,
}

const COMPONENTS: &[Component] = &[
    Component {
        suffix: "server",
        stateful: false,
        container: "argocd-server",
        sa: Some("argocd-server"),
        spec_key: "server",
        status_key: "server",
        port: 8080,
    },
    Component {
        suffix: "repo-server",
        stateful: false,
        container: "argocd-repo-server",
        sa: None,
        spec_key: "repo",
        status_key: "repo",
        port: 8081,
    },
    Component {
        suffix: "redis",
        stateful: false,
        container: "redis",
        sa: Some("argocd-redis"),
        spec_key: "redis",
        status_key: "redis",
        port: 6379,
    },
    Component {
        suffix: "application-controller",
        stateful: true,
        container: "argocd-application-controller",
        sa: Some("argocd-application-controller"),
        spec_key: "controller",
        status_key: "applicationController",
        port: 8082,
    },
    Component {
        suffix: "applicationset-controller",
        stateful: false,
        container: "argocd-applicationset-controller",
        sa: Some("applicationset-controller"),
        spec_key: "applicationSet",
        status_key: "applicationSetController",
        port: 7000,
    },
    Component {
        suffix: "dex-server",
        stateful: false,
        container: "dex",
        sa: Some("argocd-dex-server"),
        spec_key: "sso",
        status_key: "sso",
        port: 5556,
    },
];

fn enabled(cr: &Value, comp: &Component) -> bool {
    let spec = &cr["spec"];
    match comp.spec_key {
        "applicationSet" => spec
            .get("applicationSet")
            .is_some_and(|a| a.is_object() && a["enabled"] != false),
        "sso" => spec.pointer("/sso/provider") == Some(&json!("dex")),
        key => spec.pointer(&format!("/{key}/enabled")) != Some(&json!(false)),
    }
}

fn component_args(name: &str, ns: &str, comp: &Component, spec: &Value) -> Vec<String> {
    let redis = format!("{name}-redis.{ns}.svc.cluster.local:6379");
    let repo = format!("{name}-repo-server.{ns}.svc.cluster.local:8081");
    let log_level = spec
        .get("logLevel")
        .and_then(Value::as_str)
        .unwrap_or("info")
        .to_string();
    let log_format = spec
        .get("logFormat")
        .and_then(Value::as_str)
        .unwrap_or("text")
        .to_string();
    let mut args: Vec<String> = match comp.suffix {
        "server" => vec![
            "argocd-server".into(),
            "--staticassets".into(),
            "/shared/app".into(),
            "--dex-server".into(),
            format!("https://{name}-dex-server.{ns}.svc.cluster.local:5556"),
            "--repo-server".into(),
            repo,
            "--redis".into(),
            redis,
        ],
        "repo-server" => vec![
            "uid_entrypoint.sh".into(),
            "argocd-repo-server".into(),
            "--redis".into(),
            redis,
        ],
        "redis" => vec![
            "redis-server".into(),
            "--protected-mode".into(),
            "no".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ],
        "application-controller" => vec![
            "argocd-application-controller".into(),
            "--operation-processors".into(),
            "10".into(),
            "--redis".into(),
            redis,
            "--repo-server".into(),
            repo,
            "--status-processors".into(),
            "20".into(),
            "--kubectl-parallelism-limit".into(),
            "10".into(),
        ],
        "applicationset-controller" => vec![
            "entrypoint.sh".into(),
            "argocd-applicationset-controller".into(),
            "--argocd-repo-server".into(),
            repo,
        ],
        _ => vec!["/shared/argocd-dex".into(), "rundex".into()],
    };
    if comp.suffix != "redis" && comp.suffix != "dex-server" {
        args.extend([
            "--loglevel".into(),
            log_level,
            "--logformat".into(),
            log_format,
        ]);
    }
    if let Some(extra) = spec.get("extraCommandArgs").and_then(Value::as_array) {
        args.extend(extra.iter().filter_map(|a| a.as_str().map(str::to_string)));
    }
    args
}

fn list_of(spec: &Value, key: &str) -> Vec<Value> {
    spec.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The pod template of a component: the operator's defaults plus what the CR adds.
fn pod_template(name: &str, ns: &str, cr: &Value, comp: &Component) -> Value {
    let spec = cr["spec"]
        .get(comp.spec_key)
        .cloned()
        .unwrap_or_else(|| json!({}));
    let workload = format!("{name}-{}", comp.suffix);
    let labels = json!({"app.kubernetes.io/name": workload, "app.kubernetes.io/part-of": "argocd", "app.kubernetes.io/component": comp.suffix});
    let mut volumes = vec![];
    let mut mounts = vec![];
    if matches!(
        comp.suffix,
        "server" | "repo-server" | "application-controller"
    ) {
        volumes.extend([
            json!({"name": "ssh-known-hosts", "configMap": {"name": "argocd-ssh-known-hosts-cm"}}),
            json!({"name": "tls-certs", "configMap": {"name": "argocd-tls-certs-cm"}}),
            json!({"name": "argocd-repo-server-tls", "secret": {"secretName": "argocd-repo-server-tls", "optional": true}}),
            json!({"name": "argocd-operator-redis-tls", "secret": {"secretName": "argocd-operator-redis-tls", "optional": true}}),
        ]);
        mounts.extend([
            json!({"name": "ssh-known-hosts", "mountPath": "/app/config/ssh"}),
            json!({"name": "tls-certs", "mountPath": "/app/config/tls"}),
            json!({"name": "argocd-repo-server-tls", "mountPath": "/app/config/server/tls"}),
            json!({"name": "argocd-operator-redis-tls", "mountPath": "/app/config/server/tls/redis"}),
        ]);
    }
    if comp.suffix == "application-controller" {
        volumes.push(json!({"name": "argocd-home", "emptyDir": {}}));
        mounts.push(json!({"name": "argocd-home", "mountPath": "/home/argocd"}));
    }
    // The server and the application controller take the CR's extra containers and volumes.
    let mut init_containers = vec![];
    let mut sidecars = vec![];
    if matches!(
        comp.suffix,
        "server" | "application-controller" | "repo-server" | "applicationset-controller"
    ) {
        volumes.extend(list_of(&spec, "volumes"));
        mounts.extend(list_of(&spec, "volumeMounts"));
        init_containers = list_of(&spec, "initContainers");
        sidecars = list_of(&spec, "sidecarContainers");
    }
    let image = match comp.suffix {
        "redis" => "registry.redhat.io/rhel9/redis-7:latest",
        "dex-server" => "registry.redhat.io/openshift-gitops-1/dex-rhel9:v1.18.0",
        _ => "registry.redhat.io/openshift-gitops-1/argocd-rhel9:v1.18.0",
    };
    let mut container = json!({
        "name": comp.container,
        "image": image,
        "command": component_args(name, ns, comp, &spec),
        "ports": [{"containerPort": comp.port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "env": list_of(&spec, "env"),
    });
    if comp.suffix == "dex-server" {
        container["resources"] = spec
            .pointer("/dex/resources")
            .cloned()
            .unwrap_or_else(|| json!({}));
    } else {
        container["resources"] = spec.get("resources").cloned().unwrap_or_else(|| json!({}));
    }
    let mut containers = vec![container];
    containers.extend(sidecars);
    let sa = comp
        .sa
        .map(|s| format!("{name}-{s}"))
        .unwrap_or_else(|| "default".to_string());
    let mut pod_spec =
        json!({"serviceAccountName": sa, "containers": containers, "volumes": volumes});
    if !init_containers.is_empty() {
        pod_spec["initContainers"] = json!(init_containers);
    }
    let mut metadata = json!({"labels": labels});
    if let Some(extra) = spec.get("labels").and_then(Value::as_object) {
        for (k, v) in extra {
            metadata["labels"][k.as_str()] = v.clone();
        }
    }
    if let Some(a) = spec.get("annotations") {
        metadata["annotations"] = a.clone();
    }
    json!({"metadata": metadata, "spec": pod_spec})
}

fn reconcile_instance(c: &ClusterHandle, ns: &str, name: &str) {
    if name.is_empty() || running_operator(c).is_none() {
        return;
    }
    let Some(cr) = c.get(ARGOCD_API, "ArgoCD", Some(ns), name) else {
        return;
    };
    if is_deleting(&cr) {
        return;
    }
    let owner = vec![owner_ref(&cr)];
    let part_of = |component: &str| json!({"app.kubernetes.io/name": format!("{name}-{component}"), "app.kubernetes.io/part-of": "argocd", "app.kubernetes.io/managed-by": name});
    register_exec_plugin(c, ns, &cr);
    // Configuration the workloads read.
    let spec = &cr["spec"];
    let rbac = json!({
        "policy.csv": spec.pointer("/rbac/policy").cloned().unwrap_or(json!("")),
        "policy.default": spec.pointer("/rbac/defaultPolicy").cloned().unwrap_or(json!("role:readonly")),
        "scopes": spec.pointer("/rbac/scopes").cloned().unwrap_or(json!("[groups]")),
    });
    ensure(
        c,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-rbac-cm", "namespace": ns, "labels": part_of("rbac-cm"), "ownerReferences": owner}, "data": rbac}),
    );
    let mut cm = json!({"admin.enabled": "true", "application.instanceLabelKey": "app.kubernetes.io/instance", "server.rbac.log.enforce.enable": "false"});
    if let Some(ex) = spec.get("resourceExclusions").and_then(Value::as_str) {
        cm["resource.exclusions"] = json!(ex);
    }
    for (k, v) in [
        ("argocd-cm", cm),
        ("argocd-ssh-known-hosts-cm", json!({"ssh_known_hosts": ""})),
        ("argocd-tls-certs-cm", json!({})),
    ] {
        ensure(
            c,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": k, "namespace": ns, "labels": part_of(k), "ownerReferences": owner}, "data": v}),
        );
    }
    if c.get("v1", "Secret", Some(ns), &format!("{name}-cluster"))
        .is_none()
    {
        let password = random_suffix(24);
        ensure(
            c,
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": format!("{name}-cluster"), "namespace": ns, "labels": part_of("cluster"), "ownerReferences": owner},
                   "stringData": {"admin.password": password}}),
        );
    }
    // Workloads.
    let mut status: BTreeMap<&str, &str> = BTreeMap::new();
    for comp in COMPONENTS {
        let workload = format!("{name}-{}", comp.suffix);
        if !enabled(&cr, comp) {
            if comp.spec_key != "server" && comp.spec_key != "controller" {
                status.insert(comp.status_key, "Unknown");
            }
            let kind = if comp.stateful {
                "StatefulSet"
            } else {
                "Deployment"
            };
            if c.get("apps/v1", kind, Some(ns), &workload)
                .is_some_and(|w| crate::workloads::owned_by(&w, meta(&cr, "uid")))
            {
                let _ = c.delete("apps/v1", kind, Some(ns), &workload);
            }
            continue;
        }
        if let Some(sa) = comp.sa {
            ensure(
                c,
                json!({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": format!("{name}-{sa}"), "namespace": ns, "labels": part_of(comp.suffix), "ownerReferences": owner}}),
            );
        }
        let template = pod_template(name, ns, &cr, comp);
        let selector = json!({"matchLabels": {"app.kubernetes.io/name": workload}});
        let replicas = spec
            .pointer(&format!("/{}/replicas", comp.spec_key))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let obj = if comp.stateful {
            ensure(
                c,
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                       "metadata": {"name": workload, "namespace": ns, "labels": part_of(comp.suffix), "ownerReferences": owner},
                       "spec": {"replicas": replicas, "serviceName": workload, "selector": selector, "template": template,
                                "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate"}}}),
            )
        } else {
            ensure(
                c,
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": workload, "namespace": ns, "labels": part_of(comp.suffix), "ownerReferences": owner},
                       "spec": {"replicas": replicas, "selector": selector, "template": template, "strategy": {"type": "RollingUpdate"}}}),
            )
        };
        if comp.suffix != "application-controller" {
            ensure(
                c,
                json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": workload, "namespace": ns, "labels": part_of(comp.suffix), "ownerReferences": owner},
                "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": workload},
                         "ports": if comp.suffix == "server" {
                             json!([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}, {"name": "https", "port": 443, "targetPort": 8080, "protocol": "TCP"}])
                         } else {
                             json!([{"name": "port", "port": comp.port, "targetPort": comp.port, "protocol": "TCP"}])
                         }}}),
            );
        }
        let running = obj.as_ref().is_some_and(|w| {
            if comp.stateful {
                statefulset_ready(w)
            } else {
                deployment_available(w)
            }
        });
        status.insert(comp.status_key, if running { "Running" } else { "Pending" });
    }
    // The server route.
    let route_name = format!("{name}-server");
    let mut host = format!("{name}-server.{ns}.svc.cluster.local");
    if spec.pointer("/server/route/enabled") == Some(&json!(true)) {
        let route_host = spec
            .pointer("/server/host")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("{name}-server-{ns}.{}", c.apps_domain()));
        let tls = spec.pointer("/server/route/tls").cloned().unwrap_or_else(
            || json!({"termination": "passthrough", "insecureEdgeTerminationPolicy": "Redirect"}),
        );
        let route = ensure(
            c,
            json!({"apiVersion": "route.openshift.io/v1", "kind": "Route",
                   "metadata": {"name": route_name, "namespace": ns, "labels": part_of("server"), "ownerReferences": owner},
                   "spec": {"host": route_host, "to": {"kind": "Service", "name": route_name, "weight": 100},
                            "port": {"targetPort": "https"}, "tls": tls, "wildcardPolicy": "None"}}),
        );
        if route.is_some_and(|r| r.pointer("/status/ingress/0/host").is_some()) {
            host = route_host;
        }
    } else if c
        .get("route.openshift.io/v1", "Route", Some(ns), &route_name)
        .is_some_and(|r| crate::workloads::owned_by(&r, meta(&cr, "uid")))
    {
        let _ = c.delete("route.openshift.io/v1", "Route", Some(ns), &route_name);
    }
    let all_running = status.values().all(|s| *s == "Running" || *s == "Unknown");
    update_status(c, ARGOCD_API, "ArgoCD", Some(ns), name, |o| {
        if !o["status"].is_object() {
            o["status"] = json!({});
        }
        for (k, v) in &status {
            o["status"][*k] = json!(v);
        }
        o["status"]["phase"] = json!(if all_running { "Available" } else { "Pending" });
        o["status"]["host"] = json!(host);
        set_condition(
            &mut o["status"]["conditions"],
            "Reconciled",
            "True",
            "Success",
            "",
        );
    });
}

// ---------------------------------------------------------------------------------------------
// The exec plugin
// ---------------------------------------------------------------------------------------------

/// Programs the exec table routes to [`exec_plugin`] in an Argo CD namespace.
const SHELLS: &[&str] = &[
    "env",
    "/usr/bin/env",
    "/bin/env",
    "sh",
    "/bin/sh",
    "/usr/bin/sh",
    "bash",
    "/bin/bash",
    "/usr/bin/bash",
];

fn register_exec_plugin(c: &ClusterHandle, ns: &str, cr: &Value) {
    let mut mounts = Vec::new();
    for key in ["server", "controller"] {
        mounts.extend(list_of(&cr["spec"][key], "volumeMounts"));
    }
    register_programs(c, ns, "*", None, &mounts);
}

/// Route the shells, the plugin and `<mount path>/<plugin>` for each of `mounts` to
/// [`exec_plugin`] in `ns/pod` (`pod` may be `*`), once.
fn register_programs(
    c: &ClusterHandle,
    ns: &str,
    pod: &str,
    container: Option<&str>,
    mounts: &[Value],
) {
    let mut programs: Vec<String> = SHELLS.iter().map(|s| s.to_string()).collect();
    programs.push(format!("/binaries/{PLUGIN}"));
    programs.push(PLUGIN.to_string());
    for m in mounts {
        if let Some(p) = m["mountPath"].as_str() {
            programs.push(format!("{}/{PLUGIN}", p.trim_end_matches('/')));
        }
    }
    let scope = if pod == "*" {
        ns.to_string()
    } else {
        format!("{ns}/{pod}/{}", container.unwrap_or("*"))
    };
    let mut registered = c.hub().exec_registered.lock().unwrap();
    for p in programs {
        if registered.insert((scope.clone(), p.clone())) {
            let weak: WeakClusterHandle = c.downgrade();
            c.register_command(ns, pod, container, &p, move |req| match weak.upgrade() {
                Some(cluster) => exec_plugin(&cluster, req),
                None => ExecResult::failed(1, "cluster stopped\n"),
            });
        }
    }
}

/// The pods of upstream Argo CD (`install.yaml`) whose main container can run the plugin:
/// `(pod label app.kubernetes.io/name, container)`.
pub const UPSTREAM_PODS: &[(&str, &str)] = &[
    ("argocd-server", "argocd-server"),
    (
        "argocd-application-controller",
        "argocd-application-controller",
    ),
];

/// The exec plugin in the pods of upstream Argo CD (controller `argocd-exec-plugin`, every
/// cluster): a pod labelled `app.kubernetes.io/name=argocd-server` (container `argocd-server`)
/// or `argocd-application-controller` (container `argocd-application-controller`) that no
/// `ArgoCD` CR of its namespace manages runs [`exec_plugin`] in that container, registered
/// from the pod's own spec (its volume mounts name where the plugin may be installed).
pub struct ArgoCdPods;

impl Controller for ArgoCdPods {
    fn name(&self) -> &str {
        "argocd-exec-plugin"
    }

    fn handle(&self, c: &ClusterHandle, ev: &Event) {
        if ev.storage_key == "/pods" && ev.event_type != EventType::Deleted {
            register_upstream_pod(c, &ev.object);
        }
    }
}

/// Register the plugin in `pod` if it is one of upstream Argo CD's (see [`ArgoCdPods`]). Also
/// called by the workloads controller before it makes a pod Ready, so that a Ready pod always
/// runs the plugin.
pub(crate) fn register_upstream_pod(c: &ClusterHandle, pod: &Value) {
    let Some(app) = pod
        .pointer("/metadata/labels/app.kubernetes.io~1name")
        .and_then(Value::as_str)
    else {
        return;
    };
    let Some((_, container)) = UPSTREAM_PODS.iter().find(|(l, _)| *l == app) else {
        return;
    };
    let Some(ct) = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|ct| ct["name"] == *container))
    else {
        return;
    };
    let ns = meta(pod, "namespace");
    if c.core().store.type_of(ARGOCD_API, "ArgoCD").is_some()
        && !c.list(ARGOCD_API, "ArgoCD", Some(ns)).is_empty()
    {
        return; // the operator's instance: registered for the whole namespace
    }
    register_programs(
        c,
        ns,
        meta(pod, "name"),
        Some(container),
        &list_of(ct, "volumeMounts"),
    );
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// How a command line was reached (for error messages).
#[derive(Clone, Copy, PartialEq)]
enum Via {
    Exec,
    Env,
    Shell,
}

/// Run a command line in a pod of an Argo CD namespace: the plugin (directly, through `env`,
/// or in a `sh -c` / `bash -c` script, or a script on stdin), or "not found" for anything else.
///
/// The plugin, like the real one:
///
/// - exits 127 when no init container installed it into the volume mounted at its directory;
/// - reads `SPIFFE_ENDPOINT_SOCKET` (default `unix:///tmp/spire-agent/public/api.sock`),
///   `SPIFFE_JWT_AUDIENCE` (default `k8s`), `EXEC_CREDENTIAL_VERSION` (default `v1`), on top
///   of the container's `env`;
/// - hangs (no output, never exits) when the socket is not in a `csi.spiffe.io` volume mounted
///   at the socket's directory, or when SPIRE gives the pod no identity: SPIRE (server, agent,
///   CSI driver) not ready, on OpenShift a namespace starting with `openshift-` (ZTWIM issues
///   no identities there), on kind no ClusterSPIFFEID selecting the pod; from v0.0.7
///   `-timeout 5s` makes it give up instead (exit 1, "context deadline exceeded");
/// - otherwise prints the YAML ExecCredential with a JWT-SVID for the pod's SPIFFE ID
///   (OpenShift: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`). `expirationTimestamp` is
///   the token's `exp` plus half its remaining lifetime for v0.0.6 and earlier (the bug), and
///   now plus half the remaining lifetime (before `exp`) from v0.0.7, the version being read
///   from the init container's `EXEC_AUTH_URL` (`.../download/vX.Y.Z/...`).
pub fn exec_plugin(c: &ClusterHandle, req: &ExecRequest) -> ExecResult {
    let Some(pod) = c.get("v1", "Pod", Some(&req.namespace), &req.pod) else {
        return ExecResult::failed(1, format!("pods \"{}\" not found\n", req.pod));
    };
    if pod.pointer("/status/phase") != Some(&json!("Running")) {
        return ExecResult::failed(1, format!("container {} is not running\n", req.container));
    }
    let container = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|ct| ct["name"] == req.container.as_str()))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut env: BTreeMap<String, String> = list_of(&container, "env")
        .iter()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    let ctx = Ctx {
        c,
        pod: &pod,
        container: &container,
    };
    let argv = req.command.clone();
    let program = argv.first().cloned().unwrap_or_default();
    match basename(&program) {
        "env" => run_env(&ctx, &mut env, &argv[1..], Via::Env),
        "sh" | "bash" => {
            let shell = basename(&program).to_string();
            let script = match argv.get(1).map(String::as_str) {
                Some("-c") => argv.get(2).cloned().unwrap_or_default(),
                None => String::from_utf8_lossy(&req.stdin).to_string(),
                Some(other) => {
                    return ExecResult::failed(
                        127,
                        format!("{shell}: {other}: No such file or directory\n"),
                    );
                }
            };
            run_script(&ctx, &shell, &script, &mut env)
        }
        _ => run_program(&ctx, &env, &program, &argv[1..], Via::Exec, ""),
    }
}

struct Ctx<'a> {
    c: &'a ClusterHandle,
    pod: &'a Value,
    container: &'a Value,
}

/// `env [-i] [-u NAME] [NAME=VALUE]... COMMAND [ARG]...`
fn run_env(ctx: &Ctx, env: &mut BTreeMap<String, String>, args: &[String], via: Via) -> ExecResult {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-i" || a == "--ignore-environment" {
            env.clear();
        } else if a == "-u" {
            i += 1;
            if let Some(n) = args.get(i) {
                env.remove(n);
            }
        } else if a == "--" {
            i += 1;
            break;
        } else if let Some((k, v)) = a
            .split_once('=')
            .filter(|(k, _)| !k.is_empty() && !k.starts_with('-'))
        {
            env.insert(k.to_string(), v.to_string());
        } else {
            break;
        }
        i += 1;
    }
    match args.get(i) {
        None => ExecResult::ok(
            env.iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect::<String>(),
        ),
        Some(program) => run_program(
            ctx,
            env,
            program,
            &args[i + 1..],
            if via == Via::Shell {
                Via::Shell
            } else {
                Via::Env
            },
            "",
        ),
    }
}

/// Split a script into commands at unquoted `;`, `&&`, `||` and newlines.
fn split_script(script: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut op = String::from(";");
    let (mut single, mut double, mut escape) = (false, false, false);
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        if escape {
            cur.push(ch);
            escape = false;
        } else if ch == '\\' && !single {
            cur.push(ch);
            escape = true;
        } else if ch == '\'' && !double {
            single = !single;
            cur.push(ch);
        } else if ch == '"' && !single {
            double = !double;
            cur.push(ch);
        } else if !single
            && !double
            && (ch == ';'
                || ch == '\n'
                || ((ch == '&' || ch == '|') && chars.get(i + 1) == Some(&ch)))
        {
            out.push((op.clone(), std::mem::take(&mut cur)));
            op = if ch == ';' || ch == '\n' {
                ";".into()
            } else {
                format!("{ch}{ch}")
            };
            if ch == '&' || ch == '|' {
                i += 1;
            }
        } else {
            cur.push(ch);
        }
        i += 1;
    }
    out.push((op, cur));
    out.into_iter()
        .filter(|(_, c)| !c.trim().is_empty() && !c.trim_start().starts_with('#'))
        .collect()
}

fn run_script(
    ctx: &Ctx,
    shell: &str,
    script: &str,
    env: &mut BTreeMap<String, String>,
) -> ExecResult {
    let mut last = ExecResult::ok("");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    for (line_no, (op, cmd)) in split_script(script).into_iter().enumerate() {
        let ok = last.exit_code == 0;
        if (op == "&&" && !ok) || (op == "||" && ok) {
            continue;
        }
        let Some(words) = shlex::split(&cmd) else {
            stderr.extend_from_slice(
                format!(
                    "{shell}: -c: line {}: unexpected EOF while looking for matching quote\n",
                    line_no + 1
                )
                .as_bytes(),
            );
            return ExecResult {
                stdout,
                stderr,
                exit_code: 2,
                ..ExecResult::default()
            };
        };
        let prefix = format!("{shell}: line {}: ", line_no + 1);
        last = run_words(ctx, env, &words, &prefix);
        if last.hang || last.delay.is_some() {
            let mut r = last;
            stdout.extend_from_slice(&r.stdout);
            stderr.extend_from_slice(&r.stderr);
            r.stdout = stdout;
            r.stderr = stderr;
            return r;
        }
        stdout.extend_from_slice(&last.stdout);
        stderr.extend_from_slice(&last.stderr);
    }
    ExecResult {
        stdout,
        stderr,
        exit_code: last.exit_code,
        ..ExecResult::default()
    }
}

/// One simple command of a script: assignments, `export`, `set`, `true`, `echo`, `exec`, `env`, a program.
fn run_words(
    ctx: &Ctx,
    env: &mut BTreeMap<String, String>,
    words: &[String],
    prefix: &str,
) -> ExecResult {
    let mut i = 0;
    let mut local = env.clone();
    while let Some((k, v)) = words
        .get(i)
        .and_then(|w| w.split_once('='))
        .filter(|(k, _)| is_name(k))
    {
        local.insert(k.to_string(), v.to_string());
        i += 1;
    }
    let Some(first) = words.get(i) else {
        // Only assignments: they set shell variables.
        *env = local;
        return ExecResult::ok("");
    };
    match first.as_str() {
        "export" => {
            for w in &words[i + 1..] {
                if let Some((k, v)) = w.split_once('=') {
                    env.insert(k.to_string(), v.to_string());
                }
            }
            ExecResult::ok("")
        }
        "set" | "true" | ":" => ExecResult::ok(""),
        "false" => ExecResult::failed(1, ""),
        "echo" => ExecResult::ok(format!("{}\n", words[i + 1..].join(" "))),
        "exec" => match words.get(i + 1) {
            Some(p) if basename(p) == "env" => {
                run_env(ctx, &mut local, &words[i + 2..], Via::Shell)
            }
            Some(p) => run_program(ctx, &local, p, &words[i + 2..], Via::Shell, prefix),
            None => ExecResult::ok(""),
        },
        p if basename(p) == "env" => run_env(ctx, &mut local, &words[i + 1..], Via::Shell),
        p => run_program(ctx, &local, p, &words[i + 1..], Via::Shell, prefix),
    }
}

fn is_name(k: &str) -> bool {
    !k.is_empty()
        && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        && !k.starts_with(|ch: char| ch.is_ascii_digit())
}

/// The directory the plugin is installed in for this container (an init container put it
/// into a volume the container mounts there), and the version the init container fetched.
/// A plugin release, `(major, minor, patch)`.
type Version = (u64, u64, u64);

fn installed_plugin(pod: &Value, container: &Value) -> Vec<(String, Option<Version>)> {
    let mut out = Vec::new();
    let inits = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in list_of(container, "volumeMounts") {
        let (Some(vol), Some(path)) = (m["name"].as_str(), m["mountPath"].as_str()) else {
            continue;
        };
        for ic in &inits {
            let mounts_it = list_of(ic, "volumeMounts")
                .iter()
                .any(|im| im["name"] == vol);
            let text = format!("{} {} {}", ic["image"], ic["command"], ic["args"]);
            if mounts_it && text.contains(PLUGIN) {
                let version = list_of(ic, "env")
                    .iter()
                    .find(|e| e["name"] == "EXEC_AUTH_URL")
                    .and_then(|e| e["value"].as_str())
                    .and_then(version_in)
                    .or_else(|| ic["image"].as_str().and_then(version_in));
                out.push((path.trim_end_matches('/').to_string(), version));
            }
        }
    }
    out
}

/// `vX.Y.Z` in a release URL (`/download/vX.Y.Z/`) or an image tag (`:vX.Y.Z`).
fn version_in(s: &str) -> Option<Version> {
    let start = s
        .find("/download/")
        .map(|i| i + "/download/".len())
        .or_else(|| s.rfind(':').map(|i| i + 1))?;
    let rest = s[start..].trim_start_matches('v');
    let end = rest
        .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .unwrap_or(rest.len());
    let mut parts = rest[..end].split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

fn go_log_time() -> String {
    jiff::Timestamp::now()
        .strftime("%Y/%m/%d %H:%M:%S")
        .to_string()
}

fn rfc3339_seconds(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis.div_euclid(1000) * 1000)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn run_program(
    ctx: &Ctx,
    env: &BTreeMap<String, String>,
    program: &str,
    args: &[String],
    via: Via,
    prefix: &str,
) -> ExecResult {
    let not_found = || match (via, program.contains('/')) {
        (Via::Exec, _) => ExecResult::not_found(program),
        (Via::Env, _) => ExecResult::failed(
            127,
            format!("env: '{program}': No such file or directory\n"),
        ),
        (Via::Shell, true) => ExecResult::failed(
            127,
            format!("{prefix}{program}: No such file or directory\n"),
        ),
        (Via::Shell, false) => {
            ExecResult::failed(127, format!("{prefix}{program}: command not found\n"))
        }
    };
    if basename(program) != PLUGIN {
        return not_found();
    }
    let installs = installed_plugin(ctx.pod, ctx.container);
    let dirs: Vec<String> = if program.contains('/') {
        vec![
            program
                .rsplit_once('/')
                .map(|(d, _)| d)
                .unwrap_or("")
                .trim_end_matches('/')
                .to_string(),
        ]
    } else {
        env.get("PATH")
            .cloned()
            .unwrap_or_else(|| {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
            })
            .split(':')
            .map(|d| d.trim_end_matches('/').to_string())
            .collect()
    };
    let Some((_, version)) = installs.iter().find(|(dir, _)| dirs.contains(dir)) else {
        return not_found();
    };
    let fixed = version.is_none_or(|v| v >= (0, 0, 7));
    // From v0.0.7 the plugin parses flags (-timeout); before, it ignores its arguments.
    let mut timeout: Option<Duration> = None;
    if fixed {
        let mut i = 0;
        while i < args.len() {
            let a = args[i].trim_start_matches('-');
            let (flag, value) = match a.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (a, None),
            };
            if !args[i].starts_with('-') || args[i] == "-" || args[i] == "--" {
                break;
            }
            if flag != "timeout" {
                return ExecResult::failed(
                    2,
                    format!(
                        "flag provided but not defined: -{flag}\nUsage of {program}:\n  -timeout duration\n    \tmaximum wait for the JWT-SVID (e.g. 5s); 0 waits forever\n"
                    ),
                );
            }
            let value = match value {
                Some(v) => v,
                None => {
                    i += 1;
                    match args.get(i) {
                        Some(v) => v.clone(),
                        None => {
                            return ExecResult::failed(
                                2,
                                format!("flag needs an argument: -timeout\nUsage of {program}:\n"),
                            );
                        }
                    }
                }
            };
            match crate::spire::parse_go_duration(&value) {
                Some(secs) if secs > 0.0 => timeout = Some(Duration::from_secs_f64(secs)),
                Some(_) => timeout = None,
                None => {
                    return ExecResult::failed(
                        2,
                        format!(
                            "invalid value \"{value}\" for flag -timeout: parse error\nUsage of {program}:\n"
                        ),
                    );
                }
            }
            i += 1;
        }
    }
    let socket = env
        .get("SPIFFE_ENDPOINT_SOCKET")
        .cloned()
        .unwrap_or_else(|| "unix:///tmp/spire-agent/public/api.sock".into());
    let audience = env
        .get("SPIFFE_JWT_AUDIENCE")
        .cloned()
        .unwrap_or_else(|| "k8s".into());
    let cred_version = env
        .get("EXEC_CREDENTIAL_VERSION")
        .cloned()
        .unwrap_or_else(|| "v1".into());
    // A hung plugin (go-spiffe waits for the Workload API forever), or a timed-out one.
    let wait = || -> ExecResult {
        match timeout {
            Some(t) => {
                ExecResult::failed(1, format!("{} context deadline exceeded\n", go_log_time()))
                    .after(t)
            }
            None => ExecResult::hang(),
        }
    };
    // Where the Workload API socket is.
    let path = match url::Url::parse(&socket) {
        Ok(u) if u.scheme() == "unix" => {
            if u.path().is_empty() {
                return ExecResult::failed(
                    1,
                    format!(
                        "{} workload endpoint unix socket URI must include a path\n",
                        go_log_time()
                    ),
                );
            }
            u.path().to_string()
        }
        Ok(u) if u.scheme() == "tcp" => return wait(),
        _ => {
            return ExecResult::failed(
                1,
                format!(
                    "{} workload endpoint socket URI must have a \"tcp\" or \"unix\" scheme\n",
                    go_log_time()
                ),
            );
        }
    };
    let (dir, file) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
    let dir = if dir.is_empty() {
        "/"
    } else {
        dir.trim_end_matches('/')
    };
    let api = workload_api(ctx.c);
    let driver = api.csi_driver;
    let volumes = ctx
        .pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let csi_mounted = list_of(ctx.container, "volumeMounts").iter().any(|m| {
        m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(dir)
            && volumes
                .iter()
                .any(|v| v["name"] == m["name"] && v.pointer("/csi/driver") == Some(&json!(driver)))
    });
    if !csi_mounted || file != api.socket_name {
        return wait();
    }
    // No identity (SPIRE not ready, no registration entry for the pod): go-spiffe waits.
    let Some(spiffe_id) = pod_spiffe_id(ctx.c, ctx.pod) else {
        return wait();
    };
    let Some(svid) = mint_svid(ctx.c, &spiffe_id, &audience) else {
        return wait();
    };
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let exp_ms = svid.exp * 1000;
    let half = (exp_ms - now_ms) / 2;
    let expiry_ms = if fixed { now_ms + half } else { exp_ms + half };
    ExecResult::ok(format!(
        "apiVersion: client.authentication.k8s.io/{cred_version}\nkind: ExecCredential\nspec:\n interactive: false\nstatus:\n  expirationTimestamp: \"{}\"\n  token: {}\n",
        rfc3339_seconds(expiry_ms),
        svid.token
    ))
}
