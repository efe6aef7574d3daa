//! Which profile a cluster needs when `--profile` is not given: OpenShift when it serves the OpenShift
//! config API (`config.openshift.io/v1` ClusterVersion), vanilla Kubernetes (the `kind` profile) otherwise.

use anyhow::Result;

use super::apply::served;
use super::client::Cluster;
use super::kinds;
use crate::profile::Profile;

/// A profile and why it was chosen, for the "profile: ..." line.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub profile: Profile,
    pub reason: String,
}

/// `--profile` if given (`flag` names it), else the profile the cluster's APIs call for.
pub async fn choose(given: Option<&str>, flag: &str, cluster: &Cluster) -> Result<Chosen> {
    if let Some(spec) = given {
        return Ok(Chosen {
            profile: Profile::load(spec)?,
            reason: format!("from {flag}"),
        });
    }
    let openshift = served(
        cluster,
        kinds::known("config.openshift.io/v1", "ClusterVersion"),
    )
    .await?;
    let (name, reason) = if openshift {
        (
            "openshift",
            format!(
                "detected: {} serves config.openshift.io/v1",
                cluster.context
            ),
        )
    } else {
        (
            "kind",
            format!(
                "detected: {} serves no config.openshift.io API (vanilla Kubernetes)",
                cluster.context
            ),
        )
    };
    Ok(Chosen {
        profile: Profile::load(name)?,
        reason: format!("{reason}; pass {flag} to choose"),
    })
}
