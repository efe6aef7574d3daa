//! Everything that talks Kubernetes: the kinds we know, and (in later steps) clients, apply and waits.
pub mod kinds;
