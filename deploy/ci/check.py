#!/usr/bin/env python3
"""Offline checks of deploy/ (run by deploy/ci/check.sh, with the tools it installs).

1. Every kustomization under deploy/kubernetes renders (`kubectl kustomize`).
2. Every rendered object validates against the Kubernetes JSON schemas (strict:
   unknown fields are errors) for the oldest Kubernetes these manifests support (1.30,
   for preStop `sleep`), the kubectl in use, and the newest schema set; the Prometheus
   Operator's kinds, which those schemas lack, against deploy/ci/schemas/.
3. The deployment's promises hold in every render: the mapping ConfigMap is mounted as
   a directory (no subPath) where MODELMAP_MAPPING points, is named modelmap-mapping
   (no hash suffix: it is edited in place), and passes `modelmap check`; probes use the
   admin port; the grace period covers preStop plus the drain timeout; LiteLLM listens
   on loopback only and the Service targets modelmap. The same for the Helm values.
4. The alert rules pass `promtool check rules` and the unit tests in rules-test.yaml
   (`promtool test rules`).
5. The Grafana dashboard parses, its queries are valid PromQL (promtool), and every
   metric and label that the dashboard and the alerts name is one a running modelmap
   exports: the real binary is started on loopback in front of a tiny fake gateway,
   sent a few requests so that labelled series exist, and scraped. Names listed in
   pending-metrics.txt (being added on another branch) are allowed and reported.
6. The Dockerfile passes hadolint and its COPY sources are in the build context (no
   container engine runs here, so the image itself is not built).

Prints one line per check and a closing "N passed, N failed" line; exits 1 on failure.
"""

import argparse
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
CI = DEPLOY / "ci"
DASHBOARD = KUBERNETES / "components" / "monitoring" / "modelmap-dashboard.json"
HELM_VALUES = DEPLOY / "helm" / "litellm-values.yaml"
# 1.30: preStop `sleep` (used because the modelmap image has no shell).
K8S_VERSIONS = ["1.30.0", "1.33.0", kubernetes_validate.latest_version()]
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}
# Labels Prometheus adds to every series scraped through a ServiceMonitor/PodMonitor.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}
PROMQL_KEYWORDS_WITH_LABELS = ("by", "without", "on", "ignoring", "group_left", "group_right")


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def ok(self, what):
        self.passed += 1
        print(f"ok    {what}", flush=True)

    def fail(self, what, detail=""):
        self.failed += 1
        print(f"FAIL  {what}", flush=True)
        for line in str(detail).rstrip().splitlines():
            print(f"      {line}", flush=True)

    def note(self, what):
        print(f"note  {what}", flush=True)

    def check(self, what, problems):
        if problems:
            self.fail(what, "\n".join(problems))
        else:
            self.ok(what)


def rel(path):
    return os.path.relpath(path, ROOT)


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# --- 1. render -----------------------------------------------------------------------


