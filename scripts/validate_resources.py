#!/usr/bin/env python3
"""Validates DockerHost and ProfileSession documents against the CRDs' openAPIV3Schema,
offline: types, patterns, enums, bounds and required fields (jsonschema), unknown fields
refused as strict field validation refuses them, and the CEL duration bounds (the schemas'
x-kubernetes-validations, evaluated for the one form of rule the CRDs use).

Usage: validate_resources.py CRDS.yaml FILE... (YAML files, or Markdown whose ```yaml blocks
holding dockermon.io documents are checked). Exits 1 on the first invalid document.
"""

import re
import sys

import jsonschema
import yaml

DURATION = re.compile(r"^([0-9]+)(ms|s|m|h)$")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
BOUNDS = re.compile(
    r"^(?:self == 'off' \|\| \()?duration\(self\) >= duration\('([^']+)'\) && "
    r"duration\(self\) <= duration\('([^']+)'\)\)?$"
)


def seconds(text):
    match = DURATION.match(text)
    return int(match.group(1)) * UNITS[match.group(2)]


def check(value, schema, path, errors):
    """Unknown fields and the CEL bounds rules, recursively."""
    for rule in schema.get("x-kubernetes-validations", []):
        bounds = BOUNDS.match(rule["rule"])
        if bounds and isinstance(value, str) and DURATION.match(value):
            low, high = (seconds(b) for b in bounds.groups())
            if not low <= seconds(value) <= high:
                errors.append(f"{path}: {value} breaks {rule['rule']!r}")
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                errors.append(f"{path}.{key}: unknown field")
            else:
                check(item, schema["properties"][key], f"{path}.{key}", errors)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            check(item, schema["items"], f"{path}[{i}]", errors)


def documents(name):
    text = open(name).read()
    if name.endswith(".md"):
        blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
        text = "\n---\n".join(b for b in blocks if "dockermon.io/" in b)
    return [d for d in yaml.safe_load_all(text) if d]


def main():
    crds = {}
    for crd in yaml.safe_load_all(open(sys.argv[1])):
        if crd:
            version = crd["spec"]["versions"][0]
            crds[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    checked = 0
    for name in sys.argv[2:]:
        for document in documents(name):
            if not str(document.get("apiVersion", "")).startswith("dockermon.io/"):
                continue
            schema = crds.get(document.get("kind"))
            where = f"{name}: {document.get('kind')} {document.get('metadata', {}).get('name')}"
            if schema is None:
                sys.exit(f"{where}: no CRD for this kind")
            try:
                jsonschema.validate({k: v for k, v in document.items() if k not in ("apiVersion", "kind", "metadata")}, schema)
            except jsonschema.ValidationError as error:
                sys.exit(f"{where}: {error.message} at {'.'.join(map(str, error.absolute_path))}")
            errors = []
            for key in ("spec", "status"):
                if key in document:
                    check(document[key], schema["properties"][key], key, errors)
            if errors:
                sys.exit(f"{where}: " + "; ".join(errors))
            checked += 1
    if checked == 0:
        sys.exit("validate_resources: no document checked")
    print(f"validate_resources: {checked} documents valid against the CRDs")


if __name__ == "__main__":
    main()
