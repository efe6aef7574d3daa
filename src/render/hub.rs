//! The hub's plan, for `render bootstrap` and `bootstrap` alike: the profile's templates and, on
//! Kubernetes hubs, the fetched upstream manifests (spire-controller-manager CRDs, Argo CD with the
//! exec-auth plumbing merged in) and the OIDC serving certificate's Secret.

use anyhow::Result;
use serde_json::json;

use super::Renderer;
use super::object::Object;
use super::plan::{Plan, Planned};
use super::tls::ServingCert;
use super::upstream;
use super::values::BootstrapValues;
use crate::profile::{Platform, Profile, Side};

/// The template whose rendering is merged into Argo CD's server and application controller.
pub const PLUMBING_TEMPLATE: &str = "common/hub/exec-auth-plumbing.yaml";

/// Where a Kubernetes hub's upstream manifests come from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub spire_crds: Vec<String>,
    pub argocd_manifest: String,
}

impl Sources {
    /// The flags' sources, else the profile's release URLs.
    pub fn new(profile: &Profile, spire_crds: &[String], argocd_manifest: Option<&str>) -> Sources {
        let spire = profile.spire();
        let argo = profile.upstream_argocd();
        Sources {
            spire_crds: if spire_crds.is_empty() {
                spire
                    .crds
                    .iter()
                    .map(|u| u.replace("{version}", &spire.controller_manager_version))
                    .collect()
            } else {
                spire_crds.to_vec()
            },
            argocd_manifest: argocd_manifest
                .map(str::to_string)
                .unwrap_or_else(|| argo.manifest_url.replace("{version}", &argo.version)),
        }
    }
}

/// The plan. `tls`: the serving certificate to keep (from the cluster), else a new one is made.
pub async fn plan(
    renderer: &Renderer,
    profile: &Profile,
    values: &mut BootstrapValues,
    sources: Option<&Sources>,
    tls: Option<ServingCert>,
) -> Result<Plan> {
    if profile.platform == Platform::Openshift {
        return Plan::render(
            renderer,
            &profile.manifests.bootstrap,
            profile,
            values,
            None,
        );
    }
    let sources = sources.expect("Kubernetes hubs have sources");
    let spire = profile.spire();
    let tls = match tls {
        Some(t) => t,
        None => ServingCert::generate(
            &values.kubernetes().oidc_certificate_names,
            spire.oidc_certificate_days,
            &spire.ca_subject,
        )?,
    };
    if let Some(k) = values.kubernetes.as_mut() {
        k.oidc_certificate_fingerprint = tls.fingerprint();
    }
    let mut plan = Plan::render(
        renderer,
        &profile.manifests.bootstrap,
        profile,
        values,
        None,
    )?;
    let planned = |step: &str, template: &str, object: Object, sensitive: bool| Planned {
        step: step.into(),
        side: Side::Hub,
        cluster: "hub".into(),
        template: template.into(),
        object,
        sensitive,
    };

    let mut crds = Vec::new();
    for spec in &sources.spire_crds {
        crds.push(upstream::fetch(spec, "--spire-crds").await?);
    }
    let mut objects: Vec<Planned> = upstream::spire_crds(&crds)?
        .into_iter()
        .map(|(origin, o)| planned("spire-crds", &origin, o, false))
        .collect();

    let secret = Object::from_value(tls.secret(&spire.namespace))
        .map_err(|why| anyhow::anyhow!("the OIDC serving certificate Secret: {why}"))?;
    let mut rest = Vec::new();
    let mut secret = Some(planned("oidc-discovery", "(generated)", secret, true));
    for p in plan.objects.drain(..) {
        if p.step == "oidc-discovery"
            && let Some(s) = secret.take()
        {
            rest.push(s);
        }
        rest.push(p);
    }
    rest.extend(secret);

    let manifest = upstream::fetch(&sources.argocd_manifest, "--argocd-manifest").await?;
    let context = json!({"p": profile, "v": values});
    let plumbing = renderer
        .render_documents(PLUMBING_TEMPLATE, &context)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let argo = upstream::argocd(
        &manifest,
        &values.gitops_namespace,
        &profile.upstream_argocd().namespace,
        &plumbing,
    )?;
    objects.extend(rest);
    objects.extend(
        argo.into_iter()
            .map(|o| planned("argocd", &manifest.origin, o, false)),
    );
    plan.objects = objects;
    Ok(plan)
}
