//! Starting simulated clusters, their seeded state, kubeconfigs, and the handles tests use.
//!
//! A kind cluster (`Profile::Kind`) is seeded as kind/kubeadm leaves it: nodes
//! `<name>-control-plane`, `<name>-worker`, `<name>-worker2`; ConfigMap
//! `kube-public/cluster-info` (a kubeconfig with `server: https://<name>-control-plane:6443` and
//! the cluster CA) readable anonymously (Role/RoleBinding `kubeadm:bootstrap-signer-clusterinfo`);
//! its API server certificate names `<name>-control-plane` and the proxy routes
//! `<name>-control-plane:6443` to it ([`ClusterHandle::control_plane_url`]). It runs the
//! `workloads`, `spire-upstream`, `argocd-exec-plugin` and Argo CD application controllers, and
//! its structured authentication file when [`SimConfig::authentication_config`] names one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::auth::{Authenticators, Identity, TokenAuthenticator, default_rbac};
use crate::cluster::{Counters, Store};
use crate::controllers::{self, Controller, CrdEstablishing};
use crate::exec::{ExecHandler, ExecRequest, ExecResult, ExecTable};
use crate::faults::{Fault, Faults};
use crate::proxy::Routes;
use crate::registry::{OPENSHIFT_KINDS, Registry, kubernetes_builtins, openshift_builtin};
use crate::schema;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{self, ClusterCore};
use crate::tls::{Ca, CertPair};

/// The kind of cluster to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// OpenShift 4.x (`version` like `"4.20"`).
    OpenShift { version: String },
    /// kind: vanilla Kubernetes 1.x (`version` like `"1.34"`).
    Kind { version: String },
}

impl Profile {
    pub fn openshift(version: &str) -> Self {
        Profile::OpenShift {
            version: version.to_string(),
        }
    }
    pub fn kind(version: &str) -> Self {
        Profile::Kind {
            version: version.to_string(),
        }
    }
    /// Parse `openshift-4.20` or `kind-1.34`.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let check = |v: &str| -> anyhow::Result<()> {
            let ok = v.split('.').count() == 2
                && v.split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if ok {
                Ok(())
            } else {
                bail!("bad version {v:?} in profile {s:?} (expected like 4.20 or 1.34)")
            }
        };
        if let Some(v) = s.strip_prefix("openshift-") {
            check(v)?;
            Ok(Self::openshift(v))
        } else if let Some(v) = s.strip_prefix("kind-") {
            check(v)?;
            Ok(Self::kind(v))
        } else {
            bail!("unknown profile {s:?} (expected openshift-4.N or kind-1.N)")
        }
    }
    pub fn is_openshift(&self) -> bool {
        matches!(self, Profile::OpenShift { .. })
    }
    fn minor(v: &str) -> u32 {
        v.split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
    /// The Kubernetes `gitVersion` reported by `/version`.
    pub fn git_version(&self) -> String {
        match self {
            // OpenShift 4.N ships Kubernetes 1.(N+13).
            Profile::OpenShift { version } => format!("v1.{}.0", Self::minor(version) + 13),
            Profile::Kind { version } => format!("v{version}.0"),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Profile::OpenShift { version } => write!(f, "openshift-{version}"),
            Profile::Kind { version } => write!(f, "kind-{version}"),
        }
    }
}

/// What to start.
#[derive(Clone, Default)]
pub struct SimConfig {
    clusters: Vec<(String, Profile)>,
    controller_delay: Duration,
    latency: Duration,
    faults: Vec<(Fault, Option<String>)>,
    controllers: Vec<Arc<dyn Controller>>,
    authn_configs: Vec<(String, std::path::PathBuf)>,
    argocd: crate::argocd_apps::ArgoCdSettings,
}

