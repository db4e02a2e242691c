#!/usr/bin/env bash
# Issue 18's whole side-by-side matrix in one command: `diva bench llm
# --against llama.cpp` on the shipped SmolLM2 Q4_1 file and the Q8_0 and
# Q4_K_M files llama.cpp's quantizer writes from it
# (tools/reference/make_quant_variants.py), at 1 and 2 threads, prompts of 128
# and 512 tokens; then `diva bench chat --against cascade` at 1 and 2
# threads. One JSON file per cell in OUT (default docs/bench), named
# llm-<file>-<T>t-p<P>-<DATE>.json and chat-vs-cascade-<T>t-<DATE>.json, and
# a summary table (diva as stored / llama.cpp) on stdout.
#
#   tools/reference/bench_vs_llama_cpp.sh [OUT] [REPEAT=3]
#   WHAT=llm tools/reference/bench_vs_llama_cpp.sh    # only the LLM cells (WHAT=chat: only chat)
#
# Run it on an idle machine (pause background jobs with SIGSTOP first: the
# ratios drift ±20% under load). Needs the reference venv with
# llama-cpp-python (tools/reference/setup-venv) and target/release/diva.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-docs/bench}; repeat=${2:-3}
home=${DIVA_HOME:-$HOME/.cache/diva}
bin=${DIVA_BIN:-target/release/diva}
day=$(date -u +%F)
var="$home/models/smollm2-variants"
[ -f "$var/smollm2-q8_0.gguf" ] && [ -f "$var/smollm2-q4_k_m.gguf" ] ||
  "${DIVA_REF_VENV:-$home/venv-ref}/bin/python" tools/reference/make_quant_variants.py >&2
mkdir -p "$out"
what=${WHAT:-all}
[ "$what" = chat ] || printf '%-8s %3s %5s %22s %22s %18s\n' file thr P "prompt diva/llama.cpp" "decode diva/llama.cpp" "decode f32 mode"
for f in q4_1 q8_0 q4_k_m; do
  [ "$what" = chat ] && break
  case $f in q4_1) llm=smollm2 ;; *) llm="$var/smollm2-$f.gguf" ;; esac
  for t in 1 2; do
    for p in 128 512; do
      j="$out/llm-$f-${t}t-p$p-$day.json"
      RAYON_NUM_THREADS=$t "$bin" -q bench llm --llm "$llm" --against llama.cpp --threads "$t" \
        --repeat "$repeat" --prompt-tokens "$p" --engine stored --engine f32-blocks \
        2>/dev/null | sed -n '/^{/,$p' > "$j.tmp"
      mv "$j.tmp" "$j"
      python3 - "$j" "$f" "$t" "$p" <<'PY'
import json, sys
j, f, t, p = sys.argv[1:]
r = json.load(open(j))
x = r["diva_as_stored_over_peer"]["llama_cpp"]
y = r["diva_f32_blocks_over_peer"]["llama_cpp"]
print(f"{f:<8} {t:>3} {p:>5} {x['prompt']:>22.2f} {x['decode']:>22.2f} {y['decode']:>18.2f}")
PY
    done
  done
done
for t in 1 2; do
  [ "$what" = llm ] && break
  j="$out/chat-vs-cascade-${t}t-$day.json"
  RAYON_NUM_THREADS=$t "$bin" -q bench chat --against cascade --threads "$t" --repeat "$repeat" \
    2>/dev/null > "$j.tmp"
  mv "$j.tmp" "$j"
  python3 - "$j" "$t" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for c in r["clips"]:
    for peer in c["cascade"]:
        print(f"chat {sys.argv[2]}t {c['clip']}: diva TTFT {c['diva']['ttft_ms']:.0f} ms, cascade "
              f"{peer['ttft_ms']:.0f} ms ({peer['cascade_over_diva_ttft']:.2f}x); encoder "
              f"faster-whisper/diva {peer['peer_over_diva_encoder']:.2f}x")
PY
done
