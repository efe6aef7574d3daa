#!/usr/bin/env bash
# Replays the runbook (/work/shared/mission/README.md) against kubesim with kubectl only.
#
# Part "hub": ZTWIM (SPIRE) and Argo CD on the management cluster, then the identity check
# in the argocd-server pod. Part "spoke": external OIDC trusting the hub, RBAC, the Argo CD
# registration and a smoke-test Application, ending with `kubectl auth whoami --token`.
#
# Inputs (environment):
#   KUBECONFIG     kubeconfig with the contexts below (admin client certificates)
#   KUBESIM_ENV    kubesim's env file (HTTPS_PROXY for the simulated ingress hosts); optional
#   HUB_CONTEXT    context of the hub (default: hub)
#   SPOKE_CONTEXT  context of the spoke (default: spoke)
#   KUBECTL        kubectl to use (default: kubectl)
#   WAIT_SECONDS   how long any single wait may take (default: 120)
#
#   SMOKE_DIR      a directory for the smoke-test manifests (Argo CD reads it as file://)
#
# Prints "hub: OK" and "spoke: OK" as the parts pass; exits non-zero with "FAIL: ..." otherwise.
set -euo pipefail

HUB=${HUB_CONTEXT:-hub}
KUBECTL=${KUBECTL:-kubectl}
WAIT_SECONDS=${WAIT_SECONDS:-120}
T="${WAIT_SECONDS}s"
if [ -n "${KUBESIM_ENV:-}" ]; then
    # shellcheck disable=SC1090
    . "$KUBESIM_ENV"
fi

SPOKE=${SPOKE_CONTEXT:-spoke}
hub() { "$KUBECTL" --context "$HUB" "$@"; }
spoke() { "$KUBECTL" --context "$SPOKE" "$@"; }
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }

# Wait until a kubectl command succeeds (e.g. an object that an operator creates exists).
wait_until() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for: $*"
        sleep 0.5
    done
}

# Wait until a jsonpath of an object is non-empty; prints it.
wait_value() {
    local deadline=$((SECONDS + WAIT_SECONDS)) value=""
    while :; do
        value=$("$@" 2>/dev/null || true)
        [ -n "$value" ] && { printf '%s' "$value"; return 0; }
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for a value from: $*"
        sleep 0.5
    done
}

