#!/usr/bin/env python3
"""Regenerates the doc-derived seeds of tests/fuzz/corpus/{eso_manifest,config_yaml}.

Sources: the YAML examples in docs/*.md and deploy/*.md (ESO resources and
rootseald.yaml sections), and the examples of the upstream ESO documentation
(external-secrets.io: ExternalSecret, SecretStore per provider,
ClusterSecretStore conditions, PushSecret) and of the Kubernetes kubeconfig
documentation, below. ESO resources are written as the Kubernetes API returns
them: JSON, with the metadata the API server adds.
Run from the checkout root: python3 tests/fuzz/seeds/from_docs.py
"""
import glob
import json
import os
import re

import yaml

OUT = "tests/fuzz/corpus"
ESO_KINDS = {"ExternalSecret", "SecretStore", "ClusterSecretStore", "PushSecret"}

UPSTREAM_ESO = r"""
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: hello-world}
spec:
  refreshInterval: "1h"
  secretStoreRef: {name: secret-store-name, kind: SecretStore}
  target:
    name: my-secret
    creationPolicy: Merge
    template:
      type: kubernetes.io/dockerconfigjson
      metadata: {annotations: {}, labels: {}}
      data:
        config.yml: |
          endpoints:
          - https://{{ .user }}:{{ .password }}@api.example.com
  data:
  - secretKey: secret-key-to-be-managed
    remoteRef: {key: provider-key, version: provider-key-version, property: provider-key-property}
  dataFrom:
  - extract: {key: provider-key, version: provider-key-version, property: provider-key-property}
---
apiVersion: external-secrets.io/v1beta1
kind: ExternalSecret
metadata: {name: vault-example}
spec:
  refreshInterval: "15s"
  secretStoreRef: {name: vault-backend, kind: SecretStore}
  target: {name: example-sync}
  data:
  - secretKey: foobar
    remoteRef: {key: foo, property: my-value}
  - secretKey: tags
    remoteRef: {key: foo, property: tags.0, decodingStrategy: Base64}
  dataFrom:
  - extract: {key: foo}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: template-v2}
spec:
  secretStoreRef: {name: aws, kind: ClusterSecretStore}
  target:
    name: secret-to-be-created
    deletionPolicy: Delete
    template:
      engineVersion: v2
      mergePolicy: Merge
      data:
        name: "admin"
        password: "{{ .mysecret | toString | upper }}-{{ .other | b64enc }}"
        dsn: '{{ (.json | fromJson).host }}:{{ index (.json | fromJson) "port" | toJson }}'
  data:
  - secretKey: mysecret
    remoteRef: {key: /credentials/db}
  - secretKey: json
    remoteRef: {key: /credentials/db-json, version: AWSCURRENT}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: vault-backend}
spec:
  provider:
    vault:
      server: "http://my.vault.server:8200"
      path: "secret"
      version: "v2"
      auth:
        tokenSecretRef: {name: vault-token, key: token}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: vault-approle}
spec:
  provider:
    vault:
      server: "https://vault.acme.org"
      path: "secret"
      version: "v2"
      namespace: "admin"
      caBundle: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJmYWtlCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
      auth:
        appRole:
          path: "approle"
          roleId: "db02de05-fa39-4855-059b-67221c5c2f63"
          secretRef: {name: vault-secret, key: secret-id}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: secretstore-sample}
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      auth:
        secretRef:
          accessKeyIDSecretRef: {name: awssm-secret, key: access-key}
          secretAccessKeySecretRef: {name: awssm-secret, key: secret-access-key}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: azure-store}
spec:
  provider:
    azurekv:
      tenantId: "d3bc2180-cb1e-40f7-b59a-154105743342"
      vaultUrl: "https://my-keyvault-name.vault.azure.net"
      authSecretRef:
        clientId: {name: azure-secret-sp, key: ClientID}
        clientSecret: {name: azure-secret-sp, key: ClientSecret}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: gcp-store}
spec:
  provider:
    gcpsm:
      auth:
        secretRef:
          secretAccessKeySecretRef: {name: gcpsm-secret, key: secret-access-credentials}
      projectID: alphabet-123
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: example}
spec:
  conditions:
  - namespaceSelector:
      matchLabels: {my.namespace.io/some-label: "value"}
  - namespaceSelector:
      matchExpressions:
      - {key: team, operator: In, values: [a, b]}
      - {key: tier, operator: NotIn, values: [dev]}
      - {key: owner, operator: Exists}
      - {key: legacy, operator: DoesNotExist}
  - namespaces: ["namespace-a", "namespace-b"]
  provider:
    vault:
      server: "http://my.vault.server:8200"
      path: "secret"
      version: "v2"
      auth:
        tokenSecretRef: {name: vault-token, key: token, namespace: external-secrets}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: pushsecret-example}
spec:
  deletionPolicy: Delete
  refreshInterval: 10s
  updatePolicy: Replace
  secretStoreRefs:
  - {name: aws-parameterstore, kind: SecretStore}
  selector:
    secret: {name: pokedex-credentials}
  data:
  - match:
      secretKey: best-pokemon
      remoteRef: {remoteKey: my-first-parameter, property: pokemon}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: pushsecret-template}
spec:
  updatePolicy: IfNotExists
  secretStoreRefs:
  - {name: gcp-store, kind: ClusterSecretStore}
  selector:
    secret: {name: source}
  template:
    data:
      token: "{{ .token | b64dec }}"
  data:
  - match:
      secretKey: token
      remoteRef: {remoteKey: team-token}
"""

