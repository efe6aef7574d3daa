//! JWT (OIDC) bearer-token authentication, shared by the OpenShift spoke (external OIDC through
//! `Authentication cluster`, see [`crate::openshift_authn`]) and the kind spoke (the structured
//! authentication configuration file, see [`crate::kind_authn`]).
//!
//! A [`JwtAuthenticator`] fetches the issuer's OIDC discovery document and JWKS over HTTPS,
//! trusting only its configured CA (or the system roots), and verifies tokens like
//! kube-apiserver's JWT authenticator: `iss` equal to the issuer URL, one of the audiences in
//! `aud`, `exp`/`nbf`, the signature by a JWKS key (the JWKS is fetched again once when a token
//! names an unknown `kid`), claim validation rules, then the username/groups/uid claim mappings.
//!
//! Network access never leaves the machine: a host is reached through the simulated proxy
//! routes (the table the env file's CONNECT proxy uses, [`crate::proxy::Routes`]) or, for
//! loopback IP addresses, directly. Every other host is unreachable.
//!
//! [`OidcAuthn`] is the per-cluster [`TokenAuthenticator`] holding the active JWT authenticators
//! and the simulated OpenShift OAuth tokens.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use serde_json::Value;

use crate::auth::{Identity, TokenAuthenticator};
use crate::proxy::Routes;

/// How long one discovery or JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// A small HTTPS client for simulated hosts.

/// How a client trusts the server's certificate.
#[derive(Clone)]
pub(crate) enum Trust {
    /// Only these CAs.
    Roots(Arc<rustls::RootCertStore>),
    /// No verification at all (`insecure: true`).
    Insecure,
}

/// TLS settings of a client.
pub(crate) struct ClientTls {
    pub trust: Trust,
    /// A client certificate chain and key.
    pub client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Verify the server certificate for this name instead of the URL's host.
    pub server_name: Option<String>,
}

/// The CA certificates of a PEM bundle (an error when there is none or one does not parse).
pub(crate) fn roots_from_pem(pem: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| {
            format!("data does not contain any valid RSA or ECDSA certificates: {e}")
        })?;
        roots
            .add(cert)
            .map_err(|e| format!("invalid CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("data does not contain any valid RSA or ECDSA certificates".into());
    }
    Ok(roots)
}

/// The machine's trust store (`$SSL_CERT_FILE` or the Debian bundle). No simulated host has a
/// certificate from a public CA, so in practice nothing simulated verifies against it.
pub(crate) fn system_roots() -> rustls::RootCertStore {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let mut roots = rustls::RootCertStore::empty();
    if let Ok(pem) = std::fs::read(&path) {
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
    }
    roots
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a request got no response, worded like Go's net/http errors.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HttpError {
    /// No route to the host, or the connection was refused.
    Unreachable(String),
    /// The TLS handshake failed (e.g. the certificate is not signed by a trusted CA).
    Tls(String),
    /// No response in time.
    Timeout,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Unreachable(m) | HttpError::Other(m) => f.write_str(m),
            HttpError::Tls(m) => write!(f, "tls: {m}"),
            HttpError::Timeout => f.write_str(
                "context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            ),
        }
    }
}

/// The local address for `host:port`: loopback IPs directly, names through the proxy routes.
fn resolve(routes: &Routes, host: &str, port: u16) -> Result<SocketAddr, HttpError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if ip.is_loopback() {
            Ok(SocketAddr::new(ip, port))
        } else {
            Err(HttpError::Unreachable(format!(
                "dial tcp {host}:{port}: kubesim reaches only loopback addresses and simulated hosts"
            )))
        };
    }
    if let Some(addr) = routes.get(&format!("{host}:{port}")) {
        return Ok(addr);
    }
    if bare.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(HttpError::Unreachable(format!(
        "dial tcp: lookup {host}: no such host (kubesim has no simulated route to {host}:{port})"
    )))
}

