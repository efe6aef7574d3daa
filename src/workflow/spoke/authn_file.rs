//! A Kubernetes (kind) spoke's structured authentication file in `--authn-config-dir`, and its backup
//! next to it (`<file>.ztwim-hub-backup`). add-spoke upserts one JWT authenticator, for the hub's issuer;
//! remove-spoke puts the backup back byte for byte while the file is still what add-spoke wrote, and
//! otherwise removes only that authenticator.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error;
use crate::kind::authn::{AuthenticationConfiguration, JwtAuthenticator};
use crate::profile::Profile;
use crate::render::values::SpokeValues;

/// Appended to the file's name for its backup.
pub const BACKUP_SUFFIX: &str = ".ztwim-hub-backup";

/// The one-line refusal when a Kubernetes spoke is given without `--authn-config-dir`.
pub fn missing_dir_message(context: &str) -> String {
    format!(
        "--authn-config-dir is required for a Kubernetes (kind) spoke: {context} trusts the hub's issuer through kube-apiserver's --authentication-config file; give the directory kind-config wrote for this spoke (DIR/<spoke>-authn, mounted into its kube-apiserver)"
    )
}

#[derive(Debug, Clone)]
pub struct AuthnFile {
    pub dir: PathBuf,
    /// `DIR/<spoke.kubernetes.authnConfigFile>`: the file kube-apiserver reads.
    pub path: PathBuf,
    /// `DIR/<file>.ztwim-hub-backup`: the file as it was before add-spoke first changed it.
    pub backup: PathBuf,
}

impl AuthnFile {
    pub fn new(dir: &Path, spoke_profile: &Profile) -> AuthnFile {
        let name = &spoke_profile.spoke.kubernetes().authn_config_file;
        AuthnFile {
            dir: dir.to_path_buf(),
            path: dir.join(name),
            backup: dir.join(format!("{name}{BACKUP_SUFFIX}")),
        }
    }

    /// The file's content; an input error naming the file (and kind-config) when it cannot be read.
    pub fn read(&self) -> Result<String> {
        std::fs::read_to_string(&self.path).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "; --authn-config-dir must be the directory kind-config wrote for this spoke (DIR/<spoke>-authn), which holds the file its kube-apiserver reads"
            } else {
                ""
            };
            error::input(format!(
                "{}: cannot read the authentication configuration ({e}){hint}",
                self.path.display()
            ))
        })
    }

    /// Strictly decodes the file's content (as kube-apiserver does).
    pub fn parse(&self, text: &str) -> Result<AuthenticationConfiguration> {
        AuthenticationConfiguration::from_yaml(text).map_err(|e| {
            error::input(format!(
                "{}: not an AuthenticationConfiguration ({e:#})",
                self.path.display()
            ))
        })
    }

    /// The backup's content, if there is one.
    pub fn read_backup(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(&self.backup) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(error::input(format!(
                "{}: cannot read the backup ({e})",
                self.backup.display()
            ))),
        }
    }

    /// Whether the file can be replaced: it opens for writing (nothing is written), and a new file can
    /// be created in the directory (the new content is a temporary file renamed over the old one; the
    /// probe is removed at once).
    pub fn check_writable(&self) -> Result<(), String> {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("{} is not writable ({e})", self.path.display()))?;
        let probe = self
            .dir
            .join(format!(".ztwim-hub-probe-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(|e| {
                format!(
                    "cannot create files in {} ({e}): the file is replaced by renaming a new file over it",
                    self.dir.display()
                )
            })?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }
}

/// The hub's authenticator: tokens whose `iss` is the issuer and whose `aud` is the spoke's audience;
/// the username is `sub` (the SPIFFE ID) without a prefix. The discovery document is fetched from the
/// issuer itself (no `discoveryURL`: it would be the same URL); the CA only when the issuer's
/// certificate is not publicly trusted.
pub fn authenticator(values: &SpokeValues) -> JwtAuthenticator {
    JwtAuthenticator::for_issuer(
        &values.issuer_url,
        None,
        values.issuer_ca_pem.as_deref(),
        &values.audience,
    )
}

