//! Error kinds and the exit codes they map to. Every failure that reaches [`crate::run`] is an
//! [`anyhow::Error`]; its kind comes from the first [`Error`] found in its chain (default:
//! [`ExitCode::Failure`]). Exit codes are stable and documented in `docs/cli.md`.

use std::fmt;

/// The process exit codes of ztwim-hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: everything asked for was done and verified.
    Success = 0,
    /// 1: a cluster operation failed (API error, rejected object, conflict).
    Failure = 1,
    /// 2: bad input or failed preflight; no cluster was changed.
    Usage = 2,
    /// 3: the change was applied but verification failed.
    Verification = 3,
    /// 4: a wait ran out of time.
    Timeout = 4,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A typed failure with the exit code it maps to. The message is one line: what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's input (flags, files, kubeconfig, profile, templates) is wrong; nothing was touched.
    #[error("{0}")]
    Input(String),
    /// A preflight check refused the run; nothing was touched.
    #[error("{0}")]
    Preflight(String),
    /// Verification of the result failed.
    #[error("{0}")]
    Verification(String),
    /// A wait ran out of time.
    #[error("{0}")]
    Timeout(String),
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Input(_) | Error::Preflight(_) => ExitCode::Usage,
            Error::Verification(_) => ExitCode::Verification,
            Error::Timeout(_) => ExitCode::Timeout,
        }
    }
}

/// Shorthand for an input error.
pub fn input(msg: impl fmt::Display) -> anyhow::Error {
    Error::Input(msg.to_string()).into()
}

/// The exit code for any error: the kind of the first typed [`Error`] in its chain.
pub fn exit_code_of(err: &anyhow::Error) -> ExitCode {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Error>())
        .map(Error::exit_code)
        .unwrap_or(ExitCode::Failure)
}

/// A new error with `msg` and the same exit code as `err`.
pub fn with_message(err: &anyhow::Error, msg: String) -> anyhow::Error {
    match err.chain().find_map(|c| c.downcast_ref::<Error>()) {
        Some(Error::Input(_)) => Error::Input(msg).into(),
        Some(Error::Preflight(_)) => Error::Preflight(msg).into(),
        Some(Error::Verification(_)) => Error::Verification(msg).into(),
        Some(Error::Timeout(_)) => Error::Timeout(msg).into(),
        None => anyhow::anyhow!(msg),
    }
}

/// One line for the user: the context chain joined with ": ".
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || parts.last().is_some_and(|last| last.ends_with(text)) {
            continue;
        }
        parts.push(text.replace('\n', " "));
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_code_comes_from_the_typed_error_in_the_chain() {
        let err = Err::<(), _>(input("bad flag"))
            .context("render bootstrap")
            .unwrap_err();
        assert_eq!(exit_code_of(&err), ExitCode::Usage);
        assert_eq!(one_line(&err), "render bootstrap: bad flag");
        let plain = anyhow::anyhow!("boom");
        assert_eq!(exit_code_of(&plain), ExitCode::Failure);
    }
}