/// A rustls error in Go's words where the tests and products look for them.
fn describe_tls_error(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(C::UnknownIssuer)) => {
            "failed to verify certificate: x509: certificate signed by unknown authority".into()
        }
        Some(rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        )) => "failed to verify certificate: x509: certificate is not valid for the requested name"
            .into(),
        Some(rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        )) => {
            "failed to verify certificate: x509: certificate has expired or is not yet valid".into()
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

/// Accepts every server certificate (`insecure: true`), still checking handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(tls: &ClientTls) -> Result<rustls::ClientConfig, HttpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Other(e.to_string()))?;
    let builder = match &tls.trust {
        Trust::Roots(roots) => builder.with_root_certificates(roots.clone()),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider))),
    };
    let mut config = match &tls.client_auth {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| HttpError::Other(format!("client certificate: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// One HTTPS request to a simulated host (see the module docs for how hosts are reached).
pub(crate) async fn https_request(
    routes: &Routes,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    tls: &ClientTls,
) -> Result<HttpResponse, HttpError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| HttpError::Other(format!("parse {url:?}: {e}")))?;
    if uri.scheme_str() != Some("https") {
        return Err(HttpError::Other(format!(
            "unsupported protocol scheme in {url:?} (kubesim speaks https only)"
        )));
    }
    let host = uri
        .host()
        .ok_or_else(|| HttpError::Other(format!("no host in {url:?}")))?
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let addr = resolve(routes, &host, port)?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| HttpError::Unreachable(format!("dial tcp {host}:{port}: {e}")))?;
    let config = client_config(tls)?;
    let name = tls.server_name.clone().unwrap_or_else(|| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| HttpError::Other(format!("server name {name:?}: {e}")))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| HttpError::Tls(describe_tls_error(&e)))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| HttpError::Other(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(host);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| HttpError::Other(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| HttpError::Other(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| HttpError::Other(format!("reading the response: {e}")))?
        .to_bytes()
        .to_vec();
    Ok(HttpResponse { status, body })
}

/// Run a client future to completion from synchronous code (controllers, authenticators),
/// on a private runtime in its own thread so that it never waits for the simulated servers'
/// own worker threads. On a multi-threaded runtime worker the worker's other tasks are
/// handed off first (`block_in_place`).
pub(crate) fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let job = move || {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for a kubesim client")
                .block_on(fut)
        })
        .join()
        .expect("kubesim client thread panicked")
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(job)
        }
        _ => job(),
    }
}

/// GET `url` and parse the JSON body (an error unless the status is 200).
fn get_json(
    routes: &Arc<Routes>,
    url: &str,
    roots: &Arc<rustls::RootCertStore>,
) -> Result<Value, String> {
    let routes = routes.clone();
    let target = url.to_string();
    let tls = ClientTls {
        trust: Trust::Roots(roots.clone()),
        client_auth: None,
        server_name: None,
    };
    let result = block_on(async move {
        let headers = [("Accept".to_string(), "application/json".to_string())];
        match tokio::time::timeout(
            FETCH_TIMEOUT,
            https_request(&routes, "GET", &target, &headers, Vec::new(), &tls),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout),
        }
    });
    let resp = result.map_err(|e| format!("Get {url:?}: {e}"))?;
    if resp.status != 200 {
        return Err(format!(
            "{url}: {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body).trim()
        ));
    }
    serde_json::from_slice(&resp.body)
        .map_err(|e| format!("{url}: failed to decode the response: {e}"))
}

// ---------------------------------------------------------------------------------------------
// A tiny subset of CEL, for claim mappings and validation rules.

/// The CEL expressions kubesim evaluates: `claims.a.b`, concatenations of string literals and
/// claims (`'prefix:' + claims.sub`), and comparisons of a claim with a literal
/// (`claims.hd == 'example.com'`, `!=`; literals are strings or `true`/`false`). Any other
/// expression is rejected when the configuration is loaded (kubesim does not implement CEL).
#[derive(Debug, Clone, PartialEq)]
pub enum Cel {
    /// `claims.a.b`.
    Claim(Vec<String>),
    /// Terms joined with `+`.
    Concat(Vec<CelTerm>),
    /// `claims.a == <literal>` (`equal`) or `!=`.
    Compare {
        path: Vec<String>,
        value: Value,
        equal: bool,
    },
}

/// One term of a [`Cel::Concat`].
#[derive(Debug, Clone, PartialEq)]
pub enum CelTerm {
    Literal(String),
    Claim(Vec<String>),
}

fn parse_claim_path(s: &str) -> Option<Vec<String>> {
    let rest = s.trim().strip_prefix("claims.")?;
    let parts: Vec<String> = rest.split('.').map(str::to_string).collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(parts)
}

