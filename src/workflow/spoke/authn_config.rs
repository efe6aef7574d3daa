//! `authn-config` (Kubernetes spokes): the spoke's kube-apiserver trusts the hub's SPIRE OIDC issuer
//! through its structured authentication file in `--authn-config-dir`. The file as it was is saved
//! first (`<file>.ztwim-hub-backup`, kept on re-runs while the file is still add-spoke's), then the
//! hub's JWT authenticator is upserted with an atomic rename (nothing is written when the file already
//! says the right thing). kube-apiserver reloads the file by itself: there is no rollout to watch, so the
//! step waits, with backoff up to `--timeout`, until a JWT-SVID from the hub's argocd-server pod
//! authenticates on the spoke as its SPIFFE ID, and checks the certificate admin still works. If either
//! fails, the previous file is put back.

use std::time::{Duration, Instant};

use anyhow::Result;
use futures::future::BoxFuture;

use super::SpokeRun;
use super::authn_file::{self, AuthnFile};
use crate::error::{self, Error};
use crate::kube::apply::Change;
use crate::kube::client::{describe_kube_error, token_client, whoami};
use crate::workflow::{ObjectChange, Step, StepReport};

pub struct AuthnConfig;

/// What a failed wait puts back.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// The file's content before this run wrote it.
    pub previous: String,
    /// This run created the backup (a rollback removes it again).
    pub backup_created: bool,
}

impl Step<SpokeRun> for AuthnConfig {
    fn name(&self) -> &'static str {
        "authn-config"
    }

    fn about(&self) -> &'static str {
        "back up the authentication file, add the hub's authenticator, wait for it"
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let file = ctx.authn_file()?;
            let issuer = &ctx.values.issuer_url;
            let text = file.read()?;
            let current = file.parse(&text)?;
            let desired = authn_file::desired(&current, authn_file::authenticator(&ctx.values));
            ctx.facts.lock().expect("facts").authn_config_file =
                Some(file.path.display().to_string());
            let object = format!("file {}", file.path.display());
            let record = |report: &mut StepReport, change: Change| {
                report.changes.push(ObjectChange {
                    cluster: ctx.values.spoke_name.clone(),
                    object: object.clone(),
                    change,
                });
            };
            if desired == current {
                record(report, Change::Unchanged);
                report.notes.push(format!(
                    "{} already trusts {issuer} (audience {}): not written",
                    file.path.display(),
                    ctx.values.audience
                ));
                return Ok(());
            }
            if let Err(errors) = desired.validate() {
                return Err(error::input(format!(
                    "{}: with the hub's authenticator the file would be invalid ({}); kube-apiserver would not load it",
                    file.path.display(),
                    errors.join("; ")
                )));
            }
            if !ctx.applier.writes() {
                record(report, Change::WouldConfigure);
                return Ok(());
            }
            let backup_created = save_backup(ctx, &file, &text, report)?;
            if let Err(e) = desired.write_atomically(&file.path) {
                if backup_created {
                    let _ = std::fs::remove_file(&file.backup);
                }
                return Err(e);
            }
            ctx.facts.lock().expect("facts").authn_rollback = Some(Rollback {
                previous: text,
                backup_created,
            });
            record(report, Change::Configured);
            report.notes.push(format!(
                "wrote the JWT authenticator for {issuer} (audience {}, username claim sub, no prefix) to {}",
                ctx.values.audience,
                file.path.display()
            ));
            Ok(())
        })
    }

    fn wait<'a>(
        &'a self,
        ctx: &'a SpokeRun,
        report: &'a mut StepReport,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let file = ctx.authn_file()?;
            let started = Instant::now();
            let result = match wait_for_login(ctx, &file).await {
                Ok(username) => admin_still_works(ctx).await.map(|()| username),
                Err(e) => Err(e),
            };
            match result {
                Ok(username) => {
                    report.notes.push(format!(
                        "a JWT-SVID from the hub's argocd-server pod authenticates on {} as {username} (after {:.1}s)",
                        ctx.spoke.context,
                        started.elapsed().as_secs_f64()
                    ));
                    report.notes.push(format!(
                        "the certificate admin of {} still works",
                        ctx.spoke.context
                    ));
                    Ok(())
                }
                Err(e) => {
                    let restored = rollback(ctx, &file);
                    Err(error::with_message(
                        &e,
                        format!("{}; {restored}", error::one_line(&e)),
                    ))
                }
            }
        })
    }
}

