#!/usr/bin/env bash
# Prints the benchmark's mapping (bench/run.sh, bench/callgrind.sh): the bench key's team
# maps REQUESTED to INTERNAL, beside 50 other teams with their own rules and 200 other
# keys, a realistic size.
#
#   bench/mapping.sh KEY REQUESTED INTERNAL > mapping.yaml
set -euo pipefail
KEY=$1 REQUESTED=$2 INTERNAL=$3
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
echo "version: 1"
echo "teams:"
echo "  team-bench:"
echo "    models:"
echo "      $REQUESTED: $INTERNAL"
echo "      \"claude-*\": model_name_team-bench_9a8b7c6d-0000-4000-8000-000000000000"
for t in $(seq 1 50); do
    echo "  team-$t:"
    echo "    models:"
    for m in $(seq 1 10); do
        echo "      model-$m: model_name_team-${t}_$(printf '%08d' "$m")-0000-4000-8000-000000000000"
    done
done
echo "aliases:"
echo "  AgentX-LLM: openrouter/qwen/qwen3.5-flash-02-23"
echo "  \"fast-*\": $REQUESTED"
echo "keys:"
echo "  $(sha "$KEY"): team-bench"
for k in $(seq 1 200); do
    echo "  $(sha "sk-other-$k"): team-$(((k % 50) + 1))"
done