fn parse_literal(s: &str) -> Option<Value> {
    let s = s.trim();
    match s {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q))
            && !inner.contains(q)
            && !inner.contains('\\')
        {
            return Some(Value::String(inner.to_string()));
        }
    }
    None
}

impl Cel {
    /// Parse the supported subset (see the type's docs).
    pub fn parse(expr: &str) -> Result<Cel, String> {
        let unsupported = || {
            format!(
                "kubesim evaluates only simple CEL expressions (claims.x, 'literal' + claims.x, claims.x == 'value', claims.x != 'value'), not {expr:?}"
            )
        };
        let e = expr.trim();
        for (op, equal) in [("==", true), ("!=", false)] {
            if let Some((l, r)) = e.split_once(op) {
                let path = parse_claim_path(l).ok_or_else(unsupported)?;
                let value = parse_literal(r).ok_or_else(unsupported)?;
                return Ok(Cel::Compare { path, value, equal });
            }
        }
        if let Some(path) = parse_claim_path(e) {
            return Ok(Cel::Claim(path));
        }
        let mut terms = Vec::new();
        for part in e.split('+') {
            if let Some(path) = parse_claim_path(part) {
                terms.push(CelTerm::Claim(path));
            } else if let Some(Value::String(s)) = parse_literal(part) {
                terms.push(CelTerm::Literal(s));
            } else {
                return Err(unsupported());
            }
        }
        Ok(Cel::Concat(terms))
    }

    /// Whether the expression reads `claims.<name>`.
    pub fn mentions(&self, name: &str) -> bool {
        match self {
            Cel::Claim(p) | Cel::Compare { path: p, .. } => p.first().is_some_and(|f| f == name),
            Cel::Concat(ts) => ts
                .iter()
                .any(|t| matches!(t, CelTerm::Claim(p) if p.first().is_some_and(|f| f == name))),
        }
    }

    fn lookup<'a>(claims: &'a Value, path: &[String]) -> Option<&'a Value> {
        path.iter().try_fold(claims, |v, k| v.get(k))
    }

    /// Evaluate to a value (a claim or a string).
    pub fn eval(&self, claims: &Value) -> Result<Value, String> {
        match self {
            Cel::Claim(p) => Self::lookup(claims, p)
                .cloned()
                .ok_or_else(|| format!("no such key: {}", p.join("."))),
            Cel::Concat(ts) => {
                let mut out = String::new();
                for t in ts {
                    match t {
                        CelTerm::Literal(s) => out.push_str(s),
                        CelTerm::Claim(p) => match Self::lookup(claims, p) {
                            Some(Value::String(s)) => out.push_str(s),
                            Some(_) => {
                                return Err(format!("claims.{} is not a string", p.join(".")));
                            }
                            None => return Err(format!("no such key: {}", p.join("."))),
                        },
                    }
                }
                Ok(Value::String(out))
            }
            Cel::Compare { path, value, equal } => {
                let got = Self::lookup(claims, path)
                    .ok_or_else(|| format!("no such key: {}", path.join(".")))?;
                Ok(Value::Bool((got == value) == *equal))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JWT authenticator configuration.

/// Where a value comes from: a claim or a (simple) CEL expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimSource {
    Claim(String),
    Expression(Cel),
}

/// A claim mapping with the prefix put in front of each value.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixedClaim {
    pub source: ClaimSource,
    pub prefix: String,
}

/// A claim validation rule.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimRule {
    /// The claim must be present and equal `value`.
    Required { claim: String, value: String },
    /// The expression must be true.
    Expression { expr: Cel, message: String },
}

/// One JWT issuer and how its tokens map to users.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtConfig {
    /// Must equal the tokens' `iss` and the discovery document's `issuer`.
    pub issuer_url: String,
    /// Discovery document URL (default `{issuer_url}/.well-known/openid-configuration`).
    pub discovery_url: Option<String>,
    /// PEM CA bundle for the discovery and JWKS connections (`None`: the system roots).
    pub ca_pem: Option<String>,
    /// At least one must be in the token's `aud`.
    pub audiences: Vec<String>,
    pub username: PrefixedClaim,
    pub groups: Option<PrefixedClaim>,
    pub uid: Option<ClaimSource>,
    pub claim_rules: Vec<ClaimRule>,
}

/// Token algorithms kube-apiserver accepts (jsonwebtoken has no ES512).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Accepts the tokens of one issuer.
pub struct JwtAuthenticator {
    config: JwtConfig,
    routes: Arc<Routes>,
    keys: Mutex<Option<Arc<JwkSet>>>,
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("config", &self.config)
            .finish()
    }
}

