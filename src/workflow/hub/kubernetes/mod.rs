//! `bootstrap`'s steps on a Kubernetes (kind) hub: upstream SPIRE from our templates, its OIDC discovery
//! provider on a NodePort, and upstream Argo CD from its release manifest. `preflight` and `identity` are
//! shared with OpenShift.

pub mod argocd;
pub mod oidc_discovery;
pub mod preflight;
pub mod spire;
pub mod spire_crds;
