//! Verification that proves what the workflows claim: the OIDC issuer serves the right discovery
//! document and keys; Argo CD's pods obtain JWT-SVIDs that verify against them.
pub mod identity;
pub mod oidc;