impl SimConfig {
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a cluster; its kube context has the same name.
    pub fn cluster(mut self, name: &str, profile: Profile) -> Self {
        self.clusters.push((name.to_string(), profile));
        self
    }
    /// How long controllers wait after a change before they react (default 0).
    pub fn controller_delay(mut self, d: Duration) -> Self {
        self.controller_delay = d;
        self
    }
    /// Extra latency on every request.
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// A fault from the start, on every cluster (`None`) or on one.
    pub fn fault(mut self, fault: Fault, cluster: Option<&str>) -> Self {
        self.faults.push((fault, cluster.map(str::to_string)));
        self
    }
    /// An extra controller run on every cluster (part 2's controllers plug in here).
    pub fn controller(mut self, c: Arc<dyn Controller>) -> Self {
        self.controllers.push(c);
        self
    }
    /// The kube-apiserver `--authentication-config` file of a kind cluster (reloaded when it
    /// changes; see [`crate::kind_authn`]).
    pub fn authentication_config(
        mut self,
        cluster: &str,
        path: impl Into<std::path::PathBuf>,
    ) -> Self {
        self.authn_configs.push((cluster.to_string(), path.into()));
        self
    }
    /// Timing of the simulated Argo CD application controller ([`crate::argocd_apps`]).
    pub fn argocd_settings(mut self, settings: crate::argocd_apps::ArgoCdSettings) -> Self {
        self.argocd = settings;
        self
    }
}

/// Who a kubeconfig user is.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeUser {
    /// The cluster admin: client certificate `CN=system:admin, O=system:masters`.
    Admin,
    /// A client certificate with this CN (user) and O (groups).
    Cert { user: String, groups: Vec<String> },
    /// A bearer token (register it with `add_static_token`, or an authenticator).
    Token(String),
}

