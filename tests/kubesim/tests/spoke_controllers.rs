//! The spoke side of kubesim part 2: OpenShift external OIDC (Authentication, ClusterOperator
//! kube-apiserver rollout, FeatureGate rules), kind's authentication configuration file, and
//! the simulated Argo CD application controller. Every check goes through the API (kube-rs)
//! except where a test reads kubesim's own diagnostics to prove *why* a token was rejected.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::{admin_client, client_for};
use futures_util::{StreamExt, TryStreamExt};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kubesim::argocd_apps::ArgoCdSettings;
use kubesim::tls::Ca;
use kubesim::{ExecRequest, ExecResult, Fault, KubeUser, Profile, Sim, SimConfig};
use serde_json::{Value, json};

/// Hang guard for every wait (never a timing assertion).
const T: Duration = Duration::from_secs(60);
const AUDIENCE: &str = "openshift-spoke";
const SPIFFE_ID: &str = "spiffe://apps.hub.kubesim.example/ns/ztwim-gitops/sa/openshift-gitops-argocd-application-controller";

// ---------------------------------------------------------------------------------------------
// A small OIDC issuer: discovery and JWKS over HTTPS, reached through the sim's proxy routes.

struct Issuer {
    url: String,
    ca_pem: String,
    key: EncodingKey,
    kid: String,
}

impl Issuer {
    fn start(sim: &Sim, host: &str) -> Issuer {
        let ca = Ca::new(&format!("test-oidc-ca-{host}")).unwrap();
        let pair = ca.issue_server(&[host], &[]).unwrap();
        let tls = kubesim::tls::server_config(&pair, &ca.cert_pem()).unwrap();
        let keypair = rcgen::KeyPair::generate().unwrap();
        let key = EncodingKey::from_ec_der(keypair.serialized_der());
        let kid = format!("kid-{host}");
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.clone());
        let url = format!("https://{host}");
        let discovery = json!({
            "issuer": url, "jwks_uri": format!("{url}/keys"),
            "authorization_endpoint": format!("{url}/auth"),
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384"]
        })
        .to_string();
        let jwks = json!({"keys": [jwk]}).to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        sim.runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, discovery, jwks) =
                    (acceptor.clone(), discovery.clone(), jwks.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let body = match req.uri().path() {
                                "/.well-known/openid-configuration" => Some(discovery.clone()),
                                "/keys" => Some(jwks.clone()),
                                _ => None,
                            };
                            async move {
                                let mut resp = hyper::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from(body.clone().unwrap_or_default()),
                                ));
                                if body.is_none() {
                                    *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
                                }
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        sim.clusters()[0].add_proxy_route(&format!("{host}:443"), addr);
        Issuer {
            url,
            ca_pem: ca.cert_pem(),
            key,
            kid,
        }
    }

    /// A JWT-SVID-like token for `sub` and `aud`, valid for five minutes.
    fn token(&self, sub: &str, aud: &str) -> String {
        self.token_with(json!({"sub": sub, "aud": [aud]}))
    }

    fn token_with(&self, claims: Value) -> String {
        let now = jiff::Timestamp::now().as_second();
        let mut c = json!({"iss": self.url, "iat": now, "exp": now + 300});
        for (k, v) in claims.as_object().unwrap() {
            c[k] = v.clone();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &c, &self.key).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn config_api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &ar("config.openshift.io", "v1", kind, plural),
    )
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    tokio::time::timeout(T, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// `whoami` for a bearer token: the user name and groups, or the HTTP status of the failure.
async fn whoami(sim: &Sim, cluster: &str, token: &str) -> Result<(String, Vec<String>), u16> {
    let client = client_for(
        &sim.kubeconfig_with_user(cluster, cluster, &KubeUser::token(token)),
        cluster,
    )
    .await;
    let api: Api<SelfSubjectReview> = Api::all(client);
    match api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(r) => {
            let ui = r.status.and_then(|s| s.user_info).expect("userInfo");
            Ok((
                ui.username.unwrap_or_default(),
                ui.groups.unwrap_or_default(),
            ))
        }
        Err(kube::Error::Api(s)) => Err(s.code),
        Err(e) => panic!("whoami: {e}"),
    }
}

fn condition(obj: &Value, ty: &str) -> Option<Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .cloned()
}

fn co_state(obj: &Value) -> (String, String, String, String) {
    let s = |t: &str| {
        condition(obj, t)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let msg = condition(obj, "Progressing")
        .map(|c| c["message"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (s("Available"), s("Progressing"), s("Degraded"), msg)
}

/// Rolled out to `revision`: Available=True, Progressing=False, Degraded=False.
fn rolled_out(sim: &Sim, cluster: &str, revision: u64) -> bool {
    let c = sim.cluster(cluster);
    let Some(co) = c.get(
        "config.openshift.io/v1",
        "ClusterOperator",
        None,
        "kube-apiserver",
    ) else {
        return false;
    };
    let (a, p, d, _) = co_state(&co);
    a == "True" && p == "False" && d == "False" && c.kube_apiserver_revision() == Some(revision)
}

async fn put_ca(client: &kube::Client, name: &str, pem: &str) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "openshift-config");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {"ca-bundle.crt": pem}}))
            .unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
}

fn oidc_spec(issuer: &str, ca: Option<&str>, username: Value) -> Value {
    let mut iss = json!({"issuerURL": issuer, "audiences": [AUDIENCE]});
    if let Some(ca) = ca {
        iss["issuerCertificateAuthority"] = json!({"name": ca});
    }
    json!({"spec": {"type": "OIDC", "webhookTokenAuthenticator": null, "oidcProviders": [{
        "name": "ztwim-oidc-server", "issuer": iss,
        "claimMappings": {"username": username, "groups": {"claim": "groups"}},
        "oidcClients": [{"clientID": "openshift-cli", "componentName": "cli", "componentNamespace": "openshift-console"}]
    }]}})
}

