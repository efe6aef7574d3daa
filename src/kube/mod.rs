//! Everything that talks Kubernetes: contexts to clients, the kinds we know, server-side apply (with its
//! dry-run modes behind the same interface), and watch-based waits.
pub mod apply;
pub mod client;
pub mod kinds;
pub mod platform;
pub mod wait;