impl KubeUser {
    pub fn cert(user: &str, groups: &[&str]) -> Self {
        KubeUser::Cert {
            user: user.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }
    pub fn token(token: &str) -> Self {
        KubeUser::Token(token.to_string())
    }
}

/// A handle on one running cluster (cheap to clone; usable from sync and async code).
#[derive(Clone)]
pub struct ClusterHandle {
    core: Arc<ClusterCore>,
    ca: Arc<Ca>,
    admin: Arc<CertPair>,
    profile: Profile,
    ingress_ca_pem: Arc<String>,
    routes: Arc<Routes>,
    ingress_ca: Arc<Ca>,
    hub: Arc<crate::spire::HubState>,
    oidc: Arc<crate::jwt_authn::OidcAuthn>,
}

/// A [`ClusterHandle`] that does not keep its cluster alive (for callbacks the cluster itself
/// stores, such as exec handlers).
#[derive(Clone)]
pub(crate) struct WeakClusterHandle {
    core: std::sync::Weak<ClusterCore>,
    /// Rebuilds the handle around the core (holds every other part of the handle).
    rebuild: Arc<dyn Fn(Arc<ClusterCore>) -> ClusterHandle + Send + Sync>,
}

impl WeakClusterHandle {
    pub(crate) fn upgrade(&self) -> Option<ClusterHandle> {
        self.core.upgrade().map(|core| (self.rebuild)(core))
    }
}

impl ClusterHandle {
    /// A handle that does not keep the cluster alive.
    pub(crate) fn downgrade(&self) -> WeakClusterHandle {
        // Exhaustive on purpose: a new field must be carried over here too.
        let ClusterHandle {
            core,
            ca,
            admin,
            profile,
            ingress_ca_pem,
            routes,
            ingress_ca,
            hub,
            oidc,
        } = self.clone();
        WeakClusterHandle {
            core: Arc::downgrade(&core),
            rebuild: Arc::new(move |core| ClusterHandle {
                core,
                ca: ca.clone(),
                admin: admin.clone(),
                profile: profile.clone(),
                ingress_ca_pem: ingress_ca_pem.clone(),
                routes: routes.clone(),
                ingress_ca: ingress_ca.clone(),
                hub: hub.clone(),
                oidc: oidc.clone(),
            }),
        }
    }
    /// The ingress operator's CA (signs the router's `*.apps` certificate).
    pub(crate) fn ingress_ca(&self) -> &Ca {
        &self.ingress_ca
    }
    /// State of the simulated SPIRE deployment ([`crate::ztwim`]).
    pub(crate) fn hub(&self) -> &crate::spire::HubState {
        &self.hub
    }
    /// The JWT/OAuth bearer-token authenticator of the cluster ([`crate::jwt_authn`]).
    pub fn oidc_authn(&self) -> &Arc<crate::jwt_authn::OidcAuthn> {
        &self.oidc
    }
    /// The simulated hosts (shared by every cluster and the CONNECT proxy).
    /// Make this cluster's ingress certificates publicly trusted: simulated clients (the spokes'
    /// kube-apiservers) then verify them with their system roots. Processes outside kubesim need the
    /// CA too (e.g. `SSL_CERT_FILE`).
    pub fn trust_ingress_publicly(&self) {
        self.routes.add_public_root(self.ingress_ca_pem());
    }
    pub(crate) fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }
    /// Add a validating admission check on API writes ([`crate::cluster::Admission`]).
    pub fn add_admission(&self, a: crate::cluster::Admission) {
        self.core.store.add_admission(a)
    }
    pub(crate) fn core(&self) -> &ClusterCore {
        &self.core
    }
    pub fn name(&self) -> &str {
        &self.core.name
    }
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
    /// `https://127.0.0.1:PORT`.
    pub fn server_url(&self) -> &str {
        &self.core.server_url
    }
    /// kind: `https://<cluster>-control-plane:6443`, the API server as the kind docker network
    /// knows it (the address in `kube-public/cluster-info`). Its certificate names the host, and
    /// the proxy routes map it to this cluster, so the env file's proxy, every simulated
    /// cluster (Argo CD, JWT authenticators) and the hub's pods reach it. `None` on OpenShift.
    pub fn control_plane_url(&self) -> Option<String> {
        (!self.profile.is_openshift()).then(|| {
            format!(
                "https://{}:{KIND_API_PORT}",
                control_plane_host(self.name())
            )
        })
    }
    /// The names of the seeded nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.list("v1", "Node", None)
            .iter()
            .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }
    /// The cluster CA (signs the server certificate and client certificates).
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }
    /// The CA of the simulated ingress (also in ConfigMap `openshift-config-managed/default-ingress-cert`).
    pub fn ingress_ca_pem(&self) -> &str {
        &self.ingress_ca_pem
    }
    /// The apps domain (`apps.` + DNS baseDomain).
    pub fn apps_domain(&self) -> String {
        format!("apps.{}", base_domain(&self.core.name))
    }
    /// A client certificate for a user and groups, signed by the cluster CA.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> CertPair {
        self.ca
            .issue_client(user, groups)
            .expect("issuing a client certificate")
    }
    pub fn admin_cert(&self) -> &CertPair {
        &self.admin
    }
    pub fn counters(&self) -> Counters {
        self.core.store.counters.snapshot()
    }
    pub fn reset_counters(&self) {
        self.core.store.counters.reset()
    }
    /// Get an object (`namespace` `None` for cluster-scoped kinds).
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let rt = self.core.store.type_of(api_version, kind)?;
        self.core.store.get(&rt, namespace, name).ok()
    }
    /// List objects (`namespace` `None`: all namespaces).
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some(rt) = self.core.store.type_of(api_version, kind) else {
            return Vec::new();
        };
        self.core
            .store
            .list(
                &rt,
                namespace,
                &LabelSelector::default(),
                &FieldSelector::default(),
            )
            .0
    }
    /// Create or replace an object as is (no validation; bumps the resourceVersion and emits
    /// watch events; counted as an internal change). Returns the stored object.
    pub fn put(&self, obj: Value) -> anyhow::Result<Value> {
        self.core.store.put(obj).map_err(|e| anyhow!("{e}"))
    }
    /// Delete an object (finalizers and namespace cascading apply).
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<()> {
        self.core
            .store
            .delete_internal(api_version, kind, namespace, name)
            .map(|_| ())
            .map_err(|e| anyhow!("{e}"))
    }
    /// The cluster's current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.core.store.current_rv()
    }
    /// Forget the watch history: watches from an older resourceVersion get `410 Gone`.
    pub fn compact(&self) {
        self.core.store.compact()
    }
    pub fn add_fault(&self, fault: Fault) {
        self.core.faults.add(fault)
    }
    pub fn clear_faults(&self) {
        self.core.faults.clear()
    }
    /// Register an exec handler for `namespace/pod` (`pod` may be `*`), one container or all (`None`).
    /// It gets every command; return `ExecResult::not_found` for ones it does not know.
    pub fn register_exec(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        handler: impl Fn(&ExecRequest) -> ExecResult + Send + Sync + 'static,
    ) {
        self.core.exec.register(
            namespace,
            pod,
            container,
            None,
            Arc::new(handler) as ExecHandler,
        )
    }
    /// Register a handler for one program (`argv[0]`) in `namespace/pod`.
    pub fn register_command(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        program: &str,
        handler: impl Fn(&ExecRequest) -> ExecResult + Send + Sync + 'static,
    ) {
        self.core.exec.register(
            namespace,
            pod,
            container,
            Some(program),
            Arc::new(handler) as ExecHandler,
        )
    }
    /// Accept `token` as `user` with `groups` (plus `system:authenticated`).
    pub fn add_static_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.core
            .auth
            .static_tokens
            .add(token, Identity::new(user, groups))
    }
    /// Add a bearer-token authenticator (tried after the static tokens).
    pub fn add_authenticator(&self, a: Arc<dyn TokenAuthenticator>) {
        self.core.auth.add(a)
    }
    /// Route `host:port` CONNECTs of the env file's proxy to a local backend.
    pub fn add_proxy_route(&self, host_port: &str, backend: SocketAddr) {
        self.routes.add(host_port, backend)
    }

    fn kube_user_json(&self, user: &KubeUser) -> Value {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        match user {
            KubeUser::Admin => {
                json!({"client-certificate-data": b64(&self.admin.cert_pem), "client-key-data": b64(&self.admin.key_pem)})
            }
            KubeUser::Cert { user, groups } => {
                let g: Vec<&str> = groups.iter().map(String::as_str).collect();
                let pair = self.client_cert(user, &g);
                json!({"client-certificate-data": b64(&pair.cert_pem), "client-key-data": b64(&pair.key_pem)})
            }
            KubeUser::Token(t) => json!({"token": t}),
        }
    }
}

