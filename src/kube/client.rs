//! Kube contexts to clients. The kubeconfig comes from `--kubeconfig`, else `$KUBECONFIG` (several files
//! merged, kubectl's rules), else `~/.kube/config`; each cluster is named by its context.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};

use crate::error;

/// How a kubeconfig user authenticates: the lockout guard of `add-spoke` needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credential {
    ClientCertificate,
    BearerToken,
    ExecPlugin,
    AuthProvider,
    Basic,
    None,
}

impl Credential {
    fn of(user: &AuthInfo) -> Credential {
        if user.client_certificate.is_some() || user.client_certificate_data.is_some() {
            Credential::ClientCertificate
        } else if user.token.is_some() || user.token_file.is_some() {
            Credential::BearerToken
        } else if user.exec.is_some() {
            Credential::ExecPlugin
        } else if user.auth_provider.is_some() {
            Credential::AuthProvider
        } else if user.username.is_some() {
            Credential::Basic
        } else {
            Credential::None
        }
    }
}

/// The merged kubeconfig and where it came from (for messages).
pub struct Kubeconfigs {
    config: Kubeconfig,
    source: String,
}

/// One cluster, reached through a named context.
#[derive(Clone)]
pub struct Cluster {
    pub context: String,
    /// The flag that named the context (for messages): `--context`, `--hub-context`, ...
    pub flag: String,
    pub client: kube::Client,
    /// The API server URL from the kubeconfig.
    pub server: String,
    /// The API server's CA (PEM) from the kubeconfig, if it has one.
    pub ca_pem: Option<String>,
    pub credential: Credential,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("context", &self.context)
            .field("server", &self.server)
            .finish()
    }
}

impl Kubeconfigs {
    pub fn load(flag: Option<&Path>) -> Result<Kubeconfigs> {
        let fail = |source: &str, e: &dyn std::fmt::Display| {
            error::input(format!(
                "cannot read the kubeconfig {source} ({e}); pass --kubeconfig PATH"
            ))
        };
        if let Some(path) = flag {
            let source = path.display().to_string();
            let config = Kubeconfig::read_from(path).map_err(|e| fail(&source, &e))?;
            return Ok(Kubeconfigs { config, source });
        }
        match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(value) => {
                let source = format!("$KUBECONFIG ({})", value.to_string_lossy());
                let config = Kubeconfig::from_env()
                    .map_err(|e| fail(&source, &e))?
                    .unwrap_or_default();
                Ok(Kubeconfigs { config, source })
            }
            None => {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default();
                let path = home.join(".kube").join("config");
                let source = path.display().to_string();
                let config = Kubeconfig::read_from(&path).map_err(|e| fail(&source, &e))?;
                Ok(Kubeconfigs { config, source })
            }
        }
    }

    pub fn contexts(&self) -> Vec<String> {
        self.config
            .contexts
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// A client for `context`. Nothing is sent to the cluster yet.
    pub async fn cluster(&self, flag: &str, context: &str) -> Result<Cluster> {
        let named = self.config.contexts.iter().find(|c| c.name == context).ok_or_else(|| {
            let known = self.contexts();
            error::input(format!(
                "{flag} {context}: no such context in {} (contexts: {}); see 'kubectl config get-contexts'",
                self.source,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })?;
        let ctx = named.context.clone().unwrap_or_default();
        let cluster = self
            .config
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| {
                error::input(format!(
                    "{flag} {context}: the context's cluster {:?} is not in {}",
                    ctx.cluster, self.source
                ))
            })?;
        let user = ctx
            .user
            .as_ref()
            .and_then(|u| self.config.auth_infos.iter().find(|a| &a.name == u))
            .and_then(|a| a.auth_info.clone())
            .unwrap_or_default();
        let options = KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(self.config.clone(), &options)
            .await
            .map_err(|e| {
                error::input(format!(
                    "{flag} {context}: the kubeconfig entry is not usable ({e})"
                ))
            })?;
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(60));
        let client = kube::Client::try_from(config)
            .map_err(|e| error::input(format!("{flag} {context}: cannot build a client ({e})")))?;
        let ca_pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| {
                        error::input(format!(
                            "{flag} {context}: certificate-authority-data is not base64 ({e})"
                        ))
                    })?;
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                error::input(format!(
                    "{flag} {context}: cannot read certificate-authority {path} ({e})"
                ))
            })?),
            (None, None) => None,
        };
        Ok(Cluster {
            context: context.to_string(),
            flag: flag.to_string(),
            client,
            server: cluster.server.unwrap_or_default(),
            ca_pem,
            credential: Credential::of(&user),
        })
    }
}

impl Cluster {
    /// The API server's version (`/version`): also the reachability check. An unreachable server or a
    /// rejected credential is bad input (exit 2): nothing was touched.
    pub async fn version(&self) -> Result<k8s_openapi::apimachinery::pkg::version::Info> {
        self.client.apiserver_version().await.map_err(|e| {
            error::input(format!(
                "{} {}: cannot reach the API server at {} ({}); check the context, the network and your credentials",
                self.flag,
                self.context,
                self.server,
                describe_kube_error(&e)
            ))
        })
    }
}

/// A short description of a kube error: the API status message, or the innermost cause.
pub fn describe_kube_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            format!("{} {}: {}", status.code, status.reason, status.message)
        }
        other => {
            let mut source: &dyn std::error::Error = other;
            let mut text = other.to_string();
            while let Some(next) = source.source() {
                text = next.to_string();
                source = next;
            }
            text
        }
    }
}