KUBECONFIGS = {
    # kubernetes.io "Organizing Cluster Access Using kubeconfig Files" and the tests' shapes.
    "kubeconfig_docs": """apiVersion: v1
kind: Config
preferences: {}
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJmYWtlCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K
    server: https://1.2.3.4:6443
  name: development
- cluster:
    insecure-skip-tls-verify: true
    server: http://127.0.0.1:8080
  name: test
contexts:
- context:
    cluster: development
    namespace: frontend
    user: developer
  name: dev-frontend
- context:
    cluster: test
    user: experimenter
  name: exp-test
current-context: dev-frontend
users:
- name: developer
  user:
    token: eyJhbGciOiJSUzI1NiJ9.payload.signature
- name: experimenter
  user:
    username: exp
    password: some-password
""",
    "kubeconfig_files": """apiVersion: v1
kind: Config
current-context: a
clusters:
- name: c
  cluster:
    server: https://api.internal:6443/
    certificate-authority: pki/ca.crt
    tls-server-name: kubernetes.default
contexts:
- name: a
  context: {cluster: c, user: u, namespace: team-a}
users:
- name: u
  user:
    tokenFile: /var/run/secrets/token
""",
    "kubeconfig_exec": """current-context: a
clusters: [{name: c, cluster: {server: "https://x"}}]
contexts: [{name: a, context: {cluster: c, user: u}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: aws, args: [eks, get-token]}}}]
""",
}

API_META = {"namespace": "default", "uid": "6f1e3c1a-5c0b-4b7e-9a53-2f7d7e1c0a11", "resourceVersion": "12345",
            "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"}


def as_api_object(d):
    d = json.loads(json.dumps(d))  # a copy with JSON types only
    meta = d.setdefault("metadata", {})
    for k, v in API_META.items():
        if k == "namespace" and d.get("kind") == "ClusterSecretStore":
            continue
        meta.setdefault(k, v)
    return d


def slug(s):
    return re.sub(r"[^a-z0-9]+", "_", s.lower()).strip("_")[:60]


def write(folder, name, text):
    os.makedirs(os.path.join(OUT, folder), exist_ok=True)
    with open(os.path.join(OUT, folder, name), "w") as f:
        f.write(text)


def main():
    docs = []
    for path in sorted(glob.glob("docs/*.md") + glob.glob("deploy/*.md")):
        text = open(path).read()
        for i, m in enumerate(re.finditer(r"```ya?ml\n(.*?)```", text, re.S)):
            try:
                docs += [(os.path.basename(path)[:-3] + str(i), d) for d in yaml.safe_load_all(m.group(1))]
            except yaml.YAMLError:
                continue
    docs += [("upstream", d) for d in yaml.safe_load_all(UPSTREAM_ESO)]
    for origin, d in docs:
        if not isinstance(d, dict):
            continue
        if d.get("kind") in ESO_KINDS:
            name = slug(origin + "_" + d["kind"] + "_" + str(d.get("metadata", {}).get("name", "")))
            write("eso_manifest", name, json.dumps(as_api_object(d), indent=1))
        elif "sync" in d and origin != "upstream":
            write("config_yaml", "sync_" + slug(origin), "sync\n" + yaml.safe_dump(d["sync"], sort_keys=False))
            write("config_yaml", "rootseald_" + slug(origin), "rootseald\n" + yaml.safe_dump(d, sort_keys=False))
        elif origin != "upstream" and d.get("kind") is None and "spec" not in d:
            write("config_yaml", "rootseald_" + slug(origin), "rootseald\n" + yaml.safe_dump(d, sort_keys=False))
    for name, text in KUBECONFIGS.items():
        write("config_yaml", name, "kubeconfig\n" + text)


if __name__ == "__main__":
    main()
