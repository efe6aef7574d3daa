//! The SPIRE OIDC discovery document and its JWKS, fetched over HTTPS with TLS verified against the
//! given CA (e.g. the hub's ingress CA) plus the system roots. `HTTPS_PROXY`/`NO_PROXY` are honoured.

use std::time::Duration;

use anyhow::Result;
use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Signing algorithms ztwim-hub can verify JWT-SVIDs with.
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "ES256", "ES384", "PS256", "PS384", "PS512",
];

#[derive(Debug, Clone, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
}

/// What the issuer serves, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    pub issuer: String,
    pub jwks_uri: String,
    pub algorithms: Vec<String>,
    #[serde(skip)]
    pub jwks: JwkSet,
    pub key_ids: Vec<String>,
}

/// An HTTPS client trusting the system roots and `extra_ca_pem`.
pub fn https_client(extra_ca_pem: Option<&str>, timeout: Duration) -> Result<reqwest::Client> {
    Ok(builder(extra_ca_pem, timeout)?.build()?)
}

fn builder(extra_ca_pem: Option<&str>, timeout: Duration) -> Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .https_only(true)
        .use_rustls_tls();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        if let Ok(cert) = reqwest::Certificate::from_der(&cert) {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some(pem) = extra_ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())? {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// Like [`https_client`], for `url`; when `url`'s host does not resolve on this machine and `fallback` is
/// given (`HOST:PORT` or `IP:PORT`), connections to it go to `fallback` instead, still verifying the
/// certificate for `url`'s host (curl's `--connect-to`). kind: the issuer
/// `https://<hub>-control-plane:30443` is a name on the docker network; this machine reaches it through
/// kind-config's port mapping 127.0.0.1:30443. Through a proxy (`HTTPS_PROXY`) the name goes to the proxy.
pub async fn https_client_reaching(
    extra_ca_pem: Option<&str>,
    timeout: Duration,
    url: &str,
    fallback: Option<&str>,
) -> Result<reqwest::Client> {
    let client = https_client(extra_ca_pem, timeout)?;
    let (Some(fallback), Ok(parsed)) = (fallback, url::Url::parse(url)) else {
        return Ok(client);
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return Ok(client);
    };
    if tokio::net::lookup_host((host, port)).await.is_ok() {
        return Ok(client);
    }
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host(fallback).await {
        Ok(a) => a.collect(),
        Err(_) => return Ok(client),
    };
    Ok(builder(extra_ca_pem, timeout)?
        .resolve_to_addrs(host, &addrs)
        .build()?)
}

fn failed(msg: String) -> anyhow::Error {
    Error::Verification(msg).into()
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(format!("GET {url}: {}", describe_reqwest(&e))))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(format!("GET {url}: HTTP {status}")));
    }
    let text = response
        .text()
        .await
        .map_err(|e| failed(format!("GET {url}: {}", describe_reqwest(&e))))?;
    serde_json::from_str(&text)
        .map_err(|e| failed(format!("GET {url}: not the expected JSON ({e})")))
}

/// The innermost cause of a reqwest error (e.g. the TLS verification failure).
pub fn describe_reqwest(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source: &dyn std::error::Error = err;
    while let Some(next) = source.source() {
        text = next.to_string();
        source = next;
    }
    text
}

/// Fetches `<base_url>/.well-known/openid-configuration` and its JWKS and checks them against
/// `expected_issuer`.
pub async fn verify(
    client: &reqwest::Client,
    base_url: &str,
    expected_issuer: &str,
) -> Result<Discovery> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        base_url.trim_end_matches('/')
    );
    let doc: DiscoveryDocument = get_json(client, &url).await?;
    if doc.issuer != expected_issuer {
        return Err(failed(format!(
            "{url} says issuer {:?}, but SPIRE is configured with jwtIssuer {expected_issuer:?}: tokens would not verify on the spokes",
            doc.issuer
        )));
    }
    if !doc.jwks_uri.starts_with("https://") {
        return Err(failed(format!(
            "{url}: jwks_uri {:?} is not an https:// URL",
            doc.jwks_uri
        )));
    }
    let unsupported: Vec<&String> = doc
        .id_token_signing_alg_values_supported
        .iter()
        .filter(|a| !SUPPORTED_ALGORITHMS.contains(&a.as_str()))
        .collect();
    if doc.id_token_signing_alg_values_supported.is_empty()
        || unsupported.len() == doc.id_token_signing_alg_values_supported.len()
    {
        return Err(failed(format!(
            "{url}: id_token_signing_alg_values_supported {:?} has no algorithm Kubernetes verifies",
            doc.id_token_signing_alg_values_supported
        )));
    }
    let jwks: JwkSet = get_json(client, &doc.jwks_uri).await?;
    if jwks.keys.is_empty() {
        return Err(failed(format!("{}: the JWKS has no keys", doc.jwks_uri)));
    }
    let key_ids = jwks
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap_or_default())
        .collect();
    Ok(Discovery {
        issuer: doc.issuer,
        jwks_uri: doc.jwks_uri,
        algorithms: doc.id_token_signing_alg_values_supported,
        jwks,
        key_ids,
    })
}
