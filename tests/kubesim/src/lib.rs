//! kubesim: simulated Kubernetes/OpenShift API servers for ztwim-hub's tests.
//!
//! Start clusters with [`Sim::start`], point clients at [`Sim::write_kubeconfig`], inspect and
//! mutate state through [`ClusterHandle`], inject [`Fault`]s. See `docs/testing.md`.
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
