#!/usr/bin/env bash
# modelmap doing its real job: a real LiteLLM fails a request for `gpt-4.1` directly,
# and the same request succeeds through modelmap. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
exec tests/e2e/demo.sh "$@"