async fn patch_authentication(client: &kube::Client, patch: &Value) -> Result<(), kube::Error> {
    config_api(client, "Authentication", "authentications")
        .patch("cluster", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

fn spoke_sim(version: &str, delay_ms: u64) -> Sim {
    Sim::start(
        SimConfig::new()
            .cluster("spoke", Profile::openshift(version))
            .controller_delay(Duration::from_millis(delay_ms)),
    )
    .expect("sim starts")
}

// ---------------------------------------------------------------------------------------------
// OpenShift: the kube-apiserver rollout.

async fn rollout_conditions(delay_ms: u64) {
    let sim = spoke_sim("4.20", delay_ms);
    let issuer = Issuer::start(&sim, "oidc.rollout.test");
    let admin = admin_client(&sim, "spoke").await;
    put_ca(&admin, "ztwim-oidc-ca", &issuer.ca_pem).await;
    assert!(rolled_out(&sim, "spoke", 7), "seeded at revision 7");
    let rv = sim.cluster("spoke").resource_version().to_string();
    patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("ztwim-oidc-ca"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
        ),
    )
    .await
    .unwrap();
    let cos = config_api(&admin, "ClusterOperator", "clusteroperators");
    let wp = WatchParams::default()
        .fields("metadata.name=kube-apiserver")
        .timeout(50);
    let mut stream = cos.watch(&wp, &rv).await.unwrap().boxed();
    let mut seen = Vec::new();
    let done = tokio::time::timeout(T, async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            if let WatchEvent::Modified(o) = ev {
                let state = co_state(&serde_json::to_value(&o).unwrap());
                let finished = state.0 == "True"
                    && state.1 == "False"
                    && state.3.contains("3 nodes are at revision 8");
                seen.push(state);
                if finished {
                    return true;
                }
            }
        }
        false
    })
    .await
    .expect("the rollout finishes");
    assert!(done, "watch ended early: {seen:?}");
    let first = &seen[0];
    assert_eq!(
        (first.0.as_str(), first.1.as_str(), first.2.as_str()),
        ("True", "True", "False"),
        "{seen:?}"
    );
    assert!(
        first.3.contains("0 nodes have achieved new revision 8"),
        "{seen:?}"
    );
    let last = seen.last().unwrap();
    assert_eq!(last.2, "False");
    assert_eq!(sim.cluster("spoke").kube_apiserver_revision(), Some(8));
    // A further change rolls another revision.
    patch_authentication(&admin, &json!({"spec": {"oidcProviders": [{"name": "ztwim-oidc-server",
        "issuer": {"issuerURL": issuer.url, "audiences": [AUDIENCE, "other"], "issuerCertificateAuthority": {"name": "ztwim-oidc-ca"}},
        "claimMappings": {"username": {"claim": "sub", "prefixPolicy": "NoPrefix"}}}]}}))
    .await
    .unwrap();
    eventually("revision 9", || rolled_out(&sim, "spoke", 9)).await;
}

#[tokio::test]
async fn rollout_reports_progressing_then_available_at_a_new_revision() {
    rollout_conditions(0).await;
}

#[tokio::test]
async fn rollout_reports_progressing_then_available_with_a_controller_delay() {
    rollout_conditions(300).await;
}

#[tokio::test]
async fn jwt_authenticates_after_the_rollout_and_not_before() {
    let sim = spoke_sim("4.20", 0);
    let issuer = Issuer::start(&sim, "oidc.after.test");
    let spoke = sim.cluster("spoke");
    let admin = admin_client(&sim, "spoke").await;
    put_ca(&admin, "ztwim-oidc-ca", &issuer.ca_pem).await;
    let token =
        issuer.token_with(json!({"sub": SPIFFE_ID, "aud": [AUDIENCE], "groups": ["argocd"]}));
    assert_eq!(whoami(&sim, "spoke", &token).await, Err(401));
    // Hold the operator: the Authentication is stored but no revision rolls out.
    spoke.add_fault(Fault::ControllerNeverReady {
        controller: kubesim::openshift_authn::KUBE_APISERVER_OPERATOR.into(),
    });
    patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("ztwim-oidc-ca"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
        ),
    )
    .await
    .unwrap();
    assert!(rolled_out(&sim, "spoke", 7));
    assert_eq!(
        whoami(&sim, "spoke", &token).await,
        Err(401),
        "no JWT before the rollout"
    );
    // Let it go; the next change to the Authentication triggers the rollout.
    spoke.clear_faults();
    patch_authentication(
        &admin,
        &json!({"metadata": {"annotations": {"touch": "1"}}}),
    )
    .await
    .unwrap();
    eventually("revision 8", || rolled_out(&sim, "spoke", 8)).await;
    let (user, groups) = whoami(&sim, "spoke", &token)
        .await
        .expect("the JWT authenticates after the rollout");
    assert_eq!(user, SPIFFE_ID, "NoPrefix: the SPIFFE ID as is");
    assert!(
        groups.contains(&"argocd".to_string())
            && groups.contains(&"system:authenticated".to_string()),
        "{groups:?}"
    );
    // Before RBAC it can list nothing.
    let client = client_for(
        &sim.kubeconfig_with_user("spoke", "spoke", &KubeUser::token(&token)),
        "spoke",
    )
    .await;
    let err = Api::<Namespace>::all(client)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 403));
    // Client certificates keep working.
    assert!(
        Api::<Namespace>::all(admin)
            .list(&Default::default())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_issuer_ca_is_rejected() {
    let sim = spoke_sim("4.20", 0);
    let issuer = Issuer::start(&sim, "oidc.wrongca.test");
    let other = Ca::new("some-other-ca").unwrap();
    let admin = admin_client(&sim, "spoke").await;
    put_ca(&admin, "not-the-issuer-ca", &other.cert_pem()).await;
    patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("not-the-issuer-ca"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
        ),
    )
    .await
    .unwrap();
    eventually("revision 8", || rolled_out(&sim, "spoke", 8)).await;
    assert_eq!(
        whoami(&sim, "spoke", &issuer.token(SPIFFE_ID, AUDIENCE)).await,
        Err(401)
    );
    let why = sim
        .cluster("spoke")
        .oidc_authn()
        .last_error()
        .unwrap_or_default();
    assert!(
        why.contains("certificate signed by unknown authority"),
        "{why}"
    );
}

