#!/usr/bin/env bash
# Offline checks of deploy/: renders every kustomization, validates it against the
# Kubernetes schemas (and the Prometheus Operator's kinds against deploy/ci/schemas),
# checks the deployment's promises, runs promtool on the alert rules and their unit
# tests, and checks that the Grafana dashboard and the alerts name only metrics a
# running modelmap exports. See deploy/ci/check.py. Tools come from
# deploy/ci/install-tools.sh (cached in ~/.cache/modelmap/deploy-tools).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bin=$(deploy/ci/install-tools.sh | tail -n 1)
tools=$(dirname "$bin")

# The real binary, for `modelmap check` and the scrape (a no-op when up to date).
cargo build --quiet --bin modelmap
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

exec "$tools/venv/bin/python" deploy/ci/check.py \
    --kubectl "$bin/kubectl" \
    --promtool "$bin/promtool" \
    --modelmap "$target_dir/debug/modelmap" \
    --hadolint "$tools/venv/bin/hadolint"
