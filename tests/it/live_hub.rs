//! `bootstrap` against a simulated OpenShift hub, through the real binary: success, idempotence,
//! interruption, failure modes with their messages and exit codes, faults, and no token in any output.

use std::time::{Duration, Instant};

use kubesim::{Fault, Matcher};
use serde_json::{Value, json};

use crate::sims::{Clusters, json_of};
use crate::support::Output;

const HUB: &[(&str, &str)] = &[("hub", "openshift-4.20")];

fn bootstrap(c: &Clusters, extra: &[&str]) -> Output {
    let mut args = vec![
        "bootstrap",
        "--context",
        "hub",
        "--yes",
        "--exec-timeout",
        "5s",
    ];
    if !extra.contains(&"--timeout") {
        args.extend(["--timeout", "60s"]);
    }
    args.extend(extra);
    c.run(args)
}

/// Every field of `want` is in `got` with the same value.
#[track_caller]
fn assert_subset(want: &Value, got: &Value, path: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                let sub = format!("{path}.{k}");
                match g.get(k) {
                    Some(gv) => assert_subset(v, gv, &sub),
                    None => panic!("{sub} is missing on the cluster"),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            assert_eq!(w.len(), g.len(), "{path}: list length");
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "{path}"),
    }
}

#[test]
fn a_fresh_hub_is_bootstrapped_with_what_render_prints() {
    let c = Clusters::start(HUB);
    let hub = c.sim.cluster("hub");
    let out = bootstrap(&c, &["-o", "json"]).success();
    let doc = json_of(&out);
    assert_eq!(doc["result"], "ok");
    let domain = hub.apps_domain();
    let issuer = format!("https://spire-spiffe-oidc-discovery-provider.{domain}");
    assert_eq!(doc["values"]["appDomain"], domain.as_str());
    assert_eq!(doc["values"]["trustDomain"], domain.as_str());
    assert_eq!(doc["values"]["issuerURL"], issuer.as_str());
    assert_eq!(
        doc["values"]["routeHost"],
        format!("spire-spiffe-oidc-discovery-provider.{domain}").as_str()
    );
    let server_id = format!("spiffe://{domain}/ns/ztwim-gitops/sa/openshift-gitops-argocd-server");
    assert_eq!(doc["values"]["spiffeIDs"]["server"], server_id.as_str());
    // The identity step proved both pods' SVIDs, with only their claims in the output.
    let ids = doc["identities"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0]["claims"]["sub"], server_id.as_str());
    assert_eq!(ids[0]["claims"]["iss"], issuer.as_str());
    assert_eq!(ids[0]["claims"]["aud"], json!(["openshift-spoke"]));
    assert!(
        ids[1]["claims"]["sub"]
            .as_str()
            .unwrap()
            .ends_with("/sa/openshift-gitops-argocd-application-controller")
    );
    for step in doc["steps"].as_array().unwrap() {
        assert_eq!(step["result"], "ok", "{step}");
    }

    // What is on the cluster is what render prints.
    let channel = doc["values"]["ztwimChannel"].as_str().unwrap().to_string();
    let render = c
        .run([
            "render",
            "bootstrap",
            "--app-domain",
            &domain,
            "--channel",
            &channel,
            "-o",
            "json",
            "-q",
        ])
        .success();
    let rendered: Vec<Value> = serde_json::from_str(&render.stdout).unwrap();
    assert_eq!(rendered.len(), 13);
    for want in &rendered {
        let ns = want["metadata"]["namespace"].as_str();
        let name = want["metadata"]["name"].as_str().unwrap();
        let got = hub
            .get(
                want["apiVersion"].as_str().unwrap(),
                want["kind"].as_str().unwrap(),
                ns,
                name,
            )
            .unwrap_or_else(|| panic!("{} {name} is not on the hub", want["kind"]));
        assert_subset(want, &got, want["kind"].as_str().unwrap());
        // Applied by our one field manager.
        let managers: Vec<&str> = got["metadata"]["managedFields"]
            .as_array()
            .map(|m| m.iter().filter_map(|e| e["manager"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            managers.contains(&"ztwim-hub"),
            "{} {name}: managers {managers:?}",
            want["kind"]
        );
    }
}

#[test]
fn a_second_run_changes_nothing_and_verifies_again() {
    let c = Clusters::start(HUB);
    bootstrap(&c, &[]).success();
    c.reset_counters();
    let out = bootstrap(&c, &["-o", "json"]).success();
    let counters = c.sim.cluster("hub").counters();
    assert_eq!(counters.stored_changes, 0, "a re-run must store nothing");
    let doc = json_of(&out);
    for step in doc["steps"].as_array().unwrap() {
        for change in step["changes"].as_array().unwrap() {
            assert_eq!(change["change"], "unchanged", "{change}");
        }
    }
    assert_eq!(
        doc["identities"].as_array().unwrap().len(),
        2,
        "verified again"
    );
}

#[test]
fn an_interrupted_run_completes_when_run_again() {
    let c = Clusters::start_with(HUB, |cfg| cfg.controller_delay(Duration::from_millis(150)));
    let hub = c.sim.cluster("hub");
    let mut child = crate::support::Run::new(["bootstrap", "--context", "hub", "--yes", "-q"])
        .env("KUBECONFIG", c.kubeconfig.to_str().unwrap())
        .env("HTTPS_PROXY", &format!("http://{}", c.sim.proxy_addr()))
        .env("NO_PROXY", "127.0.0.1")
        .spawn();
    // Kill it in the argocd step: once the ArgoCD exists, before its pods are verified.
    let deadline = Instant::now() + Duration::from_secs(120);
    while hub
        .get(
            "argoproj.io/v1beta1",
            "ArgoCD",
            Some("ztwim-gitops"),
            "openshift-gitops",
        )
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "bootstrap never reached the argocd step"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("bootstrap ended before the argocd step: {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let doc = json_of(&bootstrap(&c, &["-o", "json"]).success());
    assert_eq!(doc["result"], "ok");
}

#[test]
fn an_operand_that_never_becomes_ready_times_out_naming_it_and_its_condition() {
    let c = Clusters::start(HUB);
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(
        crate::support::repo().join("templates/openshift/hub/ztwim-operands.yaml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("openshift/hub")).unwrap();
    std::fs::write(
        dir.path().join("openshift/hub/ztwim-operands.yaml"),
        original.replace(
            "jwtIssuer: {{ v.jwt_issuer | tojson }}\n  caValidity",
            "jwtIssuer: \"http://insecure.example.com\"\n  caValidity",
        ),
    )
    .unwrap();
    let out = bootstrap(
        &c,
        &[
            "--timeout",
            "3s",
            "--templates-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.contains("step ztwim-operands: timed out after 3s waiting for"),
        "{last}"
    );
    assert!(last.contains("Ready=False"), "{last}");
    assert!(
        last.to_lowercase().contains("https"),
        "the condition message says why: {last}"
    );
}

#[test]
fn an_issuer_serving_another_issuer_fails_verification() {
    let c = Clusters::start(HUB);
    c.sim
        .cluster("hub")
        .set_oidc_issuer_override(Some("https://elsewhere.example.com".into()));
    let out = bootstrap(&c, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("step oidc-discovery"), "{last}");
    assert!(
        last.contains("says issuer \"https://elsewhere.example.com\""),
        "{last}"
    );
}

#[test]
fn an_argocd_without_the_init_container_fails_the_identity_step_and_says_why() {
    let c = Clusters::start(HUB);
    let dir = tempfile::tempdir().unwrap();
    let original =
        std::fs::read_to_string(crate::support::repo().join("templates/openshift/hub/argocd.yaml"))
            .unwrap();
    // The server keeps the CSI volume but loses the init container (and its binaries volume).
    let server_start = original.find("  server:").unwrap();
    let (head, tail) = original.split_at(server_start);
    let tail = tail.replacen("    {{ plumbing | trim | indent(4) }}", "    volumeMounts: [{name: spiffe-workload-api, mountPath: /run/spire/sockets, readOnly: true}]\n    volumes: [{name: spiffe-workload-api, csi: {driver: csi.spiffe.io, readOnly: true}}]", 1);
    std::fs::create_dir_all(dir.path().join("openshift/hub")).unwrap();
    std::fs::write(
        dir.path().join("openshift/hub/argocd.yaml"),
        format!("{head}{tail}"),
    )
    .unwrap();
    let out = bootstrap(&c, &["--templates-dir", dir.path().to_str().unwrap()]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("step identity"), "{last}");
    assert!(
        last.contains("/binaries/k8s-spiffe-workload-jwt-exec-auth is not installed"),
        "{last}"
    );
    assert!(
        last.contains("has no install-jwt-spiffe init container"),
        "{last}"
    );
}

#[test]
fn a_jwt_with_the_wrong_audience_fails_verification() {
    let c = Clusters::start(HUB);
    bootstrap(&c, &[]).success();
    let hub = c.sim.cluster("hub");
    let domain = hub.apps_domain();
    let pods = hub.list("v1", "Pod", Some("ztwim-gitops"));
    let server = pods
        .iter()
        .find(|p| p["metadata"]["labels"]["app.kubernetes.io/name"] == "openshift-gitops-server")
        .expect("the server pod");
    let pod = server["metadata"]["name"].as_str().unwrap().to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = hub.spire_sign(&json!({
        "sub": format!("spiffe://{domain}/ns/ztwim-gitops/sa/openshift-gitops-argocd-server"),
        "aud": ["k8s"],
        "iss": format!("https://spire-spiffe-oidc-discovery-provider.{domain}"),
        "iat": now, "exp": now + 300,
    }));
    let credential = format!(
        "apiVersion: client.authentication.k8s.io/v1beta1\nkind: ExecCredential\nspec:\n interactive: false\nstatus:\n  token: {token}\n"
    );
    hub.register_command(
        "ztwim-gitops",
        &pod,
        Some("argocd-server"),
        "env",
        move |_| kubesim::ExecResult::ok(credential.clone()),
    );
    let out = bootstrap(&c, &["--only", "identity"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(
        last.contains("its audience is not \"openshift-spoke\""),
        "{last}"
    );
    assert!(
        !out.stderr.contains(&token) && !out.stdout.contains(&token),
        "the token must never be printed"
    );
}

#[test]
fn bootstrap_survives_503s_and_dropped_watches() {
    let c = Clusters::start_with(HUB, |cfg| {
        cfg.fault(
            Fault::Http {
                status: 503,
                matcher: Matcher::any().verb("patch"),
                probability: 0.5,
                seed: 7,
                retry_after_seconds: Some(0),
                times: Some(6),
            },
            Some("hub"),
        )
        .fault(
            Fault::WatchCut {
                matcher: Matcher::any(),
                after_events: 1,
            },
            Some("hub"),
        )
    });
    let doc = json_of(&bootstrap(&c, &["-o", "json"]).success());
    assert_eq!(doc["result"], "ok");
}

#[test]
fn no_token_in_any_output() {
    let c = Clusters::start(HUB);
    for extra in [&["-v"][..], &["-vv"], &["-o", "json"], &["-o", "yaml"]] {
        let out = bootstrap(&c, extra).success();
        for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            // A JWT's header always starts with the base64url of '{"'.
            assert!(
                !text.contains("eyJ"),
                "{what} with {extra:?} contains something like a JWT:\n{text}"
            );
        }
    }
}

#[test]
fn a_field_owned_by_another_manager_is_a_reported_conflict_unless_forced() {
    let c = Clusters::start(HUB);
    // Someone else manages the ZTWIM Subscription's channel.
    let manifest = c.dir.path().join("sub.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: zero-trust-workload-identity-manager}\n---\n\
         apiVersion: operators.coreos.com/v1alpha1\nkind: Subscription\nmetadata:\n  name: openshift-zero-trust-workload-identity-manager\n  namespace: zero-trust-workload-identity-manager\n\
         spec:\n  name: openshift-zero-trust-workload-identity-manager\n  channel: someone-elses-channel\n  source: redhat-operators\n  sourceNamespace: openshift-marketplace\n",
    )
    .unwrap();
    let status = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            c.kubeconfig.to_str().unwrap(),
            "--context",
            "hub",
            "apply",
            "--server-side",
            "--field-manager",
            "platform-team",
            "-f",
        ])
        .arg(&manifest)
        .env("HOME", c.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let out = bootstrap(
        &c,
        &[
            "--only",
            "ztwim-operator",
            "--ignore-preflight-errors",
            "all",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap();
    assert!(last.contains("conflict"), "{last}");
    assert!(
        last.contains("platform-team"),
        "the other manager is named: {last}"
    );
    assert!(last.contains(".spec.channel"), "the field is named: {last}");
    assert!(last.contains("--force"), "{last}");
    let sub = c
        .sim
        .cluster("hub")
        .get(
            "operators.coreos.com/v1alpha1",
            "Subscription",
            Some("zero-trust-workload-identity-manager"),
            "openshift-zero-trust-workload-identity-manager",
        )
        .unwrap();
    assert_eq!(
        sub["spec"]["channel"], "someone-elses-channel",
        "not forced"
    );
    // --force takes the field over.
    bootstrap(&c, &["--only", "ztwim-operator", "--force"]).success();
    let sub = c
        .sim
        .cluster("hub")
        .get(
            "operators.coreos.com/v1alpha1",
            "Subscription",
            Some("zero-trust-workload-identity-manager"),
            "openshift-zero-trust-workload-identity-manager",
        )
        .unwrap();
    assert_ne!(sub["spec"]["channel"], "someone-elses-channel");
}
