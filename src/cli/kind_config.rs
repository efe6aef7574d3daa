//! `ztwim-hub kind-config`: kind cluster configs for a hub and its spokes, and each spoke's initial
//! kube-apiserver authentication file (docs/kind.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::error;
use crate::kind::authn::AuthenticationConfiguration;
use crate::kind::{self, Cluster, KubeadmApi};
use crate::output::{OutputFormat, Printer};
use crate::validate;

/// Write kind cluster configs for a hub and its spokes, offline.
///
/// DIR/<hub>.yaml: the hub's control-plane node maps NodePort 30443 (where the SPIRE OIDC discovery
/// provider is to be served) to 127.0.0.1:<--oidc-host-port>. Other kind clusters on the docker network
/// `kind` reach the issuer as https://<hub>-control-plane:30443.
///
/// DIR/<spoke>.yaml: the spoke's kube-apiserver runs with
/// --authentication-config=/etc/kubernetes/ztwim-authn/authentication-config.yaml, the directory
/// DIR/<spoke>-authn mounted into the node (kind extraMounts) and into the apiserver pod (kubeadm
/// extraVolumes). DIR/<spoke>-authn/authentication-config.yaml starts with no JWT authenticator; add-spoke
/// --authn-config-dir DIR/<spoke>-authn replaces it, and the apiserver reloads it without a restart.
///
/// The node image is kind's default: ztwim-hub pins none (kind v0.32.0 defaults to kindest/node:v1.36.1,
/// which kind configures through kubeadm v1beta4). With kind v0.31 or older, or an older node image
/// (kind create cluster --image, Kubernetes < 1.36), use --kubeadm-api v1beta3.
///
/// A file that exists with other content is not replaced without --force; identical files are left as
/// they are. Progress and the `kind create cluster` commands go to stderr; -o json|yaml prints them as
/// data on stdout.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  ztwim-hub kind-config --hub hub --spoke spoke-a --spoke spoke-b --dir kind/\n  kind create cluster --name hub --config kind/hub.yaml\n  kind create cluster --name spoke-a --config kind/spoke-a.yaml"
)]
pub struct KindConfigArgs {
    /// Required: name of the hub's kind cluster (a DNS-1123 label of at most 49 characters).
    #[arg(long, value_name = "NAME")]
    pub hub: Option<String>,
    /// Required, repeatable: name of a spoke's kind cluster (distinct from the other names).
    #[arg(long = "spoke", value_name = "NAME")]
    pub spokes: Vec<String>,
    /// Required: directory for the files (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Port on 127.0.0.1 of this machine that reaches the hub's OIDC NodePort 30443.
    #[arg(long, value_name = "PORT", default_value_t = kind::OIDC_NODE_PORT,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub oidc_host_port: u16,
    /// kubeadm API of the spokes' ClusterConfiguration patch: v1beta4 writes extraArgs as a list of
    /// {name, value}, v1beta3 as a map (which kind v0.32+ also converts for v1beta4).
    #[arg(long, value_enum, value_name = "API", default_value = "v1beta4")]
    pub kubeadm_api: KubeadmApi,
    /// Replace files that exist with other content (a spoke's authentication file then loses the JWT
    /// authenticator add-spoke wrote).
    #[arg(long)]
    pub force: bool,
}

/// One file to write and what happened to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum FileStatus {
    Written,
    Unchanged,
    Replaced,
}