/// `current` with the hub's authenticator upserted (other issuers' authenticators are kept).
pub fn desired(
    current: &AuthenticationConfiguration,
    jwt: JwtAuthenticator,
) -> AuthenticationConfiguration {
    let mut config = current.clone();
    config.upsert_jwt(jwt);
    config
}

/// Whether `current` is exactly what add-spoke writes over `backup`: the backup with the authenticator
/// for `issuer` that `current` holds upserted, serialized as add-spoke serializes it. Then nobody else
/// changed the file since add-spoke wrote it.
pub fn written_over(current: &str, backup: &str, issuer: &str) -> bool {
    let Ok(parsed) = AuthenticationConfiguration::from_yaml(current) else {
        return false;
    };
    let Some(ours) = parsed.jwt.iter().find(|j| j.issuer.url == issuer) else {
        return false;
    };
    let Ok(before) = AuthenticationConfiguration::from_yaml(backup) else {
        return false;
    };
    desired(&before, ours.clone())
        .to_yaml()
        .is_ok_and(|text| text == current)
}

/// `config` without the authenticator for `issuer`; `None` when it has none.
pub fn without(
    config: &AuthenticationConfiguration,
    issuer: &str,
) -> Option<AuthenticationConfiguration> {
    if !config.jwt.iter().any(|j| j.issuer.url == issuer) {
        return None;
    }
    let mut config = config.clone();
    config.jwt.retain(|j| j.issuer.url != issuer);
    Some(config)
}

/// The file as a YAML document of comments, for printed plans (`render add-spoke`, `--dry-run=client`):
/// it is not a Kubernetes object, so it is shown, never applied.
pub fn comment(
    spoke_name: &str,
    path: &str,
    config: &AuthenticationConfiguration,
) -> Result<String> {
    let mut out = format!(
        "---\n# cluster: {spoke_name}, step: authn-config, file: {path}\n\
         # Not a Kubernetes object: the spoke kube-apiserver's --authentication-config file. add-spoke\n\
         # --authn-config-dir writes it (this authenticator upserted into the file's, atomically, after a\n\
         # backup); kind-config writes its first version. Its content:\n#\n"
    );
    let text = config.to_yaml()?;
    for line in text.lines().skip_while(|l| l.starts_with('#')) {
        out.push_str(if line.is_empty() { "#" } else { "#   " });
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://hub-control-plane:30443";

    fn ours(audience: &str) -> JwtAuthenticator {
        JwtAuthenticator::for_issuer(ISSUER, None, None, audience)
    }

    #[test]
    fn what_add_spoke_wrote_is_recognised_and_a_later_edit_is_not() {
        let initial = AuthenticationConfiguration::initial().to_yaml().unwrap();
        let before = AuthenticationConfiguration::from_yaml(&initial).unwrap();
        let written = desired(&before, ours("kind-spoke")).to_yaml().unwrap();
        assert!(written_over(&written, &initial, ISSUER));
        // A re-run with another audience still counts as add-spoke's file.
        let rewritten = desired(&before, ours("other")).to_yaml().unwrap();
        assert!(written_over(&rewritten, &initial, ISSUER));
        // Someone added another issuer afterwards.
        let mut edited = AuthenticationConfiguration::from_yaml(&written).unwrap();
        edited.upsert_jwt(JwtAuthenticator::for_issuer(
            "https://sso.example.com",
            None,
            None,
            "k8s",
        ));
        let edited = edited.to_yaml().unwrap();
        assert!(!written_over(&edited, &initial, ISSUER));
        // The initial file itself is not add-spoke's.
        assert!(!written_over(&initial, &initial, ISSUER));
        let removed = without(
            &AuthenticationConfiguration::from_yaml(&edited).unwrap(),
            ISSUER,
        )
        .unwrap();
        assert_eq!(removed.jwt.len(), 1);
        assert_eq!(removed.jwt[0].issuer.url, "https://sso.example.com");
        assert!(without(&removed, ISSUER).is_none());
    }
}
