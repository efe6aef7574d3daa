//! A plan: the objects a workflow applies, in order, each with the step, the cluster and the template it
//! comes from. `render` prints it; the live commands apply it step by step, so both show the same data.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

use super::Renderer;
use super::object::Object;
use crate::error;
use crate::profile::{Side, StepManifests};

#[derive(Debug, Clone)]
pub struct Planned {
    pub step: String,
    pub side: Side,
    /// `hub`, or the spoke's name.
    pub cluster: String,
    pub template: String,
    pub object: Object,
    /// Holds a private key bootstrap generated: applied, never printed or written to files.
    pub sensitive: bool,
}

impl Planned {
    /// The line that stands in for a sensitive object in printed plans.
    fn withheld(&self) -> String {
        format!(
            "# {} holds a private key ztwim-hub generates: it is applied, never printed. To apply these files yourself, create it (keys tls.crt, tls.key, ca.crt) first.\n",
            self.object.display_name()
        )
    }
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub objects: Vec<Planned>,
}

impl Plan {
    /// Renders every step's templates with `{p: profile, v: values}`.
    pub fn render<V: Serialize>(
        renderer: &Renderer,
        steps: &[StepManifests],
        profile: &crate::profile::Profile,
        values: &V,
        spoke_name: Option<&str>,
    ) -> Result<Plan> {
        let context = json!({ "p": profile, "v": values });
        let mut plan = Plan::default();
        for step in steps {
            for template in &step.templates {
                let docs =
                    super::in_step(renderer.render_documents(template, &context), &step.step)?;
                for doc in docs {
                    let object = Object::from_value(doc).map_err(|why| {
                        error::input(format!("step {}: template {template}: {why}", step.step))
                    })?;
                    let cluster = match step.cluster {
                        Side::Hub => "hub".to_string(),
                        Side::Spoke => spoke_name.unwrap_or("spoke").to_string(),
                    };
                    plan.objects.push(Planned {
                        step: step.step.clone(),
                        side: step.cluster,
                        cluster,
                        template: template.clone(),
                        object,
                        sensitive: false,
                    });
                }
            }
        }
        Ok(plan)
    }

    /// The objects of one step, in order.
    pub fn step<'a>(&'a self, step: &'a str) -> impl Iterator<Item = &'a Planned> + 'a {
        self.objects.iter().filter(move |p| p.step == step)
    }

    /// The printable objects (sensitive ones left out).
    pub fn values(&self) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|p| !p.sensitive)
            .map(|p| p.object.to_value())
            .collect()
    }

    /// Multi-document YAML, one document per object, each preceded by a comment naming its origin.
    pub fn to_yaml(&self) -> Result<String> {
        let mut out = String::new();
        for planned in &self.objects {
            out.push_str("---\n");
            out.push_str(&format!(
                "# cluster: {}, step: {}, template: {}\n",
                planned.cluster, planned.step, planned.template
            ));
            if planned.sensitive {
                out.push_str(&planned.withheld());
                continue;
            }
            out.push_str(&to_yaml(&planned.object.to_value())?);
        }
        Ok(out)
    }

    /// A JSON array of the objects.
    pub fn to_json(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(&self.values())?;
        text.push('\n');
        Ok(text)
    }

    /// Writes `DIR/<cluster>/NN-<kind>-<name>.yaml` and a `kustomization.yaml` per cluster.
    /// Returns the files written.
    pub fn write_dir(&self, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
        let mut clusters: Vec<&str> = Vec::new();
        for planned in &self.objects {
            if !clusters.contains(&planned.cluster.as_str()) {
                clusters.push(&planned.cluster);
            }
        }
        let mut written = Vec::new();
        for cluster in clusters {
            let cluster_dir = dir.join(cluster);
            std::fs::create_dir_all(&cluster_dir).map_err(|e| {
                error::input(format!(
                    "--output-dir: cannot create {} ({e})",
                    cluster_dir.display()
                ))
            })?;
            let mut resources = Vec::new();
            for (i, planned) in self
                .objects
                .iter()
                .filter(|p| p.cluster == cluster && !p.sensitive)
                .enumerate()
            {
                let file = format!(
                    "{:02}-{}-{}.yaml",
                    i + 1,
                    planned.object.kind().to_ascii_lowercase(),
                    planned.object.name().replace('.', "-")
                );
                let text = format!(
                    "# Rendered by ztwim-hub {} (step {}, template {}).\n{}",
                    env!("CARGO_PKG_VERSION"),
                    planned.step,
                    planned.template,
                    to_yaml(&planned.object.to_value())?
                );
                let path = cluster_dir.join(&file);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                written.push(path);
                resources.push(file);
            }
            let path = cluster_dir.join("kustomization.yaml");
            let kustomization = merge_kustomization(&path, resources)?;
            std::fs::write(
                &path,
                format!(
                    "# Rendered by ztwim-hub; files in apply order.\n{}",
                    to_yaml(&kustomization)?
                ),
            )
            .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }
}

/// The kustomization for `resources`: a new one, or the existing one at `path` with the resources it
/// lacks appended (so `render add-spoke --output-dir` adds the spoke's cluster Secret to the hub's
/// directory without dropping what `render bootstrap` wrote there).
fn merge_kustomization(path: &Path, resources: Vec<String>) -> Result<Value> {
    let mut kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [],
    });
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let existing: Value = serde_saphyr::from_str(&text).map_err(|e| {
            error::input(format!(
                "--output-dir: {} is not a kustomization ({e})",
                path.display()
            ))
        })?;
        if existing.get("kind").and_then(Value::as_str) != Some("Kustomization") {
            return Err(error::input(format!(
                "--output-dir: {} exists but is not a Kustomization; choose another directory",
                path.display()
            )));
        }
        kustomization = existing;
    }
    let list = kustomization
        .as_object_mut()
        .expect("a Kustomization is a mapping")
        .entry("resources")
        .or_insert_with(|| json!([]));
    let Value::Array(list) = list else {
        return Err(error::input(format!(
            "--output-dir: {}: resources is not a list",
            path.display()
        )));
    };
    for resource in resources {
        if !list.iter().any(|r| r.as_str() == Some(resource.as_str())) {
            list.push(Value::String(resource));
        }
    }
    Ok(kustomization)
}

pub fn to_yaml(value: &Value) -> Result<String> {
    let mut text = serde_saphyr::to_string(value).context("serializing YAML")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}