#[tokio::test]
async fn missing_issuer_ca_configmap_blocks_the_rollout() {
    let sim = spoke_sim("4.20", 0);
    let issuer = Issuer::start(&sim, "oidc.noca.test");
    let admin = admin_client(&sim, "spoke").await;
    patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("absent"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
        ),
    )
    .await
    .unwrap();
    let spoke = sim.cluster("spoke");
    eventually("authentication degraded", || {
        spoke
            .get(
                "config.openshift.io/v1",
                "ClusterOperator",
                None,
                "authentication",
            )
            .and_then(|co| condition(&co, "Degraded"))
            .is_some_and(|c| {
                c["status"] == "True"
                    && c["message"]
                        .as_str()
                        .unwrap()
                        .contains("configmap \"absent\" not found")
            })
    })
    .await;
    assert!(rolled_out(&sim, "spoke", 7), "no new revision");
    // Creating the ConfigMap lets the rollout happen.
    put_ca(&admin, "absent", &issuer.ca_pem).await;
    eventually("revision 8", || rolled_out(&sim, "spoke", 8)).await;
    assert!(
        whoami(&sim, "spoke", &issuer.token(SPIFFE_ID, AUDIENCE))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let sim = spoke_sim("4.20", 0);
    let issuer = Issuer::start(&sim, "oidc.aud.test");
    let admin = admin_client(&sim, "spoke").await;
    put_ca(&admin, "ca", &issuer.ca_pem).await;
    patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("ca"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
        ),
    )
    .await
    .unwrap();
    eventually("revision 8", || rolled_out(&sim, "spoke", 8)).await;
    assert_eq!(
        whoami(&sim, "spoke", &issuer.token(SPIFFE_ID, "k8s")).await,
        Err(401)
    );
    let why = sim
        .cluster("spoke")
        .oidc_authn()
        .last_error()
        .unwrap_or_default();
    assert!(why.contains("expected audience"), "{why}");
    assert!(
        whoami(&sim, "spoke", &issuer.token(SPIFFE_ID, AUDIENCE))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn username_prefix_policies() {
    let sim = spoke_sim("4.20", 0);
    let issuer = Issuer::start(&sim, "oidc.prefix.test");
    let admin = admin_client(&sim, "spoke").await;
    put_ca(&admin, "ca", &issuer.ca_pem).await;
    let token = issuer.token(SPIFFE_ID, AUDIENCE);
    // No opinion: "<issuerURL>#<claim>".
    patch_authentication(
        &admin,
        &oidc_spec(&issuer.url, Some("ca"), json!({"claim": "sub"})),
    )
    .await
    .unwrap();
    eventually("revision 8", || rolled_out(&sim, "spoke", 8)).await;
    assert_eq!(
        whoami(&sim, "spoke", &token).await.unwrap().0,
        format!("{}#{SPIFFE_ID}", issuer.url)
    );
    // Prefix.
    patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("ca"),
            json!({"claim": "sub", "prefixPolicy": "Prefix", "prefix": {"prefixString": "ztwim:"}}),
        ),
    )
    .await
    .unwrap();
    eventually("revision 9", || rolled_out(&sim, "spoke", 9)).await;
    assert_eq!(
        whoami(&sim, "spoke", &token).await.unwrap().0,
        format!("ztwim:{SPIFFE_ID}")
    );
    // The CRD rule: Prefix needs prefix.prefixString, other policies must not set it.
    let err = patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("ca"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix", "prefix": {"prefixString": "x:"}}),
        ),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("prefix must be set if prefixPolicy is 'Prefix'")),
        "{err}"
    );
}

#[tokio::test]
async fn oauth_tokens_stop_working_once_oidc_is_rolled_out() {
    let sim = spoke_sim("4.20", 0);
    let issuer = Issuer::start(&sim, "oidc.oauth.test");
    let spoke = sim.cluster("spoke");
    spoke.add_oauth_token("sha256~kubeadmin", "kube:admin", &["system:cluster-admins"]);
    spoke.add_static_token(
        "sa-token",
        "system:serviceaccount:default:builder",
        &["system:serviceaccounts"],
    );
    assert_eq!(
        whoami(&sim, "spoke", "sha256~kubeadmin").await.unwrap().0,
        "kube:admin"
    );
    let admin = admin_client(&sim, "spoke").await;
    put_ca(&admin, "ca", &issuer.ca_pem).await;
    patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("ca"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
        ),
    )
    .await
    .unwrap();
    eventually("revision 8", || rolled_out(&sim, "spoke", 8)).await;
    assert_eq!(
        whoami(&sim, "spoke", "sha256~kubeadmin").await,
        Err(401),
        "OAuth tokens stop working"
    );
    assert_eq!(
        whoami(&sim, "spoke", "sa-token").await.unwrap().0,
        "system:serviceaccount:default:builder"
    );
    assert!(
        Api::<Namespace>::all(admin.clone())
            .list(&Default::default())
            .await
            .is_ok(),
        "client certificates keep working"
    );
    // Back to IntegratedOAuth: OAuth tokens work again, JWTs do not.
    patch_authentication(
        &admin,
        &json!({"spec": {"type": "IntegratedOAuth", "oidcProviders": null}}),
    )
    .await
    .unwrap();
    eventually("revision 9", || rolled_out(&sim, "spoke", 9)).await;
    assert!(whoami(&sim, "spoke", "sha256~kubeadmin").await.is_ok());
    assert_eq!(
        whoami(&sim, "spoke", &issuer.token(SPIFFE_ID, AUDIENCE)).await,
        Err(401)
    );
}