/// Running simulated clusters. Dropping it stops them.
pub struct Sim {
    runtime: Option<tokio::runtime::Runtime>,
    clusters: Vec<ClusterHandle>,
    proxy_addr: SocketAddr,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The API server port of a kind node.
pub const KIND_API_PORT: u16 = 6443;

/// `<cluster>-control-plane`: a kind cluster's control-plane node (its docker container name).
pub fn control_plane_host(cluster: &str) -> String {
    format!("{cluster}-control-plane")
}

/// `<cluster>.kubesim.example`.
pub fn base_domain(cluster: &str) -> String {
    format!("{cluster}.kubesim.example")
}

fn reference_crds() -> &'static Vec<Value> {
    static CRDS: OnceLock<Vec<Value>> = OnceLock::new();
    CRDS.get_or_init(|| {
        let Some(dir) = schema::reference_dir() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for file in [
            "config.openshift.io/dnses.yaml",
            "config.openshift.io/featuregates.yaml",
            "config.openshift.io/authentications.yaml",
            "config.openshift.io/clusteroperators.yaml",
            "route.openshift.io/routes.yaml",
            "operators.coreos.com/catalogsources.yaml",
            "operators.coreos.com/subscriptions.yaml",
            "operators.coreos.com/clusterserviceversions.yaml",
            "operators.coreos.com/installplans.yaml",
            "operators.coreos.com/operatorgroups.yaml",
        ] {
            let path = dir.join("crds").join(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match schema::parse_yaml_documents(&text) {
                Ok(docs) => out.extend(docs),
                Err(e) => panic!("parsing {}: {e:#}", path.display()),
            }
        }
        out
    })
}

impl Sim {
    /// Start the clusters (each on its own random port) on a private tokio runtime.
    pub fn start(config: SimConfig) -> anyhow::Result<Sim> {
        if config.clusters.is_empty() {
            bail!("SimConfig has no cluster");
        }
        if let Some((c, _)) = config
            .authn_configs
            .iter()
            .find(|(c, _)| !config.clusters.iter().any(|(n, _)| n == c))
        {
            bail!("authentication config for unknown cluster {c:?}");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kubesim")
            .enable_all()
            .build()?;
        let routes = Arc::new(Routes::default());
        let proxy_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        proxy_listener.set_nonblocking(true)?;
        let proxy_addr = proxy_listener.local_addr()?;
        {
            let _guard = runtime.enter();
            let l = tokio::net::TcpListener::from_std(proxy_listener)?;
            runtime.spawn(crate::proxy::serve(l, routes.clone()));
        }
        let mut clusters = Vec::new();
        for (name, profile) in &config.clusters {
            if clusters.iter().any(|c: &ClusterHandle| c.name() == name) {
                bail!("duplicate cluster name {name:?}");
            }
            let handle = start_cluster(&runtime, name, profile, &config, routes.clone())
                .with_context(|| format!("starting cluster {name}"))?;
            clusters.push(handle);
        }
        Ok(Sim {
            runtime: Some(runtime),
            clusters,
            proxy_addr,
        })
    }

    /// The cluster named `name` (panics if there is none).
    pub fn cluster(&self, name: &str) -> &ClusterHandle {
        self.clusters
            .iter()
            .find(|c| c.name() == name)
            .unwrap_or_else(|| panic!("no cluster named {name:?}"))
    }
    pub fn clusters(&self) -> &[ClusterHandle] {
        &self.clusters
    }
    /// The address of the CONNECT proxy of the env file.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }
    /// The runtime the servers run on (to spawn part-2 helpers on).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("running").handle()
    }

