//! kube-apiserver's structured authentication configuration: the `--authentication-config` file
//! (`apiserver.config.k8s.io` `AuthenticationConfiguration`) of a kind spoke.
//!
//! `kind-config` writes [`AuthenticationConfiguration::initial`] (no JWT authenticator yet);
//! `add-spoke --authn-config-dir` replaces it with [`AuthenticationConfiguration::with_jwt`] and
//! [`JwtAuthenticator::for_issuer`] for the hub's SPIRE OIDC issuer, through
//! [`AuthenticationConfiguration::write_atomically`]. kube-apiserver reloads the file when its content
//! changes; a reload that fails keeps the last valid configuration, so an invalid file is never written.
//!
//! The types mirror the upstream field set (the same in v1alpha1, v1beta1 and v1) and decode strictly,
//! like kube-apiserver does: an unknown field is an error. [`AuthenticationConfiguration::validate`]
//! applies the upstream validation rules, except that CEL expressions are only checked for being
//! non-empty (kube-apiserver compiles them).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error;

/// The apiVersion written: served since Kubernetes 1.30 (on by default there), so it works on every
/// kind node image that has structured authentication on by default (`v1` needs 1.34).
pub const API_VERSION: &str = "apiserver.config.k8s.io/v1beta1";
/// The apiVersions kube-apiserver accepts for this kind (v1alpha1 since 1.29, v1beta1 since 1.30,
/// v1 since 1.34).
pub const API_VERSIONS: [&str; 3] = [
    "apiserver.config.k8s.io/v1alpha1",
    "apiserver.config.k8s.io/v1beta1",
    "apiserver.config.k8s.io/v1",
];
pub const KIND: &str = "AuthenticationConfiguration";
/// kube-apiserver accepts at most this many JWT authenticators.
pub const MAX_JWT_AUTHENTICATORS: usize = 64;

/// The top level of the `--authentication-config` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthenticationConfiguration {
    pub api_version: String,
    pub kind: String,
    /// May be empty: kube-apiserver allows zero authenticators so that they can be added by a reload.
    #[serde(default)]
    pub jwt: Vec<JwtAuthenticator>,
    /// Replaces the `--anonymous-auth` flag (which must then not be set). ztwim-hub never writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<AnonymousAuthConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousAuthConfig {
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<AnonymousAuthCondition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousAuthCondition {
    pub path: String,
}

/// One OIDC issuer whose JWTs kube-apiserver accepts (`jwt[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAuthenticator {
    pub issuer: Issuer,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_validation_rules: Vec<ClaimValidationRule>,
    pub claim_mappings: ClaimMappings,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_validation_rules: Vec<UserValidationRule>,
}

/// `jwt[].issuer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Issuer {
    /// https, no user info, query or fragment; equal to the tokens' `iss` and to discovery's `issuer`.
    pub url: String,
    /// Where discovery is fetched instead of `{url}/.well-known/openid-configuration`, used as written.
    #[serde(
        default,
        rename = "discoveryURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub discovery_url: Option<String>,
    /// Inline PEM CA bundle for the discovery and JWKS connections (empty: the system roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    pub audiences: Vec<String>,
    /// Required (`MatchAny`) with more than one audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience_match_policy: Option<AudienceMatchPolicy>,
    /// Kubernetes 1.34+ only (gate `StructuredAuthenticationConfigurationEgressSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_selector_type: Option<EgressSelectorType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AudienceMatchPolicy {
    MatchAny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EgressSelectorType {
    #[serde(rename = "controlplane")]
    ControlPlane,
    Cluster,
}

/// `jwt[].claimValidationRules[]`: exactly one of `claim` (with `requiredValue`) or `expression`
/// (with `message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimValidationRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `jwt[].claimMappings`: how a token's claims become the Kubernetes user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMappings {
    /// Required, no default: `claim: sub` with `prefix: ""` gives the SPIFFE ID as the username.
    pub username: PrefixedClaimOrExpression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<PrefixedClaimOrExpression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<ClaimOrExpression>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ExtraMapping>,
}

