#!/bin/bash
# Validate the deployment material in deploy/ without a cluster, a Prometheus server or a build.
#
#   deploy/validate.sh               run every check; exit 0 all good, 1 a check failed,
#                                    77 a required tool is missing (and nothing failed)
#   deploy/validate.sh --sync-rules  rewrite spec.groups of kubernetes/base/prometheusrule.yaml
#                                    from prometheus/blockrepl.rules.yml, then validate
#
# Required: promtool (Debian: prometheus), /usr/bin/python3 with the yaml module (python3-yaml).
# Optional (skipped with a note when missing): systemd-analyze (systemd), kubectl (kustomize).
#
# Checks:
#   prometheus   promtool check config prometheus.yml (loads the rule file too);
#                promtool check rules + promtool test rules on the alert rules
#   metrics      every blockrepl_* name used by the rules and the dashboard is one the agents
#                export (names read from the C++ sources, when present)
#   grafana      the dashboard is JSON (json.load), schemaVersion, uid, variables (datasource;
#                volume from label_values(blockrepl_volume_info, volume)), unique panel ids,
#                every query on ${datasource}; every PromQL query parses (promtool check rules
#                on a throw-away file of recording rules with the Grafana variables substituted)
#   yaml         every *.yml / *.yaml under deploy/ is well-formed YAML (all documents)
#   kubernetes   objects have apiVersion/kind/name/namespace; config maps, secrets and services
#                referenced by the StatefulSets exist; probe ports are named container ports;
#                Services select a pod template and target its named ports; the ServiceMonitor
#                selects the metrics Services by label and port; PrometheusRule spec.groups equal
#                the groups of prometheus/blockrepl.rules.yml; image is blockrepl:latest;
#                `kubectl kustomize` builds site-a and site-b (if kubectl is installed)
#   systemd      systemd-analyze verify on both template units (instance vol0; ExecStart pointed
#                at stub executables, since verify requires them to exist); any warning fails;
#                the example env files define exactly the variables the units use
#   docker       the files the Dockerfile copies from the repository exist
set -uo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$DEPLOY")
PY=/usr/bin/python3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/blockrepl-validate.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

failed=0
missing=0
pass() { printf 'ok    %s\n' "$1"; }
fail() { printf 'FAIL  %s\n' "$1"; failed=1; }
skip() { printf 'skip  %s\n' "$1"; }
need() { printf 'MISSING %s\n' "$1"; missing=1; }

# run NAME CMD...: run a check, show its output only when it fails.
run() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$name"
  else
    fail "$name"
    printf '%s\n' "$out" | sed 's/^/      /'
  fi
}

have_promtool=1
command -v promtool >/dev/null 2>&1 || { have_promtool=0; need "promtool (Debian package prometheus)"; }
have_py=1
if [[ ! -x $PY ]]; then
  have_py=0
  need "$PY (Debian package python3)"
elif ! "$PY" -c 'import yaml' 2>/dev/null; then
  have_py=0
  need "the yaml module of $PY (Debian package python3-yaml)"
fi

# --- --sync-rules ---------------------------------------------------------------------------
if [[ ${1:-} == --sync-rules ]]; then
  [[ $have_py == 1 ]] || { echo "validate: --sync-rules needs $PY with yaml" >&2; exit 77; }
  "$PY" - "$DEPLOY" <<'EOF' || exit 1
