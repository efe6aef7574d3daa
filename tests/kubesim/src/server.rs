//! The HTTPS API server of one simulated cluster.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::auth::{Attributes, Authenticators, Identity, authorize};
use crate::cluster::{Actor, ApiError, EventType, FieldValidation, Store, WriteOptions};
use crate::exec::{ExecRequest, ExecTable};
use crate::faults::Faults;
use crate::registry::{ResourceType, api_resource_json};
use crate::selectors::{FieldSelector, LabelSelector};

pub type Body = BoxBody<Bytes, Infallible>;

/// Everything one simulated cluster is made of.
pub struct ClusterCore {
    pub name: String,
    /// `/version` gitVersion.
    pub git_version: String,
    pub store: Store,
    pub auth: Authenticators,
    pub faults: Faults,
    pub exec: Arc<ExecTable>,
    pub server_url: String,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.status())
}

type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A parsed resource URL.
#[derive(Debug, Clone)]
struct ResourcePath {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

enum Route {
    Resource(ResourcePath),
    /// A group version that exists but a resource that does not.
    UnknownResource(String),
    NonResource,
}

fn route(store: &Store, path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Route::NonResource,
    };
    let reg = store.registry();
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if reg
                .get(group, version, plural)
                .is_some_and(|t| t.namespaced) =>
        {
            (Some(ns.to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    let Some(rt) = reg.get(group, version, rest[0]) else {
        return Route::UnknownResource(format!("{group}/{version}/{}", rest[0]));
    };
    Route::Resource(ResourcePath {
        rt,
        namespace,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}

fn verb_of(method: &Method, rp: &ResourcePath, q: &Query) -> &'static str {
    let watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method, rp.name.is_some()) {
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, false) => "deletecollection",
        (&Method::DELETE, true) => "delete",
        _ => "unknown",
    }
}

fn forbidden(id: &Identity, verb: &str, a: &Attributes) -> ApiError {
    let msg = if a.resource_request {
        let res = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let what = if a.api_group.is_empty() {
            a.resource.clone()
        } else {
            format!("{}.{}", a.resource, a.api_group)
        };
        let named = if a.name.is_empty() {
            String::new()
        } else {
            format!(" \"{}\"", a.name)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", a.namespace)
        };
        format!(
            "{what}{named} is forbidden: User \"{}\" cannot {verb} resource \"{res}\" in API group \"{}\" {scope}",
            id.user, a.api_group
        )
    } else {
        format!(
            "forbidden: User \"{}\" cannot {verb} path \"{}\"",
            id.user, a.path
        )
    };
    ApiError::new(403, "Forbidden", msg)
}

/// Serve `core` on `listener` with TLS until the runtime shuts down.
pub async fn serve(core: Arc<ClusterCore>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let core = core.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::tls::identity_of(c.as_ref()))
                .map(|(user, groups)| Identity {
                    user,
                    groups,
                    uid: None,
                    extra: Default::default(),
                });
            let service = hyper::service::service_fn(move |req| {
                let core = core.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(handle(core, peer, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn authenticate(
    core: &ClusterCore,
    peer: Option<Identity>,
    req: &Request<Incoming>,
) -> Result<Identity, ApiError> {
    if let Some(id) = peer {
        return Ok(id.authenticated());
    }
    if let Some(auth) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    {
        if let Some(token) = auth.strip_prefix("Bearer ").map(str::trim) {
            return core
                .auth
                .authenticate_token(token)
                .map(Identity::authenticated)
                .ok_or_else(|| ApiError::new(401, "Unauthorized", "Unauthorized"));
        }
        return Err(ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    Ok(Identity::anonymous())
}

async fn handle(
    core: Arc<ClusterCore>,
    peer: Option<Identity>,
    req: Request<Incoming>,
) -> Response<Body> {
    let id = match authenticate(&core, peer, &req) {
        Ok(id) => id,
        Err(e) => return error_response(&e),
    };
    let path = req.uri().path().to_string();
    let q = parse_query(req.uri().query());
    let route = route(&core.store, &path);
    let (verb, attrs) = match &route {
        Route::Resource(rp) => {
            let verb = verb_of(req.method(), rp, &q);
            (
                verb,
                Attributes {
                    verb: verb.to_string(),
                    resource_request: true,
                    api_group: rp.rt.group.clone(),
                    resource: rp.rt.plural.clone(),
                    subresource: rp.subresource.clone().unwrap_or_default(),
                    namespace: rp.namespace.clone().unwrap_or_default(),
                    name: rp.name.clone().unwrap_or_default(),
                    path: path.clone(),
                },
            )
        }
        _ => {
            let verb = match *req.method() {
                Method::GET | Method::HEAD => "get",
                Method::POST => "post",
                Method::PUT => "put",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "unknown",
            };
            (
                verb,
                Attributes {
                    verb: verb.to_string(),
                    path: path.clone(),
                    ..Default::default()
                },
            )
        }
    };
    let mutating = matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    );
    if let Route::Resource(rp) = &route {
        if mutating && !rp.rt.is_review() {
            let dry = q.get("dryRun").is_some_and(|d| d == "All");
            let c = if dry {
                &core.store.counters.dry_run_requests
            } else {
                &core.store.counters.mutating_requests
            };
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    } else if let Route::UnknownResource(_) = &route
        && matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    {
        let c = if q.get("dryRun").is_some_and(|d| d == "All") {
            &core.store.counters.dry_run_requests
        } else {
            &core.store.counters.mutating_requests
        };
        c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let delay = core.faults.latency(
        verb,
        &attrs.api_group,
        &attrs.resource,
        &attrs.subresource,
        &attrs.namespace,
    );
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(inj) = core.faults.http_error(
        verb,
        &attrs.api_group,
        &attrs.resource,
        &attrs.subresource,
        &attrs.namespace,
    ) {
        let reason = match inj.status {
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            500 => "InternalError",
            _ => "InternalError",
        };
        let mut e = ApiError::new(
            inj.status,
            reason,
            format!("kubesim injected fault: HTTP {}", inj.status),
        );
        if let Some(s) = inj.retry_after_seconds {
            e.details = Some(Box::new(json!({"retryAfterSeconds": s})));
        }
        let mut r = error_response(&e);
        if let Some(s) = inj.retry_after_seconds {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return r;
    }
    if !authorize(&core.store, &id, &attrs) {
        return error_response(&forbidden(&id, verb, &attrs));
    }
    match route {
        Route::NonResource => non_resource(&core, req, &path).await,
        Route::UnknownResource(what) => error_response(&ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({what})"),
        )),
        Route::Resource(rp) => {
            let result = resource(&core, &id, req, rp, verb, q).await;
            result.unwrap_or_else(|e| error_response(&e))
        }
    }
}

fn wants_table(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

async fn read_body(req: Request<Incoming>) -> Result<(String, Bytes), ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?
        .to_bytes();
    Ok((ct, bytes))
}

fn parse_json_body(ct: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        // client-go falls back to JSON on 415.
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct})"
            ),
        ));
    }
    if ct.starts_with("application/apply-patch+yaml") || ct.starts_with("application/yaml") {
        let text = std::str::from_utf8(bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
        return crate::schema::parse_yaml_documents(text)
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::bad_request("empty body"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn write_options(id: &Identity, req_ua: &str, q: &Query) -> Result<WriteOptions, ApiError> {
    let field_validation = match q.get("fieldValidation").map(String::as_str) {
        None | Some("") | Some("Warn") => FieldValidation::Warn,
        Some("Strict") => FieldValidation::Strict,
        Some("Ignore") => FieldValidation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn, Strict (got {other:?})"
            )));
        }
    };
    let dry_run = match q.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported dryRun value {other:?}"
            )));
        }
    };
    let manager = q.get("fieldManager").cloned().unwrap_or_else(|| {
        let ua = req_ua.split('/').next().unwrap_or_default();
        if ua.is_empty() {
            id.user.clone()
        } else {
            ua.to_string()
        }
    });
    Ok(WriteOptions {
        dry_run,
        field_manager: manager,
        field_validation,
        force: q.get("force").is_some_and(|f| f == "true"),
        actor: Actor::Api,
    })
}

fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "'"));
        if let Ok(v) = HeaderValue::from_str(&text) {
            r.headers_mut().append("Warning", v);
        }
    }
    r
}

async fn resource(
    core: &Arc<ClusterCore>,
    id: &Identity,
    mut req: Request<Incoming>,
    rp: ResourcePath,
    verb: &str,
    q: Query,
) -> Result<Response<Body>, ApiError> {
    let rt = rp.rt.clone();
    let ns = rp.namespace.as_deref();
    let store = &core.store;
    let sub = rp.subresource.as_deref();
    if let Some(s) = sub {
        let ok = match s {
            "status" => rt.status_subresource,
            "exec" => rt.group.is_empty() && rt.plural == "pods",
            _ => false,
        };
        if !ok {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({}/{s})",
                    rt.plural
                ),
            ));
        }
    }
    if rt.namespaced && ns.is_none() && rp.name.is_some() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    if sub == Some("exec") {
        return exec(core, &mut req, &rp, &q).await;
    }
    if rt.is_review() {
        if verb != "create" {
            return Err(ApiError::method_not_allowed(format!(
                "{} only supports create",
                rt.plural
            )));
        }
        let (ct, bytes) = read_body(req).await?;
        return review(core, id, &rt, &ct, &bytes);
    }
    let labels = LabelSelector::parse(
        q.get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .map_err(ApiError::bad_request)?;
    let table = wants_table(&req);
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match verb {
        "get" => {
            let obj = store.get(&rt, ns, rp.name.as_deref().unwrap())?;
            if table {
                return Ok(json_response(
                    200,
                    &to_table(
                        &rt,
                        std::slice::from_ref(&obj),
                        &store.current_rv().to_string(),
                        None,
                    ),
                ));
            }
            Ok(json_response(200, &obj))
        }
        "list" => {
            let (mut items, rv) = store.list(&rt, ns, &labels, &fields);
            let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
            let start: usize = q
                .get("continue")
                .filter(|c| !c.is_empty())
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let total = items.len();
            items = items.into_iter().skip(start).collect();
            let mut cont = None;
            if limit > 0 && items.len() > limit {
                items.truncate(limit);
                cont = Some((start + limit).to_string());
            }
            if table {
                return Ok(json_response(
                    200,
                    &to_table(&rt, &items, &rv.to_string(), cont.as_deref()),
                ));
            }
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if let Some(c) = cont {
                meta["continue"] = json!(c);
                meta["remainingItemCount"] = json!(total - start - limit);
            }
            Ok(json_response(
                200,
                &json!({"apiVersion": rt.group_version(), "kind": rt.list_kind(), "metadata": meta, "items": items}),
            ))
        }
        "watch" => {
            let mut fields = fields;
            if let Some(name) = &rp.name {
                fields = FieldSelector::parse(&format!("metadata.name={name}"))
                    .map_err(ApiError::bad_request)?;
            }
            Ok(watch(
                core.clone(),
                rt,
                rp.namespace.clone(),
                labels,
                fields,
                &q,
                table,
            ))
        }
        "create" => {
            let opts = write_options(id, &ua, &q)?;
            let (ct, bytes) = read_body(req).await?;
            let body = parse_json_body(&ct, &bytes)?;
            let out = store.create(&rt, ns, body, &opts)?;
            Ok(with_warnings(
                json_response(201, &out.object),
                &out.warnings,
            ))
        }
        "update" => {
            let opts = write_options(id, &ua, &q)?;
            let (ct, bytes) = read_body(req).await?;
            let body = parse_json_body(&ct, &bytes)?;
            let out = store.update(&rt, ns, rp.name.as_deref().unwrap(), body, sub, &opts)?;
            Ok(with_warnings(
                json_response(200, &out.object),
                &out.warnings,
            ))
        }
        "patch" => {
            let opts = write_options(id, &ua, &q)?;
            let (ct, bytes) = read_body(req).await?;
            let body = parse_json_body(&ct, &bytes)?;
            if ct.starts_with("application/apply-patch") && !q.contains_key("fieldManager") {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let out = store.patch(&rt, ns, rp.name.as_deref().unwrap(), &ct, &body, sub, &opts)?;
            let code = if out.created { 201 } else { 200 };
            Ok(with_warnings(
                json_response(code, &out.object),
                &out.warnings,
            ))
        }
        "delete" => {
            let opts = write_options(id, &ua, &q)?;
            let obj = store.delete(&rt, ns, rp.name.as_deref().unwrap(), &opts)?;
            Ok(json_response(200, &obj))
        }
        "deletecollection" => {
            let opts = write_options(id, &ua, &q)?;
            let items = store.delete_collection(&rt, ns, &labels, &fields, &opts)?;
            Ok(json_response(
                200,
                &json!({"apiVersion": rt.group_version(), "kind": rt.list_kind(), "metadata": {"resourceVersion": store.current_rv().to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed("method not allowed")),
    }
}

/// Decode a protobuf-encoded `SelfSubjectAccessReview` (kubectl sends them so).
fn decode_ssar_protobuf(bytes: &[u8]) -> Option<Value> {
    use prost::Message;
    let body = bytes.strip_prefix(b"k8s\x00")?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(body).ok()?;
    let ssar =
        k8s_pb::api::authorization::v1::SelfSubjectAccessReview::decode(unknown.raw.as_deref()?)
            .ok()?;
    let spec = ssar.spec?;
    let mut out = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}});
    if let Some(ra) = spec.resource_attributes {
        out["spec"]["resourceAttributes"] = json!({
            "namespace": ra.namespace.unwrap_or_default(),
            "verb": ra.verb.unwrap_or_default(),
            "group": ra.group.unwrap_or_default(),
            "version": ra.version.unwrap_or_default(),
            "resource": ra.resource.unwrap_or_default(),
            "subresource": ra.subresource.unwrap_or_default(),
            "name": ra.name.unwrap_or_default(),
        });
    }
    if let Some(nra) = spec.non_resource_attributes {
        out["spec"]["nonResourceAttributes"] =
            json!({"path": nra.path.unwrap_or_default(), "verb": nra.verb.unwrap_or_default()});
    }
    Some(out)
}

fn review(
    core: &ClusterCore,
    id: &Identity,
    rt: &ResourceType,
    ct: &str,
    bytes: &[u8],
) -> Result<Response<Body>, ApiError> {
    let protobuf = ct.starts_with("application/vnd.kubernetes.protobuf");
    match rt.plural.as_str() {
        "selfsubjectreviews" => Ok(json_response(
            201,
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                    "metadata": {"creationTimestamp": null}, "status": {"userInfo": id.user_info_json()}}),
        )),
        "selfsubjectaccessreviews" | "subjectaccessreviews" => {
            let body = if protobuf {
                decode_ssar_protobuf(bytes)
                    .ok_or_else(|| ApiError::bad_request("cannot decode the protobuf body"))?
            } else {
                parse_json_body(ct, bytes)?
            };
            let who = if rt.plural == "subjectaccessreviews" {
                let spec = &body["spec"];
                let groups: Vec<&str> = spec["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                Identity::new(spec["user"].as_str().unwrap_or_default(), &groups)
            } else {
                id.clone()
            };
            let attrs = if let Some(ra) = body.pointer("/spec/resourceAttributes") {
                let s = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
                Attributes {
                    verb: s("verb"),
                    resource_request: true,
                    api_group: s("group"),
                    resource: s("resource"),
                    subresource: s("subresource"),
                    namespace: s("namespace"),
                    name: s("name"),
                    path: String::new(),
                }
            } else {
                let nra = &body["spec"]["nonResourceAttributes"];
                Attributes {
                    verb: nra["verb"].as_str().unwrap_or_default().to_string(),
                    path: nra["path"].as_str().unwrap_or_default().to_string(),
                    ..Default::default()
                }
            };
            let allowed = authorize(&core.store, &who, &attrs);
            let mut out = body.clone();
            out["apiVersion"] = json!("authorization.k8s.io/v1");
            out["kind"] = json!(rt.kind);
            out["metadata"] = json!({"creationTimestamp": null});
            out["status"] = if allowed {
                json!({"allowed": true, "reason": "RBAC: allowed by kubesim"})
            } else {
                json!({"allowed": false})
            };
            Ok(json_response(201, &out))
        }
        "tokenreviews" => {
            let body = parse_json_body(ct, bytes)?;
            let token = body
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let status = match core.auth.authenticate_token(token) {
                Some(who) => {
                    json!({"authenticated": true, "user": who.authenticated().user_info_json()})
                }
                None => json!({"authenticated": false, "error": "invalid token"}),
            };
            let mut out = body.clone();
            out["status"] = status;
            Ok(json_response(201, &out))
        }
        other => Err(ApiError::method_not_allowed(format!(
            "{other} is not supported"
        ))),
    }
}

fn age(ts: Option<&str>) -> String {
    let Some(ts) = ts.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn jsonpath_value(obj: &Value, path: &str) -> Value {
    // Simple JSONPath: `.a.b`, `.a[0].b`, and `.a[?(@.type=="Ready")].status`.
    let mut cur = vec![obj.clone()];
    let p = path.trim_start_matches('.');
    for seg in p.split('.') {
        if seg.is_empty() {
            continue;
        }
        let (name, filter) = match seg.split_once('[') {
            Some((n, f)) => (n, Some(f.trim_end_matches(']'))),
            None => (seg, None),
        };
        cur = cur
            .into_iter()
            .filter_map(|v| v.get(name).cloned())
            .collect();
        if let Some(f) = filter {
            if let Ok(i) = f.parse::<usize>() {
                cur = cur.into_iter().filter_map(|v| v.get(i).cloned()).collect();
            } else if let Some(cond) = f.strip_prefix("?(@.").and_then(|c| c.strip_suffix(')'))
                && let Some((k, want)) = cond.split_once("==")
            {
                let want = want.trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .into_iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|e| e.get(k).and_then(Value::as_str) == Some(want))
                    .collect();
            }
        }
    }
    cur.into_iter().next().unwrap_or(Value::Null)
}

fn to_table(rt: &ResourceType, items: &[Value], rv: &str, cont: Option<&str>) -> Value {
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    let extra: Vec<(String, String)> = if !rt.printer_columns.is_empty() {
        rt.printer_columns
            .iter()
            .filter(|c| c["priority"].as_i64().unwrap_or(0) == 0)
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["jsonPath"].as_str().unwrap_or_default().to_string(),
                )
            })
            .filter(|(_, p)| p != ".metadata.creationTimestamp")
            .collect()
    } else if rt.plural == "pods" || rt.plural == "namespaces" {
        vec![("Status".into(), ".status.phase".into())]
    } else {
        Vec::new()
    };
    for (name, _) in &extra {
        columns.push(
            json!({"name": name, "type": "string", "format": "", "description": "", "priority": 0}),
        );
    }
    columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}));
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
            for (_, p) in &extra {
                let v = jsonpath_value(o, p);
                cells.push(match v {
                    Value::Null => json!("<none>"),
                    Value::String(s) => json!(s),
                    other => json!(other.to_string()),
                });
            }
            cells.push(json!(age(o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str))));
            json!({"cells": cells, "object": o})
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows})
}