    /// A kubeconfig with one admin context per cluster, named as the cluster. The current
    /// context is the first cluster.
    pub fn kubeconfig_yaml(&self) -> String {
        let entries: Vec<(&str, &str, KubeUser)> = self
            .clusters
            .iter()
            .map(|c| (c.name(), c.name(), KubeUser::Admin))
            .collect();
        let refs: Vec<(&str, &str, &KubeUser)> =
            entries.iter().map(|(a, b, u)| (*a, *b, u)).collect();
        self.kubeconfig_for(&refs)
    }

    /// A kubeconfig with a single context `context` on `cluster` as `user`.
    pub fn kubeconfig_with_user(&self, context: &str, cluster: &str, user: &KubeUser) -> String {
        self.kubeconfig_for(&[(context, cluster, user)])
    }

    /// A kubeconfig with the given `(context name, cluster name, user)` entries; the first is current.
    pub fn kubeconfig_for(&self, entries: &[(&str, &str, &KubeUser)]) -> String {
        use base64::Engine;
        let mut clusters = Vec::new();
        let mut users = Vec::new();
        let mut contexts = Vec::new();
        for (context, cluster, user) in entries {
            let c = self.cluster(cluster);
            let ca = base64::engine::general_purpose::STANDARD.encode(c.ca_pem().as_bytes());
            clusters.push(json!({"name": context, "cluster": {"server": c.server_url(), "certificate-authority-data": ca}}));
            users.push(json!({"name": context, "user": c.kube_user_json(user)}));
            contexts
                .push(json!({"name": context, "context": {"cluster": context, "user": context}}));
        }
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "current-context": entries.first().map(|e| e.0).unwrap_or_default(),
            "clusters": clusters,
            "users": users,
            "contexts": contexts,
        });
        serde_saphyr::to_string(&doc).expect("kubeconfig serialises")
    }

    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        write_private(path, &self.kubeconfig_yaml())
    }

    /// The env file: `HTTPS_PROXY` (the CONNECT proxy for simulated ingress hosts) and `NO_PROXY`.
    pub fn env_file(&self) -> String {
        format!(
            "export HTTPS_PROXY=http://{addr}\nexport https_proxy=http://{addr}\nexport NO_PROXY=127.0.0.1,localhost\nexport no_proxy=127.0.0.1,localhost\n",
            addr = self.proxy_addr
        )
    }
}