def kustomizations():
    """Directories with a kustomization that can be built on its own (not Components)."""
    found = []
    for path in sorted(KUBERNETES.rglob("kustomization.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind", "Kustomization") == "Kustomization":
            found.append(path.parent)
    return found


def render(report, kubectl):
    renders = {}
    for d in kustomizations():
        res = run([kubectl, "kustomize", str(d)])
        if res.returncode != 0:
            report.fail(f"render {rel(d)}", res.stderr)
            continue
        docs = [x for x in yaml.safe_load_all(res.stdout) if x]
        kinds = ", ".join(sorted({d_["kind"] for d_ in docs}))
        report.ok(f"render {rel(d)}: {len(docs)} objects ({kinds})")
        renders[rel(d)] = docs
    return renders


# --- 2. schemas ----------------------------------------------------------------------


def crd_validator(api_version, kind):
    name = CRD_SCHEMAS.get((api_version, kind))
    if not name:
        return None
    schema = json.loads((CI / "schemas" / name).read_text())
    return jsonschema.Draft202012Validator(schema)


def schema_problems(doc):
    """Problems with one object, against every Kubernetes version in K8S_VERSIONS."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    name = doc.get("metadata", {}).get("name", "?")
    if api_version.startswith("monitoring.coreos.com/"):
        validator = crd_validator(api_version, kind)
        if validator is None:
            return [f"{kind} {name}: no schema for {api_version} {kind} in deploy/ci/schemas"]
        return [
            f"{kind} {name}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(doc)
        ]
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(map(str, e.path)) or "(top)"
            problems.append(f"{kind} {name} (Kubernetes {version}): {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{kind} {name}: {e.message}")
    return problems


def validate_renders(report, renders):
    for where, docs in renders.items():
        problems = [p for doc in docs for p in schema_problems(doc)]
        crds = sorted({d["kind"] for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")})
        extra = f"; {', '.join(crds)} by deploy/ci/schemas" if crds else ""
        report.check(
            f"schemas {where}: Kubernetes {', '.join(K8S_VERSIONS)} (strict){extra}", problems
        )


# --- 3. deployment promises -------------------------------------------------------------


def duration_seconds(text):
    """Go/humantime-style durations as used in MODELMAP_* values: 30s, 1m, 500ms, 1m30s."""
    total, rest = 0.0, text.strip()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    while rest:
        m = re.match(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", rest)
        if not m:
            raise ValueError(f"cannot read duration {text!r}")
        total += float(m.group(1)) * units[m.group(2)]
        rest = rest[m.end():].lstrip()
    return total


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def declares(container, port):
    """Whether the container declares this port (by number or by name)."""
    key = "containerPort" if isinstance(port, int) else "name"
    return any(p.get(key) == port for p in container.get("ports", []))


def addr_port(addr):
    return int(addr.rsplit(":", 1)[1])


def prestop_seconds(container):
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep")
    return sleep["seconds"] if sleep else 0


def modelmap_check(binary, content, label):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "mapping.yaml"
        path.write_text(content)
        res = run([str(binary), "check", str(path)])
    if res.returncode != 0:
        return [f"{label}: `modelmap check` refuses it:\n{res.stdout}{res.stderr}"]
    return []


def pod_promises(pod_spec, configmaps, binary, label):
    """The modelmap container's promises, for any pod spec (kustomize or Helm)."""
    problems = []
    containers = {c["name"]: c for c in pod_spec.get("containers", [])}
    mm = containers.get("modelmap")
    if mm is None:
        return [f"{label}: no container named modelmap"]
    env = env_of(mm)

    mapping = env.get("MODELMAP_MAPPING")
    if not mapping:
        problems.append(f"{label}: MODELMAP_MAPPING is not set")
    else:
        mapping_dir, key = os.path.split(mapping)
        mounts = [m for m in mm.get("volumeMounts", []) if m["mountPath"].rstrip("/") == mapping_dir]
        if not mounts:
            problems.append(f"{label}: nothing is mounted at {mapping_dir}, the directory of MODELMAP_MAPPING")
        for m in mounts:
            if "subPath" in m or "subPathExpr" in m:
                problems.append(f"{label}: the mapping is mounted with subPath: the kubelet never updates such a mount")
            volume = next((v for v in pod_spec.get("volumes", []) if v["name"] == m["name"]), None)
            cm_name = (volume or {}).get("configMap", {}).get("name")
            if cm_name is None:
                problems.append(f"{label}: volume {m['name']} is not a ConfigMap")
                continue
            if cm_name != "modelmap-mapping":
                problems.append(
                    f"{label}: the mapping ConfigMap is {cm_name!r}, not 'modelmap-mapping' "
                    "(a hash suffix would break `kubectl edit configmap modelmap-mapping`)"
                )
            items = volume["configMap"].get("items")
            if items and not any(i["path"] == key for i in items):
                problems.append(f"{label}: the ConfigMap volume's items do not include {key}")
            cm = configmaps.get(cm_name)
            if cm is None:
                problems.append(f"{label}: ConfigMap {cm_name} is not part of the deployment")
            elif key not in cm.get("data", {}):
                problems.append(f"{label}: ConfigMap {cm_name} has no key {key}")
            else:
                problems += modelmap_check(binary, cm["data"][key], f"{label}: ConfigMap {cm_name} {key}")

    admin = env.get("MODELMAP_ADMIN", "0.0.0.0:9464")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = mm.get(probe, {}).get("httpGet")
        if not get or get.get("path") != path:
            problems.append(f"{label}: modelmap {probe} is not an HTTP GET of {path}")
        elif port_number(mm, get["port"]) != addr_port(admin):
            problems.append(f"{label}: modelmap {probe} does not use the admin port ({admin})")

    timeout = duration_seconds(env.get("MODELMAP_SHUTDOWN_TIMEOUT", "30s"))
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    needed = prestop_seconds(mm) + timeout
    if grace <= needed:
        problems.append(
            f"{label}: terminationGracePeriodSeconds {grace} does not exceed modelmap's preStop "
            f"{prestop_seconds(mm)} s + MODELMAP_SHUTDOWN_TIMEOUT {timeout:g} s"
        )

    sc = mm.get("securityContext", {})
    for field, want in (("runAsNonRoot", True), ("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False)):
        if sc.get(field) is not want:
            problems.append(f"{label}: modelmap securityContext.{field} should be {want}")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        problems.append(f"{label}: modelmap should drop ALL capabilities")

    upstream = env.get("MODELMAP_UPSTREAM", "http://127.0.0.1:4000")
    if not re.fullmatch(r"http://(127\.0\.0\.1|localhost):\d+/?", upstream):
        problems.append(f"{label}: MODELMAP_UPSTREAM {upstream} is not LiteLLM on loopback")
    return problems


def litellm_loopback(container, upstream_port, label):
    args = container.get("args", [])
    env = env_of(container)
    host = env.get("HOST")
    port = env.get("PORT")
    for i, a in enumerate(args[:-1]):
        if a == "--host":
            host = args[i + 1]
        if a == "--port":
            port = args[i + 1]
    problems = []
    if host != "127.0.0.1":
        problems.append(f"{label}: LiteLLM listens on {host or '0.0.0.0 (default)'}, not 127.0.0.1 only")
    if port is not None and int(port) != upstream_port:
        problems.append(f"{label}: LiteLLM listens on port {port}, MODELMAP_UPSTREAM says {upstream_port}")
    return problems


def deployment_promises(report, renders, binary):
    for where, docs in renders.items():
        problems = []
        configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        if not deployments:
            problems.append("no Deployment")
        for dep in deployments:
            label = f"Deployment {dep['metadata']['name']}"
            spec = dep["spec"]["template"]["spec"]
            problems += pod_promises(spec, configmaps, binary, label)
            containers = {c["name"]: c for c in spec["containers"]}
            mm = containers.get("modelmap")
            if mm is None or "litellm" not in containers:
                problems.append(f"{label}: needs the containers modelmap and litellm")
                continue
            upstream_port = addr_port(env_of(mm).get("MODELMAP_UPSTREAM", "http://127.0.0.1:4000").rstrip("/"))
            problems += litellm_loopback(containers["litellm"], upstream_port, label)
            pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
            listen_port = addr_port(env_of(mm).get("MODELMAP_LISTEN", "0.0.0.0:4001"))
            services = [
                s for s in docs
                if s["kind"] == "Service"
                and s["spec"].get("selector")
                and all(pod_labels.get(k) == v for k, v in s["spec"]["selector"].items())
            ]
            if not services:
                problems.append(f"{label}: no Service selects its pods")
            for svc in services:
                targets = [port_number(mm, p.get("targetPort", p["port"])) for p in svc["spec"]["ports"]]
                if listen_port not in targets:
                    problems.append(f"Service {svc['metadata']['name']}: does not target modelmap's port {listen_port}")
                for c in containers.values():
                    if c["name"] != "modelmap":
                        for p in svc["spec"]["ports"]:
                            t = p.get("targetPort", p["port"])
                            if declares(c, t) and not declares(mm, t):
                                problems.append(
                                    f"Service {svc['metadata']['name']}: port {p['name']} targets "
                                    f"container {c['name']}, bypassing modelmap"
                                )
        report.check(
            f"promises {where}: mapping mounted as a directory and valid, probes, grace period, loopback LiteLLM, Service via modelmap",
            problems,
        )
        if where.startswith("deploy/kubernetes/overlays/"):
            report.check(f"overlay {where}: ships no Secret, identity lookups fit its LiteLLM", overlay_promises(docs))


def overlay_promises(docs):
    """An overlay is what people apply: no Secret (an example key applied by default is a
    key in production), and no /key/info lookups against a LiteLLM without a database
    (each would fail with HTTP 500: there are no virtual keys to look up)."""
    problems = [f"Secret {d['metadata']['name']} is applied with the overlay" for d in docs if d["kind"] == "Secret"]
    litellm_config = "\n".join(
        v for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("litellm-config")
        for v in d.get("data", {}).values()
    )
    for dep in (d for d in docs if d["kind"] == "Deployment"):
        containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
        if "modelmap" not in containers or "litellm" not in containers:
            continue
        database = "database_url" in litellm_config.lower() or "DATABASE_URL" in env_of(containers["litellm"])
        lookups = env_of(containers["modelmap"]).get("MODELMAP_IDENTITY_LOOKUP", "true").lower() != "false"
        if lookups and not database:
            problems.append(
                f"Deployment {dep['metadata']['name']}: identity lookups are on but LiteLLM has no database "
                "(set MODELMAP_IDENTITY_LOOKUP=false, or give LiteLLM a database)"
            )
    return problems


def helm_values(report, binary):
    values = yaml.safe_load(HELM_VALUES.read_text())
    label = rel(HELM_VALUES)
    # The chart's LiteLLM container, reduced to what matters here: its `http` port
    # (service.port) and HOST from `listen`.
    port = values.get("service", {}).get("port", 4000)
    litellm = {
        "name": "litellm",
        "image": "ghcr.io/berriai/litellm:main-v1.106.2",
        "env": [{"name": "HOST", "value": values.get("listen", "0.0.0.0")}, {"name": "PORT", "value": str(port)}],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
    }
    if "lifecycle" in values:
        litellm["lifecycle"] = values["lifecycle"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "litellm-helm-values"},
        "spec": {
            "containers": [litellm] + copy.deepcopy(values.get("extraContainers", [])),
            "volumes": copy.deepcopy(values.get("volumes", [])),
            "terminationGracePeriodSeconds": values.get("terminationGracePeriodSeconds", 90),
        },
    }
    extra = values.get("extraResources", [])
    problems = schema_problems(pod)
    for doc in extra:
        problems += schema_problems(doc)
    configmaps = {d["metadata"]["name"]: d for d in extra if d.get("kind") == "ConfigMap"}
    problems += pod_promises(pod["spec"], configmaps, binary, label)
    problems += litellm_loopback(litellm, port, label)
    mm = next((c for c in pod["spec"]["containers"] if c["name"] == "modelmap"), None)
    if mm:
        listen = env_of(mm).get("MODELMAP_LISTEN", "")
        if listen != f"$(POD_IP):{port}":
            problems.append(
                f"{label}: MODELMAP_LISTEN should be $(POD_IP):{port}, so the chart's Service (port `http`) reaches modelmap"
            )
        names = [e["name"] for e in mm.get("env", [])]
        if "POD_IP" not in names or names.index("POD_IP") > names.index("MODELMAP_LISTEN"):
            problems.append(f"{label}: POD_IP must be defined before MODELMAP_LISTEN uses it")
    report.check(
        f"helm values {label}: extra container and resources valid for Kubernetes {', '.join(K8S_VERSIONS)}, same promises",
        problems,
    )


# --- 4. alert rules ----------------------------------------------------------------------


def rule_groups(renders):
    groups, seen = [], set()
    for docs in renders.values():
        for d in docs:
            if d["kind"] == "PrometheusRule" and d["metadata"]["name"] not in seen:
                seen.add(d["metadata"]["name"])
                groups += d["spec"]["groups"]
    return groups


def check_rules(report, renders, promtool, work):
    groups = rule_groups(renders)
    if not groups:
        report.fail("alert rules", "no PrometheusRule in any render")
        return []
    rules_file = work / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    res = run([promtool, "check", "rules", str(rules_file)])
    names = [r["alert"] for g in groups for r in g["rules"] if "alert" in r]
    if res.returncode == 0:
        report.ok(f"promtool check rules: {len(names)} alerts ({', '.join(names)})")
    else:
        report.fail("promtool check rules", res.stdout + res.stderr)
    shutil.copy(CI / "rules-test.yaml", work / "rules-test.yaml")
    res = run([promtool, "test", "rules", "rules-test.yaml"], cwd=work)
    if res.returncode == 0:
        report.ok("promtool test rules deploy/ci/rules-test.yaml: every alert fires when it should, and only then")
    else:
        report.fail("promtool test rules deploy/ci/rules-test.yaml", res.stdout + res.stderr)
    untested = [n for n in names if n not in (CI / "rules-test.yaml").read_text()]
    report.check("every alert has a unit test", [f"{n} is not in rules-test.yaml" for n in untested])
    return [(f"alert {r['alert']}", r["expr"]) for g in groups for r in g["rules"] if "alert" in r]


# --- 5. dashboard and exported metrics --------------------------------------------------


def dashboard_queries(report):
    try:
        dash = json.loads(DASHBOARD.read_text())
    except (OSError, ValueError) as e:
        report.fail(f"dashboard {rel(DASHBOARD)} parses as JSON", e)
        return [], []
    queries, variables = [], []

    def walk_panels(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    queries.append((f"panel {p.get('title')!r}", t["expr"]))
            walk_panels(p.get("panels", []))

    walk_panels(dash.get("panels", []))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            variables.append((f"variable ${v['name']}", q))
    problems = []
    if dash.get("uid") is None or dash.get("title") is None:
        problems.append("the dashboard needs a uid and a title")
    if not queries:
        problems.append("no panel queries found")
    report.check(
        f"dashboard {rel(DASHBOARD)} parses: {len(queries)} queries, {len(variables)} query variables", problems
    )
    return queries, variables


def grafana_to_promql(expr):
    """Grafana's variables replaced by values PromQL accepts."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    expr = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)
    return expr


def check_promql_syntax(report, queries, promtool, work):
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(queries)
    ]
    path = work / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    res = run([promtool, "check", "rules", str(path)])
    if res.returncode == 0:
        report.ok(f"dashboard queries are valid PromQL ({len(rules)} checked by promtool)")
    else:
        report.fail("dashboard queries are valid PromQL", res.stdout + res.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeGateway(BaseHTTPRequestHandler):
    """Answers like LiteLLM would, echoing the model it received."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.reply({"object": "list", "data": [{"id": "gpt-4.1", "object": "model"}]})

    def read_body(self):
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def do_POST(self):
        body = self.read_body()
        try:
            model = json.loads(body).get("model")
        except ValueError:
            model = None
        self.reply({"object": "chat.completion", "model": model})


def scrape_modelmap(report, binary, work):
    """Runs the real binary, sends requests that create every labelled series, scrapes."""
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    key = "sk-deploy-check"
    digest = __import__("hashlib").sha256(key.encode()).hexdigest()
    mapping = work / "mapping.yaml"
    mapping.write_text(
        "version: 1\n"
        "teams:\n  team-check:\n    models:\n      gpt-4.1: model_name_team-check_0000\n"
        "aliases:\n  AgentX-LLM: openrouter/qwen/qwen3.5-flash-02-23\n"
        f"keys:\n  {digest}: team-check\n"
    )
    # A LiteLLM config with one team model, so discovery's series exist too.
    litellm_config = work / "litellm-config.yaml"
    litellm_config.write_text(
        "model_list:\n"
        "  - model_name: model_name_team-check_0000\n"
        "    litellm_params: {model: openai/x}\n"
        "    model_info: {team_id: team-check, team_public_model_name: gpt-4.1}\n"
    )
    listen, admin = free_port(), free_port()
    log = open(work / "modelmap.log", "w")
    proc = subprocess.Popen(
        [
            str(binary),
            "--listen", f"127.0.0.1:{listen}",
            "--admin", f"127.0.0.1:{admin}",
            "--upstream", f"http://127.0.0.1:{gateway.server_address[1]}",
            "--mapping", str(mapping),
            "--discover-config", str(litellm_config),
            "--shutdown-timeout", "5s",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    proxy = f"http://127.0.0.1:{listen}"
    try:
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if proc.poll() is not None or time.time() > deadline:
                report.fail("start modelmap", (work / "modelmap.log").read_text())
                return None
            time.sleep(0.05)

        def send(path, body=None, headers=None, content_type="application/json"):
            req = urllib.request.Request(proxy + path, data=body, headers=dict(headers or {}))
            if body is not None:
                req.add_header("content-type", content_type)
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"null")

        auth = {"authorization": f"Bearer {key}"}
        got = [
            send("/v1/chat/completions", b'{"model":"gpt-4.1"}', auth),  # team rule
            send("/v1/chat/completions", b'{"model":"AgentX-LLM"}'),  # global alias
            send("/v1/embeddings", b'{"model":"unmapped"}'),  # unchanged
            send("/v1/completions", b"not json", content_type="text/plain"),  # passed through
            send("/v1/models", headers=auth),
        ]
        if got[0].get("model") != "gpt-4.1" or got[1].get("model") != "AgentX-LLM":
            report.fail("requests through modelmap", f"unexpected responses: {got}")
        # A request is counted in modelmap's logging phase, just after its response
        # reached the client: scrape until all five are in.
        deadline = time.time() + 5
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
                text = r.read().decode()
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("modelmap_requests_total{")
            )
            if counted >= len(got) or time.time() > deadline:
                break
            time.sleep(0.02)
        # A clean SIGTERM while idle: the drain exits 0 at once.
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        if code == 0:
            report.ok("modelmap ran on loopback, served 5 requests, was scraped, and exited 0 on SIGTERM")
        else:
            report.fail("modelmap exits 0 on SIGTERM", f"exit {code}\n{(work / 'modelmap.log').read_text()}")
        return text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        gateway.shutdown()
        log.close()


def parse_exposition(text):
    """Metric names with samples -> their label names; and the families declared by TYPE."""
    series, families = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            families[name] = kind
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
            if m:
                labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
                series.setdefault(m.group(1), set()).update(labels)
    return series, families


def read_pending():
    path = CI / "pending-metrics.txt"
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line)
    return names


def label_names_in(expr):
    names = set()
    for kw in PROMQL_KEYWORDS_WITH_LABELS:
        for m in re.finditer(rf"\b{kw}\s*\(([^)]*)\)", expr):
            names.update(x.strip() for x in m.group(1).split(",") if x.strip())
    for m in re.finditer(r"\{([^}]*)\}", expr):
        names.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(1)))
    return names


