//! `tests/e2e/kind.sh` cannot run here (no kind, no docker): these cheap checks keep it honest. It is valid
//! bash, shellcheck-clean when shellcheck is installed, and every `ztwim-hub` subcommand and flag it uses
//! exists in that subcommand's `--help`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

fn script() -> PathBuf {
    repo().join("tests").join("e2e").join("kind.sh")
}

/// One `"$ZTWIM_HUB" <subcommand...> <args...>` invocation of the script.
#[derive(Debug)]
struct Invocation {
    subcommand: Vec<String>,
    flags: Vec<String>,
}

/// The script's invocations of the binary: continuation lines joined, comments skipped, the arguments up to
/// the first redirection or shell operator.
fn invocations(text: &str) -> Vec<Invocation> {
    const CALL: &str = "\"$ZTWIM_HUB\" ";
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let Some(at) = line.find(CALL) else { continue };
        let mut inv = Invocation {
            subcommand: vec![],
            flags: vec![],
        };
        for word in line[at + CALL.len()..].split_whitespace() {
            if [";", "|", "||", "&&", ")"].contains(&word)
                || word.starts_with(['>', '<', '&'])
                || word.starts_with("2>")
            {
                break;
            }
            if word.starts_with('-') && word.len() > 1 {
                inv.flags
                    .push(word.split('=').next().unwrap_or(word).to_string());
            } else if inv.flags.is_empty()
                && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            {
                inv.subcommand.push(word.to_string());
            }
        }
        out.push(inv);
    }
    out
}

/// `--flag` as a whole word in `help` (so `--name` is not found in `--namespace`); `-o` as `-o,`.
fn help_has(help: &str, flag: &str) -> bool {
    if !flag.starts_with("--") {
        return help.contains(&format!("{flag}, "));
    }
    help.match_indices(flag).any(|(i, _)| {
        help[i + flag.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    })
}

#[test]
fn the_script_is_valid_bash() {
    let out = Command::new("bash")
        .arg("-n")
        .arg(script())
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_script_is_shellcheck_clean_when_shellcheck_is_installed() {
    let Ok(out) = Command::new("shellcheck").arg(script()).output() else {
        eprintln!("skipped: shellcheck is not installed");
        return;
    };
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn every_subcommand_and_flag_the_script_uses_exists() {
    let text = std::fs::read_to_string(script()).expect("tests/e2e/kind.sh");
    let calls = invocations(&text);
    let used: Vec<String> = calls.iter().map(|c| c.subcommand.join(" ")).collect();
    for expected in ["kind-config", "bootstrap", "add-spoke", "remove-spoke"] {
        assert!(
            used.iter().any(|u| u == expected),
            "the script should run {expected}; parsed {calls:?}"
        );
    }
    let mut missing = Vec::new();
    for call in &calls {
        let mut args = call.subcommand.clone();
        args.push("--help".into());
        let help = ztwim(&args).success().stdout;
        for flag in &call.flags {
            if !help_has(&help, flag) {
                missing.push(format!("{} {flag}", call.subcommand.join(" ")));
            }
        }
    }
    missing.dedup();
    assert!(
        missing.is_empty(),
        "tests/e2e/kind.sh uses flags the binary does not have: {missing:?}"
    );
}