/// Write a file readable only by its owner (kubeconfigs hold private keys).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn start_cluster(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    profile: &Profile,
    config: &SimConfig,
    routes: Arc<Routes>,
) -> anyhow::Result<ClusterHandle> {
    let ca = Arc::new(Ca::new(&format!("kubesim-{name}-ca"))?);
    let control_plane = control_plane_host(name);
    let mut dns_names = vec!["localhost", "kubernetes.default.svc", "kubernetes"];
    if !profile.is_openshift() {
        // kind: the control-plane node container's name on the docker network "kind".
        dns_names.push(&control_plane);
    }
    let server_cert = ca.issue_server(&dns_names, &[IpAddr::V4(Ipv4Addr::LOCALHOST)])?;
    let admin = Arc::new(ca.issue_client("system:admin", &["system:masters"])?);
    let tls = crate::tls::server_config(&server_cert, &ca.cert_pem())?;
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;

    let mut registry = Registry::default();
    for t in kubernetes_builtins() {
        registry.add(t);
    }
    let store = Store::new(registry);
    let core = Arc::new(ClusterCore {
        name: name.to_string(),
        git_version: profile.git_version(),
        store,
        auth: Authenticators::default(),
        faults: Faults::default(),
        exec: Arc::new(ExecTable::default()),
        server_url: format!("https://{addr}"),
    });
    if !profile.is_openshift() {
        routes.add(&format!("{control_plane}:{KIND_API_PORT}"), addr);
    }
    let ingress_ca = Ca::new(&format!("ingress-operator@kubesim-{name}"))?;
    let handle = ClusterHandle {
        core: core.clone(),
        ca,
        admin,
        profile: profile.clone(),
        ingress_ca_pem: Arc::new(ingress_ca.cert_pem()),
        routes,
        ingress_ca: Arc::new(ingress_ca),
        hub: Arc::default(),
        oidc: Arc::default(),
    };
    core.auth.add(handle.oidc.clone());
    seed(&handle)?;
    if !config.latency.is_zero() {
        core.faults.add(Fault::Latency {
            matcher: crate::faults::Matcher::any(),
            delay: config.latency,
        });
    }
    for (fault, only) in &config.faults {
        if only.as_deref().is_none_or(|c| c == name) {
            core.faults.add(fault.clone());
        }
    }
    core.store.counters.reset();
    {
        let _guard = runtime.enter();
        let l = tokio::net::TcpListener::from_std(listener)?;
        runtime.spawn(server::serve(core.clone(), l, tls));
    }
    let mut all: Vec<Arc<dyn Controller>> = vec![Arc::new(CrdEstablishing)];
    all.extend(config.controllers.iter().cloned());
    if profile.is_openshift() {
        all.extend(crate::openshift_authn::install(&handle));
        // The hub side: OLM, the ZTWIM and Argo CD operators, workload controllers and router.
        all.push(Arc::new(crate::olm::Olm));
        all.push(Arc::new(crate::ztwim::Ztwim));
        all.push(Arc::new(crate::argocd::ArgoCdOperator));
    } else {
        // kind: upstream SPIRE (server, agents, CSI driver, controller manager, OIDC provider).
        all.push(Arc::new(crate::spire_upstream::SpireUpstream));
    }
    // kube-controller-manager (and, on OpenShift, the router), and the exec plugin in the pods
    // of upstream Argo CD.
    all.push(Arc::new(crate::workloads::Workloads));
    all.push(Arc::new(crate::argocd::ArgoCdPods));
    for (_, path) in config.authn_configs.iter().filter(|(c, _)| c == name) {
        crate::kind_authn::start(runtime.handle(), &handle, path)?;
    }
    all.push(Arc::new(crate::argocd_apps::ApplicationController::new(
        config.argocd.clone(),
    )));
    for c in all {
        controllers::spawn(runtime.handle(), handle.clone(), c, config.controller_delay);
    }
    Ok(handle)
}

fn established(mut crd: Value) -> Value {
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let stored: Vec<Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"] == true)
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    crd["status"] = json!({
        "acceptedNames": names,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": "2025-01-01T00:00:00Z"}
        ]
    });
    crd
}

fn seed(c: &ClusterHandle) -> anyhow::Result<()> {
    let put = |v: Value| c.put(v).map(|_| ());
    let mut namespaces = vec!["default", "kube-system", "kube-public", "kube-node-lease"];
    if c.profile.is_openshift() {
        namespaces.extend([
            "openshift-config",
            "openshift-config-managed",
            "openshift-marketplace",
            "openshift-operators",
            "openshift-operator-lifecycle-manager",
            "openshift-ingress",
            "openshift-kube-apiserver",
            "openshift-console",
        ]);
    }
    for ns in namespaces {
        put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))?;
    }
    let node_names: Vec<String> = if c.profile.is_openshift() {
        (0..3).map(|i| format!("{}-master-{i}", c.name())).collect()
    } else {
        vec![
            format!("{}-control-plane", c.name()),
            format!("{}-worker", c.name()),
            format!("{}-worker2", c.name()),
        ]
    };
    for (i, n) in node_names.iter().enumerate() {
        put(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n, "labels": {
                "kubernetes.io/hostname": n, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/worker": ""
            }},
            "spec": {},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": "2025-01-01T00:00:00Z", "lastTransitionTime": "2025-01-01T00:00:00Z"}],
                "addresses": [{"type": "InternalIP", "address": format!("10.0.0.{}", 10 + i)}, {"type": "Hostname", "address": n}],
                "nodeInfo": {"kubeletVersion": c.profile.git_version(), "osImage": "kubesim", "containerRuntimeVersion": "kubesim://1", "architecture": "amd64", "operatingSystem": "linux"}
            }
        }))?;
    }
    for obj in default_rbac() {
        put(obj)?;
    }
    for ns in ["default", "kube-system", "kube-public"] {
        put(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
        )?;
    }
    put(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": "default"}, "data": {"ca.crt": c.ca_pem()}}),
    )?;
    put(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"type": "ClusterIP", "clusterIP": "172.30.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
    )?;
    match &c.profile {
        Profile::OpenShift { version } => seed_openshift(c, version)?,
        Profile::Kind { .. } => seed_kind(c)?,
    }
    Ok(())
}