import sys
deploy = sys.argv[1]
rules = open(f"{deploy}/prometheus/blockrepl.rules.yml").read()
body = rules[rules.index("\ngroups:") + 1:]
path = f"{deploy}/kubernetes/base/prometheusrule.yaml"
cur = open(path).read()
head = cur[:cur.index("\nspec:\n") + len("\nspec:\n")]
open(path, "w").write(head + "".join("  " + l if l.strip() else l for l in body.splitlines(True)))
print(f"rewrote spec.groups of {path}")
EOF
elif [[ $# -gt 0 ]]; then
  echo "usage: deploy/validate.sh [--sync-rules]" >&2
  exit 2
fi

# --- Prometheus -----------------------------------------------------------------------------
if [[ $have_promtool == 1 ]]; then
  run "prometheus: promtool check config prometheus/prometheus.yml" \
    promtool check config "$DEPLOY/prometheus/prometheus.yml"
  run "prometheus: promtool check rules prometheus/blockrepl.rules.yml" \
    promtool check rules "$DEPLOY/prometheus/blockrepl.rules.yml"
  # promtool test rules resolves rule_files relative to the test file.
  run "prometheus: promtool test rules prometheus/blockrepl.rules.test.yml" \
    promtool test rules "$DEPLOY/prometheus/blockrepl.rules.test.yml"
else
  skip "prometheus: promtool missing"
fi

# --- Python-based checks: metrics, grafana, yaml, kubernetes, env files -------------------------
if [[ $have_py == 1 ]]; then
  "$PY" - "$DEPLOY" "$ROOT" "$TMP" <<'EOF'
import glob, json, os, re, sys
import yaml

deploy, root, tmp = sys.argv[1:4]
failed = False

def report(name, errors):
    global failed
    if errors:
        failed = True
        print(f"FAIL  {name}")
        for e in errors:
            print(f"      {e}")
    else:
        print(f"ok    {name}")

def rel(p):
    return os.path.relpath(p, deploy)

# yaml: every file, every document
yaml_files = sorted(glob.glob(f"{deploy}/**/*.yml", recursive=True) +
                    glob.glob(f"{deploy}/**/*.yaml", recursive=True))
docs = {}
errors = []
for f in yaml_files:
    try:
        with open(f) as fh:
            docs[f] = [d for d in yaml.safe_load_all(fh) if d is not None]
    except yaml.YAMLError as e:
        errors.append(f"{rel(f)}: {e}".replace("\n", " "))
report(f"yaml: {len(yaml_files)} files well-formed", errors)

# metric names the agents export (from the sources)
srcs = [f"{root}/common/metrics/status_metrics.cc", f"{root}/primary/primary_metrics.cc"]
exported = None
if all(os.path.exists(s) for s in srcs):
    exported = set()
    for s in srcs:
        text = open(s).read()
        for kind, name in re.findall(
                r'\b(Gauge|Counter|Histogram|StateSet)\((?:\s*out\s*,)?\s*"([a-z0-9_]+)"', text):
            base = "blockrepl_" + name
            exported |= ({base + sfx for sfx in ("_bucket", "_sum", "_count")}
                         if kind == "Histogram" else {base})
    if len(exported) < 20:
        exported = None   # the sources changed shape: do not trust the scan
def unknown_metrics(expr):
    return sorted({m for m in re.findall(r"\bblockrepl_[a-z0-9_]+", expr)} - exported)

# prometheus rules: metric names
rules_file = f"{deploy}/prometheus/blockrepl.rules.yml"
rules_doc = docs.get(rules_file, [None])[0]
if exported is None:
    print("skip  metrics: agent sources not found; metric names not checked")
elif rules_doc:
    errors = []
    for g in rules_doc["groups"]:
        for r in g["rules"]:
            for m in unknown_metrics(r["expr"]):
                errors.append(f"{r.get('alert') or r.get('record')}: {m} is not exported by the agents")
    report("metrics: the alert rules use only exported metric names", errors)

# grafana
dash_file = f"{deploy}/grafana/blockrepl-dashboard.json"
errors = []
try:
    with open(dash_file) as fh:
        dash = json.load(fh)
except (OSError, ValueError) as e:
    dash = None
    errors.append(f"{rel(dash_file)}: {e}")
exprs = []
if dash is not None:
    if not 36 <= dash.get("schemaVersion", 0) <= 39:
        errors.append(f"schemaVersion {dash.get('schemaVersion')} (expected ~37)")
    if not dash.get("uid") or not dash.get("title"):
        errors.append("uid and title are required")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("no datasource variable of type prometheus")
    vol = variables.get("volume")
    q = vol and vol.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if q != "label_values(blockrepl_volume_info, volume)":
        errors.append(f"volume variable query is {q!r}")
    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))   # collapsed rows
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or None in ids:
        errors.append(f"panel ids missing or not unique: {ids}")
    for p in panels:
        if p.get("type") == "row":
            continue
        if not p.get("gridPos"):
            errors.append(f"panel {p.get('title')!r} has no gridPos")
        for t in p.get("targets", []):
            if (t.get("datasource") or p.get("datasource") or {}).get("uid") != "${datasource}":
                errors.append(f"panel {p.get('title')!r} target {t.get('refId')} not on ${{datasource}}")
            if not t.get("expr"):
                errors.append(f"panel {p.get('title')!r} target {t.get('refId')} has no expr")
                continue
            if 'volume=~"$volume"' not in t["expr"]:
                errors.append(f"panel {p.get('title')!r} target {t.get('refId')} ignores $volume")
            exprs.append((p.get("title"), t["expr"]))
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs.append((f"annotation {a.get('name')}", a["expr"]))
    if exported is not None:
        for title, e in exprs:
            for m in unknown_metrics(e):
                errors.append(f"panel {title!r}: {m} is not exported by the agents")
