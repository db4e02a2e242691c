#!/usr/bin/env bash
# Side-by-side benchmark: diva vs the PyTorch reference (tools/reference/bench_torch.py), same run,
# same shapes. Builds nothing: it runs an existing diva binary.
#
#   1. diva bench train --preset P --batch B --num-queries N --transcript-tokens T --repeat R
#      (one JSON line on stdout: encoder_ms, connector_fwd_ms, llm_fwd_ms, backward_ms, optimizer_ms,
#      samples_per_s, samples_per_s_cached_encoder, llm_sequence, batch, num_queries)
#   2. diva bench chat, if the binary has that subcommand (skipped with a note otherwise); only the
#      flags its --help lists among --preset/--num-queries/--repeat/--gen-tokens are passed, plus
#      --diva-chat-args
#   3. bench_torch.py --shape P --batch B --num-queries N with prefix+suffix = diva's llm_sequence - N
#      (suffix = the chat template's assistant header: 6 ids for SmolLM2/tiny, 5 for Llama 3/paper)
#   4. a ratio table (diva/torch) on stdout, and everything as one JSON object in --out
# With --rounds R (default 1) steps 1-3 run R times, alternating, and the table gives medians:
# of diva's and torch's figures, and of the per-round ratios (each round pairs a diva run with the
# torch run right after it, so drift on a shared machine cancels), with the range of those ratios.
#
# Usage: tools/reference/bench_side_by_side.sh [--diva target/release/diva] [--python PY]
#          [--preset tiny] [--batch 8] [--num-queries 64] [--transcript-tokens 12] [--repeat 3]
#          [--gen-tokens 64] [--threads T] [--device cpu|cuda] [--dtype f32|bf16|f16]
#          [--what train,ttft,decode] [--diva-chat-args "..."] [--rounds R] [--out FILE]
# Example (CPU, small): nice -n 10 tools/reference/bench_side_by_side.sh --batch 2 --num-queries 32 --repeat 2
# --threads T sets torch.set_num_threads(T) for torch and RAYON_NUM_THREADS=T for diva.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

diva="$root/target/release/diva"
py="${DIVA_REF_VENV:-$HOME/.cache/diva/venv-ref}/bin/python"
preset=tiny batch=8 nq="" tt=12 repeat=3 gen=64 threads="" device=cpu dtype="" what=train,ttft,decode
chat_args="" out="$root/target/bench/side_by_side.json" rounds=1

die() { echo "bench_side_by_side: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --diva) diva="$2"; shift 2 ;;
    --python) py="$2"; shift 2 ;;
    --preset) preset="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --num-queries) nq="$2"; shift 2 ;;
    --transcript-tokens) tt="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --gen-tokens) gen="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --dtype) dtype="$2"; shift 2 ;;
    --what) what="$2"; shift 2 ;;
    --diva-chat-args) chat_args="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer, got '$rounds'"
[[ -x "$diva" ]] || die "no diva binary at $diva (build it first, or pass --diva PATH)"
[[ -x "$py" ]] || die "no python at $py (tools/reference/setup-venv, or pass --python PATH)"
case "$preset" in tiny) suffix_len=6 ;; paper) suffix_len=5 ;; *) die "--preset must be tiny or paper" ;; esac
if command -v python3 >/dev/null; then glue=python3; else glue="$py"; fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ -n "$threads" ]]; then export RAYON_NUM_THREADS="$threads"; fi
cat /proc/loadavg > "$tmp/load_before" 2>/dev/null || true

last_json() { grep -E '^\{' "$1" | tail -n 1; }