// ---------------------------------------------------------------------------------------------
// OpenShift 4.19: ExternalOIDC only with TechPreviewNoUpgrade.

fn external_oidc_enabled(sim: &Sim) -> bool {
    sim.cluster("spoke")
        .get("config.openshift.io/v1", "FeatureGate", None, "cluster")
        .and_then(|fg| fg.pointer("/status/featureGates/0/enabled").cloned())
        .and_then(|l| l.as_array().cloned())
        .is_some_and(|l| l.iter().any(|g| g["name"] == "ExternalOIDC"))
}

#[tokio::test]
async fn openshift_4_19_needs_tech_preview_which_cannot_be_reverted() {
    let sim = spoke_sim("4.19", 200);
    let issuer = Issuer::start(&sim, "oidc.419.test");
    let admin = admin_client(&sim, "spoke").await;
    put_ca(&admin, "ca", &issuer.ca_pem).await;
    assert!(!external_oidc_enabled(&sim));
    let spec = oidc_spec(
        &issuer.url,
        Some("ca"),
        json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
    );
    let err = patch_authentication(&admin, &spec).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("Unsupported value: \"OIDC\"") && s.message.contains("TechPreviewNoUpgrade")),
        "{err}"
    );
    let gates = config_api(&admin, "FeatureGate", "featuregates");
    gates
        .patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"featureSet": "TechPreviewNoUpgrade"}})),
        )
        .await
        .unwrap();
    eventually("ExternalOIDC enabled", || external_oidc_enabled(&sim)).await;
    // The feature set change rolls revision 8, then the Authentication revision 9.
    eventually("revision 8", || rolled_out(&sim, "spoke", 8)).await;
    patch_authentication(&admin, &spec)
        .await
        .expect("accepted with TechPreviewNoUpgrade");
    eventually("revision 9", || rolled_out(&sim, "spoke", 9)).await;
    assert_eq!(
        whoami(&sim, "spoke", &issuer.token(SPIFFE_ID, AUDIENCE))
            .await
            .unwrap()
            .0,
        SPIFFE_ID
    );
    // Irreversible.
    let err = gates
        .patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"featureSet": ""}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("TechPreviewNoUpgrade may not be changed")),
        "{err}"
    );
    let err = gates
        .patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"featureSet": null}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("cannot be removed")),
        "{err}"
    );
    let cv = sim
        .cluster("spoke")
        .get("config.openshift.io/v1", "ClusterVersion", None, "version")
        .unwrap();
    assert_eq!(condition(&cv, "Upgradeable").unwrap()["status"], "False");
}

#[tokio::test]
async fn openshift_4_20_has_external_oidc_by_default() {
    let sim = spoke_sim("4.20", 0);
    assert!(external_oidc_enabled(&sim));
    let issuer = Issuer::start(&sim, "oidc.420.test");
    let admin = admin_client(&sim, "spoke").await;
    put_ca(&admin, "ca", &issuer.ca_pem).await;
    patch_authentication(
        &admin,
        &oidc_spec(
            &issuer.url,
            Some("ca"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
        ),
    )
    .await
    .expect("no feature set needed on 4.20");
}

// ---------------------------------------------------------------------------------------------
// kind: the structured authentication configuration file.

fn authn_config(issuer: &Issuer, audience: &str) -> String {
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": {"url": issuer.url, "certificateAuthority": issuer.ca_pem, "audiences": [audience]},
            "claimMappings": {"username": {"claim": "sub", "prefix": ""}, "groups": {"claim": "groups", "prefix": "oidc:"}},
            "claimValidationRules": [{"expression": "claims.sub != ''", "message": "sub is required"}]
        }]
    })
    .to_string()
}

/// Replace a file atomically (as editors and kubectl cp do not; the poller must not see halves).
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn kind_reloads_the_authentication_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authentication-config.yaml");
    // The issuer needs the sim's routes, so start with an empty (valid) configuration.
    std::fs::write(
        &path,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt: []\n",
    )
    .unwrap();
    let sim = Sim::start(
        SimConfig::new()
            .cluster("kind", Profile::kind("1.34"))
            .authentication_config("kind", &path),
    )
    .unwrap();
    let issuer = Issuer::start(&sim, "oidc.kind.test");
    let kind = sim.cluster("kind");
    let token = issuer.token_with(json!({"sub": SPIFFE_ID, "aud": ["k8s"], "groups": ["dev"]}));
    assert_eq!(whoami(&sim, "kind", &token).await, Err(401));
    write_atomically(&path, &authn_config(&issuer, "k8s"));
    eventually("the first reload", || {
        kind.oidc_authn().reload_status().successes == 2
    })
    .await;
    let (user, groups) = whoami(&sim, "kind", &token)
        .await
        .expect("authenticates after the reload");
    assert_eq!(user, SPIFFE_ID);
    assert!(groups.contains(&"oidc:dev".to_string()), "{groups:?}");
    // An invalid file (prefix is required with claim) keeps the last valid configuration.
    let invalid = authn_config(&issuer, "k8s").replace(",\"prefix\":\"\"", "");
    assert_ne!(invalid, authn_config(&issuer, "k8s"));
    write_atomically(&path, &invalid);
    eventually("a failed reload", || {
        kind.oidc_authn().reload_status().failures == 1
    })
    .await;
    let why = kind.oidc_authn().reload_status().last_error.unwrap();
    assert!(
        why.contains("prefix is required when claim is set"),
        "{why}"
    );
    assert!(
        whoami(&sim, "kind", &token).await.is_ok(),
        "the previous configuration stays"
    );
    // Unknown fields are rejected too (strict decoding).
    write_atomically(
        &path,
        &authn_config(&issuer, "k8s").replace("\"audiences\"", "\"audience\""),
    );
    eventually("a second failed reload", || {
        kind.oidc_authn().reload_status().failures == 2
    })
    .await;
    // A new audience: the old token stops working.
    write_atomically(&path, &authn_config(&issuer, "other"));
    eventually("the second reload", || {
        kind.oidc_authn().reload_status().successes == 3
    })
    .await;
    assert_eq!(whoami(&sim, "kind", &token).await, Err(401));
    assert!(
        whoami(&sim, "kind", &issuer.token(SPIFFE_ID, "other"))
            .await
            .is_ok()
    );
}

