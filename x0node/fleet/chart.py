"""The Helm chart fleet/helm/x0node rendered without Helm, and its manifests checked offline.

Rules and invariants:
- The templates use only value substitution, a subset of Helm's template language that this module
  renders exactly as Helm does: `{{ .Values.a.b }}`, `{{ .Release.Name }}`, `{{ .Release.Namespace }}`,
  `{{ .Chart.Name }}`, `{{ .Chart.Version }}`, `{{ .Chart.AppVersion }}`, each optionally `| quote`;
  `{{ toJson .Values.x }}`; `{{- toYaml .Values.x | nindent N }}`. No conditionals, loops or other
  functions: any other action is a ChartError naming the template and the action (so a template cannot
  silently render differently here than under Helm).
- `validate(docs)` checks each rendered manifest against the Kubernetes JSON schemas of
  K8S_SCHEMA_VERSION in their strict form (kubernetes-validate: generated from the Kubernetes OpenAPI
  document; unknown fields, wrong types and missing required fields fail), then what the schemas cannot
  say: every StatefulSet's selector matches its pod labels, the mesh port is the routing core's, names are DNS-1123 labels, every volume a
  container mounts is declared, and the config.toml in the ConfigMap passes the daemon's own config
  validation (x0node.daemon.config). Not checked: admission (e.g. whether a cluster allows the
  forwarding sysctl, which Kubernetes counts as unsafe), scheduling, and CNI behaviour (multicast on
  the pod network).
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import yaml

from x0node.fleet.checks import FLEET_DIR

CHART_DIR = FLEET_DIR / "helm" / "x0node"
K8S_SCHEMA_VERSION = "1.30.0"
RELEASE = {"Name": "x0", "Namespace": "x0tta6bl4"}
ACTION_RE = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}")
DNS_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class ChartError(ValueError):
    pass


def _lookup(root: dict[str, Any], dotted: str, where: str) -> Any:
    cur: Any = root
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise ChartError(f"{where}: no value {dotted}")
        cur = cur[part]
    return cur


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, dict | list):
        raise ChartError(f"a list or map ({v!r}) where a scalar is substituted: use toYaml or toJson")
    return str(v)


def render_text(text: str, scope: dict[str, Any], where: str) -> str:
    """Render one template: actions replaced, `{{-` / `-}}` trimming the whitespace beside them (as Helm)."""
    out: list[str] = []
    pos = 0
    trim_next = False
    for m in ACTION_RE.finditer(text):
        literal = text[pos:m.start()]
        if trim_next:
            literal = literal.lstrip()
        if m.group(1):
            literal = literal.rstrip()
        out.append(literal)
        out.append(_action(m.group(2), scope, where))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = text[pos:]
    out.append(tail.lstrip() if trim_next else tail)
    return "".join(out)


def _action(expr: str, scope: dict[str, Any], where: str) -> str:
    mt = re.fullmatch(r"toYaml (\.\S+) \| nindent (\d+)", expr)
    if mt:
        value = _lookup(scope, mt.group(1)[1:], where)
        body = yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")
        pad = " " * int(mt.group(2))
        return "\n" + "\n".join(pad + line for line in body.splitlines())
    mt = re.fullmatch(r"toJson (\.\S+)", expr)
    if mt:
        return json.dumps(_lookup(scope, mt.group(1)[1:], where), separators=(",", ":"))
    mt = re.fullmatch(r"(\.[A-Za-z][\w.]*)(\s*\|\s*quote)?", expr)
    if mt:
        value = _scalar(_lookup(scope, mt.group(1)[1:], where))
        return json.dumps(value) if mt.group(2) else value
    raise ChartError(f"{where}: {{{{ {expr} }}}} is outside the supported template subset")


def load_values(path: pathlib.Path | None = None, sets: list[str] | None = None) -> dict[str, Any]:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    if path is not None:
        _merge(values, yaml.safe_load(path.read_text()) or {})
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ChartError(f"--set {item!r}: expected KEY=VALUE")
        cur = values
        parts = key.split(".")
        for part in parts[:-1]:
            cur = cur.setdefault(part, {})
            if not isinstance(cur, dict):
                raise ChartError(f"--set {key}: {part} is not a map")
        cur[parts[-1]] = yaml.safe_load(raw)
    return values


def _merge(base: dict[str, Any], over: dict[str, Any]) -> None:
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def render(values: dict[str, Any], release: dict[str, str] | None = None) -> list[dict[str, Any]]:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    scope = {"Values": values, "Release": release or RELEASE,
             "Chart": {"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"]}}
    docs: list[dict[str, Any]] = []
    for path in sorted((CHART_DIR / "templates").glob("*.yaml")):
        text = render_text(path.read_text(), scope, path.name)
        try:
            docs += [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise ChartError(f"{path.name}: rendered text is not YAML: {exc}") from None
    return docs


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the embedded config.toml) as literal blocks."""


_Dumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None))


def dump(docs: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.dump(d, Dumper=_Dumper, sort_keys=False) for d in docs)


def validate(docs: list[dict[str, Any]]) -> list[str]:
    import kubernetes_validate

    problems: list[str] = []
    for d in docs:
        what = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(d, K8S_SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{what}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")
        name = d.get("metadata", {}).get("name", "")
        if not DNS_LABEL_RE.fullmatch(str(name)):
            problems.append(f"{what}: name is not a DNS-1123 label")
        if d.get("kind") == "StatefulSet":
            problems += _statefulset(d, what)
        if d.get("kind") == "ConfigMap" and "config.toml" in d.get("data", {}):
            problems += _daemon_config(d["data"]["config.toml"], what)
    return problems


def _statefulset(d: dict[str, Any], what: str) -> list[str]:
    out = []
    spec = d["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    if any(labels.get(k) != v for k, v in spec["selector"]["matchLabels"].items()):
        out.append(f"{what}: selector does not match the pod labels")
    from x0node.proto.protocol import MESH_UDP_PORT

    for c in spec["template"]["spec"]["containers"]:
        for port in c.get("ports", []):
            if port.get("name") == "mesh" and (port.get("containerPort"), port.get("protocol")) != (MESH_UDP_PORT, "UDP"):
                out.append(f"{what}: the mesh port is UDP {MESH_UDP_PORT} (x0node.proto.protocol), not {port}")
    declared = {v["name"] for v in spec["template"]["spec"].get("volumes", [])}
    declared |= {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    for c in spec["template"]["spec"]["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] not in declared:
                out.append(f"{what}: container {c['name']} mounts undeclared volume {m['name']}")
    return out


def _daemon_config(text: str, what: str) -> list[str]:
    import tempfile

    from x0node.daemon import config as cfg
    from x0node.io.atomicfile import write_atomic

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "config.toml"
        write_atomic(path, text.encode(), 0o644)
        try:
            cfg.load(path, data_dir=tmp)
        except cfg.ConfigError as exc:
            return [f"{what}: config.toml: {exc}"]
    return []