one_round() { # $1: the round's directory
rt="$1"; mkdir -p "$rt"
# ---- 1. diva train
nq_args=(); [[ -n "$nq" ]] && nq_args=(--num-queries "$nq")
train_cmd=("$diva" bench train --preset "$preset" --batch "$batch" "${nq_args[@]}" --transcript-tokens "$tt" --repeat "$repeat")
echo "== ${train_cmd[*]}" >&2
"${train_cmd[@]}" > "$rt/diva_train.out"
last_json "$rt/diva_train.out" > "$rt/diva_train.json" || die "diva bench train printed no JSON"
read -r llm_seq nq_diva < <("$glue" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["llm_sequence"], d["num_queries"])' "$rt/diva_train.json")
nq="${nq:-$nq_diva}"  # later rounds ask for the N the first one used
[[ "$nq" == "$nq_diva" ]] || die "diva used N=$nq_diva, asked for $nq"
fixed=$((llm_seq - nq))
(( fixed >= suffix_len )) || suffix_len=$fixed
prefix_len=$((fixed - suffix_len))

# ---- 2. diva chat (optional)
chat_note=""
echo '{}' > "$rt/diva_chat.json"
if [[ ",$what," != *,ttft,* && ",$what," != *,decode,* ]]; then
  chat_note="--what $what: diva bench chat not run"
elif "$diva" bench chat --help > "$rt/chat_help" 2>&1; then
  cargs=()
  grep -q -- '--preset' "$rt/chat_help" && cargs+=(--preset "$preset")
  grep -q -- '--num-queries' "$rt/chat_help" && cargs+=(--num-queries "$nq")
  grep -q -- '--repeat' "$rt/chat_help" && cargs+=(--repeat "$repeat")
  grep -q -- '--gen-tokens' "$rt/chat_help" && cargs+=(--gen-tokens "$gen")
  # shellcheck disable=SC2206
  [[ -n "$chat_args" ]] && cargs+=($chat_args)
  chat_cmd=("$diva" bench chat "${cargs[@]}")
  echo "== ${chat_cmd[*]}" >&2
  if "${chat_cmd[@]}" > "$rt/diva_chat.out"; then
    last_json "$rt/diva_chat.out" > "$rt/diva_chat.json" || { chat_note="diva bench chat printed no JSON"; echo '{}' > "$rt/diva_chat.json"; }
  else
    chat_note="diva bench chat failed (exit $?)"; echo '{}' > "$rt/diva_chat.json"
  fi
else
  chat_note="diva has no 'bench chat' subcommand: diva TTFT/decode skipped"
fi
[[ -n "$chat_note" ]] && echo "note: $chat_note" >&2

# ---- 3. torch
torch_cmd=("$py" "$here/bench_torch.py" --shape "$preset" --batch "$batch" --num-queries "$nq"
           --transcript-tokens "$tt" --repeat "$repeat" --gen-tokens "$gen" --device "$device"
           --what "$what" --prefix-len "$prefix_len" --suffix-len "$suffix_len" --json "$rt/torch.json")
[[ -n "$threads" ]] && torch_cmd+=(--threads "$threads")
[[ -n "$dtype" ]] && torch_cmd+=(--dtype "$dtype")
echo "== ${torch_cmd[*]}" >&2
"${torch_cmd[@]}"
echo "${chat_note}" > "$rt/chat_note"
}
for ((round = 1; round <= rounds; round++)); do
  (( rounds > 1 )) && echo "== round $round of $rounds" >&2
  one_round "$tmp/round$round"
done
cat /proc/loadavg > "$tmp/load_after" 2>/dev/null || true

# ---- 4. ratios + combined JSON
mkdir -p "$(dirname "$out")"
"$glue" - "$tmp" "$out" "$rounds" "${train_cmd[*]}" "${torch_cmd[*]}" <<'PY'
import json, os, statistics, sys
tmp, out, n_rounds, train_cmd, torch_cmd = sys.argv[1:6]
n_rounds = int(n_rounds)

def find(d, *keys):
    """first of keys found in d or one level down"""
    for k in keys:
        if isinstance(d.get(k), (int, float)):
            return float(d[k])
    for v in d.values():
        if isinstance(v, dict):
            r = find(v, *keys)
            if r is not None:
                return r
    return None

def load(n):
    try:
        return open(os.path.join(tmp, n)).read().split()[:3]
    except OSError:
        return None

def rows_of(dt, dc, tj):
    """(key, label, diva, torch, higher_is_better) for one round"""
    tt, tc = tj.get("train", {}), tj.get("chat", {})
    rows = [
        ("train_samples_per_s_cached_encoder", "train samples/s (cached encoder)",
         dt.get("samples_per_s_cached_encoder"), tt.get("samples_per_s_cached_encoder"), True),
        ("train_samples_per_s", "train samples/s (encoder every step)", dt.get("samples_per_s"), tt.get("samples_per_s"), True),
    ]
    for p in ("encoder", "connector_fwd", "llm_fwd", "backward", "optimizer"):
        rows.append((f"train_{p}_ms", f"  train {p} ms", dt.get(f"{p}_ms"), tt.get(f"{p}_ms"), False))
    rows += [
        ("ttft_ms_5s", "TTFT ms (5 s clip)", find(dc, "ttft_ms_5s"), tc.get("ttft_ms_5s"), False),
        ("ttft_ms_30s", "TTFT ms (30 s clip)", find(dc, "ttft_ms_30s", "ttft_ms"), tc.get("ttft_ms_30s"), False),
        ("decode_tok_s", "decode tok/s", find(dc, "decode_tok_s", "decode_tokens_per_s", "tok_s"), tc.get("decode_tok_s"), True),
    ]
    return rows

