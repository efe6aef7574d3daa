//! `verify-identity`: a JWT-SVID with the spoke's audience, obtained in the hub's Argo CD pods, logs in to
//! the spoke as exactly the SPIFFE ID (a prefixed username means the prefix policy is wrong) and may do what
//! the RBAC mode grants. Then the certificate admin is checked to still work.

use anyhow::Result;
use futures::future::BoxFuture;

use super::SpokeRun;
use super::preflight::allowed_with;
use crate::error::Error;
use crate::kube::client::{describe_kube_error, status_code, token_client, whoami};
use crate::profile::RbacMode;
use crate::workflow::{Step, StepReport};

pub struct VerifyIdentity;

impl Step<SpokeRun> for VerifyIdentity {
    fn name(&self) -> &'static str {
        "verify-identity"
    }

    fn about(&self) -> &'static str {
        "log in to the spoke with the hub pods' JWT-SVIDs; check username and rights"
    }

    fn verify<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for component in ["server", "application-controller"] {
                let (proven, token) = ctx.hub_token(component).await?;
                let expected = proven.claims.sub.clone();
                let client = token_client(
                    &ctx.spoke.server,
                    ctx.spoke.ca_pem.as_deref(),
                    false,
                    &token,
                )?;
                let username = check_login(&client, ctx, &expected).await?;
                check_rights(&client, ctx, &username).await?;
                report.notes.push(format!(
                    "{component}: logged in to {} as {username}",
                    ctx.spoke.context
                ));
                ctx.facts.lock().expect("facts").spoke_username = Some(username);
                ctx.facts.lock().expect("facts").identities.push(proven);
            }
            // The certificate admin must still work: nobody is locked out.
            whoami(&ctx.spoke.client).await.map_err(|e| {
                Error::Verification(format!(
                    "the certificate admin of context {} no longer works ({}): restore access with the installer's kubeconfig",
                    ctx.spoke.context,
                    describe_kube_error(&e)
                ))
            })?;
            report.notes.push(format!(
                "the certificate admin of {} still works",
                ctx.spoke.context
            ));
            Ok(())
        })
    }
}

/// SelfSubjectReview with the token: the username must be exactly the SPIFFE ID.
pub async fn check_login(client: &kube::Client, ctx: &SpokeRun, expected: &str) -> Result<String> {
    let (username, _groups) = whoami(client).await.map_err(|e| {
        let why = match status_code(&e) {
            Some(401) => format!(
                "the spoke rejected the JWT-SVID (401): its API server does not accept tokens from {} with audience {:?} (issuer CA, audience, or is the change not in effect yet?)",
                ctx.values.issuer_url, ctx.values.audience
            ),
            _ => format!("SelfSubjectReview with the JWT-SVID failed ({})", describe_kube_error(&e)),
        };
        Error::Verification(why)
    })?;
    if username == expected {
        return Ok(username);
    }
    if username.ends_with(expected) {
        return Err(Error::Verification(format!(
            "the spoke sees the SPIFFE ID prefixed, as {username:?}: claimMappings.username.prefixPolicy must be NoPrefix, or the ClusterRoleBinding for {expected:?} never matches"
        ))
        .into());
    }
    Err(Error::Verification(format!(
        "the spoke sees the JWT-SVID as {username:?}, expected {expected:?}"
    ))
    .into())
}

/// SelfSubjectAccessReviews with the token: what the RBAC mode grants is allowed, and least-privilege
/// really is less than cluster-admin.
pub async fn check_rights(client: &kube::Client, ctx: &SpokeRun, username: &str) -> Result<()> {
    let ask = |verb: &'static str,
               group: &'static str,
               resource: &'static str,
               ns: Option<&'static str>| async move {
        allowed_with(client, verb, group, resource, ns, None)
            .await
            .map_err(|e| {
                Error::Verification(format!(
                    "SelfSubjectAccessReview as {username} failed ({})",
                    describe_kube_error(&e)
                ))
            })
    };
    let mode = ctx.values.rbac;
    let must: &[(&str, &str, &str, Option<&str>)] = match mode {
        RbacMode::ClusterAdmin => &[("*", "*", "*", None)],
        RbacMode::LeastPrivilege => &[
            ("list", "", "pods", None),
            ("create", "", "configmaps", Some("default")),
            ("create", "apps", "deployments", Some("default")),
        ],
    };
    for (verb, group, resource, ns) in must {
        if !ask(verb, group, resource, *ns).await? {
            return Err(Error::Verification(format!(
                "{username} may not {verb} {resource} on the spoke: the ClusterRoleBinding {} is missing or does not name it",
                ctx.spoke_profile.spoke.cluster_role_binding
            ))
            .into());
        }
    }
    if mode == RbacMode::LeastPrivilege
        && ask(
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
        )
        .await?
    {
        return Err(Error::Verification(format!(
            "{username} may create ClusterRoleBindings on the spoke although --rbac least-privilege was asked for: another binding grants more"
        ))
        .into());
    }
    Ok(())
}