/// Saves the file as it is to the backup, unless a backup exists and the file is still what add-spoke
/// wrote over it (a re-run must keep the original). Returns whether the backup is new.
fn save_backup(
    ctx: &SpokeRun,
    file: &AuthnFile,
    text: &str,
    report: &mut StepReport,
) -> Result<bool> {
    let existing = file.read_backup()?;
    ctx.facts.lock().expect("facts").authn_backup_file = Some(file.backup.display().to_string());
    if let Some(backup) = &existing
        && authn_file::written_over(text, backup, &ctx.values.issuer_url)
    {
        report.notes.push(format!(
            "kept the backup {}: the file is still the one add-spoke wrote over it",
            file.backup.display()
        ));
        return Ok(false);
    }
    crate::kind::write_atomically(&file.backup, text.as_bytes())?;
    report.notes.push(format!(
        "saved the previous file to {}{}",
        file.backup.display(),
        if existing.is_some() {
            " (replacing an older backup: the file had changed since add-spoke wrote it)"
        } else {
            ""
        }
    ));
    Ok(existing.is_none())
}

/// Puts back what this run changed; returns what it did, for the error message.
fn rollback(ctx: &SpokeRun, file: &AuthnFile) -> String {
    let Some(rollback) = ctx.facts.lock().expect("facts").authn_rollback.take() else {
        return format!("{} was not changed by this run", file.path.display());
    };
    match crate::kind::write_atomically(&file.path, rollback.previous.as_bytes()) {
        Ok(()) => {
            if rollback.backup_created {
                let _ = std::fs::remove_file(&file.backup);
            }
            format!("restored {} to its previous content", file.path.display())
        }
        Err(e) => format!(
            "restoring {} FAILED ({}): copy {} over it by hand",
            file.path.display(),
            error::one_line(&e),
            file.backup.display()
        ),
    }
}

fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Waits until a JWT-SVID of the hub's argocd-server authenticates on the spoke (SelfSubjectReview):
/// kube-apiserver has reloaded the file and can fetch the issuer's keys. Returns the username.
async fn wait_for_login(ctx: &SpokeRun, file: &AuthnFile) -> Result<String> {
    let deadline = Instant::now() + ctx.timeout;
    let expected = &ctx.values.identities.server;
    let mut token: Option<(
        crate::verify::identity::Proven,
        crate::verify::identity::Token,
    )> = None;
    let mut delay = Duration::from_millis(100);
    loop {
        let fresh = matches!(&token, Some((proven, _)) if proven.claims.exp - now_seconds() > 30);
        if !fresh {
            token = Some(ctx.hub_token("server").await?);
        }
        let Some((_, svid)) = &token else {
            unreachable!("obtained above")
        };
        let client = token_client(&ctx.spoke.server, ctx.spoke.ca_pem.as_deref(), false, svid)?;
        let last = match whoami(&client).await {
            Ok((username, _)) if &username == expected => return Ok(username),
            Ok((username, _)) => {
                return Err(Error::Verification(format!(
                    "the spoke authenticates the JWT-SVID as {username:?}, expected {expected:?}: the authenticator for {} in {} must map the username from claim sub with prefix \"\"",
                    ctx.values.issuer_url,
                    file.path.display()
                ))
                .into());
            }
            Err(e) => describe_kube_error(&e),
        };
        if Instant::now() + delay >= deadline {
            return Err(Error::Timeout(format!(
                "a JWT-SVID from the hub's argocd-server pod was not accepted by {} within {} (last answer: {last}): its kube-apiserver does not use {}: is --authn-config-dir the directory this spoke's kube-apiserver reads (kind-config's DIR/<spoke>-authn, given to kind create cluster with that spoke's config)? Otherwise the spoke cannot fetch {}/.well-known/openid-configuration (network, or the issuer's CA)",
                ctx.spoke.context,
                crate::kube::wait::humantime(ctx.timeout),
                file.path.display(),
                ctx.values.issuer_url.trim_end_matches('/')
            ))
            .into());
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn admin_still_works(ctx: &SpokeRun) -> Result<()> {
    whoami(&ctx.spoke.client).await.map(|_| ()).map_err(|e| {
        Error::Verification(format!(
            "the certificate admin of context {} no longer works after the change ({})",
            ctx.spoke.context,
            describe_kube_error(&e)
        ))
        .into()
    })
}
