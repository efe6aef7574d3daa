//! Bad input: one line on stderr that says what is wrong and how to fix it, exit code 2, nothing on stdout.

use crate::support::*;

#[test]
fn trust_domain_syntax() {
    for (value, why) in [
        ("Apps.Hub.example.com", "uppercase"),
        ("spiffe://apps.hub.example.com", "without a scheme"),
        ("apps.hub.example.com:443", "no port"),
        ("apps hub", "only lowercase letters"),
    ] {
        ztwim(with(ADD_SPOKE, &[("--trust-domain", value)], &[])).bad_input(why);
        ztwim(with(BOOTSTRAP, &[("--trust-domain", value)], &[])).bad_input("--trust-domain");
    }
}

#[test]
fn issuer_must_be_https() {
    ztwim(with(
        ADD_SPOKE,
        &[("--issuer-url", "http://issuer.example.com")],
        &[],
    ))
    .bad_input("--issuer-url \"http://issuer.example.com\" must be an https:// URL");
    ztwim(with(
        ADD_SPOKE,
        &[("--issuer-url", "issuer.example.com")],
        &[],
    ))
    .bad_input("it needs https://");
}

#[test]
fn spoke_server_must_be_a_clean_https_url() {
    ztwim(with(
        ADD_SPOKE,
        &[("--spoke-server", "http://api.spoke-a.example.com:6443")],
        &[],
    ))
    .bad_input("--spoke-server");
    // The runbook's pitfall: "https://" + `oc whoami --show-server`.
    ztwim(with(
        ADD_SPOKE,
        &[(
            "--spoke-server",
            "https://https://api.spoke-a.example.com:6443",
        )],
        &[],
    ))
    .bad_input("has the scheme twice");
    ztwim(with(
        ADD_SPOKE,
        &[("--spoke-server", "https://api.spoke-a.example.com:6443/api")],
        &[],
    ))
    .bad_input("must not have a path");
}

#[test]
fn names_must_be_dns_1123_labels() {
    ztwim(with(ADD_SPOKE, &[("--spoke-name", "Spoke_A")], &[]))
        .bad_input("--spoke-name \"Spoke_A\" is not a valid name");
    ztwim(with(BOOTSTRAP, &[("--gitops-namespace", "GitOps")], &[]))
        .bad_input("--gitops-namespace");
    ztwim(with(
        BOOTSTRAP,
        &[("--gitops-namespace", "openshift-gitops")],
        &[],
    ))
    .bad_input("ZTWIM issues no identities in openshift-* namespaces");
    ztwim(with(
        BOOTSTRAP,
        &[("--app-domain", "https://apps.hub.example.com")],
        &[],
    ))
    .bad_input("--app-domain");
}

#[test]
fn a_pem_file_that_is_not_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "hello\n").unwrap();
    ztwim(with(
        ADD_SPOKE,
        &[("--spoke-ca-file", key.to_str().unwrap())],
        &[],
    ))
    .bad_input("only certificates belong in a CA bundle");
    ztwim(with(
        ADD_SPOKE,
        &[("--issuer-ca-file", garbage.to_str().unwrap())],
        &[],
    ))
    .bad_input("--issuer-ca-file");
    ztwim(with(
        ADD_SPOKE,
        &[("--spoke-ca-file", "/no/such/file.crt")],
        &[],
    ))
    .bad_input("cannot read the file");
}

#[test]
fn a_version_that_is_not_major_minor() {
    for bad in ["4", "4.19.2", "v4.19", "four"] {
        ztwim(with(ADD_SPOKE, &[("--spoke-version", bad)], &[]))
            .bad_input("is not a MAJOR.MINOR version");
    }
    ztwim(with(ADD_SPOKE, &[("--spoke-version", "4.18")], &[]))
        .bad_input("needs OpenShift 4.19 or later");
}

#[test]
fn missing_values_name_the_flag_and_where_the_live_command_reads_them() {
    ztwim(with(BOOTSTRAP, &[], &["--app-domain"])).bad_input("--app-domain is required");
    ztwim(with(BOOTSTRAP, &[], &["--channel"])).bad_input("--channel is required");
    ztwim(with(ADD_SPOKE, &[], &["--issuer-url"])).bad_input("--issuer-url is required");
    ztwim(with(ADD_SPOKE, &[], &["--spoke-ca-file"])).bad_input("give --spoke-ca-file");
}

#[test]
fn contradictory_and_malformed_flags() {
    ztwim(with(ADD_SPOKE, &[("--insecure-skip-tls-verify", "")], &[]))
        .bad_input("exclude each other");
    ztwim(with(BOOTSTRAP, &[("--exec-auth-sha256", "abc")], &[]))
        .bad_input("is not a sha256 digest");
    ztwim(with(ADD_SPOKE, &[("--audience", "a b")], &[])).bad_input("--audience");
    ztwim(with(ADD_SPOKE, &[("--rbac", "admin")], &[]))
        .bad_input("invalid value 'admin' for '--rbac");
    ztwim(with(BOOTSTRAP, &[("--no-such-flag", "")], &[]))
        .bad_input("unexpected argument '--no-such-flag'");
    ztwim(with(
        BOOTSTRAP,
        &[("--exec-auth-url", "http://mirror/{version}")],
        &[],
    ))
    .bad_input("--exec-auth-url");
}

#[test]
fn profiles_and_template_dirs() {
    ztwim(with(BOOTSTRAP, &[("--profile", "nope")], &[]))
        .bad_input("no such built-in profile (built-in: kind, openshift;");
    ztwim(with(BOOTSTRAP, &[("--templates-dir", "/no/such/dir")], &[]))
        .bad_input("--templates-dir /no/such/dir: not a directory");
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/openshift.yaml"),
    )
    .unwrap()
    .replace("  audience: openshift-spoke", "  audiense: openshift-spoke");
    let path = dir.path().join("typo.yaml");
    std::fs::write(&path, text).unwrap();
    let out = ztwim(with(
        ADD_SPOKE,
        &[("--profile", path.to_str().unwrap())],
        &[],
    ))
    .bad_input("audiense");
    assert!(out.stderr.contains("typo.yaml"), "{}", out.stderr);
}

#[test]
fn a_missing_required_flag_is_named() {
    ztwim(["bootstrap", "--yes"]).bad_input("not provided: --context <CONTEXT>");
    ztwim(["add-spoke", "--yes"]).bad_input("--hub-context <CONTEXT>, --spoke-context <CONTEXT>");
}
