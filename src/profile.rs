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
    /// OpenShift hubs: ZTWIM from OLM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ztwim: Option<Ztwim>,
    /// OpenShift hubs: OpenShift GitOps from OLM and its `ArgoCD` instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gitops: Option<Gitops>,
    /// Kubernetes hubs: upstream SPIRE from our templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spire: Option<Spire>,
    /// Kubernetes hubs: upstream Argo CD from its release manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argocd: Option<UpstreamArgoCd>,
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
pub struct Spire {
    pub namespace: String,
    pub images: SpireImages,
    /// The spire-controller-manager CRDs, fetched at run time (`{version}`: `controllerManagerVersion`).
    pub crds: Vec<String>,
    pub controller_manager_version: String,
    /// SPIRE's cluster name (`k8s_psat`); `None`: the hub's kind name.
    pub cluster_name: Option<String>,
    /// The NodePort that serves the OIDC discovery provider on every node.
    pub oidc_node_port: u16,
    /// Where this machine reaches the issuer when its host name does not resolve here (kind-config maps
    /// 127.0.0.1:<port> to the node port).
    pub oidc_host_address: String,
    pub ca_subject: CaSubject,
    pub ca_ttl: String,
    #[serde(rename = "defaultX509SvidTTL")]
    pub default_x509_svid_ttl: String,
    #[serde(rename = "defaultJWTSvidTTL")]
    pub default_jwt_svid_ttl: String,
    pub data_size: String,
    /// Validity of the OIDC serving certificate bootstrap creates (days).
    pub oidc_certificate_days: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpireImages {
    pub server: String,
    pub agent: String,
    pub controller_manager: String,
    pub csi_driver: String,
    pub csi_registrar: String,
    pub oidc_discovery_provider: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamArgoCd {
    pub version: String,
    /// The release manifest (`{version}` replaced); `--argocd-manifest URL|PATH` replaces it.
    pub manifest_url: String,
    /// The namespace the release manifest is made for (its ClusterRoleBindings name it).
    pub namespace: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spoke {
    pub audience: String,
    pub rbac: RbacMode,
    pub cluster_role_binding: String,
    pub cluster_role: String,
    /// OpenShift spokes: external OIDC through the `Authentication` config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openshift: Option<OpenshiftSpoke>,
    /// Kubernetes spokes: kube-apiserver's structured authentication file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSpoke>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenshiftSpoke {
    pub min_version: MinorVersion,
    pub external_oidc_ga_version: MinorVersion,
    pub oidc_provider_name: String,
    pub issuer_ca_config_map: String,
    pub oidc_clients: Vec<OidcClient>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesSpoke {
    /// Structured authentication (`apiserver.config.k8s.io/v1beta1`) needs Kubernetes 1.30.
    pub min_version: MinorVersion,
    /// The file in `--authn-config-dir` that kube-apiserver reads.
    pub authn_config_file: String,
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
    /// add-spoke's hub-side steps and, for this platform's spokes, its spoke-side steps.
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
        let need = |present: bool, key: &str| -> Result<(), String> {
            match present {
                true => Ok(()),
                false => Err(format!(
                    "platform {} needs the section {key}",
                    self.platform.as_str()
                )),
            }
        };
        match self.platform {
            Platform::Openshift => {
                need(self.ztwim.is_some(), "ztwim")?;
                need(self.gitops.is_some(), "gitops")?;
                need(self.spoke.openshift.is_some(), "spoke.openshift")?;
                let (z, g) = (self.ztwim(), self.gitops());
                for (key, value) in [
                    ("ztwim.namespace", &z.namespace),
                    ("gitops.namespace", &g.namespace),
                    ("gitops.operatorNamespace", &g.operator_namespace),
                    ("gitops.instance", &g.instance),
                ] {
                    crate::validate::dns1123_label(key, value)?;
                }
                let o = self.spoke.openshift();
                if o.min_version > o.external_oidc_ga_version {
                    return Err(
                        "spoke.openshift.minVersion is above spoke.openshift.externalOidcGaVersion"
                            .into(),
                    );
                }
            }
            Platform::Kubernetes => {
                need(self.spire.is_some(), "spire")?;
                need(self.argocd.is_some(), "argocd")?;
                need(self.spoke.kubernetes.is_some(), "spoke.kubernetes")?;
                let (s, a) = (self.spire(), self.upstream_argocd());
                for (key, value) in [
                    ("spire.namespace", &s.namespace),
                    ("argocd.namespace", &a.namespace),
                ] {
                    crate::validate::dns1123_label(key, value)?;
                }
                if !(30000..=32767).contains(&s.oidc_node_port) {
                    return Err(format!(
                        "spire.oidcNodePort {}: not in the default NodePort range 30000-32767",
                        s.oidc_node_port
                    ));
                }
                if s.crds.is_empty() {
                    return Err(
                        "spire.crds is empty: the spire-controller-manager CRDs are needed".into(),
                    );
                }
                let file = &self.spoke.kubernetes().authn_config_file;
                if file.is_empty() || file.contains('/') {
                    return Err(format!(
                        "spoke.kubernetes.authnConfigFile {file:?}: a file name, without directories"
                    ));
                }
            }
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
        Ok(())
    }

    /// The ZTWIM section (OpenShift profiles; [`Profile::check`] guarantees it).
    pub fn ztwim(&self) -> &Ztwim {
        self.ztwim
            .as_ref()
            .expect("checked: OpenShift profiles have ztwim")
    }

    /// The OpenShift GitOps section (OpenShift profiles).
    pub fn gitops(&self) -> &Gitops {
        self.gitops
            .as_ref()
            .expect("checked: OpenShift profiles have gitops")
    }

    /// The upstream SPIRE section (Kubernetes profiles).
    pub fn spire(&self) -> &Spire {
        self.spire
            .as_ref()
            .expect("checked: Kubernetes profiles have spire")
    }

    /// The upstream Argo CD section (Kubernetes profiles).
    pub fn upstream_argocd(&self) -> &UpstreamArgoCd {
        self.argocd
            .as_ref()
            .expect("checked: Kubernetes profiles have argocd")
    }

    /// Where this profile's Argo CD lives and what its pods are called.
    pub fn argo(&self) -> ArgoLayout {
        match self.platform {
            Platform::Openshift => {
                let g = self.gitops();
                ArgoLayout {
                    instance: g.instance.clone(),
                    namespace: g.namespace.clone(),
                    server_service_account: format!("{}-argocd-server", g.instance),
                    controller_service_account: format!(
                        "{}-argocd-application-controller",
                        g.instance
                    ),
                    server_label: format!("{}-server", g.instance),
                    controller_label: format!("{}-application-controller", g.instance),
                }
            }
            Platform::Kubernetes => ArgoLayout {
                instance: "argocd".into(),
                namespace: self.upstream_argocd().namespace.clone(),
                server_service_account: "argocd-server".into(),
                controller_service_account: "argocd-application-controller".into(),
                server_label: "argocd-server".into(),
                controller_label: "argocd-application-controller".into(),
            },
        }
    }
}

/// Where a profile's Argo CD lives and the names of its server and application controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgoLayout {
    /// The instance's name, for messages (OpenShift: the `ArgoCD` CR).
    pub instance: String,
    /// The default namespace.
    pub namespace: String,
    pub server_service_account: String,
    pub controller_service_account: String,
    /// `app.kubernetes.io/name` of the server's pods.
    pub server_label: String,
    /// `app.kubernetes.io/name` of the application controller's pods.
    pub controller_label: String,
}

impl Platform {
    pub fn as_str(&self) -> &'static str {
        match self {
            Platform::Openshift => "openshift",
            Platform::Kubernetes => "kubernetes",
        }
    }
}

impl Spoke {
    /// The OpenShift spoke section (OpenShift profiles; [`Profile::check`] guarantees it).
    pub fn openshift(&self) -> &OpenshiftSpoke {
        self.openshift
            .as_ref()
            .expect("checked: OpenShift profiles have spoke.openshift")
    }

    /// The Kubernetes spoke section (Kubernetes profiles).
    pub fn kubernetes(&self) -> &KubernetesSpoke {
        self.kubernetes
            .as_ref()
            .expect("checked: Kubernetes profiles have spoke.kubernetes")
    }
}

impl Profile {
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
