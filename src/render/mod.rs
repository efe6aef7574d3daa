//! Rendering: the minijinja environment over `templates/` (embedded in the binary, overridable file by
//! file with `--templates-dir`), the typed values the templates see, and the plan they produce.
//!
//! Templates see two values: `p`, the profile (see `profiles/`), and `v`, the resolved values of the
//! workflow ([`values::BootstrapValues`] or [`values::SpokeValues`]). An undefined value is an error.

pub mod hub;
pub mod object;
pub mod plan;
pub mod tls;
pub mod upstream;
pub mod values;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use include_dir::{Dir, include_dir};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;

use crate::error;

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The template environment.
pub struct Renderer {
    env: Environment<'static>,
}

impl Renderer {
    /// `override_dir`: files there replace the embedded templates with the same relative path.
    pub fn new(override_dir: Option<&Path>) -> Result<Renderer> {
        if let Some(dir) = override_dir
            && !dir.is_dir()
        {
            return Err(error::input(format!(
                "--templates-dir {}: not a directory (give a directory laid out like templates/ in the source)",
                dir.display()
            )));
        }
        let dir: Option<PathBuf> = override_dir.map(Path::to_path_buf);
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_loader(move |name| {
            if let Some(dir) = &dir {
                let path = dir.join(name);
                if path.is_file() {
                    return std::fs::read_to_string(&path).map(Some).map_err(|e| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("cannot read {}: {e}", path.display()),
                        )
                    });
                }
            }
            Ok(TEMPLATES
                .get_file(name)
                .and_then(|f| f.contents_utf8())
                .map(str::to_string))
        });
        env.add_filter("b64encode", |value: String| {
            base64::engine::general_purpose::STANDARD.encode(value.as_bytes())
        });
        Ok(Renderer { env })
    }

    /// Renders one template and parses its YAML documents (empty documents are dropped).
    pub fn render_documents(&self, template: &str, context: &Value) -> Result<Vec<Value>> {
        let tmpl = self
            .env
            .get_template(template)
            .map_err(|e| error::input(format!("template {template}: {}", describe(&e))))?;
        let text = tmpl
            .render(minijinja::value::Serde(context))
            .map_err(|e| error::input(format!("template {template}: {}", describe(&e))))?;
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| {
            error::input(format!(
                "template {template} does not render valid YAML: {}",
                e.to_string().lines().next().unwrap_or_default()
            ))
        })?;
        Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
    }
}

/// The names of the embedded templates (for listing and tests).
pub fn embedded_template_names() -> Vec<String> {
    fn walk(dir: &Dir<'_>, out: &mut Vec<String>) {
        for file in dir.files() {
            out.push(file.path().to_string_lossy().into_owned());
        }
        for sub in dir.dirs() {
            walk(sub, out);
        }
    }
    let mut names = Vec::new();
    walk(&TEMPLATES, &mut names);
    names.sort();
    names
}

fn describe(err: &minijinja::Error) -> String {
    let mut msg = match err.kind() {
        minijinja::ErrorKind::TemplateNotFound => {
            "no such template (embedded or in --templates-dir)".to_string()
        }
        _ => err
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string()),
    };
    if err.kind() == minijinja::ErrorKind::UndefinedError && err.detail().is_none() {
        msg = "a value the template uses is undefined".into();
    }
    if let Some(line) = err.line() {
        msg = format!("line {line}: {msg}");
    }
    msg
}

/// Adds context to an error from rendering a step.
pub(crate) fn in_step<T>(result: Result<T>, step: &str) -> Result<T> {
    result.with_context(|| format!("step {step}"))
}
