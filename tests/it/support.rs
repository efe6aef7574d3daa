//! A small builder that runs the real binary, and helpers to read what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// The finished run of `ztwim-hub`.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts a bad-input failure: exit code 2, exactly one line on stderr that contains `needle`,
    /// and nothing on stdout.
    #[track_caller]
    pub fn bad_input(self, needle: &str) -> Self {
        assert_eq!(
            self.code, 2,
            "expected exit 2\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one line on stderr, got:\n{}",
            self.stderr
        );
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        assert!(
            lines[0].contains(needle),
            "expected {needle:?} in {:?}",
            lines[0]
        );
        assert!(
            self.stdout.is_empty(),
            "stdout should be empty, got:\n{}",
            self.stdout
        );
        self
    }

    /// Asserts a refusal by a live command: exit code 2, the last line on stderr is the one-line error
    /// containing `needle` (progress and warnings may come before it), nothing on stdout.
    #[track_caller]
    pub fn refused(self, needle: &str) -> Self {
        assert_eq!(
            self.code, 2,
            "expected exit 2\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("error: "), "{}", self.stderr);
        assert!(last.contains(needle), "expected {needle:?} in {last:?}");
        assert_eq!(
            self.stderr
                .lines()
                .filter(|l| l.starts_with("error:"))
                .count(),
            1,
            "{}",
            self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "stdout should be empty, got:\n{}",
            self.stdout
        );
        self
    }

    /// The YAML documents on stdout.
    pub fn documents(&self) -> Vec<Value> {
        kubesim::schema::parse_yaml_documents(&self.stdout).expect("stdout is YAML")
    }
}

/// A run of the binary, in the fixtures directory, with a clean environment.
pub struct Run {
    cmd: Command,
}

impl Run {
    pub fn new<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ztwim-hub"));
        cmd.args(args)
            .current_dir(fixtures())
            .env_remove("KUBECONFIG")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env("NO_COLOR", "1");
        Run { cmd }
    }

    pub fn arg(mut self, arg: &str) -> Run {
        self.cmd.arg(arg);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.cmd.env(key, value);
        self
    }

    #[allow(dead_code)]
    pub fn cwd(mut self, dir: &Path) -> Run {
        self.cmd.current_dir(dir);
        self
    }

    /// Starts the binary without waiting (stdout and stderr discarded).
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting ztwim-hub")
    }

    pub fn run(mut self) -> Output {
        let out = self.cmd.output().expect("running ztwim-hub");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// `ztwim-hub ARGS...` in the fixtures directory.
pub fn ztwim<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Run::new(args).run()
}

/// The README's bootstrap invocation.
pub const BOOTSTRAP: &[&str] = &[
    "render",
    "bootstrap",
    "--profile",
    "openshift",
    "--app-domain",
    "apps.hub.example.com",
    "--channel",
    "stable-v1",
];

/// The README's add-spoke invocation.
pub const ADD_SPOKE: &[&str] = &[
    "render",
    "add-spoke",
    "--profile",
    "openshift",
    "--spoke-name",
    "spoke-a",
    "--spoke-server",
    "https://api.spoke-a.example.com:6443",
    "--spoke-ca-file",
    "spoke-ca.crt",
    "--trust-domain",
    "apps.hub.example.com",
    "--issuer-url",
    "https://spire-spiffe-oidc-discovery-provider.apps.hub.example.com",
    "--issuer-ca-file",
    "ingress-ca.crt",
    "--spoke-version",
    "4.19",
];

/// `base` with some flags replaced (`--flag value`) or added, and others removed.
pub fn with(base: &[&str], set: &[(&str, &str)], remove: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < base.len() {
        let arg = base[i];
        let takes_value =
            arg.starts_with("--") && base.get(i + 1).is_some_and(|v| !v.starts_with("--"));
        if remove.contains(&arg) || set.iter().any(|(f, _)| *f == arg) {
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        out.push(arg.to_string());
        i += 1;
    }
    for (flag, value) in set {
        out.push(flag.to_string());
        if !value.is_empty() {
            out.push(value.to_string());
        }
    }
    out
}

/// The first document with this kind (and name, if given).
#[track_caller]
pub fn find<'a>(docs: &'a [Value], kind: &str, name: Option<&str>) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"] == n))
        .unwrap_or_else(|| panic!("no {kind} {name:?} in the output"))
}

pub fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The decoded `config` JSON of an Argo CD cluster Secret.
pub fn cluster_secret_config(secret: &Value) -> Value {
    use base64::Engine;
    let b64 = secret["data"]["config"].as_str().expect("data.config");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("config is JSON")
}

pub fn secret_field(secret: &Value, key: &str) -> String {
    use base64::Engine;
    let b64 = secret["data"][key].as_str().expect("data field");
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}
