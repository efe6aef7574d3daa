//! Tests of `kubesim::schema` against the upstream reference CRDs and samples.

use std::path::PathBuf;
use std::time::Instant;

use kubesim::schema::{self, CrdSchemas};
use serde_json::{Value, json};

fn reference() -> Option<PathBuf> {
    let dir = schema::reference_dir();
    if dir.is_none() {
        println!("{}", schema::SKIP_MESSAGE);
    }
    dir
}

fn samples(dir: &std::path::Path, negative: bool) -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for source in std::fs::read_dir(dir.join("samples")).unwrap() {
        let source = source.unwrap().path();
        let dir = if negative {
            source.join("does-not-validate")
        } else {
            source
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for file in entries {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&file).unwrap();
                for doc in schema::parse_yaml_documents(&text).unwrap() {
                    out.push((file.clone(), doc));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn reference_samples_validate() {
    let Some(dir) = reference() else { return };
    let start = Instant::now();
    let schemas = schema::reference_schemas().unwrap();
    eprintln!("loaded reference CRDs in {:?}", start.elapsed());
    let positives = samples(&dir, false);
    assert!(
        positives.len() >= 8,
        "expected the upstream samples, found {}",
        positives.len()
    );
    for (file, doc) in positives {
        let api_version = doc["apiVersion"].as_str().unwrap();
        let kind = doc["kind"].as_str().unwrap();
        assert!(
            schemas.has(api_version, kind),
            "{}: no schema for {api_version} {kind}",
            file.display()
        );
        if let Err(errors) = schemas.validate(&doc) {
            panic!("{} should validate: {errors:#?}", file.display());
        }
    }
}

#[test]
fn reference_negative_samples_fail() {
    let Some(dir) = reference() else { return };
    let schemas = schema::reference_schemas().unwrap();
    let negatives = samples(&dir, true);
    assert_eq!(negatives.len(), 3, "the three does-not-validate samples");
    for (file, doc) in negatives {
        let errors = schemas
            .validate(&doc)
            .expect_err(&format!("{} must not validate", file.display()));
        assert!(!errors.is_empty());
        eprintln!("{}: {errors:#?}", file.display());
    }
    // The documented reasons show up with their paths.
    let csid = samples(&dir, true)
        .into_iter()
        .find(|(f, _)| f.to_string_lossy().contains("clusterspiffeid"))
        .unwrap()
        .1;
    let errors = schemas.validate(&csid).unwrap_err();
    let joined = errors.join("\n");
    assert!(
        joined.contains("spec.workloadSelector: unknown field"),
        "{joined}"
    );
    assert!(
        joined.contains("spec.spiffeIDTemplate: Required value"),
        "{joined}"
    );
    assert!(joined.contains("spec.ttl: Invalid value"), "{joined}");
}

#[test]
fn misspelled_field_fails_with_its_path() {
    let Some(_) = reference() else { return };
    let schemas = schema::reference_schemas().unwrap();
    let good = json!({
        "apiVersion": "operator.openshift.io/v1alpha1",
        "kind": "SpireOIDCDiscoveryProvider",
        "metadata": {"name": "cluster", "labels": {"a": "b"}},
        "spec": {"jwtIssuer": "https://oidc.apps.example.com", "managedRoute": "true"}
    });
    schemas.validate(&good).unwrap();
    let mut bad = good.clone();
    bad["spec"]["managedRoot"] = json!("true");
    let errors = schemas.validate(&bad).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("spec.managedRoot: unknown field"),
        "{errors:#?}"
    );

    // Unknown field in metadata and at the root are errors; standard metadata keys are not.
    let mut bad = good.clone();
    bad["metadata"]["labelz"] = json!({});
    let errors = schemas.validate(&bad).unwrap_err();
    assert!(
        errors[0].starts_with("metadata.labelz: unknown field"),
        "{errors:#?}"
    );
    let mut bad = good.clone();
    bad["extra"] = json!(1);
    assert!(schemas.validate(&bad).unwrap_err()[0].starts_with("extra: unknown field"));
    let mut full_meta = good.clone();
    full_meta["metadata"] = json!({
        "name": "cluster", "uid": "x", "resourceVersion": "1", "generation": 1,
        "creationTimestamp": null, "annotations": {"k": "v"}, "finalizers": ["f"],
        "managedFields": [{"manager": "m", "operation": "Apply"}]
    });
    schemas.validate(&full_meta).unwrap();
}

#[test]
fn go_re2_case_insensitive_pattern_is_enforced() {
    let Some(_) = reference() else { return };
    let schemas = schema::reference_schemas().unwrap();
    let mk = |issuer: &str| {
        json!({
            "apiVersion": "operator.openshift.io/v1alpha1",
            "kind": "SpireOIDCDiscoveryProvider",
            "metadata": {"name": "cluster"},
            "spec": {"jwtIssuer": issuer}
        })
    };
    schemas.validate(&mk("HTTPS://OIDC.example.com")).unwrap();
    let errors = schemas.validate(&mk("oidc.example.com")).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("spec.jwtIssuer: Invalid value")),
        "{errors:#?}"
    );
    let errors = schemas
        .validate(&mk("https://oidc.example.com/a b"))
        .unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("spec.jwtIssuer:")),
        "{errors:#?}"
    );
}

