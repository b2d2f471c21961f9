#!/usr/bin/env bash
# Benchmark of `sft-data check` on a generated JSON-lines file of realistic conversations:
# wall time, MB/s, rows/s and peak memory (GNU time's maximum resident set size).
#
#     bash benches/check.sh [SIZE_MB]     (default 500)
#
# The file is generated once under target/bench-data/ and reused.
set -euo pipefail
size=${1:-500}
cargo build --release --quiet -p sft-cli -p sft-benches
data=target/bench-data/conversations-${size}mb.jsonl
mkdir -p target/bench-data
if [ ! -f "$data" ]; then
  target/release/gen-conversations "$data" "$size"
fi
bytes=$(stat -c %s "$data")
rows=$(wc -l < "$data")
if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -f '%e %M'); else echo "install GNU time (apt-get install time) for peak memory" >&2; exit 1; fi
for run in 1 2 3; do
  out=$( { "${timer[@]}" target/release/sft-data check "$data" --quiet --report target/bench-data/report.json; } 2>&1 >/dev/null | tail -1) || true
  secs=${out% *}; kb=${out#* }
  awk -v s="$secs" -v b="$bytes" -v r="$rows" -v k="$kb" -v n="$run" \
    'BEGIN { printf "run %d: %.2f s, %.0f MB/s, %.0f rows/s, peak %.0f MB (%d rows, %.0f MB)\n", n, s, b/1e6/s, r/s, k/1024, r, b/1e6 }'
done
