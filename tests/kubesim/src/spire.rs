//! What the two simulated SPIRE deployments share: the per-cluster JWT signing key and JWKS,
//! the X.509 CA of the trust bundle, minting JWT-SVIDs, the identity a pod gets from the
//! Workload API, the OIDC discovery document and the HTTPS listener serving it.
//!
//! Two deployments feed it:
//!
//! - OpenShift: the ZTWIM operator's operands ([`crate::ztwim`]), configured by the
//!   `operator.openshift.io` CRs; a pod's SPIFFE ID is always
//!   `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
//! - kind: upstream SPIRE recognised by its images ([`crate::spire_upstream`]), configured by the
//!   server's `server.conf`; a pod's SPIFFE ID comes from the ClusterSPIFFEID selecting it.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::sim::ClusterHandle;

/// Per-cluster state of the simulated SPIRE deployment.
#[derive(Default)]
pub struct HubState {
    signing: Mutex<Option<Arc<SigningKey>>>,
    spire_ca: Mutex<Option<(String, String)>>,
    pub(crate) oidc_addr: Mutex<Option<SocketAddr>>,
    pub(crate) issuer_override: Mutex<Option<String>>,
    /// `(scope, program)` pairs the exec plugin is registered for (scope: a namespace, or
    /// `namespace/pod`).
    pub(crate) exec_registered: Mutex<BTreeSet<(String, String)>>,
    /// Upstream SPIRE on kind ([`crate::spire_upstream`]).
    pub(crate) upstream: crate::spire_upstream::UpstreamState,
}

/// The SPIRE JWT signing key of a cluster.
pub(crate) struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn generate(p384: bool) -> Self {
        let (alg, sig) = if p384 {
            (Algorithm::ES384, &rcgen::PKCS_ECDSA_P384_SHA384)
        } else {
            (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256)
        };
        let pair = rcgen::KeyPair::generate_for(sig).expect("generating an EC key");
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        let kid: String = {
            use rand::Rng;
            const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let mut rng = rand::rng();
            (0..32)
                .map(|_| ALNUM[rng.random_range(0..ALNUM.len())] as char)
                .collect()
        };
        let jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).expect("public JWK of an EC key");
        let mut jwk = serde_json::to_value(jwk).expect("JWK serialises");
        if let Some(m) = jwk.as_object_mut() {
            m.remove("alg");
            m.insert("kid".into(), json!(kid));
            m.insert("use".into(), json!("sig"));
        }
        Self { kid, alg, key, jwk }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.key).expect("signing a JWT")
    }
}

impl HubState {
    fn signing_key(&self, p384: bool) -> Arc<SigningKey> {
        let mut k = self.signing.lock().unwrap();
        k.get_or_insert_with(|| Arc::new(SigningKey::generate(p384)))
            .clone()
    }
}

/// A minted JWT-SVID.
pub(crate) struct Svid {
    pub token: String,
    pub exp: i64,
}

/// The SPIRE server that signs a cluster's JWT-SVIDs, whichever deployment runs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerSettings {
    pub trust_domain: String,
    /// `iss` of the JWT-SVIDs (`None`: SPIRE leaves the claim out).
    pub jwt_issuer: Option<String>,
    /// Lifetime of a JWT-SVID in seconds.
    pub jwt_ttl: i64,
}

/// The settings of the cluster's SPIRE server, if one is configured.
pub(crate) fn server_settings(c: &ClusterHandle) -> Option<ServerSettings> {
    if c.profile().is_openshift() {
        crate::ztwim::server_settings(c)
    } else {
        crate::spire_upstream::server_settings(c)
    }
}

/// Whether the JWT key is EC P-384 (`jwtKeyType: ec-p384` / `jwt_key_type: ec-p384`).
fn jwt_key_p384(c: &ClusterHandle) -> bool {
    if c.profile().is_openshift() {
        crate::ztwim::jwt_key_p384(c)
    } else {
        crate::spire_upstream::jwt_key_p384(c)
    }
}

/// What a pod's Workload API looks like: the CSI driver that mounts the agent's socket
/// directory, and the socket's file name.
pub(crate) struct WorkloadApi {
    pub csi_driver: String,
    pub socket_name: String,
}

pub(crate) fn workload_api(c: &ClusterHandle) -> WorkloadApi {
    if c.profile().is_openshift() {
        WorkloadApi {
            csi_driver: crate::ztwim::csi_plugin_name(c),
            socket_name: crate::ztwim::AGENT_SOCKET_NAME.to_string(),
        }
    } else {
        crate::spire_upstream::workload_api(c)
    }
}

/// The SPIFFE ID the SPIRE agent gives `pod` over the Workload API right now (`None`: no
/// identity, a client waits). OpenShift: `spiffe://<td>/ns/<ns>/sa/<sa>` once SpireServer,
/// SpireAgent and SpiffeCSIDriver are Ready, outside `openshift-*` namespaces. kind: from the
/// ClusterSPIFFEID selecting the pod once upstream SPIRE is ready.
pub(crate) fn pod_spiffe_id(c: &ClusterHandle, pod: &Value) -> Option<String> {
    if c.profile().is_openshift() {
        crate::ztwim::pod_spiffe_id(c, pod)
    } else {
        crate::spire_upstream::pod_spiffe_id(c, pod)
    }
}

