# Shared by the training benchmarks (memory.sh, lora.sh): run one command under
# /usr/bin/time -v and print one line: exit status, peak RSS, training seconds, tokens,
# tokens/s, the memory plan's predicted peak, the load average.
#
#   source benches/measure.sh;  work=DIR;  measure NAME CMD...
#
# Training seconds and tokens come from the command's own report: TRL's JSON line
# (benches/train_trl_real.py: train_seconds, tokens_seen), or sft-train's "N steps in S s"
# and the num_input_tokens_seen of $work/out-NAME/trainer_state.json. Logs stay in $work.

summary() {  # NAME LOG STATUS
  local name=$1 log=$2 status=$3
  local rss plan secs tokens wall
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$log")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
  plan=$(awk '/predicted peak/ {p = $3 " " $4} END {print p}' "$log")
  secs=$(grep -o '"train_seconds": [0-9.]*' "$log.out" 2>/dev/null | awk '{print $2}' || true)
  tokens=$(grep -o '"tokens_seen": [0-9]*' "$log.out" 2>/dev/null | awk '{print $2}' || true)
  if [ -z "$secs" ]; then
    secs=$(grep -o 'steps in [0-9.]* s' "$log" | awk '{print $3}' || true)
    tokens=$(grep -o '"num_input_tokens_seen": [0-9]*' "$work/out-$name/trainer_state.json" 2>/dev/null | awk '{print $2}' || true)
  fi
  local tps=n/a
  if [ -n "$secs" ] && [ -n "$tokens" ]; then tps=$(awk -v t="$tokens" -v s="$secs" 'BEGIN {printf "%.1f", t / s}'); fi
  echo "$name | exit $status | peak RSS ${rss:-?} MiB | wall $wall | train ${secs:-?} s | ${tokens:-?} tokens | ${tps} tokens/s | plan ${plan:-n/a} | load $(cut -d' ' -f1 /proc/loadavg)"
}

measure() {  # NAME CMD...
  local name=$1
  shift
  local log="$work/$name.log" status=0
  /usr/bin/time -v "$@" >"$log.out" 2>"$log" || status=$?
  summary "$name" "$log" "$status"
}