/// The HTTP status code of a kube API error, if it is one.
pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A client for `server` that authenticates with `token` (e.g. a JWT-SVID), trusting `ca_pem` (or the
/// system roots), the way Argo CD will call the spoke.
pub fn token_client(
    server: &str,
    ca_pem: Option<&str>,
    insecure: bool,
    token: &crate::verify::identity::Token,
) -> Result<kube::Client> {
    token_client_reaching(server, ca_pem, insecure, token, &Reach::Direct)
}

/// How this machine reaches an API server URL written for another network: the Argo CD cluster
/// Secret's `server` of a kind spoke, `https://<spoke>-control-plane:6443`, is a name on the docker
/// network `kind` that the hub's pods resolve, and this machine may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Connect to the URL's host.
    Direct,
    /// Through this `HTTPS_PROXY` (CONNECT host:port: the proxy resolves the name).
    Proxy(String),
    /// Connect to this URL instead (the kubeconfig's address of the same API server), verifying the
    /// certificate for the original URL's host name.
    Via(String),
}

impl Reach {
    /// `HTTPS_PROXY` unless `NO_PROXY` exempts the host; else directly when the host resolves (or is
    /// an address); else via `fallback_url`.
    pub async fn find(server: &str, fallback_url: &str) -> Reach {
        let Ok(url) = url::Url::parse(server) else {
            return Reach::Direct;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Reach::Direct;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Some(proxy) = https_proxy_for(host) {
            return Reach::Proxy(proxy);
        }
        if host.parse::<std::net::IpAddr>().is_ok()
            || tokio::net::lookup_host((host, port)).await.is_ok()
        {
            return Reach::Direct;
        }
        Reach::Via(fallback_url.to_string())
    }

    /// For messages: how `server` was reached.
    pub fn describe(&self, server: &str) -> String {
        match self {
            Reach::Direct => server.to_string(),
            Reach::Proxy(proxy) => format!("{server} (through the proxy {proxy})"),
            Reach::Via(url) => format!(
                "{server} (its host does not resolve here: connected to {url}, verifying the certificate for the Secret's host)"
            ),
        }
    }
}

/// The `HTTPS_PROXY` (or `https_proxy`) to use for `host`, unless `NO_PROXY`/`no_proxy` lists it
/// (`*`, the host itself, or a domain it is in).
fn https_proxy_for(host: &str) -> Option<String> {
    let env = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
    };
    let proxy = env(["HTTPS_PROXY", "https_proxy"])?;
    let no_proxy = env(["NO_PROXY", "no_proxy"]).unwrap_or_default();
    let host = host.to_ascii_lowercase();
    let exempt = no_proxy.split(',').map(str::trim).any(|entry| {
        let entry = entry.to_ascii_lowercase();
        let entry = entry.split(':').next().unwrap_or_default();
        let domain = entry.trim_start_matches("*.").trim_start_matches('.');
        entry == "*"
            || (!domain.is_empty() && (host == domain || host.ends_with(&format!(".{domain}"))))
    });
    (!exempt).then_some(proxy)
}

/// [`token_client`], reaching `server` as `reach` says.
pub fn token_client_reaching(
    server: &str,
    ca_pem: Option<&str>,
    insecure: bool,
    token: &crate::verify::identity::Token,
    reach: &Reach,
) -> Result<kube::Client> {
    let url: http::Uri = server
        .parse()
        .map_err(|e| error::input(format!("{server:?} is not a URL ({e})")))?;
    let mut config = kube::Config::new(url.clone());
    match reach {
        Reach::Direct => {}
        Reach::Proxy(proxy) => {
            config.proxy_url =
                Some(proxy.parse().map_err(|e| {
                    error::input(format!("HTTPS_PROXY {proxy:?} is not a URL ({e})"))
                })?);
        }
        Reach::Via(address) => {
            config.cluster_url = address
                .parse()
                .map_err(|e| error::input(format!("{address:?} is not a URL ({e})")))?;
            config.tls_server_name = url.host().map(str::to_string);
        }
    }
    if let Some(pem) = ca_pem {
        let mut ders = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
            let pem =
                pem.map_err(|e| anyhow::anyhow!("the CA bundle for {server} is not PEM ({e})"))?;
            ders.push(pem.contents);
        }
        config.root_cert = Some(ders);
    }
    config.accept_invalid_certs = insecure;
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(30));
    config.auth_info = AuthInfo {
        token: Some(token.expose().to_string().into()),
        ..Default::default()
    };
    Ok(kube::Client::try_from(config)?)
}

/// Who the API server says the client is (SelfSubjectReview): (username, groups).
pub async fn whoami(client: &kube::Client) -> Result<(String, Vec<String>), kube::Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client.clone());
    let review = api
        .create(
            &kube::api::PostParams::default(),
            &SelfSubjectReview::default(),
        )
        .await?;
    let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
    Ok((
        info.username.unwrap_or_default(),
        info.groups.unwrap_or_default(),
    ))
}

/// A failed read during discovery or preflight, as a refusal (exit 2): nothing was changed.
pub fn read_refused(cluster: &Cluster, what: &str, err: &kube::Error) -> anyhow::Error {
    let hint = match status_code(err) {
        Some(401) => "; the context's credentials were rejected",
        Some(403) => "; the context's user lacks the rights: use a cluster-admin context",
        _ => "",
    };
    crate::error::Error::Preflight(format!(
        "cannot read {what} on {} ({}){hint}",
        cluster.context,
        describe_kube_error(err)
    ))
    .into()
}
