#!/usr/bin/env bash
# Coverage-guided fuzzing of the line codec and of a whole session, each for a bounded time.
# Not part of the normal test run. Needs cargo-fuzz (`cargo install cargo-fuzz`); cargo fuzz
# needs nightly features, which the stable toolchain allows with RUSTC_BOOTSTRAP=1.
#   fuzz/run.sh [SECONDS]   (default 60 per target)
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || { echo "install cargo-fuzz: cargo install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
for target in line_codec session; do
  echo "== $target for ${secs}s"
  mkdir -p "corpus/$target"
  cargo fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -n 5
done