fn watch(
    core: Arc<ClusterCore>,
    rt: Arc<ResourceType>,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    q: &Query,
    table: bool,
) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let send_initial = q.get("sendInitialEvents").is_some_and(|b| b == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let cut = core
        .faults
        .watch_cut(&rt.group, &rt.plural, ns.as_deref().unwrap_or_default());
    tokio::spawn(async move {
        let store = &core.store;
        let mut notify = store.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut sent = 0usize;
        let matches = |o: &Value| {
            ns.as_deref()
                .is_none_or(|n| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(n))
                && labels.matches(o)
                && fields.matches(o)
        };
        let encode = |event_type: &str, obj: &Value| -> Bytes {
            let object = if table && event_type != "BOOKMARK" && event_type != "ERROR" {
                to_table(
                    &rt,
                    std::slice::from_ref(obj),
                    obj.pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    None,
                )
            } else {
                obj.clone()
            };
            let mut line = serde_json::to_vec(&json!({"type": event_type, "object": object}))
                .unwrap_or_default();
            line.push(b'\n');
            Bytes::from(line)
        };
        let mut last: u64;
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            let (items, rv) = store.list(&rt, ns.as_deref(), &labels, &fields);
            last = rv;
            for item in items {
                if tx
                    .send(Ok(Frame::data(encode("ADDED", &item))))
                    .await
                    .is_err()
                {
                    return;
                }
                sent += 1;
                if cut.is_some_and(|c| sent >= c) {
                    return;
                }
            }
            if send_initial {
                let bm = json!({"apiVersion": rt.group_version(), "kind": rt.kind, "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                if tx
                    .send(Ok(Frame::data(encode("BOOKMARK", &bm))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        } else {
            let Ok(rv) = rv_param.parse::<u64>() else {
                let e = ApiError::bad_request(format!("invalid resourceVersion {rv_param:?}"));
                let _ = tx.send(Ok(Frame::data(encode("ERROR", &e.status())))).await;
                return;
            };
            last = rv;
        }
        let storage_key = rt.storage_key();
        let mut bookmark_tick = tokio::time::interval(Duration::from_secs(2));
        bookmark_tick.tick().await;
        loop {
            let events = match store.events_since(last) {
                Ok(e) => e,
                Err(crate::cluster::Gone) => {
                    let e = ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {last} ({})", store.current_rv()),
                    );
                    let _ = tx.send(Ok(Frame::data(encode("ERROR", &e.status())))).await;
                    return;
                }
            };
            for ev in events {
                last = ev.rv;
                if ev.storage_key != storage_key {
                    continue;
                }
                let now_matches = ev.event_type != EventType::Deleted && matches(&ev.object);
                let was = ev.old.as_ref().is_some_and(&matches);
                let kind = match (ev.event_type, was, now_matches) {
                    (EventType::Deleted, _, _) if matches(&ev.object) => "DELETED",
                    (EventType::Added, _, true) => "ADDED",
                    (EventType::Modified, true, true) => "MODIFIED",
                    (EventType::Modified, false, true) => "ADDED",
                    (EventType::Modified, true, false) => "DELETED",
                    _ => continue,
                };
                let obj = Store::present(&rt, &ev.object);
                if tx.send(Ok(Frame::data(encode(kind, &obj)))).await.is_err() {
                    return;
                }
                sent += 1;
                if cut.is_some_and(|c| sent >= c) {
                    return;
                }
            }
            tokio::select! {
                changed = notify.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = bookmark_tick.tick(), if bookmarks => {
                    let bm = json!({"apiVersion": rt.group_version(), "kind": rt.kind, "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(Ok(Frame::data(encode("BOOKMARK", &bm)))).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

async fn exec(
    core: &Arc<ClusterCore>,
    req: &mut Request<Incoming>,
    rp: &ResourcePath,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let ns = rp.namespace.clone().unwrap_or_default();
    let name = rp.name.clone().unwrap_or_default();
    let pod = core.store.get(&rp.rt, Some(&ns), &name)?;
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let container = match q.get("container") {
        Some(c) => {
            if !containers.contains(c) {
                return Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.clone()
        }
        None => containers.first().cloned().unwrap_or_default(),
    };
    let command: Vec<String> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.into_owned())
            .collect();
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let key = req.headers().get("sec-websocket-key").cloned();
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let (Some(key), true) = (key, upgrade) else {
        return Err(ApiError::bad_request(
            "exec needs a WebSocket upgrade (SPDY is not supported by kubesim)",
        ));
    };
    let Some(protocol) = crate::exec::choose_protocol(&offered) else {
        return Err(ApiError::bad_request(format!(
            "none of the offered subprotocols ({offered}) is supported; kubesim speaks {}",
            crate::exec::PROTOCOLS.join(", ")
        )));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let exec_req = ExecRequest {
        namespace: ns.clone(),
        pod: name.clone(),
        container: container.clone(),
        command,
        stdin: Vec::new(),
        tty: q.get("tty").is_some_and(|t| t == "true"),
    };
    let want_stdin = q.get("stdin").is_some_and(|t| t == "true");
    let hang = core.faults.exec_hangs(&ns, &name, &container);
    let table = core.exec.clone();
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            crate::exec::serve_session(
                TokioIo::new(upgraded),
                protocol,
                exec_req,
                table,
                hang,
                want_stdin,
            )
            .await;
        }
    });
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).unwrap(),
    );
    h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    Ok(r)
}

// ---------------------------------------------------------------- discovery and openapi

fn accept_of(req: &Request<Incoming>) -> String {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The aggregated discovery version the client accepts, if any.
fn aggregated_version(accept: &str) -> Option<&'static str> {
    let offers: Vec<&str> = accept.split(',').map(str::trim).collect();
    ["v2", "v2beta1"]
        .into_iter()
        .find(|&v| {
            offers.iter().any(|o| {
                o.contains("as=APIGroupDiscoveryList")
                    && o.contains("g=apidiscovery.k8s.io")
                    && o.split(';').any(|p| p.trim() == format!("v={v}"))
            })
        })
        .map(|v| v as _)
}

fn discovery_group(core: &ClusterCore, group: &str) -> Value {
    let reg = core.store.registry();
    let groups = reg.groups();
    let versions = groups.get(group).cloned().unwrap_or_default();
    let versions_json: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = reg
                .in_group_version(group, v)
                .map(|t| {
                    let mut subs = Vec::new();
                    if t.status_subresource {
                        subs.push(json!({"subresource": "status", "responseKind": {"group": t.group, "version": t.version, "kind": t.kind}, "verbs": ["get", "patch", "update"]}));
                    }
                    if t.group.is_empty() && t.plural == "pods" {
                        subs.push(json!({"subresource": "exec", "responseKind": {"group": "", "version": "v1", "kind": "PodExecOptions"}, "verbs": ["create", "get"]}));
                    }
                    let mut r = json!({
                        "resource": t.plural,
                        "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": t.singular,
                        "verbs": t.verbs,
                    });
                    if !t.short_names.is_empty() {
                        r["shortNames"] = json!(t.short_names);
                    }
                    if !t.categories.is_empty() {
                        r["categories"] = json!(t.categories);
                    }
                    if !subs.is_empty() {
                        r["subresources"] = Value::Array(subs);
                    }
                    r
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut item = json!({"metadata": {"creationTimestamp": null}, "versions": versions_json});
    if !group.is_empty() {
        item["metadata"]["name"] = json!(group);
    }
    item
}

fn aggregated_response(items: Vec<Value>, version: &str) -> Response<Body> {
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{version}"), "metadata": {}, "items": items});
    let mut r = json_response(200, &body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!(
            "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
        ))
        .unwrap(),
    );
    r
}

fn api_group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

fn resource_list(core: &ClusterCore, group: &str, version: &str) -> Option<Value> {
    let reg = core.store.registry();
    let mut resources = Vec::new();
    for t in reg.in_group_version(group, version) {
        resources.push(api_resource_json(t));
        if t.status_subresource {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
        if t.group.is_empty() && t.plural == "pods" {
            resources.push(json!({"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]}));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn openapi_hash(core: &ClusterCore, group: &str, version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in core.store.registry().in_group_version(group, version) {
        format!("{t:?}").hash(&mut h);
        t.validator
            .as_ref()
            .map(|v| v.openapi().to_string())
            .hash(&mut h);
    }
    format!("{:016X}", h.finish())
}

fn openapi_root(core: &ClusterCore) -> Value {
    let mut paths = serde_json::Map::new();
    for (group, versions) in core.store.registry().groups() {
        for v in versions {
            let key = if group.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{group}/{v}")
            };
            let url = format!("/openapi/v3/{key}?hash={}", openapi_hash(core, &group, &v));
            paths.insert(key, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

fn schema_name(t: &ResourceType) -> String {
    let g = if t.group.is_empty() {
        "core".to_string()
    } else {
        t.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("io.kubesim.{g}.{}.{}", t.version, t.kind)
}

fn openapi_group(core: &ClusterCore, group: &str, version: &str) -> Option<Value> {
    let reg = core.store.registry();
    let types: Vec<_> = reg.in_group_version(group, version).cloned().collect();
    if types.is_empty() {
        return None;
    }
    let query_params = json!([
        {"name": "dryRun", "in": "query", "description": "When present, indicates that modifications should not be persisted.", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "description": "fieldManager is a name associated with the actor or entity that is making these changes.", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "description": "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests.", "schema": {"type": "boolean", "uniqueItems": true}}
    ]);
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for t in &types {
        let gvk = json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
        let name = schema_name(t);
        let mut schema = t
            .validator
            .as_ref()
            .map(|v| v.openapi().clone())
            .unwrap_or_else(|| json!({"type": "object", "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}}));
        schema["x-kubernetes-group-version-kind"] = gvk.clone();
        schemas.insert(name.clone(), schema);
        let reference = json!({"$ref": format!("#/components/schemas/{name}")});
        let op = |id: &str| {
            json!({
                "operationId": id,
                "parameters": query_params,
                "requestBody": {"content": {"application/json": {"schema": reference}}},
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
                "x-kubernetes-action": id,
                "x-kubernetes-group-version-kind": gvk[0],
            })
        };
        let item_path = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let coll_path = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        let mut item = json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")});
        item["patch"]["requestBody"] = json!({"content": {
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}}
        }});
        paths.insert(item_path.clone(), item);
        paths.insert(coll_path, json!({"get": op("list"), "post": op("post")}));
        if t.status_subresource {
            paths.insert(
                format!("{item_path}/status"),
                json!({"get": op("get"), "put": op("put"), "patch": op("patch")}),
            );
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": core.git_version},
        "paths": paths,
        "components": {"schemas": schemas}
    }))
}

async fn non_resource(core: &ClusterCore, req: Request<Incoming>, path: &str) -> Response<Body> {
    if *req.method() != Method::GET && *req.method() != Method::HEAD {
        return error_response(&ApiError::method_not_allowed("only GET is supported here"));
    }
    let accept = accept_of(&req);
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["version"] => {
            let minor = core
                .git_version
                .split('.')
                .nth(1)
                .unwrap_or("0")
                .to_string();
            json_response(
                200,
                &json!({
                    "major": "1", "minor": minor, "gitVersion": core.git_version,
                    "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                    "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64"
                }),
            )
        }
        ["healthz"] | ["livez"] | ["readyz"] => {
            let mut r = Response::new(full("ok"));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r
        }
        ["api"] => {
            if let Some(v) = aggregated_version(&accept) {
                return aggregated_response(vec![discovery_group(core, "")], v);
            }
            let addr = core.server_url.trim_start_matches("https://");
            json_response(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]}),
            )
        }
        ["apis"] => {
            let groups = core.store.registry().groups();
            if let Some(v) = aggregated_version(&accept) {
                let items = groups
                    .keys()
                    .filter(|g| !g.is_empty())
                    .map(|g| discovery_group(core, g))
                    .collect();
                return aggregated_response(items, v);
            }
            let list: Vec<Value> = groups
                .iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, vs)| api_group_json(g, vs))
                .collect();
            json_response(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
            )
        }
        ["api", v] => match resource_list(core, "", v) {
            Some(l) => json_response(200, &l),
            None => error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        ["apis", g] => match core.store.registry().groups().get(*g) {
            Some(vs) => {
                let mut gj = api_group_json(g, vs);
                gj["kind"] = json!("APIGroup");
                gj["apiVersion"] = json!("v1");
                json_response(200, &gj)
            }
            None => error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        ["apis", g, v] => match resource_list(core, g, v) {
            Some(l) => json_response(200, &l),
            None => error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        },
        ["openapi", "v3"] => json_response(200, &openapi_root(core)),
        ["openapi", "v3", "api", v] => match openapi_group(core, "", v) {
            Some(d) => json_response(200, &d),
            None => error_response(&ApiError::new(404, "NotFound", "no such group version")),
        },
        ["openapi", "v3", "apis", g, v] => match openapi_group(core, g, v) {
            Some(d) => json_response(200, &d),
            None => error_response(&ApiError::new(404, "NotFound", "no such group version")),
        },
        ["openapi", "v2"] => {
            if accept.contains("protobuf") && !accept.contains("json") {
                return error_response(&ApiError::new(
                    406,
                    "NotAcceptable",
                    "kubesim serves /openapi/v2 as JSON only",
                ));
            }
            json_response(
                200,
                &json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": core.git_version}, "paths": {}, "definitions": {}}),
            )
        }
        _ => error_response(&ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )),
    }
}
