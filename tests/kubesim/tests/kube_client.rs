//! kube-rs clients against kubesim: discovery, storage semantics, apply, watch, exec, RBAC, faults.

mod common;

use std::time::Duration;

use common::{WIDGET_CRD, admin_client, client_for, sim_hub_spoke, sim_kind};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, AttachParams, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use kubesim::{ExecResult, Fault, KubeUser, Matcher};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn cm(name: &str, ns: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data})).unwrap()
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn aggregated_discovery_lists_profile_groups() {
    let sim = sim_hub_spoke();
    let d = kube::Discovery::new(admin_client(&sim, "hub").await)
        .run_aggregated()
        .await
        .unwrap();
    for g in [
        "",
        "apps",
        "config.openshift.io",
        "route.openshift.io",
        "operators.coreos.com",
        "packages.operators.coreos.com",
        "apiextensions.k8s.io",
    ] {
        assert!(d.has_group(g), "hub should serve {g:?}");
    }
    let kind = kubesim::Sim::start(
        kubesim::SimConfig::new().cluster("k1", kubesim::Profile::kind("1.34")),
    )
    .unwrap();
    let d = kube::Discovery::new(admin_client(&kind, "k1").await)
        .run_aggregated()
        .await
        .unwrap();
    assert!(d.has_group("apps"));
    for g in [
        "route.openshift.io",
        "operators.coreos.com",
        "config.openshift.io",
    ] {
        assert!(!d.has_group(g), "kind must not serve {g}");
    }
    // Legacy discovery works too.
    let d = kube::Discovery::new(admin_client(&kind, "k1").await)
        .run()
        .await
        .unwrap();
    assert!(d.has_group("rbac.authorization.k8s.io"));
}

#[tokio::test]
async fn server_side_apply_is_idempotent_and_counted() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    let api: Api<ConfigMap> = Api::namespaced(admin_client(&sim, "k1").await, "default");
    let pp = PatchParams::apply("ztwim-hub");
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}});
    c.reset_counters();
    let first = api.patch("x", &pp, &Patch::Apply(&obj)).await.unwrap();
    let second = api.patch("x", &pp, &Patch::Apply(&obj)).await.unwrap();
    assert_eq!(
        first.metadata.resource_version,
        second.metadata.resource_version
    );
    let counters = c.counters();
    assert_eq!(
        (counters.mutating_requests, counters.stored_changes),
        (2, 1)
    );
    // Conflicting manager: 409, then force.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "2"}});
    let e = api_err(
        api.patch("x", &PatchParams::apply("other"), &Patch::Apply(&other))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    assert!(e.message.contains(".data.a"), "{}", e.message);
    let forced = api
        .patch(
            "x",
            &PatchParams::apply("other").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["a"], "2");
    // Dropping a field from the applied config removes it.
    let obj2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"}, "data": {"a": "1", "b": "2"}});
    api.patch("y", &pp, &Patch::Apply(&obj2)).await.unwrap();
    let obj3 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y"}, "data": {"a": "1"}});
    let y = api.patch("y", &pp, &Patch::Apply(&obj3)).await.unwrap();
    assert_eq!(y.data.unwrap().len(), 1);
}

