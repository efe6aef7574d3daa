//! The kinds ztwim-hub reads or applies, and how to address them. We resolve only these (the kube-rs
//! `pinned_kind` habit) instead of running full discovery.

use kube::discovery::{ApiResource, Scope};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version: self.api_version(),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }

    pub fn scope(&self) -> Scope {
        if self.namespaced {
            Scope::Namespaced
        } else {
            Scope::Cluster
        }
    }

    /// `plural.group`, as in CRD names and `kubectl get` arguments.
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn k(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        group,
        version,
        kind,
        plural,
        namespaced,
    }
}

pub const KNOWN: &[Kind] = &[
    // Built-in
    k("", "v1", "Namespace", "namespaces", false),
    k("", "v1", "ConfigMap", "configmaps", true),
    k("", "v1", "Secret", "secrets", true),
    k("", "v1", "ServiceAccount", "serviceaccounts", true),
    k("", "v1", "Service", "services", true),
    k("", "v1", "Pod", "pods", true),
    k("apps", "v1", "Deployment", "deployments", true),
    k("apps", "v1", "DaemonSet", "daemonsets", true),
    k("apps", "v1", "StatefulSet", "statefulsets", true),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    k("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    k(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    k("storage.k8s.io", "v1", "CSIDriver", "csidrivers", false),
    k(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    k(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    k(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
    ),
    k(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    // OLM
    k(
        "operators.coreos.com",
        "v1",
        "OperatorGroup",
        "operatorgroups",
        true,
    ),
    k(
        "operators.coreos.com",
        "v1alpha1",
        "Subscription",
        "subscriptions",
        true,
    ),
    k(
        "operators.coreos.com",
        "v1alpha1",
        "ClusterServiceVersion",
        "clusterserviceversions",
        true,
    ),
    k(
        "operators.coreos.com",
        "v1alpha1",
        "InstallPlan",
        "installplans",
        true,
    ),
    k(
        "operators.coreos.com",
        "v1alpha1",
        "CatalogSource",
        "catalogsources",
        true,
    ),
    k(
        "packages.operators.coreos.com",
        "v1",
        "PackageManifest",
        "packagemanifests",
        true,
    ),
    // ZTWIM
    k(
        "operator.openshift.io",
        "v1alpha1",
        "ZeroTrustWorkloadIdentityManager",
        "zerotrustworkloadidentitymanagers",
        false,
    ),
    k(
        "operator.openshift.io",
        "v1alpha1",
        "SpireServer",
        "spireservers",
        false,
    ),
    k(
        "operator.openshift.io",
        "v1alpha1",
        "SpireAgent",
        "spireagents",
        false,
    ),
    k(
        "operator.openshift.io",
        "v1alpha1",
        "SpiffeCSIDriver",
        "spiffecsidrivers",
        false,
    ),
    k(
        "operator.openshift.io",
        "v1alpha1",
        "SpireOIDCDiscoveryProvider",
        "spireoidcdiscoveryproviders",
        false,
    ),
    k(
        "spire.spiffe.io",
        "v1alpha1",
        "ClusterSPIFFEID",
        "clusterspiffeids",
        false,
    ),
    // spire-controller-manager (kind hubs)
    k(
        "spire.spiffe.io",
        "v1alpha1",
        "ClusterFederatedTrustDomain",
        "clusterfederatedtrustdomains",
        false,
    ),
    k(
        "spire.spiffe.io",
        "v1alpha1",
        "ClusterStaticEntry",
        "clusterstaticentries",
        false,
    ),
    // Argo CD
    k("argoproj.io", "v1beta1", "ArgoCD", "argocds", true),
    k(
        "argoproj.io",
        "v1alpha1",
        "ApplicationSet",
        "applicationsets",
        true,
    ),
    k(
        "argoproj.io",
        "v1alpha1",
        "Application",
        "applications",
        true,
    ),
    k("argoproj.io", "v1alpha1", "AppProject", "appprojects", true),
    // OpenShift config
    k(
        "config.openshift.io",
        "v1",
        "Authentication",
        "authentications",
        false,
    ),
    k(
        "config.openshift.io",
        "v1",
        "FeatureGate",
        "featuregates",
        false,
    ),
    k(
        "config.openshift.io",
        "v1",
        "ClusterOperator",
        "clusteroperators",
        false,
    ),
    k(
        "config.openshift.io",
        "v1",
        "ClusterVersion",
        "clusterversions",
        false,
    ),
    k("config.openshift.io", "v1", "DNS", "dnses", false),
    k("route.openshift.io", "v1", "Route", "routes", true),
];

/// A kind ztwim-hub's own code names: it is in [`KNOWN`], so a miss is a bug, not bad input.
pub fn known(api_version: &str, kind: &str) -> &'static Kind {
    find(api_version, kind)
        .unwrap_or_else(|| panic!("{api_version} {kind} is missing from kinds::KNOWN"))
}

/// The known kind for an `apiVersion` and `kind`.
pub fn find(api_version: &str, kind: &str) -> Option<&'static Kind> {
    KNOWN
        .iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_kinds_agree_with_k8s_openapi() {
        use k8s_openapi::Resource;
        fn check<K: Resource>(namespaced: bool) {
            let kind = find(K::API_VERSION, K::KIND).expect(K::KIND);
            assert_eq!(kind.plural, K::URL_PATH_SEGMENT);
            assert_eq!(kind.group, K::GROUP);
            assert_eq!(kind.namespaced, namespaced, "{}", K::KIND);
        }
        use k8s_openapi::api::{
            apps::v1 as apps, core::v1 as core, rbac::v1 as rbac, storage::v1 as storage,
        };
        check::<core::Namespace>(false);
        check::<core::ConfigMap>(true);
        check::<core::Secret>(true);
        check::<core::ServiceAccount>(true);
        check::<core::Service>(true);
        check::<core::Pod>(true);
        check::<apps::Deployment>(true);
        check::<apps::DaemonSet>(true);
        check::<apps::StatefulSet>(true);
        check::<rbac::ClusterRole>(false);
        check::<rbac::ClusterRoleBinding>(false);
        check::<rbac::Role>(true);
        check::<rbac::RoleBinding>(true);
        check::<storage::CSIDriver>(false);
        check::<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>(false);
    }
}
