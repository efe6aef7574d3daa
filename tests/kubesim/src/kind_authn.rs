//! The kind spoke: kube-apiserver's structured authentication configuration
//! (`apiserver.config.k8s.io` `AuthenticationConfiguration`, the `--authentication-config`
//! file).
//!
//! A kind cluster started with [`crate::SimConfig::authentication_config`] (binary:
//! `--cluster NAME=kind-1.34,authn-config=PATH`) loads the file at start (an invalid file fails
//! the start, as it fails kube-apiserver's), then polls it and reloads it when its content
//! changes. Like the real apiserver, a reload that fails (unreadable file, unknown field,
//! invalid value) keeps the last valid configuration; [`crate::jwt_authn::OidcAuthn::reload_status`]
//! counts the successes and failures.
//!
//! The file is decoded strictly and validated like kube-apiserver does (see
//! `authentication-configuration-fields.md`). CEL is not implemented: the simple forms of
//! [`crate::jwt_authn::Cel`] are evaluated, any other expression (and any
//! `userValidationRules`) makes the file invalid with a message naming kubesim. The
//! `anonymous` block is validated but not applied (kubesim always serves anonymous requests).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::jwt_authn::{
    Cel, ClaimRule, ClaimSource, JwtAuthenticator, JwtConfig, PrefixedClaim, roots_from_pem,
};
use crate::sim::{ClusterHandle, Profile};