/// What kubeadm publishes on a kind cluster: ConfigMap `kube-public/cluster-info` (a
/// kubeconfig with the cluster's only endpoint and CA), readable by anonymous users through
/// Role and RoleBinding `kubeadm:bootstrap-signer-clusterinfo`.
fn seed_kind(c: &ClusterHandle) -> anyhow::Result<()> {
    use base64::Engine;
    let put = |v: Value| c.put(v).map(|_| ());
    // kind's default StorageClass (rancher's local-path provisioner).
    put(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"
    }))?;
    let server = c.control_plane_url().unwrap_or_default();
    let kubeconfig = json!({
        "apiVersion": "v1",
        "clusters": [{"cluster": {
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(c.ca_pem().as_bytes()),
            "server": server,
        }, "name": ""}],
        "contexts": null,
        "current-context": "",
        "kind": "Config",
        "preferences": {},
        "users": null,
    });
    let text = serde_saphyr::to_string(&kubeconfig)?;
    put(json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "cluster-info", "namespace": "kube-public"},
               "data": {"kubeconfig": text}}))?;
    let name = "kubeadm:bootstrap-signer-clusterinfo";
    put(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": name, "namespace": "kube-public"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"], "verbs": ["get"]}]}),
    )?;
    put(
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": "kube-public"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]}),
    )?;
    Ok(())
}