/// `username` and `groups`: a `claim` with an explicit `prefix` (`""` for none), or an `expression`
/// (without `prefix`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrefixedClaimOrExpression {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

/// `uid`: a `claim` or an `expression`, not both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClaimOrExpression {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

/// `extra[]`: a domain-prefixed, lowercase key (not under k8s.io or kubernetes.io) and a CEL value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtraMapping {
    pub key: String,
    pub value_expression: String,
}

/// `userValidationRules[]`: a CEL expression over the final user info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserValidationRule {
    pub expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl AuthenticationConfiguration {
    /// The file a kind spoke starts with: no JWT authenticator. kube-apiserver accepts an empty `jwt`
    /// list (its validation allows zero authenticators precisely so that they can be added later by a
    /// reload); until then only the cluster's own credentials authenticate.
    pub fn initial() -> Self {
        AuthenticationConfiguration {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            jwt: Vec::new(),
            anonymous: None,
        }
    }

    /// A configuration with exactly one JWT authenticator.
    pub fn with_jwt(jwt: JwtAuthenticator) -> Self {
        let mut config = Self::initial();
        config.jwt.push(jwt);
        config
    }

    /// Replaces the authenticator with the same issuer URL, or appends `jwt` (for a file that
    /// [`Self::read`] returned, keeping other issuers).
    pub fn upsert_jwt(&mut self, jwt: JwtAuthenticator) {
        match self.jwt.iter_mut().find(|j| j.issuer.url == jwt.issuer.url) {
            Some(existing) => *existing = jwt,
            None => self.jwt.push(jwt),
        }
    }

    /// Strictly decodes a file's content (unknown fields are errors, as in kube-apiserver). Does not
    /// validate: see [`Self::validate`].
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{}", one_line(&e.to_string())))
    }

    /// Reads and strictly decodes the file at `path` (an input error naming it otherwise).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            error::input(format!(
                "{}: cannot read the authentication configuration ({e})",
                path.display()
            ))
        })?;
        Self::from_yaml(&text).map_err(|e| {
            error::input(format!(
                "{}: not an AuthenticationConfiguration ({e:#})",
                path.display()
            ))
        })
    }

    /// The file's content: a comment saying what the file is, then the YAML.
    pub fn to_yaml(&self) -> anyhow::Result<String> {
        let mut text = String::from(
            "# kube-apiserver --authentication-config file (structured authentication), written by ztwim-hub.\n\
             # kube-apiserver reloads it when its content changes. Replace it atomically (write a new file\n\
             # in this directory, then rename it over this one): ztwim-hub add-spoke --authn-config-dir does.\n",
        );
        if self.jwt.is_empty() {
            text.push_str(
                "# No JWT authenticator yet, and that is valid: kube-apiserver allows an empty `jwt` list so\n\
                 # that authenticators can be added later by a reload. Until then only the cluster's own\n\
                 # credentials (client certificates, service account tokens) authenticate.\n",
            );
        }
        let body = serde_saphyr::to_string(self)
            .context("serializing the authentication configuration")?;
        text.push_str(&body);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }

    /// Validates, then writes the file so that a reader sees the old or the new content, never a
    /// partial one: a temporary file in the same directory, fsync, rename over `path`, fsync of the
    /// directory. An invalid configuration is an input error and nothing is written.
    pub fn write_atomically(&self, path: &Path) -> anyhow::Result<()> {
        self.validate().map_err(|errors| {
            error::input(format!(
                "{}: refusing to write an invalid AuthenticationConfiguration: {}",
                path.display(),
                errors.join("; ")
            ))
        })?;
        super::write_atomically(path, self.to_yaml()?.as_bytes())
    }

    /// kube-apiserver's validation rules (CEL expressions are not compiled). Each message starts
    /// with the field's path, e.g. `jwt[0].issuer.url: ...`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if !API_VERSIONS.contains(&self.api_version.as_str()) {
            errors.push(format!(
                "apiVersion: {:?} is not one of {}",
                self.api_version,
                API_VERSIONS.join(", ")
            ));
        }
        if self.kind != KIND {
            errors.push(format!("kind: {:?} must be {KIND}", self.kind));
        }
        if self.jwt.len() > MAX_JWT_AUTHENTICATORS {
            errors.push(format!(
                "jwt: {} authenticators, at most {MAX_JWT_AUTHENTICATORS} are allowed",
                self.jwt.len()
            ));
        }
        let mut urls = BTreeSet::new();
        let mut discovery_urls = BTreeSet::new();
        for (i, jwt) in self.jwt.iter().enumerate() {
            let field = format!("jwt[{i}]");
            jwt.check(&field, &mut errors);
            if !urls.insert(jwt.issuer.url.as_str()) {
                errors.push(format!(
                    "{field}.issuer.url: duplicate issuer {:?}",
                    jwt.issuer.url
                ));
            }
            if let Some(d) = jwt
                .issuer
                .discovery_url
                .as_deref()
                .filter(|d| !d.is_empty())
                && !discovery_urls.insert(d)
            {
                errors.push(format!(
                    "{field}.issuer.discoveryURL: duplicate discovery URL {d:?}"
                ));
            }
        }
        if let Some(anonymous) = &self.anonymous {
            if !anonymous.enabled && !anonymous.conditions.is_empty() {
                errors.push(
                    "anonymous.conditions: enabled must be true when conditions are set"
                        .to_string(),
                );
            }
            for (i, c) in anonymous.conditions.iter().enumerate() {
                if c.path.is_empty() {
                    errors.push(format!("anonymous.conditions[{i}].path: required"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl JwtAuthenticator {
    /// The authenticator for a SPIRE OIDC issuer: tokens whose `iss` is `issuer_url` and whose `aud`
    /// is `audience`; the username is the `sub` claim (the SPIFFE ID) without a prefix, so RBAC
    /// subjects are the SPIFFE IDs themselves. `discovery_url` (the full URL of the discovery
    /// document, e.g. through an in-cluster Service) and `ca_pem` (the CA of the issuer's TLS
    /// certificate, when not publicly trusted) are optional.
    pub fn for_issuer(
        issuer_url: &str,
        discovery_url: Option<&str>,
        ca_pem: Option<&str>,
        audience: &str,
    ) -> Self {
        JwtAuthenticator {
            issuer: Issuer {
                url: issuer_url.to_string(),
                discovery_url: discovery_url.map(str::to_string),
                certificate_authority: ca_pem.map(str::to_string),
                audiences: vec![audience.to_string()],
                audience_match_policy: None,
                egress_selector_type: None,
            },
            claim_validation_rules: Vec::new(),
            claim_mappings: ClaimMappings {
                username: PrefixedClaimOrExpression {
                    claim: Some("sub".to_string()),
                    prefix: Some(String::new()),
                    expression: None,
                },
                groups: None,
                uid: None,
                extra: Vec::new(),
            },
            user_validation_rules: Vec::new(),
        }
    }

    fn check(&self, field: &str, errors: &mut Vec<String>) {
        let issuer = &self.issuer;
        if issuer.url.is_empty() {
            errors.push(format!("{field}.issuer.url: required"));
        } else {
            check_https_url(&format!("{field}.issuer.url"), &issuer.url, errors);
        }
        if let Some(d) = issuer.discovery_url.as_deref().filter(|d| !d.is_empty()) {
            let f = format!("{field}.issuer.discoveryURL");
            check_https_url(&f, d, errors);
            if d.trim_end_matches('/') == issuer.url.trim_end_matches('/') {
                errors.push(format!("{f}: {d:?} must differ from issuer.url"));
            }
        }
        if let Some(ca) = issuer
            .certificate_authority
            .as_deref()
            .filter(|c| !c.is_empty())
            && let Err(why) = check_pem_certificates(ca)
        {
            errors.push(format!("{field}.issuer.certificateAuthority: {why}"));
        }
        let f = format!("{field}.issuer.audiences");
        if issuer.audiences.is_empty() {
            errors.push(format!("{f}: at least one audience is required"));
        }
        let mut seen = BTreeSet::new();
        for (k, a) in issuer.audiences.iter().enumerate() {
            if a.is_empty() {
                errors.push(format!("{f}[{k}]: an audience cannot be empty"));
            } else if !seen.insert(a.as_str()) {
                errors.push(format!("{f}[{k}]: duplicate audience {a:?}"));
            }
        }
        if issuer.audiences.len() > 1 && issuer.audience_match_policy.is_none() {
            errors.push(format!(
                "{field}.issuer.audienceMatchPolicy: must be MatchAny with several audiences"
            ));
        }

        let mut uses_email_verified = false;
        let mut rule_claims = BTreeSet::new();
        let mut rule_expressions = BTreeSet::new();
        for (k, rule) in self.claim_validation_rules.iter().enumerate() {
            let f = format!("{field}.claimValidationRules[{k}]");
            match (non_empty(&rule.claim), non_empty(&rule.expression)) {
                (Some(_), Some(_)) => {
                    errors.push(format!("{f}: claim and expression cannot both be set"))
                }
                (None, None) => errors.push(format!("{f}: claim or expression is required")),
                (Some(claim), None) => {
                    if non_empty(&rule.message).is_some() {
                        errors.push(format!("{f}.message: only allowed with expression"));
                    }
                    if !rule_claims.insert(claim) {
                        errors.push(format!("{f}.claim: duplicate claim {claim:?}"));
                    }
                }
                (None, Some(expression)) => {
                    if non_empty(&rule.required_value).is_some() {
                        errors.push(format!("{f}.requiredValue: only allowed with claim"));
                    }
                    if !rule_expressions.insert(expression) {
                        errors.push(format!(
                            "{f}.expression: duplicate expression {expression:?}"
                        ));
                    }
                    uses_email_verified |= uses_claim(expression, "email_verified");
                }
            }
        }

        let m = &self.claim_mappings;
        let f = format!("{field}.claimMappings");
        check_prefixed(&format!("{f}.username"), &m.username, true, errors);
        if let Some(groups) = &m.groups
            && groups != &PrefixedClaimOrExpression::default()
        {
            check_prefixed(&format!("{f}.groups"), groups, false, errors);
        }
        if let Some(uid) = &m.uid
            && non_empty(&uid.claim).is_some()
            && non_empty(&uid.expression).is_some()
        {
            errors.push(format!("{f}.uid: claim and expression cannot both be set"));
        }
        let mut keys = BTreeSet::new();
        for (k, extra) in m.extra.iter().enumerate() {
            let xf = format!("{f}.extra[{k}]");
            if let Err(why) = check_extra_key(&extra.key) {
                errors.push(format!("{xf}.key: {:?} {why}", extra.key));
            }
            if !keys.insert(extra.key.as_str()) {
                errors.push(format!("{xf}.key: duplicate key {:?}", extra.key));
            }
            if extra.value_expression.trim().is_empty() {
                errors.push(format!("{xf}.valueExpression: required"));
            }
            uses_email_verified |= uses_claim(&extra.value_expression, "email_verified");
        }
        if let Some(expression) = non_empty(&m.username.expression) {
            uses_email_verified |= uses_claim(expression, "email_verified");
            if uses_claim(expression, "email") && !uses_email_verified {
                errors.push(format!(
                    "{f}.username.expression: uses claims.email, so claims.email_verified must be checked \
                     too (in this expression, an extra[].valueExpression or a claimValidationRules[].expression)"
                ));
            }
        }
        for (k, rule) in self.user_validation_rules.iter().enumerate() {
            if rule.expression.trim().is_empty() {
                errors.push(format!(
                    "{field}.userValidationRules[{k}].expression: required"
                ));
            }
        }
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn check_prefixed(
    field: &str,
    value: &PrefixedClaimOrExpression,
    required: bool,
    errors: &mut Vec<String>,
) {
    match (non_empty(&value.claim), non_empty(&value.expression)) {
        (Some(_), Some(_)) => {
            errors.push(format!("{field}: claim and expression cannot both be set"))
        }
        (None, None) => {
            if required {
                errors.push(format!(
                    "{field}: claim or expression is required (there is no default; claim: sub, prefix: \"\" \
                     is the usual choice)"
                ));
            } else if value.prefix.is_some() {
                errors.push(format!("{field}.prefix: only allowed with claim"));
            }
        }
        (Some(_), None) => {
            if value.prefix.is_none() {
                errors.push(format!(
                    "{field}.prefix: required when claim is set (\"\" for no prefix)"
                ));
            }
        }
        (None, Some(_)) => {
            if value.prefix.is_some() {
                errors.push(format!("{field}.prefix: not allowed with expression"));
            }
        }
    }
}

/// Does a CEL expression read `claims.<name>` (or `claims["<name>"]`)?
fn uses_claim(expression: &str, name: &str) -> bool {
    let dotted = format!("claims.{name}");
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let by_dot = expression.match_indices(&dotted).any(|(at, m)| {
        !expression[at + m.len()..].starts_with(ident)
            && !expression[..at].ends_with(|c: char| ident(c) || c == '.')
    });
    by_dot
        || expression.contains(&format!("claims[\"{name}\"]"))
        || expression.contains(&format!("claims['{name}']"))
}

fn check_https_url(field: &str, value: &str, errors: &mut Vec<String>) {
    let url = match url::Url::parse(value) {
        Ok(url) => url,
        Err(e) => {
            errors.push(format!("{field}: {value:?} is not a URL ({e})"));
            return;
        }
    };
    if url.scheme() != "https" {
        errors.push(format!("{field}: {value:?}: the URL scheme must be https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        errors.push(format!("{field}: {value:?}: the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        errors.push(format!(
            "{field}: {value:?}: the URL must not contain a username or password"
        ));
    }
    if url.query().is_some() {
        errors.push(format!(
            "{field}: {value:?}: the URL must not contain a query"
        ));
    }
    if url.fragment().is_some() {
        errors.push(format!(
            "{field}: {value:?}: the URL must not contain a fragment"
        ));
    }
}

/// The PEM text holds at least one certificate, and every CERTIFICATE block parses.
fn check_pem_certificates(pem: &str) -> Result<(), String> {
    let mut count = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.map_err(|e| format!("not a PEM bundle ({e})"))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        block
            .parse_x509()
            .map_err(|e| format!("certificate {} does not parse ({e})", count + 1))?;
        count += 1;
    }
    if count == 0 {
        return Err("no PEM certificate in it".to_string());
    }
    Ok(())
}

/// An `extra[].key`: a domain-prefixed path, lowercase, not under k8s.io or kubernetes.io.
fn check_extra_key(key: &str) -> Result<(), &'static str> {
    let Some((domain, path)) = key.split_once('/') else {
        return Err("must be a domain-prefixed path, such as example.org/foo");
    };
    if domain.is_empty() || path.is_empty() || !domain.contains('.') {
        return Err("must be a domain-prefixed path, such as example.org/foo");
    }
    if key != key.to_lowercase() {
        return Err("must be lowercase");
    }
    if ["k8s.io", "kubernetes.io"]
        .iter()
        .any(|r| domain == *r || domain.ends_with(&format!(".{r}")))
    {
        return Err("is reserved: k8s.io, kubernetes.io and their subdomains belong to Kubernetes");
    }
    Ok(())
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://hub-control-plane:30443";

    fn errors(config: &AuthenticationConfiguration) -> String {
        config.validate().expect_err("invalid").join("\n")
    }

    #[test]
    fn initial_and_for_issuer_are_valid() {
        assert_eq!(AuthenticationConfiguration::initial().validate(), Ok(()));
        let config = AuthenticationConfiguration::with_jwt(JwtAuthenticator::for_issuer(
            ISSUER,
            Some("https://spire-oidc.spire.svc/.well-known/openid-configuration"),
            None,
            "kind-spoke",
        ));
        assert_eq!(config.validate(), Ok(()));
        let mapped = &config.jwt[0].claim_mappings.username;
        assert_eq!(mapped.claim.as_deref(), Some("sub"));
        assert_eq!(mapped.prefix.as_deref(), Some(""));
    }

    #[test]
    fn issuer_rules() {
        let mut jwt = JwtAuthenticator::for_issuer("http://hub:30443", None, None, "a");
        jwt.issuer.discovery_url = Some("https://u:p@hub:30443/x?q=1#f".into());
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt));
        assert!(
            e.contains("jwt[0].issuer.url: \"http://hub:30443\": the URL scheme must be https"),
            "{e}"
        );
        for why in ["username or password", "query", "fragment"] {
            assert!(e.contains(why), "{why}: {e}");
        }
        let jwt = JwtAuthenticator::for_issuer(ISSUER, Some(&format!("{ISSUER}/")), None, "a");
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt));
        assert!(e.contains("must differ from issuer.url"), "{e}");
        let jwt = JwtAuthenticator::for_issuer(ISSUER, None, Some("not a pem"), "a");
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt));
        assert!(e.contains("jwt[0].issuer.certificateAuthority"), "{e}");
    }

    #[test]
    fn audience_rules() {
        let mut jwt = JwtAuthenticator::for_issuer(ISSUER, None, None, "a");
        jwt.issuer.audiences.clear();
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt.clone()));
        assert!(e.contains("at least one audience is required"), "{e}");
        jwt.issuer.audiences = vec!["a".into(), "a".into(), String::new()];
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt.clone()));
        assert!(e.contains("audiences[1]: duplicate audience"), "{e}");
        assert!(
            e.contains("audiences[2]: an audience cannot be empty"),
            "{e}"
        );
        assert!(e.contains("must be MatchAny with several audiences"), "{e}");
        jwt.issuer.audiences = vec!["a".into(), "b".into()];
        jwt.issuer.audience_match_policy = Some(AudienceMatchPolicy::MatchAny);
        assert_eq!(
            AuthenticationConfiguration::with_jwt(jwt).validate(),
            Ok(())
        );
    }

    #[test]
    fn claim_mapping_rules() {
        let mut jwt = JwtAuthenticator::for_issuer(ISSUER, None, None, "a");
        jwt.claim_mappings.username.prefix = None;
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt.clone()));
        assert!(
            e.contains("username.prefix: required when claim is set"),
            "{e}"
        );
        jwt.claim_mappings.username = PrefixedClaimOrExpression::default();
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt.clone()));
        assert!(
            e.contains("username: claim or expression is required"),
            "{e}"
        );
        jwt.claim_mappings.username = PrefixedClaimOrExpression {
            claim: None,
            prefix: Some("x:".into()),
            expression: Some("claims.email".into()),
        };
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt.clone()));
        assert!(
            e.contains("username.prefix: not allowed with expression"),
            "{e}"
        );
        assert!(e.contains("claims.email_verified must be checked"), "{e}");
        jwt.claim_mappings.username.prefix = None;
        jwt.claim_validation_rules = vec![ClaimValidationRule {
            expression: Some("claims.email_verified == true".into()),
            ..Default::default()
        }];
        assert_eq!(
            AuthenticationConfiguration::with_jwt(jwt.clone()).validate(),
            Ok(())
        );
        jwt.claim_mappings.extra = vec![ExtraMapping {
            key: "kubernetes.io/x".into(),
            value_expression: "claims.sub".into(),
        }];
        jwt.claim_mappings.uid = Some(ClaimOrExpression {
            claim: Some("sub".into()),
            expression: Some("claims.sub".into()),
        });
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt));
        assert!(
            e.contains("extra[0].key: \"kubernetes.io/x\" is reserved"),
            "{e}"
        );
        assert!(
            e.contains("uid: claim and expression cannot both be set"),
            "{e}"
        );
    }

    #[test]
    fn claim_validation_rule_rules() {
        let mut jwt = JwtAuthenticator::for_issuer(ISSUER, None, None, "a");
        jwt.claim_validation_rules = vec![
            ClaimValidationRule {
                claim: Some("hd".into()),
                message: Some("m".into()),
                ..Default::default()
            },
            ClaimValidationRule::default(),
            ClaimValidationRule {
                claim: Some("hd".into()),
                expression: Some("true".into()),
                ..Default::default()
            },
        ];
        let e = errors(&AuthenticationConfiguration::with_jwt(jwt));
        assert!(
            e.contains("claimValidationRules[0].message: only allowed with expression"),
            "{e}"
        );
        assert!(
            e.contains("claimValidationRules[1]: claim or expression is required"),
            "{e}"
        );
        assert!(
            e.contains("claimValidationRules[2]: claim and expression cannot both be set"),
            "{e}"
        );
    }

    #[test]
    fn duplicates_and_limits() {
        let mut config = AuthenticationConfiguration::initial();
        config.upsert_jwt(JwtAuthenticator::for_issuer(ISSUER, None, None, "a"));
        config.upsert_jwt(JwtAuthenticator::for_issuer(ISSUER, None, None, "b"));
        assert_eq!(config.jwt.len(), 1, "same issuer: replaced");
        assert_eq!(config.jwt[0].issuer.audiences, ["b"]);
        config.jwt.push(config.jwt[0].clone());
        let e = errors(&config);
        assert!(e.contains("jwt[1].issuer.url: duplicate issuer"), "{e}");
        config.jwt = (0..65)
            .map(|i| {
                JwtAuthenticator::for_issuer(&format!("https://i{i}.example"), None, None, "a")
            })
            .collect();
        assert!(errors(&config).contains("at most 64"));
        config.jwt.clear();
        config.api_version = "apiserver.config.k8s.io/v2".into();
        config.anonymous = Some(AnonymousAuthConfig {
            enabled: false,
            conditions: vec![AnonymousAuthCondition {
                path: String::new(),
            }],
        });
        let e = errors(&config);
        assert!(e.contains("apiVersion"), "{e}");
        assert!(e.contains("enabled must be true"), "{e}");
        assert!(e.contains("anonymous.conditions[0].path: required"), "{e}");
    }

    #[test]
    fn email_claim_detection() {
        assert!(uses_claim("claims.email", "email"));
        assert!(uses_claim("claims['email'] + 'x'", "email"));
        assert!(!uses_claim("claims.email_verified", "email"));
        assert!(!uses_claim("xclaims.email", "email"));
        assert!(uses_claim("claims.email_verified", "email_verified"));
    }

    #[test]
    fn yaml_round_trip_is_strict() {
        let config = AuthenticationConfiguration::with_jwt(JwtAuthenticator::for_issuer(
            ISSUER, None, None, "a",
        ));
        let text = config.to_yaml().unwrap();
        assert!(
            text.starts_with("# kube-apiserver --authentication-config file"),
            "{text}"
        );
        assert!(text.contains("prefix: \"\""), "{text}");
        assert_eq!(
            AuthenticationConfiguration::from_yaml(&text).unwrap(),
            config
        );
        let initial = AuthenticationConfiguration::initial().to_yaml().unwrap();
        assert!(initial.contains("jwt: []"), "{initial}");
        assert!(initial.contains("that is valid"), "{initial}");
        let e = AuthenticationConfiguration::from_yaml(&text.replace("audiences:", "audience:"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("audience"), "{e}");
    }

    #[test]
    fn write_atomically_replaces_and_refuses_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authentication-config.yaml");
        AuthenticationConfiguration::initial()
            .write_atomically(&path)
            .unwrap();
        let config = AuthenticationConfiguration::with_jwt(JwtAuthenticator::for_issuer(
            ISSUER, None, None, "a",
        ));
        config.write_atomically(&path).unwrap();
        assert_eq!(AuthenticationConfiguration::read(&path).unwrap(), config);
        let mut bad = config.clone();
        bad.jwt[0].issuer.audiences.clear();
        let err = bad.write_atomically(&path).unwrap_err();
        assert_eq!(
            crate::error::exit_code_of(&err),
            crate::error::ExitCode::Usage
        );
        assert_eq!(AuthenticationConfiguration::read(&path).unwrap(), config);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["authentication-config.yaml"],
            "no temporary file left"
        );
    }
}
