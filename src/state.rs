//! The local state directory: `$XDG_STATE_HOME/ztwim-hub` (default `~/.local/state/ztwim-hub`), or
//! `--state-dir`. It holds the saved Authentication spec of each spoke, next to the copy on the spoke.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("ztwim-hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local").join("state").join("ztwim-hub")
}

fn backup_path(dir: &Path, spoke: &str) -> PathBuf {
    dir.join("spokes")
        .join(spoke)
        .join("authentication-spec.json")
}

/// Writes the spoke's previous Authentication spec (atomically) and returns the file.
pub fn save_authentication_backup(dir: &Path, spoke: &str, spec: &Value) -> Result<PathBuf> {
    let path = backup_path(dir, spoke);
    let parent = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(spec)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The saved spec, if this machine has one.
pub fn load_authentication_backup(dir: &Path, spoke: &str) -> Result<Option<Value>> {
    let path = backup_path(dir, spoke);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("{} is not JSON", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Removes the saved spec and the spoke's directory if nothing else is in it.
pub fn remove_authentication_backup(dir: &Path, spoke: &str) -> Result<()> {
    let path = backup_path(dir, spoke);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    if let Some(parent) = path.parent() {
        // Fails (and is left alone) when the directory holds anything else.
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_round_trips_and_is_removed_with_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({"type": "IntegratedOAuth"});
        let file = save_authentication_backup(dir.path(), "spoke-a", &spec).unwrap();
        assert!(file.ends_with("spokes/spoke-a/authentication-spec.json"));
        assert_eq!(
            load_authentication_backup(dir.path(), "spoke-a").unwrap(),
            Some(spec)
        );
        remove_authentication_backup(dir.path(), "spoke-a").unwrap();
        assert_eq!(
            load_authentication_backup(dir.path(), "spoke-a").unwrap(),
            None
        );
        assert!(!dir.path().join("spokes/spoke-a").exists());
        remove_authentication_backup(dir.path(), "spoke-a").unwrap();
    }
}
