//! kind (`kind.x-k8s.io/v1alpha4` `Cluster`) configs for a hub and its spokes, written by
//! `ztwim-hub kind-config` (docs/kind.md), and the spokes' kube-apiserver authentication file
//! ([`authn`]).
//!
//! - The hub's control-plane node maps its NodePort [`OIDC_NODE_PORT`] (the SPIRE OIDC discovery
//!   provider) to a host port on 127.0.0.1; other kind clusters on the docker network `kind` reach it
//!   as [`issuer_url`].
//! - A spoke's kube-apiserver gets `--authentication-config` ([`AUTHN_CONFIG_IN_NODE`]): the file's
//!   directory takes two hops, a kind `extraMounts` entry (host → node container) and a kubeadm
//!   `apiServer.extraVolumes` entry (node container → the kube-apiserver static pod).
//!
//! The types decode strictly (unknown fields are errors), as kind does, and hold only the fields
//! ztwim-hub writes.

pub mod authn;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The only kind config version kind accepts.
pub const API_VERSION: &str = "kind.x-k8s.io/v1alpha4";
pub const KIND: &str = "Cluster";
/// The hub's NodePort for the SPIRE OIDC discovery provider (in the default NodePort range).
pub const OIDC_NODE_PORT: u16 = 30443;
/// The spoke's authentication directory inside the node container and inside the kube-apiserver pod.
pub const AUTHN_DIR_IN_NODE: &str = "/etc/kubernetes/ztwim-authn";
/// The file name add-spoke rewrites in that directory.
pub const AUTHN_CONFIG_FILE: &str = "authentication-config.yaml";
/// `--authentication-config` of the spoke's kube-apiserver.
pub const AUTHN_CONFIG_IN_NODE: &str = "/etc/kubernetes/ztwim-authn/authentication-config.yaml";
/// The kubeadm `extraVolumes` entry's name.
pub const AUTHN_VOLUME: &str = "ztwim-authn";
/// kind names a cluster's first control-plane node container `<cluster>-control-plane`.
pub const CONTROL_PLANE_SUFFIX: &str = "-control-plane";
/// The longest cluster name whose control-plane container name is still a DNS-1123 label (63).
pub const MAX_CLUSTER_NAME: usize = 63 - CONTROL_PLANE_SUFFIX.len();

/// kind's `Cluster` (top level of a kind config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cluster {
    pub api_version: String,
    pub kind: String,
    /// Overridden by `kind create cluster --name`; written so that the file names its cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub nodes: Vec<Node>,
    /// Inline YAML documents, each an RFC 7386 merge patch of kind's generated kubeadm config.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_config_patches: Vec<String>,
}

/// `nodes[]`. No `image`: the node image is kind's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Node {
    pub role: NodeRole,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    ControlPlane,
    Worker,
}

/// `nodes[].extraMounts[]`: a bind mount from the host into the node container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    /// On the machine running docker or podman; it must exist.
    pub host_path: String,
    /// Inside the node container.
    pub container_path: String,
    /// The YAML key is `readOnly` (kind's Go field is `Readonly`).
    #[serde(default)]
    pub read_only: bool,
}

/// `nodes[].extraPortMappings[]`: a host port forwarded to a node-container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    pub host_port: u16,
    /// An IP (empty would mean 0.0.0.0).
    pub listen_address: String,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// Which kubeadm API the `ClusterConfiguration` patch is written for. kind generates
/// `kubeadm.k8s.io/v1beta3` for Kubernetes 1.23 to 1.35 and `v1beta4` from 1.36 (kind v0.32.0 and
/// later; kind v0.32.0's default node image is v1.36.1). v1beta3's `extraArgs` is a map, v1beta4's a
/// list of `{name, value}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KubeadmApi {
    /// List form (`extraArgs: [{name, value}]`): kind >= v0.32.0 with a node image >= 1.36 (its default).
    #[default]
    V1beta4,
    /// Map form (`extraArgs: {name: value}`): kind <= v0.31, or node images < 1.36. kind >= v0.32.0
    /// also converts it for v1beta4 targets, because the patch names no apiVersion.
    V1beta3,
}

impl KubeadmApi {
    pub fn api_version(self) -> &'static str {
        match self {
            KubeadmApi::V1beta4 => "kubeadm.k8s.io/v1beta4",
            KubeadmApi::V1beta3 => "kubeadm.k8s.io/v1beta3",
        }
    }
}

