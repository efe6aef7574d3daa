//! Every rendered custom resource validates against its upstream CRD schema, and every built-in object
//! round-trips through its k8s-openapi type unchanged. The upstream samples that are known not to validate
//! must fail the same validator: proof that it can fail.

use std::path::Path;

use kubesim::schema::{CrdSchemas, SKIP_MESSAGE, parse_yaml_documents, reference_dir};
use serde_json::Value;

use crate::support::*;

/// Every variant of the render commands we ship, so every template branch is validated.
fn rendered_variants() -> Vec<Vec<String>> {
    let mut variants = vec![
        with(BOOTSTRAP, &[], &[]),
        with(
            BOOTSTRAP,
            &[
                ("--exec-auth-sha256", &"ab".repeat(32)),
                ("--gitops-namespace", "platform-gitops"),
            ],
            &[],
        ),
        with(ADD_SPOKE, &[], &[]),
        with(
            ADD_SPOKE,
            &[("--spoke-version", "4.20"), ("--rbac", "least-privilege")],
            &["--issuer-ca-file"],
        ),
        with(
            ADD_SPOKE,
            &[
                ("--insecure-skip-tls-verify", ""),
                ("--audience", "spoke-a"),
            ],
            &["--spoke-ca-file"],
        ),
    ];
    // The kind profile: its ClusterSPIFFEIDs validate against the spire-controller-manager CRD.
    variants.push(crate::render_kind::kind_bootstrap_args());
    for v in &mut variants {
        v.extend(["-o".to_string(), "json".to_string()]);
    }
    variants
}

fn rendered_objects() -> Vec<Value> {
    rendered_variants()
        .into_iter()
        .flat_map(|args| {
            let out = ztwim(&args).success();
            let docs: Value = serde_json::from_str(&out.stdout).unwrap();
            docs.as_array().unwrap().clone()
        })
        .collect()
}

/// The reference CRDs, one set per feature-set variant of a CRD (Authentication has two).
fn schema_sets(dir: &Path) -> Vec<(String, CrdSchemas)> {
    let crds = dir.join("crds");
    let mut default = Vec::new();
    let mut tech_preview = Vec::new();
    for group in std::fs::read_dir(&crds).unwrap() {
        for file in std::fs::read_dir(group.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let docs = parse_yaml_documents(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.contains("TechPreviewNoUpgrade") {
                tech_preview.extend(docs);
            } else {
                default.extend(docs);
            }
        }
    }
    let default_set = CrdSchemas::from_crds(&default).unwrap();
    let mut tech_preview_set = CrdSchemas::from_crds(&tech_preview).unwrap();
    for crd in &default {
        tech_preview_set.add_crd(crd).unwrap();
    }
    vec![
        ("Default".into(), default_set),
        ("TechPreviewNoUpgrade".into(), tech_preview_set),
    ]
}

#[test]
fn every_rendered_custom_resource_validates_against_its_upstream_crd() {
    let Some(dir) = reference_dir() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let objects = rendered_objects();
    let mut validated = 0;
    for (feature_set, schemas) in schema_sets(&dir) {
        for obj in &objects {
            let api_version = obj["apiVersion"].as_str().unwrap();
            let kind = obj["kind"].as_str().unwrap();
            let built_in = !api_version.contains('.')
                || api_version.ends_with(".k8s.io/v1")
                || api_version.starts_with("rbac.authorization.k8s.io/");
            if built_in {
                continue;
            }
            assert!(
                schemas.has(api_version, kind),
                "no upstream CRD for {api_version} {kind}"
            );
            if let Err(errors) = schemas.validate(obj) {
                panic!(
                    "{feature_set}: {kind} {} does not validate:\n{}",
                    obj["metadata"]["name"],
                    errors.join("\n")
                );
            }
            validated += 1;
        }
    }
    assert!(
        validated >= 20,
        "validated only {validated} custom resources"
    );
}

#[test]
fn every_rendered_built_in_object_round_trips_through_its_k8s_openapi_type() {
    use k8s_openapi::api::{
        apps::v1 as apps, core::v1 as core, rbac::v1 as rbac, storage::v1 as storage,
    };
    fn same<K: serde::de::DeserializeOwned + serde::Serialize>(obj: &Value) {
        let typed: K = serde_json::from_value(obj.clone()).unwrap();
        assert_eq!(&serde_json::to_value(typed).unwrap(), obj);
    }
    let mut checked = 0;
    for obj in rendered_objects() {
        // Upstream release manifests (here our look-alike fixtures) are applied as published, by design.
        let upstream = obj.pointer("/metadata/labels/app.kubernetes.io~1part-of")
            == Some(&"argocd".into())
            || obj["kind"] == "CustomResourceDefinition"
            || obj["kind"] == "NetworkPolicy";
        if upstream {
            continue;
        }
        match (
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
        ) {
            ("v1", "Namespace") => same::<core::Namespace>(&obj),
            ("v1", "ConfigMap") => same::<core::ConfigMap>(&obj),
            ("v1", "Secret") => same::<core::Secret>(&obj),
            ("v1", "ServiceAccount") => same::<core::ServiceAccount>(&obj),
            ("v1", "Service") => same::<core::Service>(&obj),
            ("apps/v1", "Deployment") => same::<apps::Deployment>(&obj),
            ("apps/v1", "DaemonSet") => same::<apps::DaemonSet>(&obj),
            ("apps/v1", "StatefulSet") => same::<apps::StatefulSet>(&obj),
            ("storage.k8s.io/v1", "CSIDriver") => same::<storage::CSIDriver>(&obj),
            ("rbac.authorization.k8s.io/v1", "Role") => same::<rbac::Role>(&obj),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => same::<rbac::RoleBinding>(&obj),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => same::<rbac::ClusterRole>(&obj),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                same::<rbac::ClusterRoleBinding>(&obj)
            }
            (api_version, kind) => {
                assert!(
                    api_version.contains('.'),
                    "built-in {api_version} {kind} is not checked here"
                );
                continue;
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "checked only {checked} built-in objects");
}

#[test]
fn the_validator_rejects_the_upstream_samples_that_do_not_validate_and_accepts_the_others() {
    let Some(dir) = reference_dir() else {
        eprintln!("{SKIP_MESSAGE}");
        return;
    };
    let schemas = &schema_sets(&dir)[0].1;
    let mut rejected = 0;
    let mut accepted = 0;
    for source in std::fs::read_dir(dir.join("samples")).unwrap() {
        let source = source.unwrap().path();
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(path.file_name().unwrap(), "does-not-validate");
                for bad in std::fs::read_dir(&path).unwrap() {
                    let bad = bad.unwrap().path();
                    for doc in
                        parse_yaml_documents(&std::fs::read_to_string(&bad).unwrap()).unwrap()
                    {
                        assert!(
                            schemas.validate(&doc).is_err(),
                            "{} validated but must not",
                            bad.display()
                        );
                        rejected += 1;
                    }
                }
            } else {
                for doc in parse_yaml_documents(&std::fs::read_to_string(&path).unwrap()).unwrap() {
                    if let Err(errors) = schemas.validate(&doc) {
                        panic!("{} does not validate: {errors:?}", path.display());
                    }
                    accepted += 1;
                }
            }
        }
    }
    assert!(
        rejected >= 3 && accepted >= 5,
        "rejected {rejected}, accepted {accepted}"
    );
}