# Decode a base64url JWT segment.
b64url_decode() {
    local s
    s=$(printf '%s' "$1" | tr '_-' '/+')
    while [ $(( ${#s} % 4 )) -ne 0 ]; do s="$s="; done
    printf '%s' "$s" | base64 -d
}

# A string field of a JSON text (flat enough for grep; the runbook has no jq).
json_field() {
    printf '%s' "$1" | tr -d '\n' | grep -o "\"$2\": *\"[^\"]*\"" | head -n1 | sed 's/.*: *"\(.*\)"/\1/'
}

ZTWIM_NS=zero-trust-workload-identity-manager
GITOPS_NS=ztwim-gitops
INSTANCE=openshift-gitops

###############################################################################################
# Hub, part 1: ZTWIM (SPIFFE/SPIRE)
###############################################################################################

step "hub 1.1: discover the apps domain and the operator channel"
BASE_DOMAIN=$(hub get dns.config.openshift.io cluster -o jsonpath='{.spec.baseDomain}')
APPS_DOMAIN="apps.${BASE_DOMAIN}"
CHANNEL=$(hub -n openshift-marketplace get packagemanifest openshift-zero-trust-workload-identity-manager \
    -o jsonpath='{.status.defaultChannel}')
[ -n "$CHANNEL" ] || fail "no default channel for the ZTWIM package"
TRUST_DOMAIN="$APPS_DOMAIN"
ISSUER="https://spire-spiffe-oidc-discovery-provider.${APPS_DOMAIN}"
echo "apps domain $APPS_DOMAIN, channel $CHANNEL, issuer $ISSUER"

step "hub 1.2: the ZTWIM operator through OLM"
hub apply --server-side -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: ${ZTWIM_NS}
---
apiVersion: operators.coreos.com/v1
kind: OperatorGroup
metadata:
  name: openshift-zero-trust-workload-identity-manager
  namespace: ${ZTWIM_NS}
spec:
  upgradeStrategy: Default
---
apiVersion: operators.coreos.com/v1alpha1
kind: Subscription
metadata:
  name: openshift-zero-trust-workload-identity-manager
  namespace: ${ZTWIM_NS}
spec:
  name: openshift-zero-trust-workload-identity-manager
  channel: ${CHANNEL}
  source: redhat-operators
  sourceNamespace: openshift-marketplace
  installPlanApproval: Automatic
EOF
wait_until hub get crd/spireservers.operator.openshift.io
hub wait --for=condition=Established --timeout="$T" crd/spireservers.operator.openshift.io
CSV=$(wait_value hub -n "$ZTWIM_NS" get subscription openshift-zero-trust-workload-identity-manager \
    -o jsonpath='{.status.installedCSV}')
wait_until hub -n "$ZTWIM_NS" get csv "$CSV"
hub -n "$ZTWIM_NS" wait --for=jsonpath='{.status.phase}'=Succeeded --timeout="$T" csv/"$CSV"
hub -n "$ZTWIM_NS" wait --for=condition=Available --timeout="$T" deployment -l name=zero-trust-workload-identity-manager

step "hub 1.3: the operands (SpireServer, SpireAgent, SpiffeCSIDriver, SpireOIDCDiscoveryProvider, ZTWIM)"
hub apply --server-side -f - <<EOF
apiVersion: operator.openshift.io/v1alpha1
kind: SpireServer
metadata:
  name: cluster
spec:
  jwtIssuer: ${ISSUER}
  caValidity: 24h
  defaultX509Validity: 1h
  defaultJWTValidity: 5m
  caSubject:
    commonName: SPIRE Server CA
    country: US
    organization: kubesim
  persistence:
    size: 5Gi
    accessMode: ReadWriteOnce
  datastore:
    databaseType: sqlite3
    connectionString: /run/spire/data/datastore.sqlite3
---
apiVersion: operator.openshift.io/v1alpha1
kind: SpireAgent
metadata:
  name: cluster
spec:
  nodeAttestor:
    k8sPSATEnabled: "true"
  workloadAttestors:
    k8sEnabled: "true"
    workloadAttestorsVerification:
      type: auto
---
apiVersion: operator.openshift.io/v1alpha1
kind: SpiffeCSIDriver
metadata:
  name: cluster
spec:
  agentSocketPath: /run/spire/agent-sockets
---
apiVersion: operator.openshift.io/v1alpha1
kind: SpireOIDCDiscoveryProvider
metadata:
  name: cluster
spec:
  jwtIssuer: ${ISSUER}
  csiDriverName: csi.spiffe.io
  managedRoute: "true"
---
apiVersion: operator.openshift.io/v1alpha1
kind: ZeroTrustWorkloadIdentityManager
metadata:
  name: cluster
spec:
  trustDomain: ${TRUST_DOMAIN}
  clusterName: management-cluster
  bundleConfigMap: spire-bundle
EOF

step "hub 1.4: verify: Ready, pods, Route, discovery document"
hub wait --for=condition=Ready --timeout="$T" zerotrustworkloadidentitymanager/cluster
for kind in spireserver spireagent spiffecsidriver spireoidcdiscoveryprovider; do
    hub wait --for=condition=Ready --timeout="$T" "$kind/cluster"
done
hub -n "$ZTWIM_NS" wait --for=condition=Ready --timeout="$T" pod/spire-server-0
expect_eq "$(hub -n "$ZTWIM_NS" get pod spire-server-0 -o jsonpath='{range .status.containerStatuses[*]}{.ready} {end}')" \
    "true true " "spire-server-0 containers ready (2/2)"
for ds in spire-agent spire-spiffe-csi-driver; do
    desired=$(hub -n "$ZTWIM_NS" get daemonset "$ds" -o jsonpath='{.status.desiredNumberScheduled}')
    ready=$(hub -n "$ZTWIM_NS" get daemonset "$ds" -o jsonpath='{.status.numberReady}')
    [ "${desired:-0}" -gt 0 ] || fail "$ds schedules no pod"
    expect_eq "$ready" "$desired" "$ds pods ready (one per node)"
done
hub -n "$ZTWIM_NS" wait --for=condition=Available --timeout="$T" deployment/spire-spiffe-oidc-discovery-provider
ROUTE_HOST=$(hub -n "$ZTWIM_NS" get route spire-oidc-discovery-provider -o jsonpath='{.spec.host}')
expect_eq "https://${ROUTE_HOST}" "$ISSUER" "route host"
if command -v curl >/dev/null 2>&1 && [ -n "${HTTPS_PROXY:-}" ]; then
    CA_FILE=$(mktemp)
    trap 'rm -f "$CA_FILE"' EXIT
    hub -n openshift-config-managed get configmap default-ingress-cert -o jsonpath='{.data.ca-bundle\.crt}' >"$CA_FILE"
    DOC=$(curl --silent --show-error --fail --cacert "$CA_FILE" --proxy "$HTTPS_PROXY" \
        "https://${ROUTE_HOST}/.well-known/openid-configuration")
    expect_eq "$(json_field "$DOC" issuer)" "$ISSUER" "discovery issuer"
    expect_eq "$(json_field "$DOC" jwks_uri)" "https://${ROUTE_HOST}/keys" "discovery jwks_uri"
    KEYS=$(curl --silent --show-error --fail --cacert "$CA_FILE" --proxy "$HTTPS_PROXY" "https://${ROUTE_HOST}/keys")
    [ -n "$(json_field "$KEYS" kid)" ] || fail "the JWKS has no key with a kid"
    echo "discovery document and JWKS served for $ROUTE_HOST"
else
    echo "curl or HTTPS_PROXY missing: skipping the HTTPS checks"
fi

step "hub 1.5: read back the trust domain, issuer and bundle"
SERVER_CONF=$(hub -n "$ZTWIM_NS" get configmap spire-server -o jsonpath='{.data.server\.conf}')
expect_eq "$(json_field "$SERVER_CONF" trust_domain)" "$TRUST_DOMAIN" "server.conf .server.trust_domain"
expect_eq "$(json_field "$SERVER_CONF" jwt_issuer)" "$ISSUER" "server.conf .server.jwt_issuer"
hub -n "$ZTWIM_NS" get configmap spire-bundle -o jsonpath='{.data.bundle\.crt}' | grep -q 'BEGIN CERTIFICATE' \
    || fail "spire-bundle has no bundle.crt"

###############################################################################################
# Hub, part 2: Argo CD (OpenShift GitOps)
###############################################################################################

step "hub 2.1: the GitOps operator through OLM, without its default instance"
hub apply --server-side -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: openshift-gitops-operator
  labels:
    openshift.io/cluster-monitoring: "true"
---
apiVersion: operators.coreos.com/v1
kind: OperatorGroup
metadata:
  name: openshift-gitops-operator
  namespace: openshift-gitops-operator
spec: {}
---
apiVersion: operators.coreos.com/v1alpha1
kind: Subscription
metadata:
  name: openshift-gitops-operator
  namespace: openshift-gitops-operator
spec:
  name: openshift-gitops-operator
  channel: latest
  source: redhat-operators
  sourceNamespace: openshift-marketplace
  installPlanApproval: Automatic
  config:
    env:
      - name: DISABLE_DEFAULT_ARGOCD_INSTANCE
        value: "true"
EOF
wait_until hub get crd/argocds.argoproj.io
hub wait --for=condition=Established --timeout="$T" crd/argocds.argoproj.io
GITOPS_CSV=$(wait_value hub -n openshift-gitops-operator get subscription openshift-gitops-operator \
    -o jsonpath='{.status.installedCSV}')
wait_until hub -n openshift-gitops-operator get csv "$GITOPS_CSV"
hub -n openshift-gitops-operator wait --for=jsonpath='{.status.phase}'=Succeeded --timeout="$T" csv/"$GITOPS_CSV"

step "hub 2.2/2.3: the Argo CD instance, with the exec plugin and the SPIFFE CSI volume"
plumbing() {
    cat <<EOF
    initContainers:
      - name: install-jwt-spiffe
        image: registry.redhat.io/ubi9/ubi:latest
        env:
          - name: EXEC_AUTH_URL
            value: https://github.com/spiffe/k8s-spiffe-workload-jwt-exec-auth/releases/download/v0.0.7/k8s-spiffe-workload-jwt-exec-auth_Linux_x86_64.tar.gz
        command: ["/bin/sh", "-c"]
        args:
          - curl -sL "\$EXEC_AUTH_URL" | tar -xz -C /tmp && mv /tmp/k8s-spiffe-workload-jwt-exec-auth /binaries/
        volumeMounts:
          - name: binaries
            mountPath: /binaries
    volumeMounts:
      - name: binaries
        mountPath: /binaries
      - name: spiffe-workload-api
        mountPath: /run/spire/sockets
        readOnly: true
    volumes:
      - name: binaries
        emptyDir: {}
      - name: spiffe-workload-api
        csi:
          driver: csi.spiffe.io
          readOnly: true
EOF
}
hub apply --server-side -f - <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: ${GITOPS_NS}
---
apiVersion: argoproj.io/v1beta1
kind: ArgoCD
metadata:
  name: ${INSTANCE}
  namespace: ${GITOPS_NS}
spec:
  controller:
$(plumbing)
  server:
    host: ztwim-gitops.${APPS_DOMAIN}
    route:
      enabled: true
      tls:
        termination: reencrypt
        insecureEdgeTerminationPolicy: Redirect
$(plumbing)
  ha:
    enabled: false
EOF
wait_until hub -n "$GITOPS_NS" get argocd "$INSTANCE" -o jsonpath='{.status.phase}'
hub -n "$GITOPS_NS" wait --for=jsonpath='{.status.phase}'=Available --timeout="$T" argocd/"$INSTANCE"
for sa in "${INSTANCE}-argocd-server" "${INSTANCE}-argocd-application-controller"; do
    hub -n "$GITOPS_NS" get serviceaccount "$sa" >/dev/null || fail "service account $sa missing"
done
if hub -n openshift-gitops get argocd openshift-gitops >/dev/null 2>&1; then
    fail "the default Argo CD instance exists although DISABLE_DEFAULT_ARGOCD_INSTANCE=true"
fi

step "hub 2.5: verify the identity flow in the argocd-server container"
SERVER_POD=$(wait_value hub -n "$GITOPS_NS" get pod -l "app.kubernetes.io/name=${INSTANCE}-server" \
    -o jsonpath='{.items[0].metadata.name}')
hub -n "$GITOPS_NS" wait --for=condition=Ready --timeout="$T" pod/"$SERVER_POD"
CREDENTIAL=$(hub -n "$GITOPS_NS" exec "$SERVER_POD" -c argocd-server -- \
    env SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/sockets/spire-agent.sock SPIFFE_JWT_AUDIENCE=openshift-spoke \
    /binaries/k8s-spiffe-workload-jwt-exec-auth)
printf '%s\n' "$CREDENTIAL" | grep -qx 'apiVersion: client.authentication.k8s.io/v1' || fail "not an ExecCredential v1: $CREDENTIAL"
TOKEN=$(printf '%s\n' "$CREDENTIAL" | sed -n 's/^  token: //p')
[ -n "$TOKEN" ] || fail "no token in: $CREDENTIAL"
PAYLOAD=$(b64url_decode "$(printf '%s' "$TOKEN" | cut -d. -f2)")
EXPECTED_SUB="spiffe://${TRUST_DOMAIN}/ns/${GITOPS_NS}/sa/${INSTANCE}-argocd-server"
expect_eq "$(json_field "$PAYLOAD" sub)" "$EXPECTED_SUB" "token sub"
expect_eq "$(json_field "$PAYLOAD" iss)" "$ISSUER" "token iss"
printf '%s' "$PAYLOAD" | grep -q '"aud":\["openshift-spoke"\]' || fail "token aud: $PAYLOAD"
echo "token for $EXPECTED_SUB"

echo
echo "hub: OK"

###############################################################################################
# Spoke
###############################################################################################

step "spoke 1: below 4.20, the TechPreviewNoUpgrade feature set (irreversible), then ExternalOIDC"
SPOKE_VERSION=$(spoke get clusterversion version -o jsonpath='{.status.desired.version}')
echo "spoke runs OpenShift $SPOKE_VERSION"
revision() { spoke get clusteroperator kube-apiserver \
    -o jsonpath='{.status.conditions[?(@.type=="Available")].message}' | sed -n 's/.*at revision \([0-9]*\).*/\1/p'; }
# Wait until the kube-apiserver runs a revision above $1 and no longer progresses.
wait_rollout() {
    local deadline=$((SECONDS + WAIT_SECONDS)) rev progressing
    while :; do
        rev=$(revision)
        progressing=$(spoke get clusteroperator kube-apiserver \
            -o jsonpath='{.status.conditions[?(@.type=="Progressing")].status}')
        if [ -n "$rev" ] && [ "$rev" -gt "$1" ] && [ "$progressing" = "False" ]; then
            echo "kube-apiserver at revision $rev"
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for the kube-apiserver rollout (revision $rev)"
        sleep 0.5
    done
}
feature_gate_enabled() {
    spoke get featuregate cluster -o jsonpath='{.status.featureGates[0].enabled[*].name}' | grep -qw ExternalOIDC
}
case "$SPOKE_VERSION" in
4.19|4.19.*)
    BEFORE=$(revision)
    spoke patch featuregate cluster --type=merge -p '{"spec":{"featureSet":"TechPreviewNoUpgrade"}}'
    wait_until feature_gate_enabled
    wait_rollout "$BEFORE"
    ;;
esac

step "spoke 2: the issuer's CA (the hub's ingress CA) in openshift-config"
INGRESS_CA=$(hub -n openshift-config-managed get configmap default-ingress-cert -o jsonpath='{.data.ca-bundle\.crt}')
[ -n "$INGRESS_CA" ] || fail "the hub publishes no ingress CA"
spoke apply --server-side -f - <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: ztwim-oidc-issuer-ca
  namespace: openshift-config
data:
  ca-bundle.crt: |
$(printf '%s\n' "$INGRESS_CA" | sed 's/^/    /')
EOF

step "spoke 3: Authentication cluster trusts the hub's SPIRE OIDC issuer"
BEFORE=$(revision)
spoke patch authentication cluster --type=merge -p "{\"spec\": {\"type\": \"OIDC\", \"webhookTokenAuthenticator\": null,
  \"oidcProviders\": [{\"name\": \"ztwim-oidc-server\",
    \"issuer\": {\"issuerURL\": \"${ISSUER}\", \"audiences\": [\"openshift-spoke\"],
                 \"issuerCertificateAuthority\": {\"name\": \"ztwim-oidc-issuer-ca\"}},
    \"claimMappings\": {\"username\": {\"claim\": \"sub\", \"prefixPolicy\": \"NoPrefix\"}, \"groups\": {\"claim\": \"groups\"}},
    \"oidcClients\": [{\"clientID\": \"openshift-cli\", \"componentName\": \"cli\", \"componentNamespace\": \"openshift-console\"}]}]}}"

step "spoke 4: the kube-apiserver rolls out a new revision"
wait_rollout "$BEFORE"

step "spoke 5: the hub's JWT-SVID authenticates on the spoke as the SPIFFE ID; it may do nothing yet"
# Only the token: a client certificate from the context would authenticate first.
SPOKE_SERVER=$(spoke config view --minify -o jsonpath='{.clusters[0].cluster.server}')
SPOKE_CA=$(spoke config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
TOKEN_DIR=$(mktemp -d)
printf '%s' "$SPOKE_CA" | base64 -d > "$TOKEN_DIR/ca.crt"
: > "$TOKEN_DIR/empty-kubeconfig"
with_token() {
    "$KUBECTL" --kubeconfig "$TOKEN_DIR/empty-kubeconfig" --server "$SPOKE_SERVER" \
        --certificate-authority "$TOKEN_DIR/ca.crt" --token "$TOKEN" "$@"
}
expect_eq "$(with_token auth whoami -o jsonpath='{.status.userInfo.username}')" "$EXPECTED_SUB" "username on the spoke"
if with_token get namespaces >/dev/null 2>&1; then
    fail "the SPIFFE ID may list namespaces before any RBAC"
fi

step "spoke 6: RBAC for the Argo CD server and application controller"
CONTROLLER_SUB="spiffe://${TRUST_DOMAIN}/ns/${GITOPS_NS}/sa/${INSTANCE}-argocd-application-controller"
spoke apply --server-side -f - <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ztwim-gitops-admins
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: ${EXPECTED_SUB}
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: ${CONTROLLER_SUB}
EOF
with_token get namespaces >/dev/null || fail "the SPIFFE ID may not list namespaces after RBAC"

step "spoke 7: register the spoke in Argo CD (no token: the exec plugin)"
hub apply --server-side -f - <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: spoke-cluster
  namespace: ${GITOPS_NS}
  labels:
    argocd.argoproj.io/secret-type: cluster
stringData:
  name: spoke-cluster
  server: ${SPOKE_SERVER}
  config: |
    {"tlsClientConfig": {"insecure": false, "caData": "${SPOKE_CA}"},
     "execProviderConfig": {"command": "/binaries/k8s-spiffe-workload-jwt-exec-auth",
       "apiVersion": "client.authentication.k8s.io/v1beta1",
       "env": {"SPIFFE_ENDPOINT_SOCKET": "unix:///run/spire/sockets/spire-agent.sock",
               "SPIFFE_JWT_AUDIENCE": "openshift-spoke", "EXEC_CREDENTIAL_VERSION": "v1beta1"}}}
EOF

step "spoke 8: smoke test: an Application deploys to the spoke by name"
[ -n "${SMOKE_DIR:-}" ] || fail "SMOKE_DIR is not set"
cat > "$SMOKE_DIR/smoke.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: runbook-smoke
  namespace: runbook-smoke
data:
  message: deployed through the hub
EOF
hub apply --server-side -f - <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: runbook-smoke
  namespace: ${GITOPS_NS}
spec:
  project: default
  source:
    repoURL: file://${SMOKE_DIR}
    path: .
  destination:
    name: spoke-cluster
    namespace: runbook-smoke
  syncPolicy:
    automated: {}
    syncOptions: [CreateNamespace=true]
EOF
hub -n "$GITOPS_NS" wait --for=jsonpath='{.status.sync.status}'=Synced --timeout="$T" application/runbook-smoke
hub -n "$GITOPS_NS" wait --for=jsonpath='{.status.health.status}'=Healthy --timeout="$T" application/runbook-smoke
spoke -n runbook-smoke get configmap runbook-smoke >/dev/null || fail "the smoke-test ConfigMap is not on the spoke"

step "spoke 9: the JWT-SVID from the argocd-server pod, as kubectl sees it on the spoke"
with_token auth whoami
expect_eq "$(with_token auth whoami -o jsonpath='{.status.userInfo.username}')" "$EXPECTED_SUB" "whoami --token"
spoke auth whoami >/dev/null || fail "the certificate admin no longer works"

echo
echo "spoke: OK"