struct Planned {
    path: PathBuf,
    text: String,
    status: FileStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KindConfigResult {
    hub: HubResult,
    spokes: Vec<SpokeResult>,
    files: Vec<FileResult>,
    commands: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HubResult {
    name: String,
    config: PathBuf,
    issuer_url: String,
    host_url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpokeResult {
    name: String,
    config: PathBuf,
    authn_config_dir: PathBuf,
    kubeadm_api: &'static str,
}

#[derive(Serialize)]
struct FileResult {
    path: PathBuf,
    status: FileStatus,
}

/// The flags, checked: every name a distinct DNS label that fits kind's container names.
struct Inputs<'a> {
    hub: &'a str,
    spokes: &'a [String],
    dir: &'a Path,
}

pub fn exec(args: &KindConfigArgs, printer: &Printer) -> anyhow::Result<()> {
    let inputs = check(args)?;
    std::fs::create_dir_all(inputs.dir).map_err(|e| {
        error::input(format!(
            "--dir {}: cannot create the directory ({e})",
            inputs.dir.display()
        ))
    })?;
    let dir = std::fs::canonicalize(inputs.dir)
        .map_err(|e| error::input(format!("--dir {}: {e}", inputs.dir.display())))?;

    let mut planned = Vec::new();
    let hub_config = dir.join(format!("{}.yaml", inputs.hub));
    planned.push(plan(
        &hub_config,
        Cluster::hub(inputs.hub, args.oidc_host_port).to_yaml()?,
        args.force,
    )?);
    let mut spokes = Vec::new();
    let initial = AuthenticationConfiguration::initial().to_yaml()?;
    for spoke in inputs.spokes {
        let authn_dir = dir.join(format!("{spoke}-authn"));
        let config = dir.join(format!("{spoke}.yaml"));
        planned.push(plan(
            &config,
            Cluster::spoke(spoke, &authn_dir, args.kubeadm_api)?.to_yaml()?,
            args.force,
        )?);
        planned.push(plan(
            &authn_dir.join(kind::AUTHN_CONFIG_FILE),
            initial.clone(),
            args.force,
        )?);
        spokes.push(SpokeResult {
            name: spoke.clone(),
            config,
            authn_config_dir: authn_dir,
            kubeadm_api: args.kubeadm_api.api_version(),
        });
    }

    // Every refusal happened above: now write.
    for spoke in &spokes {
        std::fs::create_dir_all(&spoke.authn_config_dir).map_err(|e| {
            error::input(format!(
                "{}: cannot create the directory ({e})",
                spoke.authn_config_dir.display()
            ))
        })?;
    }
    for p in planned.iter().filter(|p| p.status != FileStatus::Unchanged) {
        kind::write_atomically(&p.path, p.text.as_bytes())?;
    }

    let hub = HubResult {
        name: inputs.hub.to_string(),
        config: hub_config,
        issuer_url: kind::issuer_url(inputs.hub),
        host_url: format!("https://127.0.0.1:{}", args.oidc_host_port),
    };
    let commands: Vec<String> = std::iter::once((&hub.name, &hub.config))
        .chain(spokes.iter().map(|s| (&s.name, &s.config)))
        .map(|(name, config)| {
            format!(
                "kind create cluster --name {name} --config {}",
                shell_word(&config.to_string_lossy())
            )
        })
        .collect();
    let result = KindConfigResult {
        hub,
        spokes,
        files: planned
            .into_iter()
            .map(|p| FileResult {
                path: p.path,
                status: p.status,
            })
            .collect(),
        commands,
    };
    match printer.format() {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(&result)?;
            text.push('\n');
            printer.data(&text)?;
        }
        OutputFormat::Yaml => printer.data(&serde_saphyr::to_string(&result)?)?,
        OutputFormat::Text => print_text(&result, printer),
    }
    Ok(())
}

fn print_text(result: &KindConfigResult, printer: &Printer) {
    for f in &result.files {
        let what = match f.status {
            FileStatus::Written => "wrote",
            FileStatus::Unchanged => "unchanged",
            FileStatus::Replaced => "replaced (--force)",
        };
        printer.info(format!("{what} {}", f.path.display()));
    }
    printer.info(format!(
        "issuer URL: {} (for the kind clusters; serve the SPIRE OIDC discovery provider on NodePort {} of {}, \
         with that name in its certificate; from this machine: {})",
        result.hub.issuer_url,
        kind::OIDC_NODE_PORT,
        kind::control_plane_host(&result.hub.name),
        result.hub.host_url
    ));
    printer.info("create the clusters:");
    for command in &result.commands {
        printer.info(format!("  {command}"));
    }
    for spoke in &result.spokes {
        printer.info(format!(
            "then, for {}: ztwim-hub add-spoke ... --authn-config-dir {}",
            spoke.name,
            shell_word(&spoke.authn_config_dir.to_string_lossy())
        ));
    }
}

/// Required flags present; names DNS-1123 labels short enough for `<name>-control-plane`, all distinct.
fn check(args: &KindConfigArgs) -> anyhow::Result<Inputs<'_>> {
    let hub = args.hub.as_deref().ok_or_else(|| {
        error::input(
            "--hub is required: the name of the hub's kind cluster (for example --hub hub)",
        )
    })?;
    if args.spokes.is_empty() {
        return Err(error::input(
            "--spoke is required: the name of a spoke's kind cluster (repeat it for several spokes)",
        ));
    }
    let dir = args.dir.as_deref().ok_or_else(|| {
        error::input("--dir is required: the directory for the kind configs (created if missing)")
    })?;
    let names =
        std::iter::once(("--hub", hub)).chain(args.spokes.iter().map(|s| ("--spoke", s.as_str())));
    let mut seen = BTreeSet::new();
    for (flag, name) in names {
        validate::dns1123_label(flag, name).map_err(error::input)?;
        if name.len() > kind::MAX_CLUSTER_NAME {
            return Err(error::input(format!(
                "{flag} {name:?} is too long: kind names the node container {name}{}, which must be a \
                 DNS label, so at most {} characters",
                kind::CONTROL_PLANE_SUFFIX,
                kind::MAX_CLUSTER_NAME
            )));
        }
        if !seen.insert(name) {
            return Err(error::input(format!(
                "{flag} {name:?} is given twice: the hub and each spoke need their own kind cluster name"
            )));
        }
    }
    Ok(Inputs {
        hub,
        spokes: &args.spokes,
        dir,
    })
}

/// What writing `text` to `path` would do; an existing file with other content is refused without
/// `force`.
fn plan(path: &Path, text: String, force: bool) -> anyhow::Result<Planned> {
    let status = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileStatus::Written,
        Err(e) => {
            return Err(error::input(format!("{}: {e}", path.display())));
        }
        Ok(meta) if !meta.is_file() => {
            return Err(error::input(format!(
                "{} exists and is not a regular file; remove it or choose another --dir",
                path.display()
            )));
        }
        Ok(_) => {
            let existing = std::fs::read(path)
                .map_err(|e| error::input(format!("{}: cannot read it ({e})", path.display())))?;
            if existing == text.as_bytes() {
                FileStatus::Unchanged
            } else if force {
                FileStatus::Replaced
            } else {
                return Err(error::input(format!(
                    "{} exists with other content; not replaced (pass --force to overwrite it)",
                    path.display()
                )));
            }
        }
    };
    Ok(Planned {
        path: path.to_path_buf(),
        text,
        status,
    })
}

/// `word` as one POSIX shell word (single-quoted when it has anything but safe characters).
fn shell_word(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("/tmp/kind/hub.yaml"), "/tmp/kind/hub.yaml");
        assert_eq!(shell_word("/tmp/my dir/hub.yaml"), "'/tmp/my dir/hub.yaml'");
        assert_eq!(shell_word("/tmp/it's"), "'/tmp/it'\\''s'");
    }
}
