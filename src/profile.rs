//! Profiles: everything platform-specific that is data rather than code (namespaces, OLM package names,
//! the Argo CD instance, the exec-auth plugin, spoke defaults, and which templates each step applies).
//! The built-in profiles in `profiles/` are embedded in the binary; `--profile PATH` reads a file instead.
//! Parsing is strict: an unknown or misspelled key is an error naming the key and the file.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};

use crate::error;
use crate::validate::MinorVersion;

static PROFILES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/profiles");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// OLM operators, Routes, the OpenShift `Authentication` config.
    Openshift,
    /// Vanilla Kubernetes (kind): our own SPIRE manifests and structured authentication.
    Kubernetes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RbacMode {
    /// Bind `cluster-admin`, as the runbook does.
    ClusterAdmin,
    /// Read everything, manage only what Argo CD usually deploys (docs/security.md).
    LeastPrivilege,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub platform: Platform,
    pub ztwim: Ztwim,
    pub gitops: Gitops,
    pub exec_auth: ExecAuth,
    pub spoke: Spoke,
    pub manifests: Manifests,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OlmOperator {
    pub operator_group: String,
    pub subscription: String,
    pub package: String,
    /// `None`: discovered from the PackageManifest's default channel.
    pub channel: Option<String>,
    pub source: String,
    pub source_namespace: String,
    pub install_plan_approval: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ztwim {
    pub namespace: String,
    pub operator: OlmOperator,
    pub cluster_name: String,
    /// The oldest OpenShift version ZTWIM supports on the hub.
    pub hub_min_version: MinorVersion,
    /// The OIDC discovery provider's host is `<oidcHostPrefix>.<apps domain>`.
    pub oidc_host_prefix: String,
    pub ca_subject: CaSubject,
    pub persistence: Persistence,
    pub ca_validity: String,
    #[serde(rename = "defaultX509Validity")]
    pub default_x509_validity: String,
    #[serde(rename = "defaultJWTValidity")]
    pub default_jwt_validity: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaSubject {
    pub common_name: String,
    pub country: String,
    pub organization: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Persistence {
    pub size: String,
    pub access_mode: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gitops {
    pub operator_namespace: String,
    pub operator: OlmOperator,
    pub namespace: String,
    pub instance: String,
    pub server_host_prefix: String,
    pub admin_groups: Vec<String>,
    pub resources: BTreeMap<String, Resources>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub requests: CpuMemory,
    pub limits: CpuMemory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuMemory {
    pub cpu: String,
    pub memory: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAuth {
    pub version: String,
    /// Download URL with `{version}` and `{arch}` placeholders.
    pub url: String,
    pub arch: String,
    /// sha256 of the release archive, per architecture.
    pub sha256: BTreeMap<String, String>,
    pub init_image: String,
    pub binary_dir: String,
    pub socket_dir: String,
    pub socket_name: String,
    pub exec_credential_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spoke {
    pub audience: String,
    pub rbac: RbacMode,
    pub min_version: MinorVersion,
    pub external_oidc_ga_version: MinorVersion,
    pub oidc_provider_name: String,
    pub issuer_ca_config_map: String,
    pub cluster_role_binding: String,
    pub cluster_role: String,
    pub oidc_clients: Vec<OidcClient>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcClient {
    #[serde(rename = "clientID")]
    pub client_id: String,
    pub component_name: String,
    pub component_namespace: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifests {
    pub bootstrap: Vec<StepManifests>,
    pub add_spoke: Vec<StepManifests>,
}

/// The templates one workflow step applies, in order, and the cluster they go to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepManifests {
    pub step: String,
    pub cluster: Side,
    pub templates: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Hub,
    Spoke,
}

impl Profile {
    /// The names of the built-in profiles.
    pub fn builtin_names() -> Vec<String> {
        let mut names: Vec<String> = PROFILES
            .files()
            .filter_map(|f| {
                f.path()
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".yaml")
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names
    }

    /// `--profile NAME|PATH`: a built-in name, or the path of a profile file.
    pub fn load(spec: &str) -> Result<Profile> {
        let looks_like_path =
            spec.contains('/') || spec.ends_with(".yaml") || spec.ends_with(".yml");
        if looks_like_path || Path::new(spec).is_file() {
            let path = Path::new(spec);
            let text = std::fs::read_to_string(path).map_err(|e| {
                error::input(format!("--profile {spec}: cannot read the file ({e})"))
            })?;
            return Profile::parse(&text, &path.display().to_string());
        }
        let file = PROFILES.get_file(format!("{spec}.yaml")).ok_or_else(|| {
            error::input(format!(
                "--profile {spec:?}: no such built-in profile (built-in: {}; or give the path of a profile file)",
                Profile::builtin_names().join(", ")
            ))
        })?;
        let text = file.contents_utf8().expect("embedded profiles are UTF-8");
        Profile::parse(text, &format!("built-in profile {spec}"))
    }

    /// Parses and checks a profile; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile> {
        let profile: Profile = serde_saphyr::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").trim().to_string();
            error::input(format!("profile {origin}: {first}"))
        })?;
        profile
            .check()
            .map_err(|why| error::input(format!("profile {origin}: {why}")))?;
        Ok(profile)
    }

    fn check(&self) -> Result<(), String> {
        for (key, value) in [
            ("ztwim.namespace", &self.ztwim.namespace),
            ("gitops.namespace", &self.gitops.namespace),
            ("gitops.operatorNamespace", &self.gitops.operator_namespace),
            ("gitops.instance", &self.gitops.instance),
        ] {
            crate::validate::dns1123_label(key, value)?;
        }
        let url = &self.exec_auth.url;
        let stripped = url.replace("{version}", "").replace("{arch}", "");
        if stripped.contains('{') || stripped.contains('}') {
            return Err(format!(
                "execAuth.url {url:?}: only the placeholders {{version}} and {{arch}} are known"
            ));
        }
        for (arch, digest) in &self.exec_auth.sha256 {
            crate::validate::sha256_hex(&format!("execAuth.sha256.{arch}"), digest)?;
        }
        if !matches!(
            self.exec_auth.exec_credential_version.as_str(),
            "v1" | "v1beta1"
        ) {
            return Err(format!(
                "execAuth.execCredentialVersion {:?}: must be v1 or v1beta1",
                self.exec_auth.exec_credential_version
            ));
        }
        if self.spoke.min_version > self.spoke.external_oidc_ga_version {
            return Err("spoke.minVersion is above spoke.externalOidcGaVersion".into());
        }
        Ok(())
    }

    /// The exec-auth archive URL for this profile's version and architecture.
    pub fn exec_auth_archive_url(&self, url_template: &str) -> String {
        url_template
            .replace("{version}", &self.exec_auth.version)
            .replace("{arch}", &self.exec_auth.arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_profile_loads() {
        let names = Profile::builtin_names();
        assert!(names.contains(&"openshift".to_string()), "{names:?}");
        for name in names {
            let p = Profile::load(&name).unwrap();
            assert_eq!(p.name, name);
        }
    }

    #[test]
    fn misspelled_key_names_the_key_and_the_file() {
        let text = PROFILES
            .get_file("openshift.yaml")
            .unwrap()
            .contents_utf8()
            .unwrap();
        let bad = text.replace(
            "  instance: openshift-gitops",
            "  instanse: openshift-gitops",
        );
        let err = Profile::parse(&bad, "my-profile.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("instanse"), "{err}");
        assert!(err.contains("my-profile.yaml"), "{err}");
    }

    #[test]
    fn unknown_builtin_lists_the_known_ones() {
        let err = Profile::load("nope").unwrap_err().to_string();
        assert!(err.contains("openshift"), "{err}");
    }
}