#[test]
fn kind_refuses_to_start_with_an_invalid_authentication_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authn.yaml");
    std::fs::write(
        &path,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n- issuer: {url: 'http://insecure.example', audiences: [a, b]}\n  claimMappings: {username: {claim: sub, prefix: ''}}\n",
    )
    .unwrap();
    let err = Sim::start(
        SimConfig::new()
            .cluster("kind", Profile::kind("1.34"))
            .authentication_config("kind", &path),
    )
    .err()
    .expect("the start fails");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("URL scheme must be https")
            && msg.contains("audienceMatchPolicy must be MatchAny"),
        "{msg}"
    );
    // v1 needs Kubernetes 1.34.
    std::fs::write(
        &path,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n",
    )
    .unwrap();
    assert!(
        Sim::start(
            SimConfig::new()
                .cluster("kind", Profile::kind("1.31"))
                .authentication_config("kind", &path)
        )
        .is_err()
    );
    std::fs::write(
        &path,
        "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\n",
    )
    .unwrap();
    assert!(
        Sim::start(
            SimConfig::new()
                .cluster("kind", Profile::kind("1.31"))
                .authentication_config("kind", &path)
        )
        .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// Argo CD: cluster Secrets and Applications.

const NS: &str = "ztwim-gitops";

fn application_crd() -> Value {
    if let Some(dir) = kubesim::schema::reference_dir() {
        let text = std::fs::read_to_string(dir.join("crds/argoproj.io/applications.yaml")).unwrap();
        return kubesim::schema::parse_yaml_documents(&text)
            .unwrap()
            .remove(0);
    }
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "applications.argoproj.io"},
           "spec": {"group": "argoproj.io", "scope": "Namespaced",
                    "names": {"kind": "Application", "plural": "applications", "singular": "application", "listKind": "ApplicationList"},
                    "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                                  "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

/// A hub with the Application CRD, the Argo CD namespace and a Ready application controller
/// pod, and a kind spoke trusting `issuer` for audience `openshift-spoke`.
struct ArgoSetup {
    sim: Sim,
    issuer: Arc<Issuer>,
    manifests: tempfile::TempDir,
    _authn: tempfile::TempDir,
}

fn argo_setup(host: &str) -> ArgoSetup {
    let authn = tempfile::tempdir().unwrap();
    let path = authn.path().join("authn.yaml");
    std::fs::write(
        &path,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n",
    )
    .unwrap();
    let sim = Sim::start(
        SimConfig::new()
            .cluster("hub", Profile::openshift("4.20"))
            .cluster("spoke", Profile::kind("1.34"))
            .authentication_config("spoke", &path)
            .argocd_settings(ArgoCdSettings {
                resync: Duration::from_millis(200),
                exec_timeout: Duration::from_secs(5),
                ..Default::default()
            }),
    )
    .unwrap();
    let issuer = Arc::new(Issuer::start(&sim, host));
    write_atomically(&path, &authn_config(&issuer, AUDIENCE));
    let spoke = sim.cluster("spoke");
    let hub = sim.cluster("hub");
    hub.put(application_crd()).unwrap();
    hub.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        .unwrap();
    hub.put(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "openshift-gitops-application-controller-0", "namespace": NS,
                     "labels": {"app.kubernetes.io/name": "openshift-gitops-application-controller"}},
        "spec": {"serviceAccountName": "openshift-gitops-argocd-application-controller",
                 "containers": [{"name": "argocd-application-controller", "image": "registry.redhat.io/openshift-gitops-1/argocd-rhel9"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}))
    .unwrap();
    let manifests = tempfile::tempdir().unwrap();
    std::fs::create_dir(manifests.path().join("guestbook")).unwrap();
    std::fs::write(
        manifests.path().join("guestbook/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guestbook\ndata:\n  greeting: hello from the hub\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: guestbook\n",
    )
    .unwrap();
    // The spoke trusts the issuer once it has reloaded its authentication configuration.
    let deadline = std::time::Instant::now() + T;
    while spoke.oidc_authn().reload_status().successes < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the spoke never reloaded its authentication config"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ArgoSetup {
        sim,
        issuer,
        manifests,
        _authn: authn,
    }
}

/// What the real plugin prints, for the env it is given (`env K=V ... <plugin>`).
fn exec_plugin(issuer: Arc<Issuer>) -> impl Fn(&ExecRequest) -> ExecResult + Send + Sync + 'static {
    move |req: &ExecRequest| {
        let mut args = req.command.iter();
        if args.next().map(String::as_str) != Some("env") {
            return ExecResult::not_found(&req.command[0]);
        }
        let mut env = std::collections::HashMap::new();
        let mut program = String::new();
        for a in args.by_ref() {
            match a.split_once('=') {
                Some((k, v)) => {
                    env.insert(k.to_string(), v.to_string());
                }
                None => {
                    program = a.clone();
                    break;
                }
            }
        }
        if program != "/binaries/k8s-spiffe-workload-jwt-exec-auth" {
            return ExecResult::not_found(&program);
        }
        let aud = env
            .get("SPIFFE_JWT_AUDIENCE")
            .cloned()
            .unwrap_or_else(|| "k8s".into());
        let version = env
            .get("EXEC_CREDENTIAL_VERSION")
            .cloned()
            .unwrap_or_else(|| "v1".into());
        let token = issuer.token(SPIFFE_ID, &aud);
        let exp = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(300);
        ExecResult::ok(format!(
            "apiVersion: client.authentication.k8s.io/{version}\nkind: ExecCredential\nspec:\n interactive: false\nstatus:\n  expirationTimestamp: \"{}\"\n  token: {token}\n",
            exp.strftime("%Y-%m-%dT%H:%M:%SZ")
        ))
    }
}

async fn register_spoke(sim: &Sim, ca: bool) {
    let hub = admin_client(sim, "hub").await;
    let spoke = sim.cluster("spoke");
    let tls = if ca {
        json!({"insecure": false, "caData": base64::engine::general_purpose::STANDARD.encode(spoke.ca_pem())})
    } else {
        json!({"insecure": false})
    };
    let config = json!({
        "tlsClientConfig": tls,
        "execProviderConfig": {"command": "/binaries/k8s-spiffe-workload-jwt-exec-auth", "apiVersion": "client.authentication.k8s.io/v1beta1",
                               "env": {"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/sockets/spire-agent.sock", "SPIFFE_JWT_AUDIENCE": AUDIENCE, "EXEC_CREDENTIAL_VERSION": "v1beta1"}}
    });
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "spoke", "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
        "type": "Opaque",
        "stringData": {"name": "spoke", "server": spoke.server_url(), "config": config.to_string()}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(hub, NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

async fn create_application(sim: &Sim, manifests: &std::path::Path) {
    let hub = admin_client(sim, "hub").await;
    let apps: Api<DynamicObject> = Api::namespaced_with(
        hub,
        NS,
        &ar("argoproj.io", "v1alpha1", "Application", "applications"),
    );
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "guestbook", "namespace": NS},
        "spec": {"project": "default",
                 "source": {"repoURL": format!("file://{}", manifests.display()), "path": "guestbook", "targetRevision": "HEAD"},
                 "destination": {"name": "spoke", "namespace": "guestbook"},
                 "syncPolicy": {"automated": {"prune": false, "selfHeal": false}, "syncOptions": ["CreateNamespace=true"]}}
    }))
    .unwrap();
    apps.create(&PostParams::default(), &app).await.unwrap();
}

