//! The typed values a workflow's templates see as `v`. The same structs serve `render` (values from
//! flags) and the live commands (values discovered from the clusters), so both render the same objects.

use serde::Serialize;

use crate::error;
use crate::profile::{Platform, Profile, RbacMode};
use crate::validate::{self, MinorVersion};

/// The SPIFFE IDs Argo CD's pods get: `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ArgoIdentities {
    pub server_service_account: String,
    pub controller_service_account: String,
    pub server: String,
    pub controller: String,
}

impl ArgoIdentities {
    pub fn new(profile: &Profile, trust_domain: &str, namespace: &str) -> Self {
        let argo = profile.argo();
        let server_sa = argo.server_service_account;
        let controller_sa = argo.controller_service_account;
        ArgoIdentities {
            server: spiffe_id(trust_domain, namespace, &server_sa),
            controller: spiffe_id(trust_domain, namespace, &controller_sa),
            server_service_account: server_sa,
            controller_service_account: controller_sa,
        }
    }
}

pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

/// What the hub workflow needs to know, from flags or from the cluster.
#[derive(Debug, Clone, Default)]
pub struct HubInputs {
    pub trust_domain: Option<String>,
    pub cluster_name: Option<String>,
    pub gitops_namespace: Option<String>,
    pub exec_auth_url: Option<String>,
    pub exec_auth_sha256: Option<String>,
    pub platform: HubPlatformInputs,
}

/// The inputs only one platform has.
#[derive(Debug, Clone)]
pub enum HubPlatformInputs {
    Openshift {
        app_domain: String,
        ztwim_channel: String,
    },
    Kubernetes {
        /// The hub's kind name (its control-plane node is `<name>-control-plane`).
        hub_name: String,
        issuer_url: Option<String>,
    },
}

