//! Server-side apply with one field manager, and the two dry-run modes behind the same interface:
//! steps call [`Applier::apply`] and never ask which mode they run in.

use anyhow::Result;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde::Serialize;
use serde_json::Value;

use super::client::{Cluster, describe_kube_error, status_code};
use super::kinds::Kind;
use crate::error;
use crate::render::object::Object;

/// The one field manager ztwim-hub applies with.
pub const FIELD_MANAGER: &str = "ztwim-hub";

/// `--dry-run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DryRun {
    /// Print the plan; read from the clusters only what must be discovered.
    Client,
    /// Send every apply with dryRun=All and report what would change.
    Server,
}

/// What an apply did (or would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Created,
    Configured,
    Unchanged,
    WouldCreate,
    WouldConfigure,
    /// Server dry-run: the object's API is not served yet (its CRD comes with an operator installed earlier).
    Pending,
    /// Client dry-run: planned, not sent.
    Planned,
    Deleted,
    WouldDelete,
    /// Deleting something that is not there.
    Absent,
}

impl Change {
    pub fn is_write(self) -> bool {
        matches!(self, Change::Created | Change::Configured | Change::Deleted)
    }

    pub fn label(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Configured => "configured",
            Change::Unchanged => "unchanged",
            Change::WouldCreate => "would be created",
            Change::WouldConfigure => "would be configured",
            Change::Pending => "pending (its API is not served yet)",
            Change::Planned => "planned",
            Change::Deleted => "deleted",
            Change::WouldDelete => "would be deleted",
            Change::Absent => "already absent",
        }
    }
}

/// Applies objects in one mode.
#[derive(Debug, Clone, Copy)]
pub struct Applier {
    pub dry_run: Option<DryRun>,
    pub force: bool,
}

pub fn api_for(cluster: &Cluster, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = kind.api_resource();
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(cluster.client.clone(), ns, &ar),
        (true, None) => Api::default_namespaced_with(cluster.client.clone(), &ar),
        (false, _) => Api::all_with(cluster.client.clone(), &ar),
    }
}

impl Applier {
    /// Applies `object` to `cluster` (server-side apply, field manager `ztwim-hub`).
    pub async fn apply(&self, cluster: &Cluster, object: &Object) -> Result<Change> {
        if self.dry_run == Some(DryRun::Client) {
            return Ok(Change::Planned);
        }
        let kind = object.known_kind();
        let name = object.name();
        let namespace = object.namespace();
        if kind.namespaced && namespace.is_none() {
            return Err(error::input(format!(
                "{} has no metadata.namespace",
                object.display_name()
            )));
        }
        let api = api_for(cluster, kind, namespace.as_deref());
        let server_dry_run = self.dry_run == Some(DryRun::Server);
        if server_dry_run && !served(cluster, kind).await? {
            return Ok(Change::Pending);
        }
        let before = match api.get_opt(&name).await {
            Ok(found) => found,
            Err(e) if status_code(&e) == Some(404) && server_dry_run => return Ok(Change::Pending),
            Err(e) if status_code(&e) == Some(404) => {
                return Err(anyhow::anyhow!(
                    "{}: the API {} is not served on {} (is its operator installed? run the step that installs it first)",
                    object.display_name(),
                    kind.resource_name(),
                    cluster.context
                ));
            }
            Err(e) => return Err(api_error(cluster, object, "reading", &e)),
        };
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = self.force;
        if server_dry_run {
            params = params.dry_run();
        }
        let after = match api
            .patch(&name, &params, &Patch::Apply(object.to_value()))
            .await
        {
            Ok(after) => after,
            Err(e) if status_code(&e) == Some(404) && server_dry_run => return Ok(Change::Pending),
            Err(e) => return Err(api_error(cluster, object, "applying", &e)),
        };
        Ok(match (before, server_dry_run) {
            (None, false) => Change::Created,
            (None, true) => Change::WouldCreate,
            (Some(before), false) => {
                if before.metadata.resource_version == after.metadata.resource_version {
                    Change::Unchanged
                } else {
                    Change::Configured
                }
            }
            (Some(before), true) => {
                if comparable(&before) == comparable(&after) {
                    Change::Unchanged
                } else {
                    Change::WouldConfigure
                }
            }
        })
    }
}