/// The kubeadm `ClusterConfiguration` merge patch of a spoke. It deliberately has no `apiVersion`: a
/// patch naming an apiVersion that kind does not generate matches nothing and is silently ignored,
/// which would start the spoke's kube-apiserver without `--authentication-config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfigurationPatch {
    pub kind: String,
    pub api_server: ApiServerPatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiServerPatch {
    pub extra_args: ExtraArgs,
    pub extra_volumes: Vec<HostPathMount>,
}

/// `apiServer.extraArgs`: v1beta4's list or v1beta3's map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExtraArgs {
    List(Vec<Arg>),
    Map(BTreeMap<String, String>),
}

impl ExtraArgs {
    /// The value of flag `name` (without `--`), in either form.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self {
            ExtraArgs::List(args) => args
                .iter()
                .find(|a| a.name == name)
                .map(|a| a.value.as_str()),
            ExtraArgs::Map(args) => args.get(name).map(String::as_str),
        }
    }
}

/// One kubeadm v1beta4 `extraArgs` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

/// kubeadm's `HostPathMount` (`apiServer.extraVolumes[]`): node container → static pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostPathMount {
    pub name: String,
    /// Inside the node container.
    pub host_path: String,
    /// Inside the kube-apiserver pod.
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    pub path_type: String,
}

impl ClusterConfigurationPatch {
    /// `--authentication-config` and the volume carrying its directory, in `api`'s form.
    pub fn authentication_config(api: KubeadmApi) -> Self {
        let extra_args = match api {
            KubeadmApi::V1beta4 => ExtraArgs::List(vec![Arg {
                name: "authentication-config".to_string(),
                value: AUTHN_CONFIG_IN_NODE.to_string(),
            }]),
            KubeadmApi::V1beta3 => ExtraArgs::Map(BTreeMap::from([(
                "authentication-config".to_string(),
                AUTHN_CONFIG_IN_NODE.to_string(),
            )])),
        };
        ClusterConfigurationPatch {
            kind: "ClusterConfiguration".to_string(),
            api_server: ApiServerPatch {
                extra_args,
                extra_volumes: vec![HostPathMount {
                    name: AUTHN_VOLUME.to_string(),
                    host_path: AUTHN_DIR_IN_NODE.to_string(),
                    mount_path: AUTHN_DIR_IN_NODE.to_string(),
                    read_only: true,
                    path_type: "DirectoryOrCreate".to_string(),
                }],
            },
        }
    }

    /// Strictly decodes one `kubeadmConfigPatches` entry.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub fn to_yaml(&self) -> anyhow::Result<String> {
        let mut text = serde_saphyr::to_string(self).context("serializing a kubeadm patch")?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}

impl Cluster {
    /// The hub: one control-plane node whose NodePort [`OIDC_NODE_PORT`] is reachable from this machine
    /// on `127.0.0.1:<oidc_host_port>`.
    pub fn hub(name: &str, oidc_host_port: u16) -> Self {
        Cluster {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            name: Some(name.to_string()),
            nodes: vec![Node {
                role: NodeRole::ControlPlane,
                extra_mounts: Vec::new(),
                extra_port_mappings: vec![PortMapping {
                    container_port: OIDC_NODE_PORT,
                    host_port: oidc_host_port,
                    listen_address: "127.0.0.1".to_string(),
                    protocol: Protocol::Tcp,
                }],
            }],
            kubeadm_config_patches: Vec::new(),
        }
    }

    /// A spoke whose kube-apiserver reads `--authentication-config` from `authn_host_dir` (an absolute
    /// path on the machine running docker, holding [`AUTHN_CONFIG_FILE`]). The directory, not the file,
    /// is mounted: a file bind mount would keep showing the old inode after an atomic rename.
    pub fn spoke(name: &str, authn_host_dir: &Path, api: KubeadmApi) -> anyhow::Result<Self> {
        let host_path = authn_host_dir
            .to_str()
            .filter(|_| authn_host_dir.is_absolute())
            .ok_or_else(|| {
                crate::error::input(format!(
                    "{}: kind needs an absolute host path in UTF-8",
                    authn_host_dir.display()
                ))
            })?;
        Ok(Cluster {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            name: Some(name.to_string()),
            nodes: vec![Node {
                role: NodeRole::ControlPlane,
                extra_mounts: vec![Mount {
                    host_path: host_path.to_string(),
                    container_path: AUTHN_DIR_IN_NODE.to_string(),
                    read_only: false,
                }],
                extra_port_mappings: Vec::new(),
            }],
            kubeadm_config_patches: vec![
                ClusterConfigurationPatch::authentication_config(api).to_yaml()?,
            ],
        })
    }