#[test]
fn singleton_rule_is_enforced() {
    let Some(_) = reference() else { return };
    let schemas = schema::reference_schemas().unwrap();
    let obj = json!({
        "apiVersion": "operator.openshift.io/v1alpha1",
        "kind": "ZeroTrustWorkloadIdentityManager",
        "metadata": {"name": "not-cluster"},
        "spec": {}
    });
    let errors = schemas.validate(&obj).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("metadata.name: Invalid value")),
        "{errors:#?}"
    );
}

#[test]
fn large_crds_validate_lazily() {
    let Some(_) = reference() else { return };
    let schemas = schema::reference_schemas().unwrap();
    let argocd = json!({
        "apiVersion": "argoproj.io/v1beta1",
        "kind": "ArgoCD",
        "metadata": {"name": "openshift-gitops", "namespace": "ztwim-gitops"},
        "spec": {"server": {"route": {"enabled": true}}, "ha": {"enabled": false}}
    });
    schemas.validate(&argocd).unwrap();
    let mut bad = argocd.clone();
    bad["spec"]["server"]["rout"] = json!({});
    let errors = schemas.validate(&bad).unwrap_err();
    assert_eq!(
        errors,
        vec!["spec.server.rout: unknown field \"spec.server.rout\" (field not declared in schema)"]
    );
    assert!(schemas.has("argoproj.io/v1alpha1", "ApplicationSet"));
    assert!(!schemas.has("argoproj.io/v1beta1", "Nope"));
}

#[test]
fn conversion_semantics_on_a_synthetic_crd() {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "size": {"x-kubernetes-int-or-string": true,
                                     "anyOf": [{"type": "integer"}, {"type": "string"}]},
                            "note": {"type": "string", "nullable": true},
                            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "count": {"type": "integer", "minimum": 0, "maximum": 3}
                        }
                    }
                }
            }}}]
        }
    });
    let schemas = CrdSchemas::from_crds(&[crd]).unwrap();
    let ok = |spec: Value| {
        schemas.validate(&json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec}))
    };
    ok(json!({"size": 3})).unwrap();
    ok(json!({"size": "3Gi", "note": null, "free": {"a": {"b": 1}}, "labels": {"x": "y"}, "count": 3})).unwrap();
    assert!(ok(json!({"size": true})).unwrap_err()[0].starts_with("spec.size: Invalid value"));
    assert!(
        ok(json!({"size": 1, "labels": {"x": 1}})).unwrap_err()[0]
            .starts_with("spec.labels.x: Invalid value")
    );
    assert!(
        ok(json!({"size": 1, "count": 4})).unwrap_err()[0].starts_with("spec.count: Invalid value")
    );
    assert_eq!(
        ok(json!({})).unwrap_err(),
        vec!["spec.size: Required value".to_string()]
    );
    assert!(
        schemas
            .validate(&json!({"apiVersion": "example.com/v2", "kind": "Widget"}))
            .is_err()
    );
}
