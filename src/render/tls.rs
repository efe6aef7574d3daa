//! The serving certificate of a kind hub's OIDC discovery provider. The issuer is
//! `https://<hub>-control-plane:<node port>`, a name no public CA signs, so bootstrap makes a private CA,
//! signs a certificate for the issuer's host (and the Service's names) with it, and discards the CA key:
//! nothing can sign another certificate with that CA. The spokes trust the CA certificate (`ca.crt` of the
//! Secret). A re-run keeps a certificate that still covers the names and is valid for 30 more days.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::profile::CaSubject;

/// Name of the Secret (in the SPIRE namespace) holding `tls.crt`, `tls.key` and `ca.crt`.
pub const SECRET: &str = "spire-oidc-tls";

/// A certificate, its key and the CA that signed it (PEM). The key is never printed.
#[derive(Clone)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// A new CA and a certificate for `names` (DNS names or IP addresses), valid `days`.
    pub fn generate(names: &[String], days: u32, subject: &CaSubject) -> Result<ServingCert> {
        let now = time::OffsetDateTime::now_utc();
        let not_after = now + time::Duration::days(i64::from(days));
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("{} (OIDC serving)", subject.common_name),
        );
        dn.push(DnType::OrganizationName, subject.organization.clone());
        dn.push(DnType::CountryName, subject.country.clone());
        ca.distinguished_name = dn;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = now - time::Duration::minutes(5);
        ca.not_after = not_after;
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

        let mut leaf = CertificateParams::new(Vec::<String>::new())?;
        for name in names {
            leaf.subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            });
        }
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        leaf.distinguished_name = dn;
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.not_before = now - time::Duration::minutes(5);
        leaf.not_after = not_after;
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: issuer.pem(),
        })
    }

    /// The Secret's certificate, if it still serves: it covers every name, is valid for 30 more days,
    /// and the Secret has its key and CA.
    pub fn reuse(data: &BTreeMap<String, String>, names: &[String]) -> Option<ServingCert> {
        let cert_pem = data.get("tls.crt")?;
        let key_pem = data.get("tls.key")?;
        let ca_pem = data.get("ca.crt")?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
        let cert = pem.parse_x509().ok()?;
        let soon = time::OffsetDateTime::now_utc() + time::Duration::days(30);
        if cert.validity().not_after.to_datetime() < soon {
            return None;
        }
        let san = cert.subject_alternative_name().ok().flatten()?;
        let covered = |name: &String| {
            san.value.general_names.iter().any(|g| match g {
                x509_parser::extensions::GeneralName::DNSName(d) => d.eq_ignore_ascii_case(name),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    name.parse::<IpAddr>().is_ok_and(|ip| match ip {
                        IpAddr::V4(v4) => v4.octets().as_slice() == *bytes,
                        IpAddr::V6(v6) => v6.octets().as_slice() == *bytes,
                    })
                }
                _ => false,
            })
        };
        if !names.iter().all(covered) || !key_pem.contains("PRIVATE KEY") {
            return None;
        }
        Some(ServingCert {
            cert_pem: cert_pem.clone(),
            key_pem: key_pem.clone(),
            ca_pem: ca_pem.clone(),
        })
    }

    /// sha256 of the certificate (hex), for the pod template annotation.
    pub fn fingerprint(&self) -> String {
        let der = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .map(|(_, p)| p.contents)
            .unwrap_or_default();
        ring::digest::digest(&ring::digest::SHA256, &der)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The Secret, as applied.
    pub fn secret(&self, namespace: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SECRET,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "ztwim-hub"},
            },
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": b64(&self.cert_pem),
                "tls.key": b64(&self.key_pem),
                "ca.crt": b64(&self.ca_pem),
            },
        })
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> CaSubject {
        CaSubject {
            common_name: "SPIRE Server CA".into(),
            country: "US".into(),
            organization: "ztwim-hub".into(),
        }
    }

    #[test]
    fn a_fresh_certificate_is_reused_and_a_name_change_replaces_it() {
        let names = vec!["hub-control-plane".to_string(), "127.0.0.1".to_string()];
        let cert = ServingCert::generate(&names, 365, &subject()).unwrap();
        let data: BTreeMap<String, String> = [
            ("tls.crt".to_string(), cert.cert_pem.clone()),
            ("tls.key".to_string(), cert.key_pem.clone()),
            ("ca.crt".to_string(), cert.ca_pem.clone()),
        ]
        .into();
        let reused = ServingCert::reuse(&data, &names).expect("reused");
        assert_eq!(reused.fingerprint(), cert.fingerprint());
        assert!(ServingCert::reuse(&data, &["other-control-plane".to_string()]).is_none());
        assert!(
            !format!("{cert:?}").contains("PRIVATE"),
            "the key is never printed"
        );
    }

    #[test]
    fn a_certificate_expiring_within_30_days_is_replaced() {
        let names = vec!["hub-control-plane".to_string()];
        let cert = ServingCert::generate(&names, 10, &subject()).unwrap();
        let data: BTreeMap<String, String> = [
            ("tls.crt".to_string(), cert.cert_pem),
            ("tls.key".to_string(), cert.key_pem),
            ("ca.crt".to_string(), cert.ca_pem),
        ]
        .into();
        assert!(ServingCert::reuse(&data, &names).is_none());
    }
}