impl Applier {
    /// Whether this applier changes clusters (not a dry run).
    pub fn writes(&self) -> bool {
        self.dry_run.is_none()
    }

    /// Deletes an object if it exists (foreground, so dependents go first).
    pub async fn delete(
        &self,
        cluster: &Cluster,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Change> {
        if self.dry_run == Some(DryRun::Client) {
            return Ok(Change::Planned);
        }
        let api = api_for(cluster, kind, namespace);
        match api.get_opt(name).await {
            Ok(None) => return Ok(Change::Absent),
            Err(e) if status_code(&e) == Some(404) => return Ok(Change::Absent),
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "reading {} {name} on {}: {}",
                    kind.kind,
                    cluster.context,
                    describe_kube_error(&e)
                ));
            }
            Ok(Some(_)) => {}
        }
        let mut params = kube::api::DeleteParams::foreground();
        if self.dry_run == Some(DryRun::Server) {
            params = params.dry_run();
        }
        match api.delete(name, &params).await {
            Ok(_) if self.dry_run.is_some() => Ok(Change::WouldDelete),
            Ok(_) => Ok(Change::Deleted),
            Err(e) if status_code(&e) == Some(404) => Ok(Change::Absent),
            Err(e) => Err(anyhow::anyhow!(
                "deleting {} {name} on {}: {}",
                kind.kind,
                cluster.context,
                describe_kube_error(&e)
            )),
        }
    }

    /// A JSON merge patch (e.g. to remove a field another manager set), in the same mode as applies.
    pub async fn merge_patch(
        &self,
        cluster: &Cluster,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
    ) -> Result<()> {
        if self.dry_run == Some(DryRun::Client) {
            return Ok(());
        }
        let api = api_for(cluster, kind, namespace);
        let mut params = PatchParams::default();
        if self.dry_run == Some(DryRun::Server) {
            params = params.dry_run();
        }
        api.patch(name, &params, &Patch::Merge(patch))
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "patching {} {name} on {}: {}",
                    kind.kind,
                    cluster.context,
                    describe_kube_error(&e)
                )
            })?;
        Ok(())
    }
}

/// Whether the API server serves `kind` (its group version lists the resource).
pub async fn served(cluster: &Cluster, kind: &Kind) -> Result<bool> {
    let listed = if kind.group.is_empty() {
        cluster.client.list_core_api_resources(kind.version).await
    } else {
        cluster
            .client
            .list_api_group_resources(&kind.api_version())
            .await
    };
    match listed {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == kind.plural)),
        Err(e) if status_code(&e) == Some(404) => Ok(false),
        Err(e) => Err(anyhow::anyhow!(
            "discovering {} on {}: {}",
            kind.api_version(),
            cluster.context,
            describe_kube_error(&e)
        )),
    }
}

/// The object without the fields every write changes.
fn comparable(obj: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(obj).unwrap_or_default();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["managedFields", "resourceVersion", "generation"] {
            meta.remove(key);
        }
    }
    value
}

fn api_error(cluster: &Cluster, object: &Object, verb: &str, err: &kube::Error) -> anyhow::Error {
    let what = format!("{verb} {} on {}", object.display_name(), cluster.context);
    match status_code(err) {
        Some(409) => anyhow::anyhow!(
            "{what}: conflict: {}; another field manager owns these fields: re-run with --force to take them over",
            describe_kube_error(err)
        ),
        Some(403) => anyhow::anyhow!("{what}: forbidden: {}", describe_kube_error(err)),
        Some(422) => anyhow::anyhow!("{what}: rejected as invalid: {}", describe_kube_error(err)),
        _ => anyhow::anyhow!("{what}: {}", describe_kube_error(err)),
    }
}
