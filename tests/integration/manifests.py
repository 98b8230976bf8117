#!/usr/bin/env python3
"""Structural check of deploy/kubernetes/*.yaml and docker/compose.yaml (there is no schema validator here).

Every mapping is checked against the fields these files use (a typo such as `readinesProbe` or a value of the
wrong type fails), then the cross-references a cluster would resolve: selectors and labels, named ports,
probe paths, the ConfigMap key the Deployment mounts, the HPA's target, the image's non-root user (from
docker/Dockerfile), the ingress hashing by URI, the compose files that are mounted or built. Prints one line
per problem as `FILE: path: reason` and exits 1, or prints a summary and exits 0. The JSON configurations it
finds (ConfigMap, compose) are written to OUT_DIR for the caller to pass to `coapgw --check-config`.

Usage: manifests.py REPO_ROOT OUT_DIR
"""
import json
import os
import sys

import yaml

STR, INT, BOOL = str, int, bool
LABELS = {"*": STR}
META = {"name": STR, "labels": LABELS, "annotations": {"*": STR}}
HTTP_GET = {"path": STR, "port": (STR, INT)}
PROBE = {"httpGet": HTTP_GET, "periodSeconds": INT, "timeoutSeconds": INT, "failureThreshold": INT,
         "initialDelaySeconds": INT}
RESOURCES = {"requests": {"cpu": STR, "memory": STR}, "limits": {"cpu": STR, "memory": STR}}
CONTAINER = {
    "name": STR, "image": STR, "imagePullPolicy": STR, "args": [STR],
    "ports": [{"name": STR, "containerPort": INT, "protocol": STR}],
    "livenessProbe": PROBE, "readinessProbe": PROBE,
    "lifecycle": {"preStop": {"exec": {"command": [STR]}}},
    "resources": RESOURCES,
    "securityContext": {"allowPrivilegeEscalation": BOOL, "readOnlyRootFilesystem": BOOL, "runAsNonRoot": BOOL,
                        "capabilities": {"drop": [STR]}},
    "volumeMounts": [{"name": STR, "mountPath": STR, "readOnly": BOOL}],
}
POD = {
    "automountServiceAccountToken": BOOL, "terminationGracePeriodSeconds": INT,
    "securityContext": {"runAsNonRoot": BOOL, "runAsUser": INT, "runAsGroup": INT,
                        "seccompProfile": {"type": STR}},
    "containers": [CONTAINER],
    "volumes": [{"name": STR, "configMap": {"name": STR}}],
}
SCHEMAS = {
    ("apps/v1", "Deployment"): {"spec": {
        "replicas": INT, "selector": {"matchLabels": LABELS},
        "strategy": {"type": STR, "rollingUpdate": {"maxSurge": (INT, STR), "maxUnavailable": (INT, STR)}},
        "template": {"metadata": META, "spec": POD}}},
    ("v1", "Service"): {"spec": {
        "type": STR, "selector": LABELS,
        "ports": [{"name": STR, "port": INT, "targetPort": (INT, STR), "protocol": STR}]}},
    ("v1", "ConfigMap"): {"data": {"*": STR}},
    ("autoscaling/v2", "HorizontalPodAutoscaler"): {"spec": {
        "scaleTargetRef": {"apiVersion": STR, "kind": STR, "name": STR},
        "minReplicas": INT, "maxReplicas": INT,
        "metrics": [{"type": STR, "resource": {"name": STR, "target": {"type": STR, "averageUtilization": INT}}}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": INT,
                                   "policies": [{"type": STR, "value": INT, "periodSeconds": INT}]}}}},
    ("networking.k8s.io/v1", "Ingress"): {"spec": {
        "ingressClassName": STR,
        "rules": [{"http": {"paths": [{"path": STR, "pathType": STR, "backend": {
            "service": {"name": STR, "port": {"name": STR, "number": INT}}}}]}}]}},
}
COMPOSE_SERVICE = {
    "image": STR, "build": {"context": STR, "dockerfile": STR}, "command": [STR], "ports": [STR],
    "expose": [STR], "volumes": [STR], "depends_on": [STR], "read_only": BOOL, "cap_drop": [STR],
    "security_opt": [STR], "restart": STR,
}
COMPOSE = {"services": {"*": COMPOSE_SERVICE}}

problems = []


def problem(where, path, reason):
    problems.append(f"{where}: {path or '(top)'}: {reason}")