#[tokio::test]
async fn storage_semantics() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    let client = admin_client(&sim, "k1").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // create, uid/rv/generation/creationTimestamp, AlreadyExists
    let made = cms
        .create(
            &PostParams::default(),
            &cm("a", "default", json!({"k": "v"})),
        )
        .await
        .unwrap();
    assert!(made.metadata.uid.is_some() && made.metadata.creation_timestamp.is_some());
    assert_eq!(made.metadata.generation, Some(1));
    assert_eq!(
        api_err(
            cms.create(&PostParams::default(), &cm("a", "default", json!({})))
                .await
                .unwrap_err()
        )
        .code,
        409
    );
    // update with a stale resourceVersion is a conflict
    let mut stale = made.clone();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    stale.data = Some([("k".to_string(), "z".to_string())].into());
    assert_eq!(
        api_err(
            cms.replace("a", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        )
        .code,
        409
    );
    // JSON patch
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/data/n", "value": "1"}])).unwrap();
    let patched = cms
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(p))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["n"], "1");
    // dryRun=All stores nothing
    c.reset_counters();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&dry, &cm("dry", "default", json!({})))
        .await
        .unwrap();
    assert!(c.get("v1", "ConfigMap", Some("default"), "dry").is_none());
    let counters = c.counters();
    assert_eq!(
        (
            counters.mutating_requests,
            counters.dry_run_requests,
            counters.stored_changes
        ),
        (0, 1, 0)
    );
    // labels and field selectors
    for (n, l) in [("l1", "x"), ("l2", "y")] {
        let mut m = cm(n, "default", json!({}));
        m.metadata.labels = Some([("sel".to_string(), l.to_string())].into());
        cms.create(&PostParams::default(), &m).await.unwrap();
    }
    let got = cms
        .list(&ListParams::default().labels("sel=x"))
        .await
        .unwrap();
    assert_eq!(got.items.len(), 1);
    assert!(got.metadata.resource_version.is_some());
    let got = cms
        .list(&ListParams::default().fields("metadata.name=l2"))
        .await
        .unwrap();
    assert_eq!(got.items[0].metadata.name.as_deref(), Some("l2"));
    // finalizers
    let mut f = cm("fin", "default", json!({}));
    f.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &f).await.unwrap();
    cms.delete("fin", &DeleteParams::default()).await.unwrap();
    let held = cms.get("fin").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(cms.get("fin").await.unwrap_err()).code, 404);
    // namespace deletion cascades
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let in_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    in_ns
        .create(&PostParams::default(), &cm("c", "doomed", json!({})))
        .await
        .unwrap();
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    assert!(c.get("v1", "ConfigMap", Some("doomed"), "c").is_none());
    assert!(c.get("v1", "Namespace", None, "doomed").is_none());
    // creating in a missing namespace is 404
    assert_eq!(
        api_err(
            in_ns
                .create(&PostParams::default(), &cm("c", "doomed", json!({})))
                .await
                .unwrap_err()
        )
        .code,
        404
    );
}