rounds = []
for i in range(1, n_rounds + 1):
    d = os.path.join(tmp, f"round{i}")
    ld = lambda n: json.load(open(os.path.join(d, n)))
    note = open(os.path.join(d, "chat_note")).read().strip()
    rounds.append({"diva": {"train": ld("diva_train.json"), "chat": ld("diva_chat.json") or None,
                            "chat_note": note or None},
                   "torch": ld("torch.json")})
chat_note = next((r["diva"]["chat_note"] for r in rounds if r["diva"]["chat_note"]), "")

speedup = lambda r, hib: (r if hib else 1 / r) if r else None
med = lambda xs: statistics.median(xs) if xs else None
per_round = [rows_of(r["diva"]["train"], r["diva"]["chat"] or {}, r["torch"]) for r in rounds]
ratios, table = {}, []
for idx, (key, name, _, _, hib) in enumerate(per_round[0]):
    a_s = [rows[idx][2] for rows in per_round if rows[idx][2] is not None]
    b_s = [rows[idx][3] for rows in per_round if rows[idx][3] is not None]
    # paired: each round's diva figure over the torch figure measured right after it
    r_s = [rows[idx][2] / rows[idx][3] for rows in per_round if rows[idx][2] is not None and rows[idx][3]]
    a, b, r = med(a_s), med(b_s), med(r_s)
    adv = speedup(r, hib)
    advs = [speedup(x, hib) for x in r_s]
    ratios[key] = {"diva": a, "torch": b, "diva_over_torch": r, "diva_speedup": adv}
    if n_rounds > 1:
        ratios[key].update({"rounds": n_rounds, "diva_per_round": a_s, "torch_per_round": b_s,
                            "diva_speedup_per_round": advs,
                            "diva_speedup_min": min(advs) if advs else None,
                            "diva_speedup_max": max(advs) if advs else None})
    table.append((name, a, b, r, adv, (min(advs), max(advs)) if advs else None))

tj, dt = rounds[0]["torch"], rounds[0]["diva"]["train"]
f = lambda x, w, p: (f"{x:>{w}.{p}f}" if isinstance(x, (int, float)) else f"{'n/a':>{w}}")
print(f"diva vs torch ({tj['device']}, torch {tj['dtype']}, threads {tj['threads']}), preset/shape {tj['shape']}, "
      f"batch {tj['batch']}, N {tj['num_queries']}, LLM sequence diva {dt.get('llm_sequence')} / torch {tj['llm_sequence']}")
if n_rounds > 1:
    print(f"{n_rounds} alternating rounds: medians of each side and of the paired per-round ratios")
head = f"{'metric':<38}{'diva':>11}{'torch':>11}{'diva/torch':>12}{'diva speedup':>14}"
print(head + (f"{'range':>16}" if n_rounds > 1 else ""))
for name, a, b, r, adv, rng in table:
    line = f"{name:<38}{f(a, 11, 2)}{f(b, 11, 2)}{f(r, 12, 3)}{f(adv, 13, 2)}" + ("x" if adv else " ")
    if n_rounds > 1:
        line += f"{rng[0]:>9.2f}–{rng[1]:.2f}x" if rng else f"{'n/a':>15}"
    print(line)
print("(diva speedup = diva/torch for rates, torch/diva for times; >1 means diva is faster)")
if chat_note:
    print("note:", chat_note)
lb, la = load("load_before"), load("load_after")
if lb and la:
    print(f"load average before {' '.join(lb)}, after {' '.join(la)} (other jobs on the machine skew both sides)")
combined = {"settings": {"diva_train_cmd": train_cmd, "torch_cmd": torch_cmd, "loadavg_before": lb, "loadavg_after": la,
                         "rounds": n_rounds},
            "diva": rounds[0]["diva"], "torch": tj, "ratios": ratios}
if n_rounds > 1:
    combined["rounds"] = rounds
with open(out, "w") as fh:
    json.dump(combined, fh, indent=1, sort_keys=True)
    fh.write("\n")
print("wrote", out)
PY
