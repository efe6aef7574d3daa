//! A JWT-SVID obtained inside an Argo CD pod, the way Argo CD obtains it: exec the plugin with the
//! audience, parse the ExecCredential it prints, and verify the token against the issuer's JWKS.
//! The token is never printed, logged or written: only its claims leave this module.

use std::time::Duration;

use anyhow::Result;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::error::Error;
use crate::kube::client::{Cluster, describe_kube_error};

/// How to run the plugin in a pod.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// Absolute path of the plugin binary in the container.
    pub command: String,
    pub socket: String,
    pub audience: String,
    /// `v1` or `v1beta1`: what `EXEC_CREDENTIAL_VERSION` asks for and the printed apiVersion must be.
    pub credential_version: String,
}

impl Plugin {
    pub fn argv(&self) -> Vec<String> {
        vec![
            "env".into(),
            format!("SPIFFE_ENDPOINT_SOCKET={}", self.socket),
            format!("SPIFFE_JWT_AUDIENCE={}", self.audience),
            format!("EXEC_CREDENTIAL_VERSION={}", self.credential_version),
            self.command.clone(),
        ]
    }
}

/// The claims of a verified JWT-SVID.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    #[serde(default)]
    pub iat: Option<i64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// What was proven about one pod's identity.
#[derive(Debug, Clone, Serialize)]
pub struct Proven {
    pub pod: String,
    pub container: String,
    pub claims: Claims,
    /// Seconds the token is valid for (exp - iat).
    pub lifetime_seconds: Option<i64>,
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredential {
    api_version: String,
    kind: String,
    status: Option<ExecCredentialStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredentialStatus {
    token: Option<String>,
    expiration_timestamp: Option<String>,
}

fn failed(msg: String) -> anyhow::Error {
    Error::Verification(msg).into()
}

/// Runs `argv` in `pod`/`container` and returns (stdout, stderr, exit code).
pub async fn exec(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    container: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<(String, String, i32)> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let run = async {
        let mut process = pods.exec(pod, argv.to_vec(), &params).await.map_err(|e| {
            anyhow::anyhow!("exec in pod {namespace}/{pod}: {}", describe_kube_error(&e))
        })?;
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut out) = process.stdout() {
            out.read_to_string(&mut stdout).await?;
        }
        if let Some(mut err) = process.stderr() {
            err.read_to_string(&mut stderr).await?;
        }
        let status = match process.take_status() {
            Some(status) => status.await,
            None => None,
        };
        let code = match status {
            Some(s) if s.status.as_deref() == Some("Success") => 0,
            Some(s) => s
                .details
                .and_then(|d| d.causes)
                .and_then(|causes| {
                    causes
                        .into_iter()
                        .find(|c| c.reason.as_deref() == Some("ExitCode"))
                })
                .and_then(|c| c.message)
                .and_then(|m| m.parse().ok())
                .unwrap_or(1),
            None => 0,
        };
        anyhow::Ok((stdout, stderr, code))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_) => Err(failed(format!(
            "the exec plugin in pod {namespace}/{pod} did not answer within {}s: SPIRE is misconfigured (is the pod's spiffe-workload-api CSI volume mounted and the SPIRE agent on its node running?)",
            timeout.as_secs()
        ))),
    }
}

/// A bearer token held only in memory: never printed (its Debug is redacted), never serialized.
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Obtains a JWT-SVID in `pod` and verifies it: signature against `jwks`, `iss`, `aud`, `sub`, `exp`.
#[allow(clippy::too_many_arguments)]
pub async fn prove(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    container: &str,
    plugin: &Plugin,
    jwks: &JwkSet,
    issuer: &str,
    expected_sub: &str,
    timeout: Duration,
) -> Result<Proven> {
    obtain(
        cluster,
        namespace,
        pod,
        container,
        plugin,
        jwks,
        issuer,
        expected_sub,
        timeout,
    )
    .await
    .map(|(proven, _)| proven)
}

