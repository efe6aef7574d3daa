//! `issuer-ca`: when the hub's issuer certificate is not publicly trusted, the CA that signs it, in a
//! ConfigMap in `openshift-config` that the OIDC provider references.

use crate::workflow::Step;

use super::SpokeRun;

pub struct IssuerCa;

impl Step<SpokeRun> for IssuerCa {
    fn name(&self) -> &'static str {
        "issuer-ca"
    }
    fn about(&self) -> &'static str {
        "publish the issuer's CA on the spoke (only when it is not publicly trusted)"
    }
}