def check_names(report, what, queries, series, pending):
    problems, used_pending = [], set()
    for where, expr in queries:
        metrics = set(re.findall(r"(?<![A-Za-z0-9_:])(modelmap_[A-Za-z0-9_]+)", expr))
        if not metrics:
            problems.append(f"{where}: names no modelmap metric: {expr}")
        unknown = {m for m in metrics if m not in series}
        pend = {m for m in unknown if m in pending}
        used_pending |= pend
        for m in sorted(unknown - pend):
            problems.append(f"{where}: {m} is not exported by modelmap")
        if pend:
            continue  # label names of metrics not exported yet cannot be checked
        allowed = set().union(*(series[m] for m in metrics if m in series)) | TARGET_LABELS
        for label in sorted(label_names_in(expr) - allowed):
            problems.append(f"{where}: label {label!r} is not on {', '.join(sorted(metrics))}")
    report.check(f"{what}: every metric and label named is exported by modelmap", problems)
    return used_pending


def check_exported(report, binary, work, dashboard, rules, variables):
    text = scrape_modelmap(report, binary, work)
    if text is None:
        return
    series, families = parse_exposition(text)
    declared = {n for n in families}
    # A labelled family with no sample yet shows neither HELP/TYPE nor samples: the
    # requests sent above create every family, so each declared one has samples.
    empty = sorted(n for n in declared if not any(s == n or s.startswith(n + "_") for s in series))
    report.check(
        f"scrape: {len(series)} series names in {len(declared)} families ({', '.join(sorted(declared))})",
        [f"family {n} has no samples" for n in empty],
    )
    pending = read_pending()
    used = set()
    used |= check_names(report, f"dashboard {rel(DASHBOARD)}", dashboard + variables, series, pending)
    used |= check_names(report, "alert rules", rules, series, pending)
    if used:
        report.note(
            "allowed by deploy/ci/pending-metrics.txt (not exported by this build yet): " + ", ".join(sorted(used))
        )
    landed = sorted(p for p in pending if p in series or any(s.startswith(p + "_") for s in series))
    if landed:
        report.note("now exported, remove from deploy/ci/pending-metrics.txt: " + ", ".join(landed))