def check(value, schema, where, path):
    """value against schema: a dict of field -> schema ("*" for any key), [schema] for a list, a type or a
    tuple of types for a scalar (bool is not an int here)."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return problem(where, path, f"expected a mapping, got {type(value).__name__}")
        for key, sub in value.items():
            if key in schema:
                check(sub, schema[key], where, f"{path}.{key}" if path else key)
            elif "*" in schema:
                check(sub, schema["*"], where, f"{path}.{key}" if path else key)
            else:
                problem(where, f"{path}.{key}" if path else key, "unknown field")
    elif isinstance(schema, list):
        if not isinstance(value, list) or not value:
            return problem(where, path, "expected a non-empty list")
        for i, item in enumerate(value):
            check(item, schema[0], where, f"{path}[{i}]")
    else:
        types = schema if isinstance(schema, tuple) else (schema,)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            problem(where, path, f"expected {names}, got {type(value).__name__} {value!r}")


def get(doc, path, default=None):
    for part in path.split("."):
        if isinstance(doc, list):
            doc = doc[int(part)] if int(part) < len(doc) else None
        elif isinstance(doc, dict):
            doc = doc.get(part)
        else:
            return default
        if doc is None:
            return default
    return doc


def expect(cond, where, path, reason):
    if not cond:
        problem(where, path, reason)


def load_kubernetes(root):
    kdir = os.path.join(root, "deploy", "kubernetes")
    objs = {}
    for name in sorted(os.listdir(kdir)):
        if not name.endswith(".yaml") or name == "kustomization.yaml":
            continue
        where = f"deploy/kubernetes/{name}"
        with open(os.path.join(kdir, name)) as f:
            for doc in yaml.safe_load_all(f):
                key = (doc.get("apiVersion"), doc.get("kind"))
                if key not in SCHEMAS:
                    problem(where, "apiVersion/kind", f"unexpected {key}")
                    continue
                schema = dict(SCHEMAS[key], apiVersion=STR, kind=STR, metadata=META)
                check(doc, schema, where, "")
                objs[key[1]] = (where, doc)
    with open(os.path.join(kdir, "kustomization.yaml")) as f:
        kust = yaml.safe_load(f)
    listed = sorted(kust.get("resources", []))
    files = sorted(n for n in os.listdir(kdir) if n.endswith(".yaml") and n != "kustomization.yaml")
    expect(listed == files, "deploy/kubernetes/kustomization.yaml", "resources", f"{listed} != files {files}")
    return objs


def image_user(root):
    with open(os.path.join(root, "docker", "Dockerfile")) as f:
        users = [line.split()[1] for line in f if line.startswith("USER ")]
    return users[-1] if users else None


def check_kubernetes(root, out_dir):
    objs = load_kubernetes(root)
    for kind in ("Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "Ingress"):
        expect(kind in objs, "deploy/kubernetes", kind, "missing")
    if problems:
        return
    dw, dep = objs["Deployment"]
    sw, svc = objs["Service"]
    cw, cm = objs["ConfigMap"]
    hw, hpa = objs["HorizontalPodAutoscaler"]
    iw, ing = objs["Ingress"]
    labels = get(dep, "spec.template.metadata.labels", {})
    sel = get(dep, "spec.selector.matchLabels", {})
    expect(sel and sel.items() <= labels.items(), dw, "spec.selector.matchLabels", "does not select the pods")
    expect(svc["spec"]["selector"].items() <= labels.items(), sw, "spec.selector", "selects no pod")
    replicas = get(dep, "spec.replicas", 1)
    expect(replicas >= 2, dw, "spec.replicas", "at least 2, or there is nothing to share out")

    pod = dep["spec"]["template"]["spec"]
    expect(len(pod["containers"]) == 1, dw, "containers", "one container")
    c = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    expect(ports.get("http") == 8080, dw, "containers[0].ports", "a port named http on 8080")
    expect(get(c, "livenessProbe.httpGet.path") == "/healthz", dw, "livenessProbe", "GET /healthz")
    expect(get(c, "readinessProbe.httpGet.path") == "/readyz", dw, "readinessProbe", "GET /readyz")
    for probe in ("livenessProbe", "readinessProbe"):
        expect(get(c, f"{probe}.httpGet.port") in ("http", 8080), dw, probe, "on the http port")
    for kind in ("requests", "limits"):
        for res in ("cpu", "memory"):
            expect(get(c, f"resources.{kind}.{res}"), dw, f"resources.{kind}.{res}", "missing")
    user = image_user(root)
    expect(get(pod, "securityContext.runAsNonRoot") is True, dw, "securityContext.runAsNonRoot", "must be true")
    expect(user and f"{get(pod, 'securityContext.runAsUser')}:{get(pod, 'securityContext.runAsGroup')}" == user,
           dw, "securityContext.runAsUser", f"must be the image's USER {user}")
    sc = c.get("securityContext", {})
    expect(sc.get("readOnlyRootFilesystem") is True, dw, "containers[0].securityContext.readOnlyRootFilesystem",
           "must be true")
    expect(sc.get("allowPrivilegeEscalation") is False, dw, "containers[0].securityContext", "no escalation")
    expect(get(sc, "capabilities.drop") == ["ALL"], dw, "containers[0].securityContext.capabilities", "drop ALL")

    # The config file named in args is the ConfigMap's key, mounted where args say.
    args = c.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    expect(cfg_path, dw, "containers[0].args", "--config FILE")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    found = None
    for name, m in mounts.items():
        v = vols.get(name)
        expect(v is not None, dw, f"volumeMounts.{name}", "no such volume")
        if v and cfg_path and cfg_path.startswith(m["mountPath"].rstrip("/") + "/"):
            key = cfg_path[len(m["mountPath"].rstrip("/")) + 1:]
            expect(get(v, "configMap.name") == cm["metadata"]["name"], dw, f"volumes.{name}",
                   f"must be the ConfigMap {cm['metadata']['name']}")
            expect(key in cm.get("data", {}), cw, "data", f"no key {key} for {cfg_path}")
            expect(m.get("readOnly") is True, dw, f"volumeMounts.{name}", "read-only")
            found = key
    expect(found, dw, "volumeMounts", f"nothing mounted at {cfg_path}")
    text = cm.get("data", {}).get(found) if found else None
    if text is not None:
        try:
            cfg = json.loads(text)
            expect(cfg.get("listen", "").endswith(":8080") and cfg["listen"].startswith("0.0.0.0"), cw,
                   "data.coapgw.json.listen", "0.0.0.0:8080, the container port")
            expect(get(cfg, "limits.max_connections_per_ip") == 0, cw, "data.coapgw.json.limits",
                   "max_connections_per_ip 0 behind the ingress")
        except ValueError as e:
            problem(cw, "data.coapgw.json", f"not JSON: {e}")
        with open(os.path.join(out_dir, "configmap.json"), "w") as f:
            f.write(text)

    sport = svc["spec"]["ports"][0]
    expect(sport.get("targetPort") in ports or sport.get("targetPort") in ports.values(), sw,
           "spec.ports[0].targetPort", "no such container port")
    ref = hpa["spec"]["scaleTargetRef"]
    expect((ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", dep["metadata"]["name"]),
           hw, "spec.scaleTargetRef", "must name the Deployment")
    lo, hi = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    expect(2 <= lo <= replicas <= hi, hw, "spec", f"minReplicas {lo} <= replicas {replicas} <= maxReplicas {hi}")
    backend = get(ing, "spec.rules.0.http.paths.0.backend.service", {})
    expect(backend.get("name") == svc["metadata"]["name"], iw, "backend.service.name", "must be the Service")
    expect(get(backend, "port.name") == sport["name"] or get(backend, "port.number") == sport["port"], iw,
           "backend.service.port", "must be the Service's port")
    ann = get(ing, "metadata.annotations", {})
    expect(ann.get("nginx.ingress.kubernetes.io/upstream-hash-by") == "$request_uri", iw,
           "metadata.annotations", "upstream-hash-by must be $request_uri (one replica per resource)")
    expect(ann.get("nginx.ingress.kubernetes.io/proxy-buffering") == "off", iw, "metadata.annotations",
           "proxy-buffering off (SSE)")


def check_compose(root, out_dir):
    where = "docker/compose.yaml"
    ddir = os.path.join(root, "docker")
    with open(os.path.join(ddir, "compose.yaml")) as f:
        doc = yaml.safe_load(f)
    check(doc, COMPOSE, where, "")
    services = doc.get("services", {})
    expect(set(services) == {"coapgw", "device"}, where, "services", "coapgw and device")
    if problems:
        return
    for name, s in services.items():
        b = s["build"]
        path = os.path.normpath(os.path.join(ddir, b["context"], b["dockerfile"]))
        expect(os.path.isfile(path), where, f"services.{name}.build", f"no {path}")
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            expect(os.path.isfile(os.path.join(ddir, src)), where, f"services.{name}.volumes", f"no {src}")
    gw = services["coapgw"]
    expect(gw["image"] == "coapgw:latest" and services["device"]["image"] == "coapgw-device:latest", where,
           "services.*.image", "the names docker/build.sh builds")
    expect(gw.get("depends_on") == ["device"], where, "services.coapgw.depends_on", "the device")
    expect(any(p.endswith(":8080") for p in gw.get("ports", [])), where, "services.coapgw.ports", "8080")
    mount = [v for v in gw.get("volumes", []) if ":/etc/coapgw/coapgw.json" in v]
    expect(mount, where, "services.coapgw.volumes", "the configuration at /etc/coapgw/coapgw.json")
    if mount and os.path.isfile(os.path.join(ddir, mount[0].split(":")[0])):
        with open(os.path.join(ddir, mount[0].split(":")[0])) as f:
            text = f.read()
        cfg = json.loads(text)
        uris = [u["uri"] for u in cfg.get("upstreams", {}).values()]
        expect("coap://device:5683" in uris, mount[0], "upstreams", "coap://device:5683 (the device service)")
        with open(os.path.join(out_dir, "compose.json"), "w") as f:
            f.write(text)


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    root, out_dir = sys.argv[1], sys.argv[2]
    check_kubernetes(root, out_dir)
    check_compose(root, out_dir)
    for p in problems:
        print(p)
    if problems:
        return 1
    print("manifests: deploy/kubernetes and docker/compose.yaml are consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