fn as_strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}: not a string or a list of strings"))
            })
            .collect(),
        _ => Err(format!("{what}: not a string or a list of strings")),
    }
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl JwtAuthenticator {
    /// Reach the issuer through `routes` (see the module docs).
    pub fn new(config: JwtConfig, routes: Arc<Routes>) -> Self {
        Self {
            config,
            routes,
            keys: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    fn fetch_keys(&self) -> Result<Arc<JwkSet>, String> {
        let roots = match &self.config.ca_pem {
            Some(pem) => Arc::new(roots_from_pem(pem)?),
            None => {
                let mut roots = system_roots();
                for pem in self.routes.public_roots() {
                    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()).flatten() {
                        let _ = roots.add(cert);
                    }
                }
                Arc::new(roots)
            }
        };
        let issuer = &self.config.issuer_url;
        let discovery_url = self.config.discovery_url.clone().unwrap_or_else(|| {
            format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            )
        });
        let doc = get_json(&self.routes, &discovery_url, &roots)
            .map_err(|e| format!("oidc: failed to fetch the discovery document: {e}"))?;
        let got = doc["issuer"].as_str().unwrap_or_default();
        if got != issuer {
            return Err(format!(
                "oidc: issuer did not match the issuer returned by provider, expected {issuer:?} got {got:?}"
            ));
        }
        let jwks_uri = doc["jwks_uri"]
            .as_str()
            .ok_or_else(|| "oidc: the discovery document has no jwks_uri".to_string())?;
        let jwks = get_json(&self.routes, jwks_uri, &roots)
            .map_err(|e| format!("oidc: failed to fetch the JWKS: {e}"))?;
        let keys: Vec<Jwk> = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| serde_json::from_value(k.clone()).ok())
            .collect();
        Ok(Arc::new(JwkSet { keys }))
    }

    fn keys(&self, refresh: bool) -> Result<Arc<JwkSet>, String> {
        if !refresh && let Some(k) = self.keys.lock().unwrap().clone() {
            return Ok(k);
        }
        let fresh = self.fetch_keys()?;
        *self.keys.lock().unwrap() = Some(fresh.clone());
        Ok(fresh)
    }

    fn candidates(set: &JwkSet, kid: Option<&str>) -> Vec<Jwk> {
        match kid {
            Some(kid) => set.find(kid).cloned().into_iter().collect(),
            None => set.keys.clone(),
        }
    }

    fn verify_signature(&self, token: &str) -> Result<Value, String> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| format!("oidc: malformed jwt: {e}"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(format!(
                "oidc: id token signed with unsupported algorithm, expected {ALGORITHMS:?} got {:?}",
                header.alg
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        let kid = header.kid.as_deref();
        let mut keys = Self::candidates(&*self.keys(false)?, kid);
        if keys.is_empty() {
            // An unknown key id: the issuer may have rotated its keys.
            keys = Self::candidates(&*self.keys(true)?, kid);
        }
        if keys.is_empty() {
            return Err(format!(
                "oidc: failed to verify signature: no JWKS key with kid {:?}",
                kid.unwrap_or_default()
            ));
        }
        let mut last = String::new();
        for jwk in &keys {
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(k) => k,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("oidc: failed to verify signature: {last}"))
    }

    fn string_claim(
        claims: &Value,
        source: &ClaimSource,
        what: &str,
    ) -> Result<Option<Value>, String> {
        match source {
            ClaimSource::Claim(c) => Ok(claims.get(c).cloned()),
            ClaimSource::Expression(e) => e
                .eval(claims)
                .map(Some)
                .map_err(|err| format!("{what} expression: {err}")),
        }
    }

    /// Verify `token` and map it to a user (without `system:authenticated`, which the server adds).
    pub fn verify(&self, token: &str) -> Result<Identity, String> {
        let claims = self.verify_signature(token)?;
        let c = &self.config;
        let iss = claims["iss"].as_str().unwrap_or_default();
        if iss != c.issuer_url {
            return Err(format!(
                "oidc: id token issued by a different provider, expected {:?} got {iss:?}",
                c.issuer_url
            ));
        }
        let aud = as_strings(&claims["aud"], "aud").unwrap_or_default();
        if !aud.iter().any(|a| c.audiences.contains(a)) {
            return Err(format!(
                "oidc: expected audience in {:?} got {aud:?}",
                c.audiences
            ));
        }
        let now = now_secs();
        let exp = claims["exp"]
            .as_i64()
            .ok_or("oidc: the token has no exp claim")?;
        if exp <= now {
            return Err(format!("oidc: token is expired (Token Expiry: {exp})"));
        }
        if let Some(nbf) = claims["nbf"].as_i64() {
            // go-oidc allows five minutes of clock skew for nbf.
            if nbf > now + 300 {
                return Err(format!(
                    "oidc: current time {now} before the nbf (not before) time: {nbf}"
                ));
            }
        }
        for rule in &c.claim_rules {
            match rule {
                ClaimRule::Required { claim, value } => {
                    if claims.get(claim).and_then(Value::as_str) != Some(value.as_str()) {
                        return Err(format!(
                            "oidc: required claim {claim} not found or does not match {value:?}"
                        ));
                    }
                }
                ClaimRule::Expression { expr, message } => {
                    if expr.eval(&claims)? != Value::Bool(true) {
                        return Err(format!(
                            "oidc: error evaluating claim validation expression: {message}"
                        ));
                    }
                }
            }
        }
        let username = match Self::string_claim(&claims, &c.username.source, "username")? {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::String(_)) => return Err("oidc: the username claim is empty".into()),
            Some(_) => return Err("oidc: the username claim is not a string".into()),
            None => {
                return Err(format!(
                    "oidc: parse username claims {:?}: claim not present",
                    c.username.source
                ));
            }
        };
        if matches!(&c.username.source, ClaimSource::Claim(n) if n == "email")
            && claims
                .get("email_verified")
                .is_some_and(|v| v != &Value::Bool(true))
        {
            return Err("oidc: email not verified".into());
        }
        let mut groups = Vec::new();
        if let Some(g) = &c.groups {
            let empty_claim = matches!(&g.source, ClaimSource::Claim(n) if n.is_empty());
            if !empty_claim && let Some(v) = Self::string_claim(&claims, &g.source, "groups")? {
                groups = as_strings(&v, "oidc: groups claim")?
                    .into_iter()
                    .map(|x| format!("{}{x}", g.prefix))
                    .collect();
            }
        }
        let uid = match &c.uid {
            Some(src) => match Self::string_claim(&claims, src, "uid")? {
                Some(Value::String(s)) => Some(s),
                Some(_) => return Err("oidc: the uid claim is not a string".into()),
                None => return Err("oidc: the uid claim is not present".into()),
            },
            None => None,
        };
        Ok(Identity {
            user: format!("{}{username}", c.username.prefix),
            groups,
            uid,
            extra: Default::default(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The per-cluster authenticator.

/// What happened to the automatic reloads of an authentication configuration file (kind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Successful loads, the initial one included.
    pub successes: u64,
    /// Loads that failed (the previous configuration stayed active).
    pub failures: u64,
    /// Why the last failed load failed (cleared by a later success).
    pub last_error: Option<String>,
}

/// The bearer-token authenticator of one cluster for JWTs and simulated OAuth tokens
/// (registered after the static tokens).
#[derive(Default)]
pub struct OidcAuthn {
    jwt: RwLock<Vec<Arc<JwtAuthenticator>>>,
    oauth_tokens: Mutex<HashMap<String, Identity>>,
    oauth_disabled: AtomicBool,
    last_error: Mutex<Option<String>>,
    reloads: Mutex<ReloadStatus>,
}

impl OidcAuthn {
    /// Replace the active JWT authenticators.
    pub fn set_jwt_authenticators(&self, list: Vec<Arc<JwtAuthenticator>>) {
        *self.jwt.write().unwrap() = list;
    }
    pub fn jwt_authenticators(&self) -> Vec<Arc<JwtAuthenticator>> {
        self.jwt.read().unwrap().clone()
    }
    /// An OpenShift OAuth access token (e.g. `sha256~...` from `oc login`): accepted while the
    /// cluster's `Authentication` type is not `OIDC`.
    pub fn add_oauth_token(&self, token: &str, id: Identity) {
        self.oauth_tokens
            .lock()
            .unwrap()
            .insert(token.to_string(), id);
    }
    pub fn set_oauth_enabled(&self, enabled: bool) {
        self.oauth_disabled.store(!enabled, Ordering::SeqCst);
    }
    pub fn oauth_enabled(&self) -> bool {
        !self.oauth_disabled.load(Ordering::SeqCst)
    }
    /// Why the last JWT was rejected (for tests and diagnostics; the API only says 401).
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap().clone()
    }
    pub fn reload_status(&self) -> ReloadStatus {
        self.reloads.lock().unwrap().clone()
    }
    pub(crate) fn record_reload(&self, result: Result<(), String>) {
        let mut r = self.reloads.lock().unwrap();
        match result {
            Ok(()) => {
                r.successes += 1;
                r.last_error = None;
            }
            Err(e) => {
                r.failures += 1;
                r.last_error = Some(e);
            }
        }
    }
    fn reject(&self, why: String) -> Option<Identity> {
        *self.last_error.lock().unwrap() = Some(why);
        None
    }
}

impl TokenAuthenticator for OidcAuthn {
    fn authenticate(&self, token: &str) -> Option<Identity> {
        if self.oauth_enabled()
            && let Some(id) = self.oauth_tokens.lock().unwrap().get(token)
        {
            return Some(id.clone());
        }
        if token.split('.').count() != 3 {
            return None;
        }
        let authenticators = self.jwt_authenticators();
        if authenticators.is_empty() {
            return self.reject("no JWT authenticator is configured".into());
        }
        // Like kube-apiserver, pick the authenticator by the (unverified) issuer.
        let iss = match jsonwebtoken::dangerous::insecure_decode::<Value>(token) {
            Ok(d) => d.claims["iss"].as_str().unwrap_or_default().to_string(),
            Err(e) => return self.reject(format!("malformed JWT: {e}")),
        };
        let Some(a) = authenticators.iter().find(|a| a.config.issuer_url == iss) else {
            return self.reject(format!("no JWT authenticator for issuer {iss:?}"));
        };
        match a.verify(token) {
            Ok(id) => Some(id),
            Err(e) => self.reject(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cel_subset_parses_and_evaluates() {
        let claims = json!({"sub": "alice", "hd": "example.com", "email_verified": true, "org": {"team": "a"}});
        assert_eq!(
            Cel::parse("claims.sub").unwrap().eval(&claims).unwrap(),
            json!("alice")
        );
        assert_eq!(
            Cel::parse("claims.org.team")
                .unwrap()
                .eval(&claims)
                .unwrap(),
            json!("a")
        );
        assert_eq!(
            Cel::parse("'oidc:' + claims.sub")
                .unwrap()
                .eval(&claims)
                .unwrap(),
            json!("oidc:alice")
        );
        assert_eq!(
            Cel::parse("claims.hd == 'example.com'")
                .unwrap()
                .eval(&claims)
                .unwrap(),
            json!(true)
        );
        assert_eq!(
            Cel::parse("claims.hd != \"example.com\"")
                .unwrap()
                .eval(&claims)
                .unwrap(),
            json!(false)
        );
        assert_eq!(
            Cel::parse("claims.email_verified == true")
                .unwrap()
                .eval(&claims)
                .unwrap(),
            json!(true)
        );
        assert!(Cel::parse("claims.missing").unwrap().eval(&claims).is_err());
        assert!(Cel::parse("claims.sub.startsWith('a')").is_err());
        assert!(Cel::parse("has(claims.sub)").is_err());
        assert!(
            Cel::parse("claims.email_verified == true")
                .unwrap()
                .mentions("email_verified")
        );
    }

    #[test]
    fn only_loopback_and_routed_hosts_are_reachable() {
        let routes = Routes::default();
        routes.add("oidc.example:443", "127.0.0.1:9999".parse().unwrap());
        assert_eq!(resolve(&routes, "oidc.example", 443).unwrap().port(), 9999);
        assert!(resolve(&routes, "127.0.0.1", 6443).is_ok());
        assert!(resolve(&routes, "localhost", 6443).is_ok());
        assert!(matches!(
            resolve(&routes, "10.0.0.1", 443),
            Err(HttpError::Unreachable(_))
        ));
        assert!(matches!(
            resolve(&routes, "oidc.example", 8443),
            Err(HttpError::Unreachable(_))
        ));
        assert!(matches!(
            resolve(&routes, "example.com", 443),
            Err(HttpError::Unreachable(_))
        ));
    }
}
