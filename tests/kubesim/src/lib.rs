//! kubesim: simulated Kubernetes/OpenShift API servers for ztwim-hub's tests.
pub mod schema;
