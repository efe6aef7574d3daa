#!/usr/bin/env bash
# End-to-end on two real kind clusters: kind-config, bootstrap, add-spoke, an Argo CD Application synced
# from the hub to the spoke, a re-run that must change nothing, and (REMOVE=1) remove-spoke.
# docs/kind.md, "CI recipe", explains every step. Needs kind, kubectl and docker; jq is optional.
#
# Environment (defaults in brackets):
#   ZTWIM_HUB  the binary [target/release/ztwim-hub, built with cargo if missing]
#   HUB, SPOKE kind cluster names [hub, spoke]
#   WORK       configs, kubeconfig, outputs, logs [a new mktemp -d]
#   KEEP       1: keep the clusters at the end [0: delete the clusters this script created]
#   REMOVE     1: also run remove-spoke and check the spoke's authentication file is restored [0]
#   APP_REPO, APP_PATH, APP_REVISION  the Application's source
#              [https://github.com/argoproj/argocd-example-apps.git, guestbook, HEAD]
set -euo pipefail

HUB=${HUB:-hub}
SPOKE=${SPOKE:-spoke}
KEEP=${KEEP:-0}
REMOVE=${REMOVE:-0}
APP_REPO=${APP_REPO:-https://github.com/argoproj/argocd-example-apps.git}
APP_PATH=${APP_PATH:-guestbook}
APP_REVISION=${APP_REVISION:-HEAD}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# A relative ZTWIM_HUB is taken from the current directory; the script then works from the repository root.
if [[ ${ZTWIM_HUB:-} == */* && ${ZTWIM_HUB:-} != /* ]]; then ZTWIM_HUB=$PWD/$ZTWIM_HUB; fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ZTWIM_HUB=${ZTWIM_HUB:-${CARGO_TARGET_DIR:-target}/release/ztwim-hub}
AUTHN="$WORK/kind/$SPOKE-authn"
# kind writes the clusters' contexts (client-certificate admins: the lockout guard wants those) here.
export KUBECONFIG="$WORK/kubeconfig"

say() { printf '\n==> %s\n' "$*" >&2; }
fail() {
  echo "error: $*" >&2
  exit 1
}

for tool in kind kubectl docker; do
  command -v "$tool" >/dev/null || fail "$tool is not on PATH"
done
if [[ ! -x $ZTWIM_HUB ]]; then
  say "building $ZTWIM_HUB"
  cargo build --release --locked
fi
for name in "$HUB" "$SPOKE"; do
  if kind get clusters 2>/dev/null | grep -qx "$name"; then
    fail "a kind cluster named $name exists already: delete it, or set HUB/SPOKE to other names"
  fi
done

created=()
diagnose() {
  for name in "${created[@]}"; do
    local ctx="kind-$name"
    say "diagnostics: $ctx"
    kubectl --context "$ctx" get pods -A -o wide
    kubectl --context "$ctx" get pods -A --no-headers |
      awk '{ split($3, r, "/"); if (r[1] != r[2] && $4 != "Completed") print $1, $2 }' |
      while read -r ns pod; do kubectl --context "$ctx" -n "$ns" describe pod "$pod"; done
    kubectl --context "$ctx" get events -A --sort-by=.lastTimestamp | tail -n 40
    kind export logs "$WORK/logs/$name" --name "$name" >/dev/null
  done
  for file in "$WORK"/*.json "$WORK"/*.err; do
    [[ -s $file ]] && say "$file" && cat "$file"
  done
  say "$AUTHN/authentication-config.yaml" && cat "$AUTHN/authentication-config.yaml"
  kubectl --context "kind-$SPOKE" -n kube-system logs "kube-apiserver-$SPOKE-control-plane" --tail=400 |
    grep -iE 'jwt|oidc|authenticat' | tail -n 40
}
finish() {
  local rc=$?
  set +e
  if ((rc != 0)); then
    say "FAILED (exit $rc); outputs and logs in $WORK"
    diagnose
  fi
  if [[ $KEEP == 1 ]]; then
    say "kept the clusters: export KUBECONFIG=$WORK/kubeconfig"
  else
    for name in "${created[@]}"; do kind delete cluster --name "$name"; done
  fi
  exit "$rc"
}
trap finish EXIT

# What a run said on stderr (warnings), and the step table of its JSON report when jq is there.
summary() {
  cat "${1%.json}.err" >&2
  command -v jq >/dev/null || return 0
  jq -r '.steps[] | "  \(.step)  \(.result)  \(.duration)s  " +
    ([.changes[].change] | group_by(.) | map("\(length) \(.[0])") | join(", "))' "$1" >&2
}

# A re-run's report must be ok, must have applied objects, and none of them may have changed.
assert_unchanged() {
  local changed
  if command -v jq >/dev/null; then
    jq -e '.result == "ok" and ([.steps[].changes[]] | length > 0)' "$1" >/dev/null ||
      fail "$1: not ok, or no objects applied"
    changed=$(jq -r '.steps[] | .step as $s | .changes[] | select(.change != "unchanged")
      | "\($s): \(.object) \(.change)"' "$1")
  else
    grep -q '"change": *"unchanged"' "$1" || fail "$1: no objects applied"
    changed=$(grep -oE '"change": *"[a-z-]+"' "$1" | grep -v '"unchanged"' || true)
  fi
  [[ -z $changed ]] || fail "the re-run changed objects ($1):"$'\n'"$changed"
}

say "kind configs in $WORK/kind"
"$ZTWIM_HUB" kind-config --hub "$HUB" --spoke "$SPOKE" --dir "$WORK/kind"
cp "$AUTHN/authentication-config.yaml" "$WORK/authentication-config.initial.yaml"
for name in "$HUB" "$SPOKE"; do
  say "kind create cluster --name $name"
  created+=("$name")
  kind create cluster --name "$name" --config "$WORK/kind/$name.yaml" --wait 120s
done

say "bootstrap kind-$HUB"
"$ZTWIM_HUB" bootstrap --context "kind-$HUB" --yes -o json >"$WORK/bootstrap.json" 2>"$WORK/bootstrap.err"
summary "$WORK/bootstrap.json"

say "add-spoke kind-$SPOKE"
"$ZTWIM_HUB" add-spoke --hub-context "kind-$HUB" --spoke-context "kind-$SPOKE" --name "$SPOKE" \
  --authn-config-dir "$AUTHN" --state-dir "$WORK/state" --yes -o json >"$WORK/add-spoke.json" 2>"$WORK/add-spoke.err"
summary "$WORK/add-spoke.json"

say "Application guestbook: $APP_REPO $APP_PATH@$APP_REVISION to $SPOKE"
kubectl --context "kind-$HUB" apply -f - <<EOF
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: guestbook
  namespace: argocd
spec:
  project: default
  source:
    repoURL: $APP_REPO
    path: $APP_PATH
    targetRevision: $APP_REVISION
  destination:
    name: $SPOKE
    namespace: guestbook
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - CreateNamespace=true
EOF
for want in '{.status.sync.status}'=Synced '{.status.health.status}'=Healthy; do
  kubectl --context "kind-$HUB" -n argocd wait applications.argoproj.io/guestbook \
    --for=jsonpath="$want" --timeout=300s
done
kubectl --context "kind-$SPOKE" -n guestbook rollout status deployment/guestbook-ui --timeout=120s

say "re-run: bootstrap and add-spoke must change nothing"
"$ZTWIM_HUB" bootstrap --context "kind-$HUB" --yes -o json >"$WORK/bootstrap-rerun.json" 2>"$WORK/bootstrap-rerun.err"
assert_unchanged "$WORK/bootstrap-rerun.json"
"$ZTWIM_HUB" add-spoke --hub-context "kind-$HUB" --spoke-context "kind-$SPOKE" --name "$SPOKE" \
  --authn-config-dir "$AUTHN" --state-dir "$WORK/state" --yes -o json >"$WORK/add-spoke-rerun.json" 2>"$WORK/add-spoke-rerun.err"
assert_unchanged "$WORK/add-spoke-rerun.json"

if [[ $REMOVE == 1 ]]; then
  say "remove-spoke kind-$SPOKE"
  kubectl --context "kind-$HUB" -n argocd delete applications.argoproj.io/guestbook --wait
  "$ZTWIM_HUB" remove-spoke --hub-context "kind-$HUB" --spoke-context "kind-$SPOKE" --name "$SPOKE" \
    --authn-config-dir "$AUTHN" --state-dir "$WORK/state" --yes -o json >"$WORK/remove-spoke.json" 2>"$WORK/remove-spoke.err"
  summary "$WORK/remove-spoke.json"
  cmp "$WORK/authentication-config.initial.yaml" "$AUTHN/authentication-config.yaml" ||
    fail "remove-spoke did not restore the spoke's initial authentication file"
fi

say "ok: $SPOKE is managed by Argo CD on $HUB with SPIFFE identities (outputs in $WORK)"