report(f"grafana: {rel(dash_file)} ({len(exprs)} queries)", errors)
# The queries, as recording rules, for promtool to parse (the shell runs it).
with open(f"{tmp}/dashboard-queries.rules.yml", "w") as fh:
    rules = []
    for i, (title, e) in enumerate(exprs):
        e = (e.replace("$__rate_interval", "1m").replace("$__interval", "1m")
              .replace("${volume}", ".*").replace("$volume", ".*"))
        rules.append({"record": f"dashboard:query_{i}", "expr": e})
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, fh)

# kubernetes
kdocs = []
for f, ds in docs.items():
    if f.startswith(f"{deploy}/kubernetes/"):
        for d in ds:
            if isinstance(d, dict) and "kind" in d and d.get("kind") != "Kustomization":
                kdocs.append((f, d))
errors = []
by_kind = {}
for f, d in kdocs:
    md = d.get("metadata") or {}
    if not d.get("apiVersion") or not md.get("name"):
        errors.append(f"{rel(f)}: {d.get('kind')} without apiVersion or metadata.name")
    if d["kind"] != "Namespace" and md.get("namespace") != "blockrepl":
        errors.append(f"{rel(f)}: {d['kind']}/{md.get('name')} not in namespace blockrepl")
    by_kind.setdefault(d["kind"], {})[md.get("name")] = (f, d)

def sel_matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())

templates = []   # (statefulset name, pod labels, container ports by name)
for name, (f, d) in by_kind.get("StatefulSet", {}).items():
    spec = d["spec"]
    tmpl = spec["template"]
    labels = tmpl["metadata"].get("labels", {})
    if not sel_matches(spec["selector"].get("matchLabels"), labels):
        errors.append(f"StatefulSet/{name}: selector does not match its pod template")
    if spec.get("replicas") != 1:
        errors.append(f"StatefulSet/{name}: replicas must be 1 (one agent per volume)")
    if spec.get("serviceName") not in by_kind.get("Service", {}):
        errors.append(f"StatefulSet/{name}: serviceName {spec.get('serviceName')} is not a Service here")
    pod = tmpl["spec"]
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    claim_names = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    ports = {}
    for c in pod["containers"]:
        if c.get("image") != "blockrepl:latest":
            errors.append(f"StatefulSet/{name}: image {c.get('image')} (expected blockrepl:latest)")
        cports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        ports.update(cports)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            pr = c.get(probe)
            if probe != "startupProbe" and not pr:
                errors.append(f"StatefulSet/{name}: no {probe}")
            if pr:
                hg = pr.get("httpGet", {})
                if hg.get("path") != "/healthz" or hg.get("port") not in cports:
                    errors.append(f"StatefulSet/{name}: {probe} is not GET /healthz on a named port")
        for ef in c.get("envFrom", []):
            ref = (ef.get("configMapRef") or {}).get("name")
            if ref and ref not in by_kind.get("ConfigMap", {}):
                errors.append(f"StatefulSet/{name}: ConfigMap {ref} not defined")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        for m in mounts.values():
            if m not in vols and m not in claim_names:
                errors.append(f"StatefulSet/{name}: volumeMount {m} has no volume")
        if mounts.get("/etc/blockrepl/tls") is None:
            errors.append(f"StatefulSet/{name}: TLS secret not mounted at /etc/blockrepl/tls")
    for v in vols.values():
        sec = (v.get("secret") or {}).get("secretName")
        if sec and sec not in by_kind.get("Secret", {}):
            errors.append(f"StatefulSet/{name}: Secret {sec} not defined")
    templates.append((name, labels, ports))