    /// Strictly decodes a kind config, and checks apiVersion and kind as kind does.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let cluster: Cluster = serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if cluster.api_version != API_VERSION || cluster.kind != KIND {
            anyhow::bail!(
                "{}/{} is not a kind config: kind accepts only apiVersion {API_VERSION}, kind {KIND}",
                cluster.api_version,
                cluster.kind
            );
        }
        Ok(cluster)
    }

    /// The file's content: a comment naming the command that uses it, then the YAML.
    pub fn to_yaml(&self) -> anyhow::Result<String> {
        let name = self.name.as_deref().unwrap_or("NAME");
        let mut text = format!(
            "# kind cluster config written by ztwim-hub kind-config (docs/kind.md).\n\
             # Use: kind create cluster --name {name} --config <this file>\n"
        );
        text.push_str(&serde_saphyr::to_string(self).context("serializing a kind config")?);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }

    /// The decoded `ClusterConfiguration` patches (each strictly).
    pub fn cluster_configuration_patches(&self) -> anyhow::Result<Vec<ClusterConfigurationPatch>> {
        self.kubeadm_config_patches
            .iter()
            .map(|p| ClusterConfigurationPatch::from_yaml(p))
            .collect()
    }
}

/// The name of a kind cluster's (first) control-plane node container, which is also its host name on
/// the docker network `kind`.
pub fn control_plane_host(cluster: &str) -> String {
    format!("{cluster}{CONTROL_PLANE_SUFFIX}")
}

/// The SPIRE OIDC issuer of a kind hub, as the other kind clusters reach it.
pub fn issuer_url(hub: &str) -> String {
    issuer_url_with_port(hub, OIDC_NODE_PORT)
}

/// [`issuer_url`] for another node port.
pub fn issuer_url_with_port(hub: &str, node_port: u16) -> String {
    format!("https://{}:{node_port}", control_plane_host(hub))
}

/// Writes `bytes` to `path` so that readers see the old or the new content, never a partial one: a
/// temporary file in the same directory (created exclusively), fsync, the existing file's permissions,
/// rename over `path`, fsync of the directory. The temporary file is removed on failure.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{n}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if let Ok(existing) = std::fs::metadata(path) {
            file.set_permissions(existing.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory is synced (not supported everywhere: best effort).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::Error::new(e).context(format!("writing {}", path.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_forms() {
        let v4 = ClusterConfigurationPatch::authentication_config(KubeadmApi::V1beta4);
        let text = v4.to_yaml().unwrap();
        assert!(text.contains("- name: authentication-config"), "{text}");
        assert!(!text.contains("apiVersion"), "{text}");
        assert_eq!(ClusterConfigurationPatch::from_yaml(&text).unwrap(), v4);
        let v3 = ClusterConfigurationPatch::authentication_config(KubeadmApi::V1beta3);
        let text = v3.to_yaml().unwrap();
        assert!(
            text.contains(&format!("authentication-config: {AUTHN_CONFIG_IN_NODE}")),
            "{text}"
        );
        let back = ClusterConfigurationPatch::from_yaml(&text).unwrap();
        assert!(matches!(back.api_server.extra_args, ExtraArgs::Map(_)));
        assert_eq!(
            back.api_server.extra_args.get("authentication-config"),
            Some(AUTHN_CONFIG_IN_NODE)
        );
    }

    #[test]
    fn spoke_needs_an_absolute_path() {
        assert!(Cluster::spoke("s", Path::new("rel/dir"), KubeadmApi::V1beta4).is_err());
        let c = Cluster::spoke("s", Path::new("/abs/s-authn"), KubeadmApi::V1beta4).unwrap();
        assert_eq!(c.nodes[0].extra_mounts[0].host_path, "/abs/s-authn");
        let back = Cluster::from_yaml(&c.to_yaml().unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn from_yaml_checks_version_and_fields() {
        let hub = Cluster::hub("hub", 30443).to_yaml().unwrap();
        let e = Cluster::from_yaml(&hub.replace("v1alpha4", "v1alpha3")).unwrap_err();
        assert!(e.to_string().contains("not a kind config"), "{e}");
        let e = Cluster::from_yaml(&hub.replace("listenAddress", "listenAddr")).unwrap_err();
        assert!(e.to_string().contains("listenAddr"), "{e}");
        assert_eq!(issuer_url("hub"), "https://hub-control-plane:30443");
        assert_eq!(MAX_CLUSTER_NAME, 49);
    }
}