impl ClusterHandle {
    fn signing_key_for_cluster(&self) -> Arc<SigningKey> {
        let p384 = jwt_key_p384(self);
        self.hub().signing_key(p384)
    }

    /// Sign `claims` with the cluster's SPIRE JWT key (header `alg` ES256, or ES384 with
    /// `jwtKeyType: ec-p384` (OpenShift) / `jwt_key_type: ec-p384` (kind), and the `kid` the
    /// JWKS lists). For tests that need tokens with chosen claims (other audiences, expired
    /// ones, ...).
    pub fn spire_sign(&self, claims: &Value) -> String {
        self.signing_key_for_cluster().sign(claims)
    }

    /// The JWKS the OIDC discovery provider serves at `/keys`.
    pub fn spire_jwks(&self) -> Value {
        json!({"keys": [self.signing_key_for_cluster().jwk.clone()]})
    }

    /// Exec sessions open right now (a hung exec plugin counts until its client disconnects).
    pub fn exec_sessions(&self) -> usize {
        self.core().exec.active_sessions()
    }
}

/// Mint a JWT-SVID as the SPIRE server would: `sub` the SPIFFE ID, `aud` [audience], `iss`
/// the server's JWT issuer (left out when it has none), lifetime the server's JWT-SVID TTL.
pub(crate) fn mint_svid(c: &ClusterHandle, spiffe_id: &str, audience: &str) -> Option<Svid> {
    let s = server_settings(c)?;
    let iat = jiff::Timestamp::now().as_second();
    let exp = iat + s.jwt_ttl;
    let mut claims = json!({"aud": [audience], "exp": exp, "iat": iat, "sub": spiffe_id});
    if let Some(iss) = s.jwt_issuer {
        claims["iss"] = json!(iss);
    }
    Some(Svid {
        token: c.spire_sign(&claims),
        exp,
    })
}

/// Parse a Go duration (`5m`, `1h30m`, `90s`, `1.5h`, `300ms`) into seconds.
pub(crate) fn parse_go_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if s == "0" {
        return Some(0.0);
    }
    let mut rest = s;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|ch: char| ch.is_ascii_digit() || ch == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// The SPIRE server's X.509 CA (for `bundle.crt`), one per cluster and trust domain.
/// `subject`: `commonName`, `country`, `organization` (strings).
pub(crate) fn spire_ca_pem(c: &ClusterHandle, td: &str, subject: Option<&Value>) -> String {
    let mut slot = c.hub().spire_ca.lock().unwrap();
    if let Some((d, pem)) = slot.as_ref()
        && d == td
    {
        return pem.clone();
    }
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = rcgen::DistinguishedName::new();
    let field = |k: &str| {
        subject
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if let Some(country) = field("country") {
        dn.push(rcgen::DnType::CountryName, country);
    }
    if let Some(org) = field("organization") {
        dn.push(rcgen::DnType::OrganizationName, org);
    }
    dn.push(
        rcgen::DnType::CommonName,
        field("commonName").unwrap_or("SPIRE Server CA"),
    );
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    if let Ok(uri) = rcgen::string::Ia5String::try_from(format!("spiffe://{td}")) {
        params.subject_alt_names = vec![rcgen::SanType::URI(uri)];
    }
    let key = rcgen::KeyPair::generate().expect("CA key");
    let pem = params
        .self_signed(&key)
        .expect("self-signed SPIRE CA")
        .pem();
    *slot = Some((td.to_string(), pem.clone()));
    pem
}

// ---------------------------------------------------------------------------------------------
// The OIDC discovery provider's HTTP side.

/// The discovery document SPIRE's OIDC discovery provider serves.
pub(crate) fn discovery_document(issuer: &str, jwks_uri: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "authorization_endpoint": "",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384"],
    })
}

/// A response with a body and a content type.
pub(crate) fn text(
    code: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        content_type.parse().expect("content type"),
    );
    r
}

/// A JSON response.
pub(crate) fn json_response(v: &Value) -> Response<Full<Bytes>> {
    text(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec_pretty(v).expect("json"),
    )
}

/// Answers one request of an HTTPS listener: `(SNI, request)`.
pub(crate) type HttpsHandler = Arc<
    dyn Fn(Option<&str>, &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> + Send + Sync,
>;

/// The `Host` of a request without its port, lowercase (else the SNI).
pub(crate) fn request_host<B>(req: &Request<B>, sni: Option<&str>) -> String {
    req.headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_ascii_lowercase())
        .or_else(|| sni.map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

/// Start an HTTPS (HTTP/1.1) listener on a random loopback port of the current runtime.
pub(crate) fn serve_https(
    tls: Arc<rustls::ServerConfig>,
    handler: HttpsHandler,
) -> Option<SocketAddr> {
    let rt = tokio::runtime::Handle::try_current().ok()?;
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    listener.set_nonblocking(true).ok()?;
    let addr = listener.local_addr().ok()?;
    rt.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = stream.get_ref().1.server_name().map(str::to_string);
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    let sni = sni.clone();
                    async move {
                        // Handlers read the store (synchronously, briefly).
                        Ok::<_, std::convert::Infallible>(handler(sni.as_deref(), &req))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Some(addr)
}