metrics_services = []
for name, (f, d) in by_kind.get("Service", {}).items():
    sel = d["spec"].get("selector")
    hits = [t for t in templates if sel_matches(sel, t[1])]
    if len(hits) != 1:
        errors.append(f"Service/{name}: selects {len(hits)} pod templates (expected 1)")
        continue
    for p in d["spec"]["ports"]:
        if isinstance(p.get("targetPort"), str) and p["targetPort"] not in hits[0][2]:
            errors.append(f"Service/{name}: targetPort {p['targetPort']} is not a container port")
    if d["metadata"].get("labels", {}).get("blockrepl.io/metrics") == "true":
        metrics_services.append((name, d))

for name, (f, d) in by_kind.get("ServiceMonitor", {}).items():
    sel = d["spec"]["selector"].get("matchLabels")
    eps = {e.get("port") for e in d["spec"]["endpoints"]}
    picked = [n for n, s in metrics_services if sel_matches(sel, s["metadata"]["labels"])]
    if not picked:
        errors.append(f"ServiceMonitor/{name}: selects no metrics Service")
    for n, s in metrics_services:
        if n not in picked:
            errors.append(f"ServiceMonitor/{name}: does not select metrics Service {n}")
        elif not eps & {p.get("name") for p in s["spec"]["ports"]}:
            errors.append(f"ServiceMonitor/{name}: Service {n} has no port named {eps}")
        job = s["metadata"]["labels"].get(d["spec"].get("jobLabel", ""), "")
        if not job.startswith("blockrepl-"):
            errors.append(f"Service/{n}: job label {job!r} does not start with blockrepl- "
                          "(BlockreplAgentDown selects on it)")

for name, (f, d) in by_kind.get("PrometheusRule", {}).items():
    if rules_doc is None or d["spec"].get("groups") != rules_doc.get("groups"):
        errors.append(f"PrometheusRule/{name}: spec.groups differ from prometheus/blockrepl.rules.yml "
                      "(deploy/validate.sh --sync-rules rewrites them)")

for kind in ("Namespace", "ConfigMap", "Secret", "StatefulSet", "Service", "ServiceMonitor",
             "PrometheusRule"):
    if kind not in by_kind:
        errors.append(f"no {kind}")
report(f"kubernetes: {len(kdocs)} objects cross-checked", errors)