fn app_status(sim: &Sim) -> Value {
    sim.cluster("hub")
        .get("argoproj.io/v1alpha1", "Application", Some(NS), "guestbook")
        .map(|a| a["status"].clone())
        .unwrap_or(Value::Null)
}

fn comparison_error(sim: &Sim) -> Option<String> {
    app_status(sim)["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "ComparisonError")
        .and_then(|c| c["message"].as_str().map(str::to_string))
}

#[tokio::test]
async fn argocd_application_fails_without_spoke_rbac_then_syncs() {
    let setup = argo_setup("oidc.argo.test");
    let sim = &setup.sim;
    sim.cluster("hub").register_exec(
        NS,
        "*",
        Some("argocd-application-controller"),
        exec_plugin(setup.issuer.clone()),
    );
    register_spoke(sim, true).await;
    create_application(sim, setup.manifests.path()).await;
    eventually("a ComparisonError for the missing RBAC", || {
        comparison_error(sim).is_some()
    })
    .await;
    let msg = comparison_error(sim).unwrap();
    assert!(
        msg.contains("is forbidden") && msg.contains(SPIFFE_ID),
        "{msg}"
    );
    assert_eq!(app_status(sim)["sync"]["status"], "Unknown");
    // The spoke's admin grants the SPIFFE ID cluster-admin (runbook step 6).
    let spoke_admin = admin_client(sim, "spoke").await;
    let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "ztwim-gitops-admins"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": SPIFFE_ID}]
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(spoke_admin.clone())
        .create(&PostParams::default(), &crb)
        .await
        .unwrap();
    eventually("Synced and Healthy", || {
        let s = app_status(sim);
        s["sync"]["status"] == "Synced" && s["health"]["status"] == "Healthy"
    })
    .await;
    let s = app_status(sim);
    assert_eq!(s["operationState"]["phase"], "Succeeded", "{s}");
    assert!(s["conditions"].is_null(), "{s}");
    assert_eq!(s["resources"].as_array().unwrap().len(), 2, "{s}");
    let cm = Api::<ConfigMap>::namespaced(spoke_admin.clone(), "guestbook")
        .get("guestbook")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["greeting"], "hello from the hub");
    assert!(
        Api::<Namespace>::all(spoke_admin)
            .get("guestbook")
            .await
            .is_ok(),
        "CreateNamespace=true"
    );
}

