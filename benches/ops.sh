#!/usr/bin/env bash
# Peak memory of `sft-data mix | split | dedupe | stats` on generated conversations
# (benches/gen_ops_data.py, ~560 bytes a row), with /usr/bin/time -v.
#
#   bash benches/ops.sh ROWS [WORK_DIR]      (default 10000000 rows in /tmp/sft-ops)
#
# Needs about 6x the input's size on disk (input, outputs, the key table); everything it
# writes is removed at the end (inputs already in WORK_DIR are used and kept). Prints one line per command: seconds and max RSS.
set -euo pipefail
rows=${1:-10000000}
work=${2:-/tmp/sft-ops}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SFT_DATA:-$root/target/release/sft-data}
[ -x "$bin" ] || cargo build --release -p sft-cli --bin sft-data
mkdir -p "$work"
if [ -f "$work/in-0.jsonl" ]; then
  # Inputs generated beforehand are kept (they take minutes to make); outputs are not.
  trap 'rm -rf "$work"/mix.jsonl "$work"/dedupe* "$work"/split "$work"/*.time "$work"/stats.*' EXIT
else
  trap 'rm -rf "$work"' EXIT
  python3 "$root/benches/gen_ops_data.py" "$work/in" "$rows"
fi
du -ch "$work"/in-*.jsonl | tail -1
measure() {
  local name=$1; shift
  /usr/bin/time -v "$bin" "$@" -q 2> "$work/$name.time" >/dev/null || { cat "$work/$name.time"; exit 1; }
  local rss wall
  rss=$(grep "Maximum resident" "$work/$name.time" | awk '{print $6}')
  wall=$(grep "Elapsed (wall clock)" "$work/$name.time" | awk '{print $8}')
  echo "$name rows=$rows wall=$wall max_rss_mb=$((rss / 1024))"
}
in=("$work"/in-0.jsonl "$work"/in-1.jsonl "$work"/in-2.jsonl)
measure stats stats "${in[@]}" --report "$work/stats.json"
measure mix mix "${in[0]}:0.5" "${in[1]}:0.3" "${in[2]}:0.2" --rows "$rows" --seed 1 -o "$work/mix.jsonl"
rm -f "$work/mix.jsonl"
measure dedupe dedupe "${in[@]}" -o "$work/dedupe.jsonl"
rm -f "$work/dedupe.jsonl" "$work/dedupe.rejects.jsonl"
measure split split "${in[@]}" --test-size 0.05 --seed 1 -o "$work/split"
rm -rf "$work/split"
measure check check "${in[@]}"