# --- 6. Dockerfile ----------------------------------------------------------------------


def check_dockerfile(report, hadolint):
    """No container engine runs here: lint the Dockerfile, and check that its build
    context (deploy/Dockerfile.dockerignore) holds what its COPY lines need."""
    dockerfile = DEPLOY / "Dockerfile"
    res = run([hadolint, "--no-color", str(dockerfile)])
    if res.returncode == 0:
        report.ok(f"hadolint {rel(dockerfile)}")
    else:
        report.fail(f"hadolint {rel(dockerfile)}", res.stdout + res.stderr)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    problems = []
    for line in dockerfile.read_text().splitlines():
        m = re.match(r"\s*COPY\s+(?!--from)(.*)", line)
        if not m:
            continue
        *sources, _dest = m.group(1).split()
        for src in sources:
            src = src.rstrip("/")
            if src not in allowed:
                problems.append(f"COPY {src}: excluded from the build context by Dockerfile.dockerignore")
            elif not (ROOT / src).exists():
                problems.append(f"COPY {src}: no such path in the repository")
    report.check("Dockerfile build context: every COPY source exists and is in the context", problems)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--promtool", required=True)
    ap.add_argument("--modelmap", required=True, type=Path)
    ap.add_argument("--hadolint", required=True)
    args = ap.parse_args()
    report = Report()
    with tempfile.TemporaryDirectory(prefix="modelmap-deploy-check.") as tmp:
        work = Path(tmp)
        renders = render(report, args.kubectl)
        validate_renders(report, renders)
        deployment_promises(report, renders, args.modelmap)
        helm_values(report, args.modelmap)
        rules = check_rules(report, renders, args.promtool, work)
        dashboard, variables = dashboard_queries(report)
        if dashboard:
            check_promql_syntax(report, dashboard, args.promtool, work)
        check_exported(report, args.modelmap, work, dashboard, rules, variables)
        check_dockerfile(report, args.hadolint)
    print(f"deploy checks: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