#[tokio::test]
async fn argocd_reports_exec_plugin_and_tls_failures() {
    let setup = argo_setup("oidc.argofail.test");
    let sim = &setup.sim;
    // No init container installed the plugin: the exec exits 127.
    register_spoke(sim, true).await;
    create_application(sim, setup.manifests.path()).await;
    eventually("a ComparisonError for the missing plugin", || {
        comparison_error(sim).is_some_and(|m| m.contains("exit code 127"))
    })
    .await;
    let msg = comparison_error(sim).unwrap();
    assert!(msg.contains("getting credentials: exec: executable /binaries/k8s-spiffe-workload-jwt-exec-auth failed"), "{msg}");
    // The plugin hangs: the controller gives up after its exec timeout.
    sim.cluster("hub").register_exec(
        NS,
        "*",
        Some("argocd-application-controller"),
        |_: &ExecRequest| ExecResult::hang(),
    );
    eventually("a ComparisonError for the hanging plugin", || {
        comparison_error(sim).is_some_and(|m| m.contains("did not return within"))
    })
    .await;
    // A cluster Secret without caData: the spoke's certificate is not trusted.
    sim.cluster("hub").register_exec(
        NS,
        "*",
        Some("argocd-application-controller"),
        exec_plugin(setup.issuer.clone()),
    );
    let hub = admin_client(sim, "hub").await;
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(hub, NS)
        .delete("spoke", &Default::default())
        .await
        .unwrap();
    register_spoke(sim, false).await;
    eventually("a ComparisonError for the untrusted certificate", || {
        comparison_error(sim)
            .is_some_and(|m| m.contains("x509: certificate signed by unknown authority"))
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The binary's `authn-config` cluster option.

#[test]
fn binary_takes_an_authn_config_per_kind_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt: []\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\nbogus: 1\n",
    )
    .unwrap();
    let run = |spec: String| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
            .arg("--kubeconfig")
            .arg(dir.path().join("kubeconfig"))
            .arg("--cluster")
            .arg(spec)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = run(format!("k1=kind-1.34,authn-config={}", bad.display()))
        .wait_with_output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown field") && stderr.contains("bogus"),
        "{stderr}"
    );
    let out = run("k1=kind-1.34,colour=blue".into())
        .wait_with_output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unknown option")
    );
    let mut child = run(format!("k1=kind-1.34,authn-config={}", good.display()));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ready");
    child.kill().unwrap();
    child.wait().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The whole runbook across the simulated hub and spoke: the hub's SPIRE OIDC issuer (served by
// the hub controllers through the proxy routes), the spoke's external OIDC trusting the hub's
// ingress CA, and the application controller running the exec plugin in its pod.

const ZTWIM_NS: &str = "zero-trust-workload-identity-manager";
const OP: &str = "operator.openshift.io/v1alpha1";

fn cond_true(obj: &Option<Value>, ty: &str) -> bool {
    obj.as_ref()
        .and_then(|o| condition(o, ty))
        .is_some_and(|c| c["status"] == "True")
}

async fn wait_crd(sim: &Sim, name: &str) {
    let hub = sim.cluster("hub");
    eventually(&format!("CRD {name} Established"), || {
        cond_true(
            &hub.get(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                None,
                name,
            ),
            "Established",
        )
    })
    .await;
}

fn put_all(sim: &Sim, cluster: &str, yaml: &str) {
    for doc in kubesim::schema::parse_yaml_documents(yaml).unwrap() {
        sim.cluster(cluster).put(doc).unwrap();
    }
}

#[tokio::test]
async fn runbook_end_to_end_hub_issuer_openshift_4_19_spoke_and_argocd_sync() {
    let sim = Sim::start(
        SimConfig::new()
            .cluster("hub", Profile::openshift("4.20"))
            .cluster("spoke", Profile::openshift("4.19"))
            .controller_delay(Duration::from_millis(50))
            .argocd_settings(ArgoCdSettings {
                resync: Duration::from_millis(200),
                exec_timeout: Duration::from_secs(10),
                ..Default::default()
            }),
    )
    .unwrap();
    let hub = sim.cluster("hub");
    let apps = hub.apps_domain();
    let issuer = format!("https://spire-spiffe-oidc-discovery-provider.{apps}");
    // Hub, part 1: ZTWIM.
    put_all(
        &sim,
        "hub",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ZTWIM_NS}}}\n---
