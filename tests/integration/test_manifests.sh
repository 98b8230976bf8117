#!/usr/bin/env bash
# deploy/kubernetes/*.yaml and docker/compose.yaml, checked by manifests.py (fields, types, cross-references;
# no schema validator is at hand), and made to fail by one broken copy per kind of mistake. The
# configurations they carry pass --check-config, and the ConfigMap's one serves /api/ with /readyz 200 (on
# its own port 8080, so inside a private network namespace). docker/ and deploy/ example files too.
if [[ -z ${COAPGW_IN_NETNS:-} ]]; then
    if [[ $(id -u) != 0 ]] || ! unshare -n true 2>/dev/null; then
        echo "SKIP: test_manifests needs root and unshare -n to run the ConfigMap's configuration on 8080"
        exit 77
    fi
    exec unshare -n env COAPGW_IN_NETNS=1 bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
ip link set lo up || fail "cannot bring up lo in the private network namespace"

PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)} # Debian's, with python3-yaml
"$PY" -c 'import yaml' 2>/dev/null || { echo "SKIP: python3 with yaml (python3-yaml) is needed"; exit 77; }
CHECK=$(dirname "$0")/manifests.py
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

out=$("$PY" "$CHECK" "$ROOT" "$T" 2>&1) || fail "manifests.py on the repository: $out"
assert_contains "$out" "are consistent" "manifests.py summary"

for f in "$T/configmap.json" "$T/compose.json" "$ROOT/docker/coapgw.json" "$ROOT/docker/compose.coapgw.json" \
    "$ROOT/deploy/coapgw.json"; do
    out=$("$COAPGW" --config "$f" --check-config 2>&1) || fail "--check-config $f: $out"
done
cmp -s "$T/compose.json" "$ROOT/docker/compose.coapgw.json" || fail "compose mounts another file than expected"

GW_PORT=8080
start_gateway "$T/configmap.json"
http GET /api/
assert_status 200 "GET /api/ with the ConfigMap's configuration"
assert_eq "Hello, CoAP!" "$BODY" "GET /api/ with the ConfigMap's configuration"
ready() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$(url /readyz)") == 200 ]]
}
wait_until "/readyz 200 (the readiness probe) with the ConfigMap's configuration" ready
stop_gateway

# broken NAME FILE SED_SCRIPT EXPECTED: a copy of the files with one change must fail with EXPECTED.
broken() {
    local name=$1 file=$2 script=$3 expected=$4 copy=$T/$1 rc=0
    mkdir -p "$copy/deploy" "$copy/out"
    cp -r "$ROOT/deploy/kubernetes" "$copy/deploy/"
    cp -r "$ROOT/docker" "$copy/"
    sed -i -e "$script" "$copy/$file"
    cmp -s "$copy/$file" "$ROOT/$file" && fail "broken $name: the sed script changed nothing in $file"
    out=$("$PY" "$CHECK" "$copy" "$copy/out" 2>&1) || rc=$?
    assert_eq 1 "$rc" "manifests.py exit status for $name (output: $out)"
    assert_contains "$out" "$expected" "manifests.py on $name"
}
broken probe-typo deploy/kubernetes/deployment.yaml 's/readinessProbe:/readinesProbe:/' \
    "containers[0].readinesProbe: unknown field"
broken replicas-string deploy/kubernetes/deployment.yaml 's/replicas: 3/replicas: "3"/' \
    "spec.replicas: expected int, got str"
broken writable-root deploy/kubernetes/deployment.yaml 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' \
    "readOnlyRootFilesystem: must be true"
broken root-user deploy/kubernetes/deployment.yaml 's/runAsUser: 10001/runAsUser: 0/' \
    "must be the image's USER 10001:10001"
broken liveness-path deploy/kubernetes/deployment.yaml 's|path: /healthz|path: /health|' "livenessProbe: GET /healthz"
broken config-key deploy/kubernetes/configmap.yaml 's/^  coapgw.json: |/  gw.json: |/' "no key coapgw.json"
broken config-json deploy/kubernetes/configmap.yaml 's/"listen": "0.0.0.0:8080",/"listen": "0.0.0.0:8080"/' \
    "data.coapgw.json: not JSON"
broken service-selector deploy/kubernetes/service.yaml 's/app.kubernetes.io\/name: coapgw$/app.kubernetes.io\/name: gw/' \
    "spec.selector: selects no pod"
broken no-hash deploy/kubernetes/ingress.yaml '/upstream-hash-by/d' "upstream-hash-by must be \$request_uri"
broken hpa-target deploy/kubernetes/hpa.yaml 's/^    name: coapgw$/    name: coap-gw/' "must name the Deployment"
broken hpa-range deploy/kubernetes/hpa.yaml 's/maxReplicas: 10/maxReplicas: 2/' "minReplicas 3 <= replicas 3"
broken compose-volume docker/compose.yaml 's|./compose.coapgw.json:|./missing.json:|' "no ./missing.json"
broken compose-field docker/compose.yaml 's/^    depends_on:/    depend_on:/' "services.coapgw.depend_on: unknown field"
pass