# systemd example env files vs the units
errors = []
for role in ("primary", "secondary"):
    unit = f"{deploy}/systemd/repl-{role}@.service"
    env = f"{deploy}/examples/vol0.{role}.env"
    text = open(unit).read()
    execstart = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", text, re.M).group(1)
    used = set(re.findall(r"\$\{(\w+)\}|\$(\w+)", execstart))
    used = {a or b for a, b in used}
    defined = {}
    for n, line in enumerate(open(env), 1):
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)$", s)
        if not m:
            errors.append(f"{rel(env)}:{n}: not KEY=VALUE")
            continue
        defined[m.group(1)] = m.group(2)
        if re.search(r"""["'$`]""", m.group(2)):
            errors.append(f"{rel(env)}:{n}: quotes or $ in a value (systemd does not expand them)")
    for v in sorted(used - set(defined)):
        errors.append(f"{rel(env)}: {v} used by {rel(unit)} but not defined")
    for v in sorted(set(defined) - used):
        errors.append(f"{rel(env)}: {v} defined but {rel(unit)} does not use it")
    for v in sorted(used):
        if v != "EXTRA_ARGS" and not defined.get(v):
            errors.append(f"{rel(env)}: {v} is empty")
report("systemd: example env files define exactly the units' variables", errors)

sys.exit(1 if failed else 0)
EOF
  [[ $? == 0 ]] || failed=1
  if [[ $have_promtool == 1 && -s $TMP/dashboard-queries.rules.yml ]]; then
    run "grafana: every dashboard query parses (promtool)" \
      promtool check rules "$TMP/dashboard-queries.rules.yml"
  fi
else
  skip "metrics, grafana queries, yaml, kubernetes, env files: $PY with yaml missing"
  if [[ -x $PY ]]; then
    run "grafana: grafana/blockrepl-dashboard.json is JSON" \
      "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$DEPLOY/grafana/blockrepl-dashboard.json"
  fi
fi

# --- kustomize (optional) -------------------------------------------------------------------
if command -v kubectl >/dev/null 2>&1; then
  for site in site-a site-b; do
    run "kubernetes: kubectl kustomize kubernetes/$site" \
      kubectl kustomize "$DEPLOY/kubernetes/$site"
  done
else
  skip "kubernetes: kubectl not installed; kustomize builds not checked"
fi

# --- systemd (optional) ---------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$TMP/units" "$TMP/bin"
  for b in repl-primary repl-secondary; do
    printf '#!/bin/sh\nexit 0\n' >"$TMP/bin/$b"
    chmod +x "$TMP/bin/$b"
    sed "s#/usr/local/bin/#$TMP/bin/#g" "$DEPLOY/systemd/$b@.service" >"$TMP/units/$b@.service"
  done
  verify_units() {
    local out rc
    out=$(cd "$TMP/units" && systemd-analyze verify --man=no \
      "$TMP/units/repl-primary@vol0.service" "$TMP/units/repl-secondary@vol0.service" 2>&1)
    rc=$?
    out=$(printf '%s\n' "$out" | sed "s#$TMP/units/##g; s#$TMP/bin/#/usr/local/bin/#g")
    [[ $rc == 0 && -z ${out//[[:space:]]/} ]] || { printf '%s\n' "$out"; return 1; }
  }
  run "systemd: systemd-analyze verify repl-primary@vol0 repl-secondary@vol0" verify_units
else
  skip "systemd: systemd-analyze not installed; units not verified"
fi

# --- docker ---------------------------------------------------------------------------------
docker_refs() {
  local f rc=0
  for f in scripts/install-deps.sh scripts/build.sh CMakeLists.txt; do
    [[ -e $ROOT/$f ]] || { echo "deploy/docker/Dockerfile uses $f, which does not exist"; rc=1; }
  done
  grep -q 'scripts/install-deps.sh --build-only' "$DEPLOY/docker/Dockerfile" ||
    { echo "Dockerfile no longer installs with scripts/install-deps.sh --build-only"; rc=1; }
  return $rc
}
run "docker: the files deploy/docker/Dockerfile uses exist" docker_refs

if [[ $failed == 1 ]]; then
  echo "validate: FAILED"
  exit 1
fi
if [[ $missing == 1 ]]; then
  echo "validate: incomplete (a required tool is missing): skipped"
  exit 77
fi
echo "validate: all checks passed"
exit 0
