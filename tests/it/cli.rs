//! The command surface: help, version, completions.

use crate::support::*;

#[test]
fn help_lists_only_commands_that_work() {
    let out = ztwim(["--help"]).success();
    let commands: Vec<&str> = out
        .stdout
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "render",
            "bootstrap",
            "add-spoke",
            "remove-spoke",
            "kind-config",
            "completions",
            "help"
        ]
    );
    for flag in [
        "--kubeconfig",
        "--output",
        "--profile",
        "--templates-dir",
        "--verbose",
        "--quiet",
        "--no-color",
    ] {
        assert!(out.stdout.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn render_help_teaches_with_examples() {
    let out = ztwim(["render", "--help"]).success();
    assert!(
        out.stdout
            .contains("ztwim-hub render bootstrap --profile openshift --app-domain"),
        "{}",
        out.stdout
    );
    let out = ztwim(["render", "add-spoke", "--help"]).success();
    for flag in [
        "--spoke-ca-file",
        "--insecure-skip-tls-verify",
        "--issuer-ca-file",
        "--rbac",
        "--output-dir",
    ] {
        assert!(out.stdout.contains(flag), "{flag}");
    }
}

#[test]
fn version_is_printed() {
    let out = ztwim(["--version"]).success();
    assert_eq!(
        out.stdout.trim(),
        format!("ztwim-hub {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = ztwim(["completions", shell]).success();
        assert!(out.stdout.contains("add-spoke"), "{shell}");
    }
    ztwim(["completions", "tcsh"]).bad_input("invalid value 'tcsh'");
}

#[test]
fn no_subcommand_shows_help_and_fails() {
    let out = ztwim(Vec::<&str>::new());
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("Usage: ztwim-hub"), "{}", out.stderr);
}