#[tokio::test]
async fn crd_validation_and_status_subresource() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    let client = admin_client(&sim, "k1").await;
    let crd: serde_json::Value = kubesim::schema::parse_yaml_documents(WIDGET_CRD)
        .unwrap()
        .remove(0);
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(crd).unwrap(),
    )
    .await
    .unwrap();
    let cond = kube::runtime::wait::await_condition(
        crds.clone(),
        "widgets.example.com",
        |o: Option<&DynamicObject>| {
            o.is_some_and(|o| kubesim::controllers::is_established(&o.data))
        },
    );
    tokio::time::timeout(T, cond).await.unwrap().unwrap();
    let ar = kube::discovery::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let w = |spec: serde_json::Value| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec, "status": {"ready": true}})).unwrap()
    };
    let e = api_err(
        widgets
            .create(&PostParams::default(), &w(json!({"size": -1})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("spec.size"), "{}", e.message);
    let e = api_err(
        widgets
            .create(&PostParams::default(), &w(json!({"color": "red"})))
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("spec.size: Required value"),
        "{}",
        e.message
    );
    // Unknown fields are pruned by default (fieldValidation=Warn), rejected with Strict.
    let made = widgets
        .create(&PostParams::default(), &w(json!({"size": 1, "extra": 1})))
        .await
        .unwrap();
    assert!(made.data["spec"].get("extra").is_none());
    assert!(
        made.data.get("status").is_none(),
        "status is dropped on create"
    );
    let e = api_err(
        widgets
            .patch("w", &PatchParams::apply("t").validation_strict(), &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1, "extra": 1}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("spec.extra"), "{}", e.message);
    // status only through the subresource
    let st = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["ready"], true);
    let gen_before = st.metadata.generation;
    let upd = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": false}, "spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(upd.data["status"]["ready"], true);
    assert_eq!(upd.metadata.generation, gen_before.map(|g| g + 1));
    // Deleting the CRD removes its objects and stops serving it.
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert!(c.list("example.com/v1", "Widget", None).is_empty());
    assert_eq!(api_err(widgets.get("w").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn watch_events_cut_streams_and_410_relist() {
    let sim = sim_kind();
    let c = sim.cluster("k1").clone();
    let client = admin_client(&sim, "k1").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Raw watch: ADDED / MODIFIED / DELETED from a resourceVersion.
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&kube::api::WatchParams::default().timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    c.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w", "namespace": "default"}, "data": {"a": "1"}})).unwrap();
    c.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w", "namespace": "default"}, "data": {"a": "2"}})).unwrap();
    c.delete("v1", "ConfigMap", Some("default"), "w").unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match tokio::time::timeout(T, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            kube::api::WatchEvent::Added(_) => kinds.push("ADDED"),
            kube::api::WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            kube::api::WatchEvent::Deleted(_) => kinds.push("DELETED"),
            _ => {}
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    // A too-old resourceVersion gives an ERROR event with 410.
    c.compact();
    let mut stream = api
        .watch(&kube::api::WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(T, stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        kube::api::WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // kube's watcher survives streams cut after each event and relists after 410.
    c.add_fault(Fault::WatchCut {
        matcher: Matcher::any().resource("configmaps"),
        after_events: 1,
    });
    let mut w = watcher(api.clone(), watcher::Config::default()).boxed();
    let wanted = ["late-0", "late-1", "late-2"];
    let writer = {
        let c = c.clone();
        tokio::spawn(async move {
            for (i, n) in ["late-0", "late-1", "late-2"].iter().enumerate() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if i == 1 {
                    c.compact();
                }
                c.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "namespace": "default"}})).unwrap();
            }
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    tokio::time::timeout(T, async {
        while !wanted.iter().all(|n| seen.contains(*n)) {
            match w.try_next().await {
                Ok(Some(watcher::Event::Apply(o) | watcher::Event::InitApply(o))) => {
                    seen.insert(o.metadata.name.unwrap());
                }
                Ok(_) => {}
                Err(e) => eprintln!("watcher error (retried): {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("watcher did not see all objects: {seen:?}"));
    writer.await.unwrap();
}

#[tokio::test]
async fn exec_with_kube_ws() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    c.put(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [{"name": "main", "image": "x"}]}})).unwrap();
    c.register_exec("default", "p", None, |req| match req.command[0].as_str() {
        "whoami" => ExecResult::ok("root\n"),
        "fail" => ExecResult::failed(3, "boom\n"),
        other => ExecResult::not_found(other),
    });
    let pods: Api<Pod> = Api::namespaced(admin_client(&sim, "k1").await, "default");
    let run = |cmd: Vec<&'static str>| {
        let pods = pods.clone();
        async move {
            let mut p = pods
                .exec(
                    "p",
                    cmd,
                    &AttachParams::default()
                        .stdout(true)
                        .stderr(true)
                        .stdin(false),
                )
                .await
                .unwrap();
            let mut out = String::new();
            let mut stdout = p.stdout().unwrap();
            let status = p.take_status().unwrap();
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out)
                .await
                .unwrap();
            let status = status.await.unwrap();
            (out, status)
        }
    };
    let (out, status) = tokio::time::timeout(T, run(vec!["whoami"])).await.unwrap();
    assert_eq!(out, "root\n");
    assert_eq!(status.status.as_deref(), Some("Success"));
    let (_, status) = tokio::time::timeout(T, run(vec!["nope"])).await.unwrap();
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(
        status.details.unwrap().causes.unwrap()[0]
            .message
            .as_deref(),
        Some("127")
    );
    // An exec that hangs never reports a status.
    c.add_fault(Fault::ExecHang {
        namespace: None,
        pod: Some("p".into()),
        container: None,
    });
    let mut p = pods
        .exec(
            "p",
            vec!["whoami"],
            &AttachParams::default()
                .stdout(true)
                .stderr(false)
                .stdin(false),
        )
        .await
        .unwrap();
    let status = p.take_status().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), status)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn rbac_for_certificate_users() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    c.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}))
        .unwrap();
    c.put(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "alice-edit", "namespace": "team"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})).unwrap();
    let alice = client_for(
        &sim.kubeconfig_with_user("alice", "k1", &KubeUser::cert("alice", &["devs"])),
        "alice",
    )
    .await;
    let team: Api<ConfigMap> = Api::namespaced(alice.clone(), "team");
    team.create(&PostParams::default(), &cm("x", "team", json!({})))
        .await
        .unwrap();
    team.list(&ListParams::default()).await.unwrap();
    let default: Api<ConfigMap> = Api::namespaced(alice.clone(), "default");
    let e = api_err(
        default
            .create(&PostParams::default(), &cm("x", "default", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert!(
        e.message
            .contains("User \"alice\" cannot create resource \"configmaps\""),
        "{}",
        e.message
    );
    // Edit does not include RBAC; admin (aggregated) does.
    let roles: Api<DynamicObject> = Api::namespaced_with(
        alice.clone(),
        "team",
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "Role"),
            "roles",
        ),
    );
    assert_eq!(
        api_err(roles.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
    c.put(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "devs-admin", "namespace": "team"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}]})).unwrap();
    roles.list(&ListParams::default()).await.unwrap();
    // SelfSubjectAccessReview and SelfSubjectReview (JSON bodies from kube).
    let ssar: Api<DynamicObject> = Api::all_with(
        alice.clone(),
        &kube::discovery::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("authorization.k8s.io", "v1", "SelfSubjectAccessReview"),
            "selfsubjectaccessreviews",
        ),
    );
    let review = |ns: &str| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
            "spec": {"resourceAttributes": {"verb": "delete", "resource": "configmaps", "namespace": ns}}})).unwrap()
    };
    let r = ssar
        .create(&PostParams::default(), &review("team"))
        .await
        .unwrap();
    assert_eq!(r.data["status"]["allowed"], true);
    let r = ssar
        .create(&PostParams::default(), &review("default"))
        .await
        .unwrap();
    assert_eq!(r.data["status"]["allowed"], false);
    // Anonymous users are refused.
    let anon = client_for(
        &sim.kubeconfig_with_user("anon", "k1", &KubeUser::token("unknown")),
        "anon",
    )
    .await;
    let e = Api::<ConfigMap>::namespaced(anon, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, kube::Error::Api(ref s) if s.code == 401),
        "{e:?}"
    );
}