apiVersion: operators.coreos.com/v1\nkind: OperatorGroup\nmetadata: {{name: openshift-zero-trust-workload-identity-manager, namespace: {ZTWIM_NS}}}\nspec: {{upgradeStrategy: Default}}\n---
apiVersion: operators.coreos.com/v1alpha1\nkind: Subscription\nmetadata: {{name: openshift-zero-trust-workload-identity-manager, namespace: {ZTWIM_NS}}}
spec: {{name: openshift-zero-trust-workload-identity-manager, channel: stable-v1, source: redhat-operators, sourceNamespace: openshift-marketplace, installPlanApproval: Automatic}}\n"
        ),
    );
    for plural in [
        "spireservers",
        "spireagents",
        "spiffecsidrivers",
        "spireoidcdiscoveryproviders",
        "zerotrustworkloadidentitymanagers",
    ] {
        wait_crd(&sim, &format!("{plural}.operator.openshift.io")).await;
    }
    put_all(
        &sim,
        "hub",
        &format!(
            "apiVersion: {OP}\nkind: SpireServer\nmetadata: {{name: cluster}}
spec:
  jwtIssuer: {issuer}
  caSubject: {{commonName: SPIRE Server CA, country: US, organization: ztwim-hub}}
  persistence: {{size: 5Gi, accessMode: ReadWriteOnce}}
  datastore: {{databaseType: sqlite3, connectionString: /run/spire/data/datastore.sqlite3}}
  defaultJWTValidity: 5m
---
apiVersion: {OP}\nkind: SpireAgent\nmetadata: {{name: cluster}}
spec: {{nodeAttestor: {{k8sPSATEnabled: \"true\"}}, workloadAttestors: {{k8sEnabled: \"true\", workloadAttestorsVerification: {{type: auto}}}}}}
---
apiVersion: {OP}\nkind: SpiffeCSIDriver\nmetadata: {{name: cluster}}\nspec: {{agentSocketPath: /run/spire/agent-sockets}}
---
apiVersion: {OP}\nkind: SpireOIDCDiscoveryProvider\nmetadata: {{name: cluster}}\nspec: {{jwtIssuer: {issuer}, managedRoute: \"true\"}}
---
apiVersion: {OP}\nkind: ZeroTrustWorkloadIdentityManager\nmetadata: {{name: cluster}}\nspec: {{trustDomain: {apps}, clusterName: management-cluster, bundleConfigMap: spire-bundle}}\n"
        ),
    );
    eventually("ZTWIM Ready", || {
        cond_true(
            &hub.get(OP, "ZeroTrustWorkloadIdentityManager", None, "cluster"),
            "Ready",
        )
    })
    .await;
    // Hub, part 2: Argo CD with the exec plugin plumbing on both components.
    put_all(
        &sim,
        "hub",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: openshift-gitops-operator}\n---
apiVersion: operators.coreos.com/v1\nkind: OperatorGroup\nmetadata: {name: openshift-gitops-operator, namespace: openshift-gitops-operator}\nspec: {}\n---
apiVersion: operators.coreos.com/v1alpha1\nkind: Subscription\nmetadata: {name: openshift-gitops-operator, namespace: openshift-gitops-operator}
spec: {name: openshift-gitops-operator, channel: latest, source: redhat-operators, sourceNamespace: openshift-marketplace, installPlanApproval: Automatic,
       config: {env: [{name: DISABLE_DEFAULT_ARGOCD_INSTANCE, value: \"true\"}]}}\n",
    );
    wait_crd(&sim, "argocds.argoproj.io").await;
    wait_crd(&sim, "applications.argoproj.io").await;
    let plumbing = "
    initContainers:
    - name: install-jwt-spiffe
      image: registry.redhat.io/ubi9/ubi:latest
      env: [{name: EXEC_AUTH_URL, value: 'https://github.com/spiffe/k8s-spiffe-workload-jwt-exec-auth/releases/download/v0.0.7/k8s-spiffe-workload-jwt-exec-auth_Linux_x86_64.tar.gz'}]
      command: [/bin/sh, -c]
      args: ['curl -sL $EXEC_AUTH_URL | tar xz -C /tmp && mv /tmp/k8s-spiffe-workload-jwt-exec-auth /binaries/']
      volumeMounts: [{name: binaries, mountPath: /binaries}]
    volumeMounts:
    - {name: binaries, mountPath: /binaries}
    - {name: spiffe-workload-api, mountPath: /run/spire/sockets, readOnly: true}
    volumes:
    - {name: binaries, emptyDir: {}}
    - {name: spiffe-workload-api, csi: {driver: csi.spiffe.io, readOnly: true}}
";
    put_all(
        &sim,
        "hub",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n---
apiVersion: argoproj.io/v1beta1\nkind: ArgoCD\nmetadata: {{name: openshift-gitops, namespace: {NS}}}
spec:
  ha: {{enabled: false}}
  server:{plumbing}  controller:{plumbing}"
        ),
    );
    eventually("ArgoCD Available", || {
        hub.get(
            "argoproj.io/v1beta1",
            "ArgoCD",
            Some(NS),
            "openshift-gitops",
        )
        .is_some_and(|a| a["status"]["phase"] == "Available")
    })
    .await;
    // Spoke (4.19): TechPreviewNoUpgrade, the hub's ingress CA, the OIDC provider, RBAC.
    let spoke_admin = admin_client(&sim, "spoke").await;
    config_api(&spoke_admin, "FeatureGate", "featuregates")
        .patch(
            "cluster",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"featureSet": "TechPreviewNoUpgrade"}})),
        )
        .await
        .unwrap();
    eventually("ExternalOIDC", || external_oidc_enabled(&sim)).await;
    put_ca(&spoke_admin, "ztwim-oidc-ca", hub.ingress_ca_pem()).await;
    // The feature set itself rolls revision 8; the Authentication change then rolls 9.
    eventually("the feature-set rollout", || rolled_out(&sim, "spoke", 8)).await;
    patch_authentication(
        &spoke_admin,
        &oidc_spec(
            &issuer,
            Some("ztwim-oidc-ca"),
            json!({"claim": "sub", "prefixPolicy": "NoPrefix"}),
        ),
    )
    .await
    .unwrap();
    eventually("the Authentication rollout", || {
        rolled_out(&sim, "spoke", 9)
    })
    .await;
    let controller_id =
        format!("spiffe://{apps}/ns/{NS}/sa/openshift-gitops-argocd-application-controller");
    let crb: k8s_openapi::api::rbac::v1::ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "ztwim-gitops-admins"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": controller_id},
                     {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("spiffe://{apps}/ns/{NS}/sa/openshift-gitops-argocd-server")}]
    }))
    .unwrap();
    Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(spoke_admin.clone())
        .create(&PostParams::default(), &crb)
        .await
        .unwrap();
    // Register the spoke and deploy to it.
    register_spoke(&sim, true).await;
    let manifests = tempfile::tempdir().unwrap();
    std::fs::create_dir(manifests.path().join("guestbook")).unwrap();
    std::fs::write(
        manifests.path().join("guestbook/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: guestbook}\ndata: {greeting: hi}\n",
    )
    .unwrap();
    create_application(&sim, manifests.path()).await;
    let sim = &sim;
    eventually("the Application Synced and Healthy", || {
        let s = app_status(sim);
        s["sync"]["status"] == "Synced" && s["health"]["status"] == "Healthy"
    })
    .await;
    let cm = Api::<ConfigMap>::namespaced(spoke_admin, "guestbook")
        .get("guestbook")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["greeting"], "hi");
    // The application controller's identity is what the spoke saw.
    let token = sim.cluster("hub").spire_sign(&json!({"sub": controller_id, "aud": [AUDIENCE], "iss": issuer, "exp": jiff::Timestamp::now().as_second() + 300}));
    assert_eq!(whoami(sim, "spoke", &token).await.unwrap().0, controller_id);
}
