#!/usr/bin/env bash
# Runs every benchmark with its full settings and regenerates the tables of docs/benchmarks.md.
#   bench/run_all.sh                 everything (about 75 minutes on 2 cores)
#   bench/run_all.sh idle memory     only these (stream_speed daemon_latency idle gate memory scaling peers)
# Environment: PYTHON (default .venv/bin/python), AMBIENT_BENCH_OUT (default bench/results),
#   AMBIENT_BENCH_MODEL (default models/ambient-base/model.pt; random ambient-base weights if absent),
#   AMBIENT_BENCH_MANIFESTS (for peers, space-separated NAME=PATH; default dev=data/dev.jsonl).
# Run it on a quiet machine: results taken under load are marked preliminary in the document.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${AMBIENT_BENCH_OUT:-bench/results}
MODEL=${AMBIENT_BENCH_MODEL:-models/ambient-base/model.pt}
MANIFESTS=${AMBIENT_BENCH_MANIFESTS:-dev=data/dev.jsonl}
mkdir -p "$OUT"
ALL=(stream_speed daemon_latency idle gate memory scaling peers)
SELECTED=("$@")
[ ${#SELECTED[@]} -eq 0 ] && SELECTED=("${ALL[@]}")
for name in "${SELECTED[@]}"; do
  case " ${ALL[*]} " in *" $name "*) ;; *) echo "run_all.sh: unknown benchmark $name (${ALL[*]})" >&2; exit 2 ;; esac
done

model_args=()
if [ -f "$MODEL" ]; then model_args=(--model "$MODEL"); else
  echo "run_all.sh: no model at $MODEL: speed, latency and memory use random ambient-base weights" >&2
fi

run() {  # run NAME CMD...: one benchmark, its output kept beside its JSON
  local name=$1; shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.txt"
}

for name in "${SELECTED[@]}"; do
  case $name in
    stream_speed)
      # stream_speed.py does not record the machine: snapshot it around the run.
      rm -f "$OUT/stream_speed.machine.json"
      "$PY" bench/report.py --snapshot "$OUT/stream_speed.machine.json"
      run stream_speed "$PY" bench/stream_speed.py "${model_args[@]}" --seconds 60 --repeats 5 --json "$OUT/stream_speed.json"
      "$PY" bench/report.py --snapshot "$OUT/stream_speed.machine.json" ;;
    daemon_latency)
      run daemon_latency "$PY" bench/daemon_latency.py "${model_args[@]}" --utterances 30 --json "$OUT/daemon_latency.json" ;;
    idle)
      run idle "$PY" bench/idle.py "${model_args[@]}" --seconds 60 --windows 6 --block-ms 30,60,100 --aggressiveness 2,3 --json "$OUT/idle.json" ;;
    gate)
      run gate "$PY" bench/gate.py --seconds 60 --utterances 12 --aggressiveness 2,3 --json "$OUT/gate.json" ;;
    memory)
      run memory "$PY" bench/memory.py "${model_args[@]}" --hours 1 --variants fp32,int8,int8-at-load --json "$OUT/memory.json" ;;
    scaling)
      run scaling "$PY" bench/scaling.py --seconds 60 --repeats 3 --precisions fp32,int8 --json "$OUT/scaling.json" --png "$OUT/scaling.png" ;;
    peers)
      if [ ! -f "$MODEL" ]; then echo "== peers: skipped (needs a trained model at $MODEL)"; continue; fi
      manifest_args=()
      for m in $MANIFESTS; do
        if [ -f "${m#*=}" ]; then manifest_args+=(--manifest "$m"); else echo "peers: no manifest ${m#*=}, skipped" >&2; fi
      done
      if [ ${#manifest_args[@]} -eq 0 ]; then echo "== peers: skipped (no manifest)"; continue; fi
      rm -f "$OUT/peers.machine.json"
      "$PY" bench/report.py --snapshot "$OUT/peers.machine.json"
      run peers "$PY" bench/peers.py --model "$MODEL" "${manifest_args[@]}" --max 200 --json "$OUT/peers.json"
      "$PY" bench/report.py --snapshot "$OUT/peers.machine.json" ;;
  esac
done

"$PY" bench/report.py --results "$OUT" --doc docs/benchmarks.md
