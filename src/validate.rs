//! Validation of user input. Each function returns a one-line message that names the flag, says what is
//! wrong and how to fix it; callers turn it into [`crate::error::Error::Input`] (exit code 2).

use std::fmt;
use std::path::Path;

use url::Url;

/// A `MAJOR.MINOR` version, e.g. OpenShift `4.19`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct MinorVersion {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for MinorVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl std::str::FromStr for MinorVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a MAJOR.MINOR version (for example 4.19)");
        let (major, minor) = s.trim().split_once('.').ok_or_else(bad)?;
        let num = |p: &str| {
            if p.is_empty()
                || !p.bytes().all(|b| b.is_ascii_digit())
                || (p.len() > 1 && p.starts_with('0'))
            {
                None
            } else {
                p.parse::<u32>().ok()
            }
        };
        Ok(MinorVersion {
            major: num(major).ok_or_else(bad)?,
            minor: num(minor).ok_or_else(bad)?,
        })
    }
}

impl<'de> serde::Deserialize<'de> for MinorVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `--spoke-version`.
pub fn minor_version(flag: &str, value: &str) -> Result<MinorVersion, String> {
    value.parse().map_err(|e| format!("{flag}: {e}"))
}

/// A DNS-1123 label (namespaces, Secret names used as cluster names): lowercase alphanumerics and '-',
/// starting and ending alphanumeric, at most 63 characters.
pub fn dns1123_label(flag: &str, value: &str) -> Result<(), String> {
    let why = dns1123_label_problem(value);
    match why {
        None => Ok(()),
        Some(why) => Err(format!(
            "{flag} {value:?} is not a valid name: {why} (use lowercase letters, digits and '-', e.g. spoke-a)"
        )),
    }
}

fn dns1123_label_problem(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        return Some("it is empty");
    }
    if value.len() > 63 {
        return Some("it is longer than 63 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("it has characters other than lowercase letters, digits and '-'");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Some("it starts or ends with '-'");
    }
    None
}