/// How often the file is read to notice changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AuthenticationConfiguration {
    api_version: String,
    kind: String,
    #[serde(default)]
    jwt: Vec<JwtSpec>,
    anonymous: Option<AnonymousSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnonymousSpec {
    enabled: bool,
    #[serde(default)]
    conditions: Vec<AnonymousCondition>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnonymousCondition {
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JwtSpec {
    issuer: IssuerSpec,
    #[serde(default)]
    claim_validation_rules: Vec<ClaimValidationRuleSpec>,
    claim_mappings: ClaimMappingsSpec,
    #[serde(default)]
    user_validation_rules: Vec<UserValidationRuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerSpec {
    #[serde(default)]
    url: String,
    #[serde(rename = "discoveryURL")]
    discovery_url: Option<String>,
    #[serde(default)]
    certificate_authority: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    audience_match_policy: String,
    egress_selector_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimValidationRuleSpec {
    #[serde(default)]
    claim: String,
    required_value: Option<String>,
    #[serde(default)]
    expression: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimMappingsSpec {
    username: PrefixedSpec,
    groups: Option<PrefixedSpec>,
    uid: Option<ClaimOrExpressionSpec>,
    #[serde(default)]
    extra: Vec<ExtraSpec>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PrefixedSpec {
    #[serde(default)]
    claim: String,
    prefix: Option<String>,
    #[serde(default)]
    expression: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimOrExpressionSpec {
    #[serde(default)]
    claim: String,
    #[serde(default)]
    expression: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExtraSpec {
    key: String,
    value_expression: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserValidationRuleSpec {
    expression: String,
    #[serde(default)]
    #[allow(dead_code)]
    message: String,
}

fn kube_minor(profile: &Profile) -> u32 {
    match profile {
        Profile::Kind { version } | Profile::OpenShift { version } => version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0),
    }
}

fn check_url(field: &str, url: &str, errors: &mut Vec<String>) {
    match url.parse::<http::Uri>() {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => {
            if u.query().is_some() {
                errors.push(format!(
                    "{field}: Invalid value: {url:?}: URL must not contain a query"
                ));
            }
            if url.contains('#') {
                errors.push(format!(
                    "{field}: Invalid value: {url:?}: URL must not contain a fragment"
                ));
            }
            if u.authority().is_some_and(|a| a.as_str().contains('@')) {
                errors.push(format!(
                    "{field}: Invalid value: {url:?}: URL must not contain a username or password"
                ));
            }
        }
        _ => errors.push(format!(
            "{field}: Invalid value: {url:?}: URL scheme must be https"
        )),
    }
}

/// Parse, validate and convert one configuration file's content (for a cluster of `profile`).
pub fn parse(text: &str, profile: &Profile) -> Result<Vec<JwtConfig>, String> {
    let doc: AuthenticationConfiguration = serde_saphyr::from_str(text)
        .map_err(|e| format!("failed to decode the authentication configuration (strict): {e}"))?;
    let minor = kube_minor(profile);
    let version_ok = match doc.api_version.as_str() {
        "apiserver.config.k8s.io/v1" => minor >= 34,
        "apiserver.config.k8s.io/v1beta1" | "apiserver.config.k8s.io/v1alpha1" => minor >= 30,
        _ => false,
    };
    if !version_ok {
        return Err(format!(
            "no kind \"{}\" is registered for version \"{}\" in Kubernetes 1.{minor}",
            doc.kind, doc.api_version
        ));
    }
    if doc.kind != "AuthenticationConfiguration" {
        return Err(format!(
            "no kind \"{}\" is registered for version \"{}\"",
            doc.kind, doc.api_version
        ));
    }
    let mut errors = Vec::new();
    if let Some(a) = &doc.anonymous {
        if !a.conditions.is_empty() && !a.enabled {
            errors.push("anonymous.conditions: Invalid value: \"\": enabled should be true when conditions are defined".to_string());
        }
        for (i, c) in a.conditions.iter().enumerate() {
            if c.path.is_empty() {
                errors.push(format!("anonymous.conditions[{i}].path: Required value: authentication.anonymous.conditions[].path is required"));
            }
        }
    }
    if doc.jwt.len() > 64 {
        errors.push(format!(
            "jwt: Too many: {}: must have at most 64 items",
            doc.jwt.len()
        ));
    }
    let mut urls = BTreeSet::new();
    let mut discovery_urls = BTreeSet::new();
    let mut out = Vec::new();
    for (i, j) in doc.jwt.iter().enumerate() {
        let f = format!("jwt[{i}]");
        let iss = &j.issuer;
        if iss.url.is_empty() {
            errors.push(format!("{f}.issuer.url: Required value: URL is required"));
        } else {
            check_url(&format!("{f}.issuer.url"), &iss.url, &mut errors);
            if !urls.insert(iss.url.clone()) {
                errors.push(format!("{f}.issuer.url: Duplicate value: {:?}", iss.url));
            }
        }
        if let Some(d) = iss.discovery_url.as_deref().filter(|d| !d.is_empty()) {
            check_url(&format!("{f}.issuer.discoveryURL"), d, &mut errors);
            if d.trim_end_matches('/') == iss.url.trim_end_matches('/') {
                errors.push(format!("{f}.issuer.discoveryURL: Invalid value: {d:?}: discoveryURL must be different from URL"));
            }
            if !discovery_urls.insert(d.to_string()) {
                errors.push(format!("{f}.issuer.discoveryURL: Duplicate value: {d:?}"));
            }
        }
        if !iss.certificate_authority.is_empty()
            && let Err(e) = roots_from_pem(&iss.certificate_authority)
        {
            errors.push(format!(
                "{f}.issuer.certificateAuthority: Invalid value: \"<omitted>\": {e}"
            ));
        }
        if iss.audiences.is_empty() {
            errors.push(format!(
                "{f}.issuer.audiences: Required value: at least one issuer.audiences is required"
            ));
        }
        let mut seen = BTreeSet::new();
        for (k, a) in iss.audiences.iter().enumerate() {
            if a.is_empty() {
                errors.push(format!(
                    "{f}.issuer.audiences[{k}]: Required value: audience can't be empty"
                ));
            } else if !seen.insert(a) {
                errors.push(format!("{f}.issuer.audiences[{k}]: Duplicate value: {a:?}"));
            }
        }
        match iss.audience_match_policy.as_str() {
            "MatchAny" => {}
            "" if iss.audiences.len() <= 1 => {}
            p => errors.push(format!(
                "{f}.issuer.audienceMatchPolicy: Invalid value: {p:?}: audienceMatchPolicy must be MatchAny for multiple audiences"
            )),
        }
        if let Some(t) = &iss.egress_selector_type {
            if minor < 34 {
                errors.push(format!("{f}.issuer.egressSelectorType: Invalid value: {t:?}: egressSelectorType is not supported before Kubernetes 1.34"));
            } else if !matches!(t.as_str(), "controlplane" | "cluster") {
                errors.push(format!("{f}.issuer.egressSelectorType: Unsupported value: {t:?}: supported values: \"cluster\", \"controlplane\""));
            }
        }
        let mut claim_rules = Vec::new();
        let mut rule_claims = BTreeSet::new();
        for (k, r) in j.claim_validation_rules.iter().enumerate() {
            let rf = format!("{f}.claimValidationRules[{k}]");
            match (r.claim.is_empty(), r.expression.is_empty()) {
                (false, false) => errors.push(format!(
                    "{rf}: Invalid value: \"\": claim and expression can't both be set"
                )),
                (true, true) => errors.push(format!(
                    "{rf}: Required value: claim or expression is required"
                )),
                (false, true) => {
                    if !r.message.is_empty() {
                        errors.push(format!("{rf}.message: Invalid value: {:?}: message can't be set when claim is set", r.message));
                    }
                    if !rule_claims.insert(r.claim.clone()) {
                        errors.push(format!("{rf}.claim: Duplicate value: {:?}", r.claim));
                    }
                    claim_rules.push(ClaimRule::Required {
                        claim: r.claim.clone(),
                        value: r.required_value.clone().unwrap_or_default(),
                    });
                }
                (true, false) => {
                    if r.required_value.is_some() {
                        errors.push(format!("{rf}.requiredValue: Invalid value: \"\": requiredValue can't be set when expression is set"));
                    }
                    match Cel::parse(&r.expression) {
                        Ok(expr) => claim_rules.push(ClaimRule::Expression {
                            expr,
                            message: r.message.clone(),
                        }),
                        Err(e) => errors.push(format!(
                            "{rf}.expression: Invalid value: {:?}: {e}",
                            r.expression
                        )),
                    }
                }
            }
        }
        for (k, r) in j.user_validation_rules.iter().enumerate() {
            errors.push(format!(
                "{f}.userValidationRules[{k}].expression: Invalid value: {:?}: kubesim does not evaluate userValidationRules",
                r.expression
            ));
        }
        let m = &j.claim_mappings;
        let username = prefixed(
            &format!("{f}.claimMappings.username"),
            &m.username,
            true,
            &mut errors,
        );
        if let Some(ClaimSource::Expression(e)) = username.as_ref().map(|u| &u.source) {
            let verified = e.mentions("email_verified")
                || claim_rules.iter().any(|r| matches!(r, ClaimRule::Expression { expr, .. } if expr.mentions("email_verified")));
            if e.mentions("email") && !verified {
                errors.push(format!(
                    "{f}.claimMappings.username.expression: Invalid value: \"<expression>\": claims.email_verified must be used in claimMappings.username.expression or claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when claims.email is used in claimMappings.username.expression"
                ));
            }
        }
        let groups = match &m.groups {
            Some(g) if !(g.claim.is_empty() && g.expression.is_empty() && g.prefix.is_none()) => {
                prefixed(&format!("{f}.claimMappings.groups"), g, false, &mut errors)
            }
            _ => None,
        };
        let uid = match &m.uid {
            Some(u) => match (u.claim.is_empty(), u.expression.is_empty()) {
                (false, false) => {
                    errors.push(format!("{f}.claimMappings.uid: Invalid value: \"\": claim and expression can't both be set"));
                    None
                }
                (true, true) => None,
                (false, true) => Some(ClaimSource::Claim(u.claim.clone())),
                (true, false) => match Cel::parse(&u.expression) {
                    Ok(e) => Some(ClaimSource::Expression(e)),
                    Err(e) => {
                        errors.push(format!(
                            "{f}.claimMappings.uid.expression: Invalid value: {:?}: {e}",
                            u.expression
                        ));
                        None
                    }
                },
            },
            None => None,
        };
        let mut keys = BTreeSet::new();
        for (k, x) in m.extra.iter().enumerate() {
            let xf = format!("{f}.claimMappings.extra[{k}]");
            let domain = x.key.split('/').next().unwrap_or_default();
            if !x.key.contains('/') || domain.is_empty() {
                errors.push(format!("{xf}.key: Invalid value: {:?}: must be a domain-prefixed path (such as \"acme.io/foo\")", x.key));
            }
            if x.key != x.key.to_lowercase() {
                errors.push(format!(
                    "{xf}.key: Invalid value: {:?}: key must be lowercase",
                    x.key
                ));
            }
            let reserved = ["k8s.io", "kubernetes.io"]
                .iter()
                .any(|r| domain == *r || domain.ends_with(&format!(".{r}")));
            if reserved {
                errors.push(format!("{xf}.key: Invalid value: {:?}: k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use", x.key));
            }
            if !keys.insert(x.key.clone()) {
                errors.push(format!("{xf}.key: Duplicate value: {:?}", x.key));
            }
            if x.value_expression.is_empty() {
                errors.push(format!(
                    "{xf}.valueExpression: Required value: valueExpression is required"
                ));
            } else if let Err(e) = Cel::parse(&x.value_expression) {
                errors.push(format!(
                    "{xf}.valueExpression: Invalid value: {:?}: {e}",
                    x.value_expression
                ));
            }
        }
        if let Some(username) = username {
            out.push(JwtConfig {
                issuer_url: iss.url.clone(),
                discovery_url: iss.discovery_url.clone().filter(|d| !d.is_empty()),
                ca_pem: (!iss.certificate_authority.is_empty())
                    .then(|| iss.certificate_authority.clone()),
                audiences: iss.audiences.clone(),
                username,
                groups,
                uid,
                claim_rules,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join(", "))
    }
}

/// A username or groups mapping: `claim` (with `prefix` required) xor `expression` (no prefix).
fn prefixed(
    field: &str,
    spec: &PrefixedSpec,
    required: bool,
    errors: &mut Vec<String>,
) -> Option<PrefixedClaim> {
    match (spec.claim.is_empty(), spec.expression.is_empty()) {
        (false, false) => {
            errors.push(format!(
                "{field}: Invalid value: \"\": claim and expression can't both be set"
            ));
            None
        }
        (true, true) => {
            if required {
                errors.push(format!(
                    "{field}: Required value: claim or expression is required"
                ));
            }
            None
        }
        (false, true) => match &spec.prefix {
            Some(p) => Some(PrefixedClaim {
                source: ClaimSource::Claim(spec.claim.clone()),
                prefix: p.clone(),
            }),
            None => {
                errors.push(format!("{field}.prefix: Required value: prefix is required when claim is set. It can be set to an empty string to disable prefixing"));
                None
            }
        },
        (true, false) => {
            if spec.prefix.is_some() {
                errors.push(format!("{field}.prefix: Invalid value: \"\": prefix can't be set when expression is set"));
            }
            match Cel::parse(&spec.expression) {
                Ok(e) => Some(PrefixedClaim {
                    source: ClaimSource::Expression(e),
                    prefix: String::new(),
                }),
                Err(e) => {
                    errors.push(format!(
                        "{field}.expression: Invalid value: {:?}: {e}",
                        spec.expression
                    ));
                    None
                }
            }
        }
    }
}

fn load(cluster: &ClusterHandle, path: &Path) -> Result<Vec<u8>, (Vec<u8>, String)> {
    let bytes = std::fs::read(path)
        .map_err(|e| (Vec::new(), format!("reading {}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let configs = parse(&text, cluster.profile())
        .map_err(|e| (bytes.clone(), format!("{}: {e}", path.display())))?;
    let routes = cluster.routes().clone();
    cluster.oidc_authn().set_jwt_authenticators(
        configs
            .into_iter()
            .map(|c| Arc::new(JwtAuthenticator::new(c, routes.clone())))
            .collect(),
    );
    Ok(bytes)
}

/// Load `path` for a kind `cluster` (an error fails the cluster's start) and keep reloading it.
pub(crate) fn start(
    rt: &tokio::runtime::Handle,
    cluster: &ClusterHandle,
    path: &Path,
) -> anyhow::Result<()> {
    if cluster.profile().is_openshift() {
        anyhow::bail!(
            "authn-config is for kind clusters: on OpenShift the kube-apiserver's authentication comes from Authentication cluster"
        );
    }
    if kube_minor(cluster.profile()) < 29 {
        anyhow::bail!(
            "kube-apiserver 1.{} has no --authentication-config flag",
            kube_minor(cluster.profile())
        );
    }
    let mut last = load(cluster, path)
        .map_err(|(_, e)| anyhow::anyhow!("invalid authentication configuration {e}"))?;
    cluster.oidc_authn().record_reload(Ok(()));
    let cluster = cluster.clone();
    let path: PathBuf = path.to_path_buf();
    rt.spawn(async move {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        // An unreadable file is one failure until it changes again.
        let mut failed_on: Option<Vec<u8>> = None;
        loop {
            tick.tick().await;
            let now = std::fs::read(&path).unwrap_or_default();
            if now == last || failed_on.as_ref() == Some(&now) {
                continue;
            }
            let c = cluster.clone();
            let p = path.clone();
            let outcome = tokio::task::spawn_blocking(move || load(&c, &p)).await;
            match outcome {
                Ok(Ok(bytes)) => {
                    last = bytes;
                    failed_on = None;
                    cluster.oidc_authn().record_reload(Ok(()));
                }
                Ok(Err((bytes, e))) => {
                    failed_on = Some(bytes);
                    cluster.oidc_authn().record_reload(Err(e));
                }
                Err(_) => return,
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(jwt: &str) -> String {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n{jwt}"
        );
        parse(&text, &Profile::kind("1.34")).expect_err("invalid")
    }

    #[test]
    fn validation_follows_kube_apiserver() {
        let e = errors(
            "- issuer: {url: 'https://a.example', discoveryURL: 'https://a.example/', audiences: [k8s]}\n  claimMappings: {username: {claim: sub, prefix: ''}}\n",
        );
        assert!(e.contains("discoveryURL must be different from URL"), "{e}");
        let e = errors(
            "- issuer: {url: 'https://a.example', audiences: [k8s, k8s], audienceMatchPolicy: MatchAny}\n  claimMappings: {username: {claim: sub, prefix: ''}}\n- issuer: {url: 'https://a.example', audiences: [x]}\n  claimMappings: {username: {claim: sub, prefix: ''}}\n",
        );
        assert!(
            e.contains("jwt[0].issuer.audiences[1]: Duplicate value")
                && e.contains("jwt[1].issuer.url: Duplicate value"),
            "{e}"
        );
        let e = errors(
            "- issuer: {url: 'https://a.example', audiences: [k8s]}\n  claimMappings: {username: {expression: 'claims.sub', prefix: 'x:'}}\n",
        );
        assert!(
            e.contains("prefix can't be set when expression is set"),
            "{e}"
        );
        let e = errors(
            "- issuer: {url: 'https://a.example', audiences: [k8s]}\n  claimMappings: {username: {expression: 'claims.email'}}\n",
        );
        assert!(e.contains("claims.email_verified must be used"), "{e}");
        let e = errors(
            "- issuer: {url: 'https://a.example', audiences: [k8s]}\n  claimMappings: {username: {claim: sub, prefix: ''}, extra: [{key: 'kubernetes.io/x', valueExpression: 'claims.sub'}]}\n",
        );
        assert!(e.contains("reserved for Kubernetes use"), "{e}");
        let e = errors(
            "- issuer: {url: 'https://a.example', audiences: [k8s], certificateAuthority: 'not a pem'}\n  claimMappings: {username: {claim: sub, prefix: ''}}\n",
        );
        assert!(e.contains("certificateAuthority"), "{e}");
    }

    #[test]
    fn a_valid_file_maps_to_jwt_configs() {
        let text = "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\njwt:\n- issuer: {url: 'https://a.example', audiences: [k8s]}\n  claimValidationRules: [{claim: hd, requiredValue: example.com}]\n  claimMappings: {username: {claim: sub, prefix: 'a:'}, groups: {claim: groups, prefix: ''}, uid: {claim: sub}}\n";
        let configs = parse(text, &Profile::kind("1.31")).unwrap();
        assert_eq!(configs.len(), 1);
        let c = &configs[0];
        assert_eq!(c.issuer_url, "https://a.example");
        assert_eq!(
            c.username,
            PrefixedClaim {
                source: ClaimSource::Claim("sub".into()),
                prefix: "a:".into()
            }
        );
        assert_eq!(
            c.claim_rules,
            vec![ClaimRule::Required {
                claim: "hd".into(),
                value: "example.com".into()
            }]
        );
        assert!(c.ca_pem.is_none());
    }
}