#[tokio::test]
async fn http_faults_are_seeded_and_carry_retry_after() {
    let sim = sim_kind();
    let c = sim.cluster("k1");
    let api: Api<ConfigMap> = Api::namespaced(admin_client(&sim, "k1").await, "default");
    c.add_fault(Fault::Http {
        status: 503,
        matcher: Matcher::any().verb("create").resource("configmaps"),
        probability: 1.0,
        seed: 1,
        retry_after_seconds: Some(2),
        times: Some(1),
    });
    // kube retries 503 (honouring Retry-After), so the first create succeeds on its second try.
    c.reset_counters();
    api.create(&PostParams::default(), &cm("f", "default", json!({})))
        .await
        .unwrap();
    let counters = c.counters();
    assert_eq!(
        (counters.mutating_requests, counters.stored_changes),
        (2, 1)
    );
    // 500 on list with probability 0.5: the pattern is a function of the seed.
    let pattern = |seed: u64| {
        let sim = sim_kind();
        let c = sim.cluster("k1").clone();
        async move {
            c.add_fault(Fault::Http {
                status: 500,
                matcher: Matcher::any().verb("list"),
                probability: 0.5,
                seed,
                retry_after_seconds: None,
                times: None,
            });
            let api: Api<ConfigMap> = Api::namespaced(admin_client(&sim, "k1").await, "default");
            let mut out = Vec::new();
            for _ in 0..16 {
                out.push(api.list(&ListParams::default()).await.is_ok());
            }
            out
        }
    };
    let a = pattern(9).await;
    assert_eq!(a, pattern(9).await);
    assert!(a.contains(&true) && a.contains(&false), "{a:?}");
}