impl Default for HubPlatformInputs {
    fn default() -> Self {
        HubPlatformInputs::Openshift {
            app_domain: String::new(),
            ztwim_channel: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BootstrapValues {
    pub trust_domain: String,
    pub cluster_name: String,
    pub jwt_issuer: String,
    pub gitops_namespace: String,
    pub exec_auth_archive_url: String,
    pub exec_auth_sha256: Option<String>,
    pub identities: ArgoIdentities,
    #[serde(flatten)]
    pub openshift: Option<OpenshiftHubValues>,
    #[serde(flatten)]
    pub kubernetes: Option<KubernetesHubValues>,
}

/// OpenShift hubs: OLM channels and the hosts of the Routes.
#[derive(Debug, Clone, Serialize)]
pub struct OpenshiftHubValues {
    pub app_domain: String,
    pub oidc_host: String,
    pub ztwim_channel: String,
    pub gitops_channel: String,
    pub argocd_server_host: String,
}

/// Kubernetes hubs: where the OIDC discovery provider is served.
#[derive(Debug, Clone, Serialize)]
pub struct KubernetesHubValues {
    pub hub_name: String,
    /// The issuer's host (the serving certificate's first name).
    pub issuer_host: String,
    /// The names the discovery provider answers to (its `domains`) and its certificate covers.
    pub oidc_dns_names: Vec<String>,
    /// What the serving certificate covers: those names and 127.0.0.1 (kind-config's host port mapping).
    pub oidc_certificate_names: Vec<String>,
    /// sha256 of the serving certificate (a pod template annotation: a new certificate rolls the pods).
    pub oidc_certificate_fingerprint: String,
}

impl BootstrapValues {
    pub fn openshift(&self) -> &OpenshiftHubValues {
        self.openshift
            .as_ref()
            .expect("OpenShift steps run with OpenShift values")
    }

    pub fn kubernetes(&self) -> &KubernetesHubValues {
        self.kubernetes
            .as_ref()
            .expect("Kubernetes steps run with Kubernetes values")
    }

    /// Validates the inputs and derives the values. Returns warnings for the user alongside.
    pub fn resolve(
        profile: &Profile,
        inputs: &HubInputs,
    ) -> anyhow::Result<(BootstrapValues, Vec<String>)> {
        let bad = |r: Result<(), String>| r.map_err(error::input);
        let mut warnings = Vec::new();
        let (default_trust_domain, default_cluster_name, jwt_issuer) = match &inputs.platform {
            HubPlatformInputs::Openshift { app_domain, .. } => {
                bad(validate::dns_subdomain("--app-domain", app_domain))?;
                let host = format!("{}.{app_domain}", profile.ztwim().oidc_host_prefix);
                (
                    app_domain.clone(),
                    profile.ztwim().cluster_name.clone(),
                    format!("https://{host}"),
                )
            }
            HubPlatformInputs::Kubernetes {
                hub_name,
                issuer_url,
            } => {
                let issuer = issuer_url.clone().unwrap_or_else(|| {
                    crate::kind::issuer_url_with_port(hub_name, profile.spire().oidc_node_port)
                });
                (
                    format!("{hub_name}.kind"),
                    profile
                        .spire()
                        .cluster_name
                        .clone()
                        .unwrap_or_else(|| hub_name.clone()),
                    issuer,
                )
            }
        };
        let jwt_issuer =
            validate::https_url("--issuer-url", &jwt_issuer, true).map_err(error::input)?;
        let trust_domain = inputs.trust_domain.clone().unwrap_or(default_trust_domain);
        bad(validate::trust_domain("--trust-domain", &trust_domain))?;
        let cluster_name = inputs.cluster_name.clone().unwrap_or(default_cluster_name);
        bad(validate::dns_subdomain("--cluster-name", &cluster_name))?;
        let argo = profile.argo();
        let gitops_namespace = inputs
            .gitops_namespace
            .clone()
            .unwrap_or_else(|| argo.namespace.clone());
        bad(validate::dns1123_label(
            "--gitops-namespace",
            &gitops_namespace,
        ))?;
        if gitops_namespace.starts_with("openshift-") {
            return Err(error::input(format!(
                "--gitops-namespace {gitops_namespace:?}: ZTWIM issues no identities in openshift-* namespaces; choose another (default {})",
                argo.namespace
            )));
        }
        let url_template = inputs
            .exec_auth_url
            .clone()
            .unwrap_or_else(|| profile.exec_auth.url.clone());
        let archive_url = profile.exec_auth_archive_url(&url_template);
        validate::https_url("--exec-auth-url", &archive_url, true).map_err(error::input)?;
        let exec_auth_sha256 = match &inputs.exec_auth_sha256 {
            Some(digest) => {
                Some(validate::sha256_hex("--exec-auth-sha256", digest).map_err(error::input)?)
            }
            None => profile
                .exec_auth
                .sha256
                .get(&profile.exec_auth.arch)
                .map(|d| d.to_ascii_lowercase()),
        };
        if exec_auth_sha256.is_none() {
            warnings.push(format!(
                "the exec-auth plugin {} ({}) is not pinned by sha256: the init container installs whatever {archive_url} serves; pin it with --exec-auth-sha256 or execAuth.sha256.{} in the profile",
                profile.exec_auth.version, profile.exec_auth.arch, profile.exec_auth.arch
            ));
        }
        let identities = ArgoIdentities::new(profile, &trust_domain, &gitops_namespace);
        let (openshift, kubernetes) = match &inputs.platform {
            HubPlatformInputs::Openshift {
                app_domain,
                ztwim_channel,
            } => {
                if ztwim_channel.trim().is_empty() {
                    return Err(error::input("--channel is empty"));
                }
                let openshift = OpenshiftHubValues {
                    oidc_host: format!("{}.{app_domain}", profile.ztwim().oidc_host_prefix),
                    argocd_server_host: format!(
                        "{}.{app_domain}",
                        profile.gitops().server_host_prefix
                    ),
                    app_domain: app_domain.clone(),
                    ztwim_channel: ztwim_channel.clone(),
                    gitops_channel: profile
                        .gitops()
                        .operator
                        .channel
                        .clone()
                        .unwrap_or_else(|| "latest".into()),
                };
                (Some(openshift), None)
            }
            HubPlatformInputs::Kubernetes { hub_name, .. } => {
                let issuer_host = url::Url::parse(&jwt_issuer)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default();
                let ns = &profile.spire().namespace;
                let mut names = vec![issuer_host.clone()];
                for name in [
                    "spire-oidc-discovery-provider".to_string(),
                    format!("spire-oidc-discovery-provider.{ns}"),
                    format!("spire-oidc-discovery-provider.{ns}.svc"),
                    "localhost".to_string(),
                ] {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                let mut certificate_names = names.clone();
                certificate_names.push("127.0.0.1".into());
                let kubernetes = KubernetesHubValues {
                    hub_name: hub_name.clone(),
                    issuer_host,
                    oidc_dns_names: names,
                    oidc_certificate_names: certificate_names,
                    oidc_certificate_fingerprint: String::new(),
                };
                (None, Some(kubernetes))
            }
        };
        let values = BootstrapValues {
            trust_domain,
            cluster_name,
            jwt_issuer,
            gitops_namespace,
            exec_auth_archive_url: archive_url,
            exec_auth_sha256,
            identities,
            openshift,
            kubernetes,
        };
        Ok((values, warnings))
    }
}

/// What the spoke workflow needs to know, from flags or from the two clusters.
#[derive(Debug, Clone)]
pub struct SpokeInputs {
    pub spoke_name: String,
    /// The API server URL the hub's Argo CD uses (kind: from the spoke's `kube-public/cluster-info`).
    pub spoke_server: String,
    /// PEM of the spoke API server's CA; `None` only with `insecure_skip_tls_verify`.
    pub spoke_ca_pem: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub trust_domain: String,
    pub issuer_url: String,
    /// PEM of the CA that signs the issuer's certificate, when it is not publicly trusted.
    pub issuer_ca_pem: Option<String>,
    /// OpenShift: the OpenShift version (required); Kubernetes: the Kubernetes version, if known.
    pub spoke_version: Option<MinorVersion>,
    pub audience: Option<String>,
    pub rbac: Option<RbacMode>,
    pub gitops_namespace: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpokeValues {
    pub spoke_name: String,
    pub spoke_server: String,
    pub spoke_ca_pem: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub trust_domain: String,
    pub issuer_url: String,
    pub issuer_ca_pem: Option<String>,
    /// How the spoke trusts the issuer: OpenShift `Authentication`, or kube-apiserver's file.
    pub spoke_platform: Platform,
    pub spoke_version: Option<MinorVersion>,
    pub needs_feature_gate: bool,
    pub audience: String,
    pub rbac: RbacMode,
    /// The namespace of the hub's Argo CD.
    pub gitops_namespace: String,
    pub identities: ArgoIdentities,
    /// The SPIFFE IDs bound on the spoke: the Argo CD server and application controller.
    pub spiffe_ids: Vec<String>,
}

impl SpokeValues {
    /// `hub`: the hub's profile (its Argo CD: namespace and service accounts, so the SPIFFE IDs);
    /// `spoke`: the spoke's (how it trusts the issuer, the audience and RBAC defaults).
    pub fn resolve(
        hub: &Profile,
        spoke: &Profile,
        inputs: &SpokeInputs,
    ) -> anyhow::Result<(SpokeValues, Vec<String>)> {
        let bad = |r: Result<(), String>| r.map_err(error::input);
        let mut warnings = Vec::new();
        bad(validate::dns1123_label("--spoke-name", &inputs.spoke_name))?;
        let spoke_server = validate::https_url("--spoke-server", &inputs.spoke_server, false)
            .map_err(error::input)?;
        bad(validate::trust_domain(
            "--trust-domain",
            &inputs.trust_domain,
        ))?;
        let issuer_url =
            validate::https_url("--issuer-url", &inputs.issuer_url, true).map_err(error::input)?;
        let gitops_namespace = inputs
            .gitops_namespace
            .clone()
            .unwrap_or_else(|| hub.argo().namespace);
        bad(validate::dns1123_label(
            "--gitops-namespace",
            &gitops_namespace,
        ))?;
        let audience = inputs
            .audience
            .clone()
            .unwrap_or_else(|| spoke.spoke.audience.clone());
        if audience.trim().is_empty()
            || audience.contains(char::is_whitespace)
            || audience.contains(',')
        {
            return Err(error::input(format!(
                "--audience {audience:?}: an audience is one non-empty word without spaces or commas"
            )));
        }
        match (&inputs.spoke_ca_pem, inputs.insecure_skip_tls_verify) {
            (Some(_), true) => {
                return Err(error::input(
                    "--spoke-ca-file and --insecure-skip-tls-verify exclude each other; keep --spoke-ca-file",
                ));
            }
            (None, false) => {
                return Err(error::input(
                    "the spoke API server's CA is missing: give --spoke-ca-file (or, not for production, --insecure-skip-tls-verify)",
                ));
            }
            (None, true) => warnings.push(format!(
                "--insecure-skip-tls-verify: Argo CD will not verify {spoke_server}'s certificate; anyone on the path can impersonate the spoke. Use --spoke-ca-file in production"
            )),
            (Some(_), false) => {}
        }
        let needs_feature_gate = match spoke.platform {
            Platform::Openshift => {
                let o = spoke.spoke.openshift();
                let version = inputs.spoke_version.ok_or_else(|| {
                    error::input("the OpenShift version of the spoke is required (--spoke-version)")
                })?;
                if version < o.min_version {
                    return Err(error::input(format!(
                        "spoke version {version}: external OIDC authentication needs OpenShift {} or later",
                        o.min_version
                    )));
                }
                version < o.external_oidc_ga_version
            }
            // The Kubernetes version is checked by preflight (reported with the other checks).
            Platform::Kubernetes => false,
        };
        let identities = ArgoIdentities::new(hub, &inputs.trust_domain, &gitops_namespace);
        let values = SpokeValues {
            spoke_name: inputs.spoke_name.clone(),
            spoke_server,
            spoke_ca_pem: inputs.spoke_ca_pem.clone(),
            insecure_skip_tls_verify: inputs.insecure_skip_tls_verify,
            trust_domain: inputs.trust_domain.clone(),
            issuer_url,
            issuer_ca_pem: inputs.issuer_ca_pem.clone(),
            spoke_platform: spoke.platform,
            spoke_version: inputs.spoke_version,
            needs_feature_gate,
            audience,
            rbac: inputs.rbac.unwrap_or(spoke.spoke.rbac),
            gitops_namespace,
            spiffe_ids: vec![identities.server.clone(), identities.controller.clone()],
            identities,
        };
        if values.needs_feature_gate {
            warnings.push(format!(
                "spoke version {} is below {}: the plan sets FeatureGate cluster to TechPreviewNoUpgrade, which is IRREVERSIBLE and blocks upgrades of {}",
                inputs.spoke_version.expect("OpenShift spokes have a version"),
                spoke.spoke.openshift().external_oidc_ga_version,
                values.spoke_name
            ));
        }
        Ok((values, warnings))
    }
}