/// Like [`prove`], and also returns the token, for a request made with it.
#[allow(clippy::too_many_arguments)]
pub async fn obtain(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
    container: &str,
    plugin: &Plugin,
    jwks: &JwkSet,
    issuer: &str,
    expected_sub: &str,
    timeout: Duration,
) -> Result<(Proven, Token)> {
    let (stdout, stderr, code) =
        exec(cluster, namespace, pod, container, &plugin.argv(), timeout).await?;
    let where_ = format!("pod {namespace}/{pod} container {container}");
    match code {
        0 => {}
        126 | 127 => {
            return Err(failed(format!(
                "{} is not installed in {where_} (exit {code}): the pod lacks the install-jwt-spiffe init container or its binaries volume; re-apply the Argo CD instance (--only argocd)",
                plugin.command
            )));
        }
        _ => {
            return Err(failed(format!(
                "the exec plugin failed in {where_} (exit {code}): {}",
                stderr.lines().last().unwrap_or("no message").trim()
            )));
        }
    }
    let credential: ExecCredential = serde_saphyr::from_str(&stdout).map_err(|_| {
        failed(format!(
            "the exec plugin in {where_} did not print an ExecCredential"
        ))
    })?;
    let want_version = format!("client.authentication.k8s.io/{}", plugin.credential_version);
    if credential.kind != "ExecCredential" || credential.api_version != want_version {
        return Err(failed(format!(
            "the exec plugin in {where_} printed {} {}, but Argo CD expects {want_version} ExecCredential (check EXEC_CREDENTIAL_VERSION)",
            credential.api_version, credential.kind
        )));
    }
    let status = credential
        .status
        .ok_or_else(|| failed(format!("the ExecCredential from {where_} has no status")))?;
    let token = status
        .token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| failed(format!("the ExecCredential from {where_} has no token")))?;
    let claims = verify_token(&token, jwks, issuer, &plugin.audience, expected_sub)
        .map_err(|e| failed(format!("the JWT-SVID from {where_}: {e}")))?;
    let mut warnings = Vec::new();
    if let Some(ts) = status.expiration_timestamp
        && let Ok(when) = ts.parse::<jiff::Timestamp>()
        && when.as_second() > claims.exp
    {
        warnings.push(format!(
            "the ExecCredential from {where_} expires at {ts}, {}s after the token's exp: clients reuse an expired token until they get a 401 (a known bug of the plugin before v0.0.7)",
            when.as_second() - claims.exp
        ));
    }
    let proven = Proven {
        pod: pod.to_string(),
        container: container.to_string(),
        lifetime_seconds: claims.iat.map(|iat| claims.exp - iat),
        claims,
        warnings,
    };
    Ok((proven, Token(token)))
}

/// Verifies a compact JWS against the JWKS and the expected claims.
pub fn verify_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    audience: &str,
    expected_sub: &str,
) -> Result<Claims, String> {
    let header = decode_header(token).map_err(|e| format!("not a JWT ({e})"))?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid).ok_or_else(|| {
            format!("signed with key {kid:?}, which the issuer's JWKS does not have")
        })?,
        None if jwks.keys.len() == 1 => &jwks.keys[0],
        None => return Err("has no kid and the JWKS has several keys".into()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("the JWKS key is unusable ({e})"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 30;
    let data = decode::<Claims>(token, &key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidAudience => {
                format!("its audience is not {audience:?} (the spoke would reject it)")
            }
            ErrorKind::InvalidIssuer => format!("its issuer is not {issuer:?}"),
            ErrorKind::ExpiredSignature => {
                "it has already expired (is the clock of the node or of this machine off?)".into()
            }
            ErrorKind::InvalidSignature => {
                "its signature does not verify against the issuer's JWKS".into()
            }
            _ => format!("it does not verify ({e})"),
        }
    })?;
    if data.claims.sub != expected_sub {
        return Err(format!(
            "its subject is {:?}, expected {expected_sub:?}",
            data.claims.sub
        ));
    }
    Ok(data.claims)
}