/// A DNS-1123 subdomain, e.g. an apps domain `apps.hub.example.com`.
pub fn dns_subdomain(flag: &str, value: &str) -> Result<(), String> {
    let fail = |why: &str| {
        Err(format!(
            "{flag} {value:?} is not a valid DNS name: {why} (for example apps.hub.example.com)"
        ))
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > 253 {
        return fail("it is longer than 253 characters");
    }
    if value.contains("://") {
        return fail("give the domain without a scheme");
    }
    for label in value.split('.') {
        if let Some(why) = dns1123_label_problem(label) {
            return fail(&format!("label {label:?}: {why}"));
        }
    }
    Ok(())
}

/// A SPIFFE trust domain (SPIFFE ID spec): lowercase letters, digits, '.', '-' and '_', no scheme, no port,
/// at most 255 characters. ZTWIM also wants it to start and end with a letter or digit.
pub fn trust_domain(flag: &str, value: &str) -> Result<(), String> {
    let fail = |why: &str| {
        Err(format!(
            "{flag} {value:?} is not a valid SPIFFE trust domain: {why} (for example apps.hub.example.com)"
        ))
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.starts_with("spiffe://") || value.contains("://") {
        return fail("give the trust domain without a scheme");
    }
    if value.len() > 255 {
        return fail("it is longer than 255 characters");
    }
    if value.contains(':') {
        return fail("a trust domain has no port");
    }
    if value.bytes().any(|b| b.is_ascii_uppercase()) {
        return fail("it has uppercase letters (trust domains are lowercase)");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return fail("only lowercase letters, digits, '.', '-' and '_' are allowed");
    }
    if value.contains('_') {
        return fail("ZTWIM does not accept '_' in a trust domain");
    }
    let first = value.as_bytes()[0];
    let last = value.as_bytes()[value.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return fail("it must start and end with a letter or digit");
    }
    Ok(())
}

/// An `https://` URL with a host and no query or fragment. Returns it without a trailing '/'.
/// With `path_allowed` false (API server URLs) a path is refused too.
pub fn https_url(flag: &str, value: &str, path_allowed: bool) -> Result<String, String> {
    let hint = if path_allowed {
        "https://spire-spiffe-oidc-discovery-provider.apps.hub.example.com"
    } else {
        "https://api.spoke-a.example.com:6443"
    };
    let fail = |why: &str| Err(format!("{flag} {value:?} {why} (for example {hint})"));
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("https://https://") || lower.starts_with("https://http://") {
        return fail("has the scheme twice");
    }
    let url = match Url::parse(value) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return fail("is not a URL: it needs https://");
        }
        Err(e) => return fail(&format!("is not a valid URL ({e})")),
    };
    if url.scheme() != "https" {
        return fail("must be an https:// URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return fail("has no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return fail("must not have a query or fragment");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return fail("must not carry credentials");
    }
    if !path_allowed && url.path() != "/" && !url.path().is_empty() {
        return fail("must not have a path");
    }
    let mut text = url.to_string();
    while text.ends_with('/') {
        text.pop();
    }
    Ok(text)
}

/// A file holding one or more PEM certificates. Returns the PEM text, normalised to end in a newline.
pub fn pem_certificates(flag: &str, path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "{flag} {}: cannot read the file ({e}); give the path of a PEM CA bundle",
            path.display()
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        format!(
            "{flag} {}: not a PEM file (it is binary; convert DER with 'openssl x509 -inform der')",
            path.display()
        )
    })?;
    let mut count = 0;
    let mut rest = text.as_bytes();
    loop {
        match x509_parser::pem::parse_x509_pem(rest) {
            Ok((remaining, pem)) => {
                if pem.label != "CERTIFICATE" {
                    return Err(format!(
                        "{flag} {}: has a {:?} PEM block; only certificates belong in a CA bundle",
                        path.display(),
                        pem.label
                    ));
                }
                pem.parse_x509().map_err(|e| {
                    format!(
                        "{flag} {}: certificate {} does not parse ({e})",
                        path.display(),
                        count + 1
                    )
                })?;
                count += 1;
                rest = remaining;
                if rest.iter().all(u8::is_ascii_whitespace) {
                    break;
                }
            }
            Err(_) if count > 0 && rest.iter().all(u8::is_ascii_whitespace) => break,
            Err(_) => {
                return Err(format!(
                    "{flag} {}: not a PEM certificate (no valid \"-----BEGIN CERTIFICATE-----\" block{})",
                    path.display(),
                    if count > 0 {
                        " after the first certificates"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    let mut pem = text.trim().to_string();
    pem.push('\n');
    Ok(pem)
}

/// A sha256 digest: 64 hexadecimal characters. Returns it lowercased.
pub fn sha256_hex(flag: &str, value: &str) -> Result<String, String> {
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!(
            "{flag} {value:?} is not a sha256 digest (64 hexadecimal characters, as printed by sha256sum)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            minor_version("--v", "4.19").unwrap(),
            MinorVersion {
                major: 4,
                minor: 19
            }
        );
        for bad in ["4", "4.19.1", "v4.19", "4.x", "", "04.1", "4."] {
            assert!(minor_version("--v", bad).is_err(), "{bad}");
        }
        assert!(
            MinorVersion { major: 4, minor: 9 }
                < MinorVersion {
                    major: 4,
                    minor: 19
                }
        );
    }

    #[test]
    fn trust_domains() {
        assert!(trust_domain("--t", "apps.hub.example.com").is_ok());
        for bad in [
            "",
            "Apps.example.com",
            "spiffe://a.b",
            "a.b:443",
            "a b",
            "-a.b",
            "a_b.c",
        ] {
            assert!(trust_domain("--t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            https_url("--s", "https://api.a.example.com:6443/", false).unwrap(),
            "https://api.a.example.com:6443"
        );
        assert!(
            https_url("--s", "https://https://api.a:6443", false)
                .unwrap_err()
                .contains("scheme twice")
        );
        assert!(https_url("--s", "http://api.a:6443", false).is_err());
        assert!(https_url("--s", "api.a:6443", false).is_err());
        assert!(https_url("--s", "https://api.a:6443/x", false).is_err());
        assert!(https_url("--i", "https://issuer.example.com/x", true).is_ok());
        assert!(https_url("--i", "https://issuer.example.com?x=1", true).is_err());
    }

    #[test]
    fn names() {
        assert!(dns1123_label("--n", "spoke-a").is_ok());
        for bad in ["", "Spoke", "spoke_a", "-a", &"a".repeat(64)] {
            assert!(dns1123_label("--n", bad).is_err(), "{bad}");
        }
        assert!(dns_subdomain("--d", "apps.hub.example.com").is_ok());
        assert!(dns_subdomain("--d", "https://apps.x").is_err());
        assert!(dns_subdomain("--d", "apps..x").is_err());
    }

    #[test]
    fn digests() {
        assert!(sha256_hex("--x", &"A".repeat(64)).is_ok());
        assert!(sha256_hex("--x", "abc").is_err());
    }
}
