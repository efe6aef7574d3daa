//! Preflight checks: small named values returning warnings and errors, all run and reported together.
//! Errors refuse the run (exit 2, nothing touched) unless `--ignore-preflight-errors` names the check
//! (or says `all`); ignored errors become warnings.

use anyhow::Result;
use futures::future::BoxFuture;

use crate::error::Error;

#[derive(Debug, Default)]
pub struct Outcome {
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome::default()
    }

    pub fn error(msg: impl Into<String>) -> Outcome {
        Outcome {
            warnings: vec![],
            errors: vec![msg.into()],
        }
    }

    pub fn warning(msg: impl Into<String>) -> Outcome {
        Outcome {
            warnings: vec![msg.into()],
            errors: vec![],
        }
    }

    pub fn from_result(result: Result<Outcome>) -> Outcome {
        result.unwrap_or_else(|e| Outcome::error(crate::error::one_line(&e)))
    }
}

pub trait Check<C>: Sync {
    fn name(&self) -> &'static str;
    fn run<'a>(&'a self, ctx: &'a C) -> BoxFuture<'a, Outcome>;
}

/// `--ignore-preflight-errors NAME,...|all`.
#[derive(Debug, Clone, Default)]
pub struct Ignore(pub Vec<String>);

impl Ignore {
    pub fn validate(&self, names: &[&str]) -> Result<()> {
        for name in &self.0 {
            if name != "all" && !names.contains(&name.as_str()) {
                return Err(crate::error::input(format!(
                    "--ignore-preflight-errors {name}: no such check (checks: {}, or all)",
                    names.join(", ")
                )));
            }
        }
        Ok(())
    }

    fn ignores(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == "all" || n == name)
    }
}

/// Runs every check; returns the warnings (including ignored errors), or one error listing every failure.
pub async fn run<C: Sync>(
    checks: &[&dyn Check<C>],
    ctx: &C,
    ignore: &Ignore,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for check in checks {
        let outcome = check.run(ctx).await;
        let name = check.name();
        warnings.extend(
            outcome
                .warnings
                .into_iter()
                .map(|w| format!("[{name}] {w}")),
        );
        for e in outcome.errors {
            if ignore.ignores(name) {
                warnings.push(format!("[{name}] ignored: {e}"));
            } else {
                errors.push(format!("[{name}] {e}"));
            }
        }
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        let names: Vec<&str> = errors
            .iter()
            .filter_map(|e| e.strip_prefix('[').and_then(|e| e.split(']').next()))
            .collect();
        Err(Error::Preflight(format!(
            "preflight failed: {} (nothing was changed; to go ahead anyway: --ignore-preflight-errors {})",
            errors.join("; "),
            names.join(",")
        ))
        .into())
    }
}
