#!/bin/bash
# Writes the kubeconfig rootseald's sync engine reads, from the token Secret
# of its ServiceAccount (deploy/base/service-account.yaml, filled by
# Kubernetes' token controller): OUT_DIR/kubeconfig, OUT_DIR/k8s-token and
# OUT_DIR/k8s-ca.pem (when the Secret has ca.crt), all 0600. The kubeconfig
# names the token with tokenFile, which rootseald re-reads every minute, so
# writing a new k8s-token rotates it without a restart. deploy/kubeconfig.md
# explains it; tests/ops/test_kustomize.py runs it against the Kubernetes
# API double.
#
# Usage: deploy/kubeconfig.sh [--namespace NS] [--secret NAME] [--server URL]
#                             [--cluster-name NAME] [--timeout SECONDS] OUT_DIR
# kubectl runs with the current context (KUBECONFIG, ~/.kube/config) to read
# the Secret; the server written is that context's unless --server is given.
set -euo pipefail

namespace=rootseal-system
secret=rootseal-sync-token
server=
cluster=kubernetes
timeout=60
kubectl=${KUBECTL:-kubectl}

usage() {
  echo "usage: kubeconfig.sh [--namespace NS] [--secret NAME] [--server URL] [--cluster-name NAME] [--timeout SECONDS] OUT_DIR" >&2
  exit 2
}

while (($#)); do
  case "$1" in
    --namespace) namespace=${2:?}; shift 2 ;;
    --secret) secret=${2:?}; shift 2 ;;
    --server) server=${2:?}; shift 2 ;;
    --cluster-name) cluster=${2:?}; shift 2 ;;
    --timeout) timeout=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "kubeconfig.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
(($# == 1)) || usage
out=$1
umask 077
mkdir -p "$out"
out=$(cd "$out" && pwd)

field() {  # a data field of the Secret, base64-decoded ("" if absent)
  local v
  v=$("$kubectl" -n "$namespace" get secret "$secret" -o "jsonpath={.data.${1//./\\.}}")
  [[ -z "$v" ]] || printf %s "$v" | base64 -d
}

type=$("$kubectl" -n "$namespace" get secret "$secret" -o 'jsonpath={.type}')
if [[ "$type" != kubernetes.io/service-account-token ]]; then
  echo "kubeconfig.sh: secret $namespace/$secret has type '$type', not kubernetes.io/service-account-token" >&2
  exit 1
fi
# The token controller fills the Secret shortly after it is created.
deadline=$((SECONDS + timeout))
until [[ -n "$("$kubectl" -n "$namespace" get secret "$secret" -o 'jsonpath={.data.token}')" ]]; do
  if ((SECONDS >= deadline)); then
    echo "kubeconfig.sh: secret $namespace/$secret has no token after ${timeout}s (is the token controller running?)" >&2
    exit 1
  fi
  sleep 1
done
if [[ -z "$server" ]]; then
  server=$("$kubectl" config view --minify -o 'jsonpath={.clusters[0].cluster.server}')
fi
[[ -n "$server" ]] || { echo "kubeconfig.sh: no server in the current context; pass --server" >&2; exit 1; }
account=$("$kubectl" -n "$namespace" get secret "$secret" \
  -o 'jsonpath={.metadata.annotations.kubernetes\.io/service-account\.name}')

tmp=$(mktemp -d "$out/.kubeconfig.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
field token > "$tmp/k8s-token"
field ca.crt > "$tmp/k8s-ca.pem"
ca_line=
if [[ -s "$tmp/k8s-ca.pem" ]]; then
  ca_line=", certificate-authority: \"$out/k8s-ca.pem\""
  mv -f "$tmp/k8s-ca.pem" "$out/k8s-ca.pem"
fi
cat > "$tmp/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $cluster
  cluster: {server: "$server"$ca_line}
users:
- name: ${account:-rootseal-sync}
  user: {tokenFile: "$out/k8s-token"}
contexts:
- name: $cluster
  context: {cluster: $cluster, user: ${account:-rootseal-sync}}
current-context: $cluster
KC
mv -f "$tmp/k8s-token" "$out/k8s-token"
mv -f "$tmp/kubeconfig" "$out/kubeconfig"
echo "wrote $out/kubeconfig (server $server, ServiceAccount $namespace/${account:-?})" >&2
