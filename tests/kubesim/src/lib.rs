//! kubesim: simulated Kubernetes/OpenShift API servers for ztwim-hub's tests.
//!
//! Start clusters with [`Sim::start`], point clients at [`Sim::write_kubeconfig`], inspect and
//! mutate state through [`ClusterHandle`], inject [`Fault`]s. See `docs/testing.md`.
//!
//! Two platforms ([`Profile`]):
//!
//! - OpenShift (`openshift-4.N`): OLM, the ZTWIM operator and its SPIRE ([`ztwim`]), the GitOps
//!   operator's Argo CD ([`argocd`]), Routes, the `Authentication` rollout ([`openshift_authn`]).
//! - kind (`kind-1.N`): the kubelets and controllers for plain workloads ([`workloads`]),
//!   `kube-public/cluster-info` and the API server at `https://<cluster>-control-plane:6443`,
//!   upstream SPIRE recognised by its images with its ClusterSPIFFEIDs and OIDC discovery provider
//!   on a NodePort ([`spire_upstream`]), upstream Argo CD's pods running the exec plugin
//!   ([`argocd::ArgoCdPods`]), the structured authentication file ([`kind_authn`]).
//!
//! Both share the SPIRE signing key and minting ([`spire`]), the JWT authenticator
//! ([`jwt_authn`]) and the Argo CD application controller ([`argocd_apps`]). Simulated hosts
//! (routes, node ports, control-plane endpoints) are reached through one table of proxy routes
//! ([`proxy`]) by the env file's CONNECT proxy and by every simulated client.
pub mod apply;
pub mod argocd;
pub mod argocd_apps;
pub mod auth;
pub mod cluster;
pub mod controllers;
pub mod exec;
pub mod faults;
pub mod jwt_authn;
pub mod kind_authn;
pub mod olm;
pub mod openshift_authn;
pub mod proxy;
pub mod registry;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod sim;
pub mod spire;
pub mod spire_upstream;
pub mod tls;
pub mod workloads;
pub mod ztwim;

pub use cluster::Counters;
pub use exec::{ExecRequest, ExecResult};
pub use faults::{Fault, Matcher};
pub use sim::{ClusterHandle, KubeUser, Profile, Sim, SimConfig};