fn seed_openshift(c: &ClusterHandle, version: &str) -> anyhow::Result<()> {
    let put = |v: Value| c.put(v).map(|_| ());
    let crds = reference_crds();
    for entry in OPENSHIFT_KINDS {
        let (gv, kind, ..) = *entry;
        let group = gv.split('/').next().unwrap_or_default();
        let crd = crds.iter().find(|d| {
            d.pointer("/spec/group").and_then(Value::as_str) == Some(group)
                && d.pointer("/spec/names/kind").and_then(Value::as_str) == Some(kind)
        });
        match crd {
            Some(crd) => {
                let mut crd = established(crd.clone());
                if let Some(m) = crd["metadata"].as_object_mut() {
                    m.remove("creationTimestamp");
                }
                put(crd)?;
            }
            None => {
                let mut st = c.core.store.lock();
                st.registry.add(openshift_builtin(entry));
            }
        }
    }
    let minor = Profile::minor(version);
    let full_version = format!("{version}.0");
    let base = base_domain(c.name());
    put(
        json!({"apiVersion": "config.openshift.io/v1", "kind": "DNS", "metadata": {"name": "cluster"},
               "spec": {"baseDomain": base}, "status": {}}),
    )?;
    put(
        json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterVersion", "metadata": {"name": "version"},
               "spec": {"clusterID": crate::cluster::new_uid(), "channel": format!("stable-{version}")},
               "status": {"desired": {"version": full_version, "image": format!("quay.io/openshift-release-dev/ocp-release:{full_version}-x86_64")},
                          "history": [{"state": "Completed", "version": full_version, "startedTime": "2025-01-01T00:00:00Z", "completionTime": "2025-01-01T00:00:00Z", "image": "", "verified": false}],
                          "observedGeneration": 1, "versionHash": "kubesim", "availableUpdates": null,
                          "conditions": [{"type": "Available", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}}),
    )?;
    // ExternalOIDC is GA (Default feature set) from 4.20; before that only with TechPreviewNoUpgrade.
    let (enabled, disabled): (Vec<&str>, Vec<&str>) = if minor >= 20 {
        (vec!["ExternalOIDC", "KMSv1"], vec!["EventedPLEG"])
    } else {
        (vec!["KMSv1"], vec!["ExternalOIDC", "EventedPLEG"])
    };
    let gates = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
    put(
        json!({"apiVersion": "config.openshift.io/v1", "kind": "FeatureGate", "metadata": {"name": "cluster"},
               "spec": {}, "status": {"featureGates": [{"version": full_version, "enabled": gates(&enabled), "disabled": gates(&disabled)}]}}),
    )?;
    put(
        json!({"apiVersion": "config.openshift.io/v1", "kind": "Authentication", "metadata": {"name": "cluster"},
               "spec": {"type": "IntegratedOAuth", "serviceAccountIssuer": "", "webhookTokenAuthenticator": {"kubeConfig": {"name": "webhook-authentication-integrated-oauth"}}},
               "status": {"integratedOAuthMetadata": {"name": "oauth-openshift"}}}),
    )?;
    put(
        json!({"apiVersion": "config.openshift.io/v1", "kind": "ClusterOperator", "metadata": {"name": "kube-apiserver"},
               "spec": {},
               "status": {"conditions": [
                   {"type": "Available", "status": "True", "reason": "AsExpected", "message": "StaticPodsAvailable: 3 nodes are active; 3 nodes are at revision 7", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                   {"type": "Progressing", "status": "False", "reason": "AsExpected", "message": "NodeInstallerProgressing: 3 nodes are at revision 7", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                   {"type": "Degraded", "status": "False", "reason": "AsExpected", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                   {"type": "Upgradeable", "status": "True", "reason": "AsExpected", "lastTransitionTime": "2025-01-01T00:00:00Z"}
               ],
               "versions": [{"name": "operator", "version": full_version}, {"name": "raw-internal", "version": full_version}, {"name": "kube-apiserver", "version": c.profile.git_version().trim_start_matches('v')}]}}),
    )?;
    put(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "default-ingress-cert", "namespace": "openshift-config-managed"},
               "data": {"ca-bundle.crt": c.ingress_ca_pem()}}),
    )?;
    put(
        json!({"apiVersion": "operators.coreos.com/v1alpha1", "kind": "CatalogSource", "metadata": {"name": "redhat-operators", "namespace": "openshift-marketplace"},
               "spec": {"sourceType": "grpc", "image": format!("registry.redhat.io/redhat/redhat-operator-index:v{version}"), "displayName": "Red Hat Operators", "publisher": "Red Hat", "priority": -100},
               "status": {"connectionState": {"lastObservedState": "READY", "address": "redhat-operators.openshift-marketplace.svc:50051"}}}),
    )?;
    for (pkg, display, channels, default) in [
        (
            "openshift-zero-trust-workload-identity-manager",
            "Zero Trust Workload Identity Manager",
            vec![
                (
                    "stable-v1",
                    "zero-trust-workload-identity-manager.v1.0.0",
                    "1.0.0",
                ),
                (
                    "tech-preview-v0.1",
                    "zero-trust-workload-identity-manager.v0.1.0",
                    "0.1.0",
                ),
            ],
            "stable-v1",
        ),
        (
            "openshift-gitops-operator",
            "Red Hat OpenShift GitOps",
            vec![
                ("latest", "openshift-gitops-operator.v1.18.0", "1.18.0"),
                ("gitops-1.18", "openshift-gitops-operator.v1.18.0", "1.18.0"),
            ],
            "latest",
        ),
    ] {
        let chans: Vec<Value> = channels
            .iter()
            .map(|(n, csv, v)| json!({"name": n, "currentCSV": csv, "currentCSVDesc": {"displayName": display, "version": v, "provider": {"name": "Red Hat"},
                "installModes": [{"type": "OwnNamespace", "supported": true}, {"type": "SingleNamespace", "supported": true}, {"type": "MultiNamespace", "supported": false}, {"type": "AllNamespaces", "supported": true}]}}))
            .collect();
        put(
            json!({"apiVersion": "packages.operators.coreos.com/v1", "kind": "PackageManifest",
                   "metadata": {"name": pkg, "namespace": "openshift-marketplace", "labels": {"catalog": "redhat-operators", "catalog-namespace": "openshift-marketplace", "provider": "Red Hat"}},
                   "spec": {},
                   "status": {"catalogSource": "redhat-operators", "catalogSourceDisplayName": "Red Hat Operators", "catalogSourcePublisher": "Red Hat",
                              "catalogSourceNamespace": "openshift-marketplace", "provider": {"name": "Red Hat"}, "packageName": pkg,
                              "defaultChannel": default, "channels": chans}}),
        )?;
    }
    Ok(())
}
