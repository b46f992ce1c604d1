#!/usr/bin/env bash
# Fuzzing every byte rewriter (default 20 s each), from the corpus kept in fuzz/corpus,
# to look for new inputs. Not part of scripts/test.sh: there, tests/fuzz_corpus.rs
# replays every committed corpus file through the same target functions
# (fuzz/src/lib.rs) in the ordinary build. Run this after changing a rewriter; the
# first run installs cargo-fuzz and builds the instrumented targets (about 16 minutes
# on a fresh 2-core machine), later runs take the fuzzing time plus a few seconds.
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept
# them, and sanitizers are off (-s none) since they need a nightly std. A crash is kept
# in fuzz/artifacts/<target>/: once fixed, copy it into fuzz/corpus/<target>/ so that
# `cargo test` checks it from then on.
#
#   fuzz/run.sh            # 20 s per target
#   FUZZ_SECONDS=600 fuzz/run.sh json_request
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${FUZZ_SECONDS:-20}"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(json_request sse_response multipart url_path)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz@0.13.2 >&2
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none >&2
for t in "${targets[@]}"; do
    echo "fuzz: $t for ${seconds}s" >&2
    # The corpus is read, not grown, in CI: new inputs go to a scratch directory.
    scratch="$(mktemp -d)"
    cargo fuzz run -s none "$t" "$scratch" "corpus/$t" -- \
        -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 2>&1 \
        | grep -aE "^(Done|stat::number_of_executed_units|==|SUMMARY)|panicked|thread '" || true
    rm -rf "$scratch"
    if compgen -G "artifacts/$t/crash-*" >/dev/null; then
        echo "fuzz: $t found a crash: $(ls artifacts/$t/crash-*)" >&2
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash" >&2
