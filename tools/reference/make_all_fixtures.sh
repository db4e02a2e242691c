#!/usr/bin/env bash
# Regenerate every fixture under tests/fixtures/ (see README.md). The faster-whisper transcripts
# (~45 min) are only redone with --transcripts.
#   DIVA_HOME (default ~/.cache/diva): models/whisper-tiny.en, data/{asterisk,pocketsphinx}
#   DIVA_REF_VENV (default ~/.cache/diva/venv-ref): created by setup-venv
#   DIVA_REF_EVAL_VENV (default ~/.cache/diva/venv-ref-eval): from requirements-eval.txt
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
diva_home="${DIVA_HOME:-$HOME/.cache/diva}"
py="${DIVA_REF_VENV:-$HOME/.cache/diva/venv-ref}/bin/python"
model="$diva_home/models/whisper-tiny.en"
fx="$repo/tests/fixtures"

"$here/prepare_real_clips.sh" "$fx/audio/real"
"$py" "$here/make_mel_fixtures.py" --audio-dir "$fx/audio/real" --out "$fx/mel"
"$py" "$here/make_encoder_fixture.py" --model "$model" --audio "$fx/audio/real/asterisk_vm-newuser_8k.wav" \
  --out "$fx/encoder/tiny_en_ct2.safetensors"
"$py" "$here/make_hf_whisper_fixture.py" --out "$fx/hf-whisper-random"
"$here/make_audio_fixtures.sh" "$fx/audio/formats"
"$py" "$here/make_parquet_fixture.py" --out "$fx/parquet"
"$py" "$here/make_lever_losses_fixture.py" --out "$fx/levers"
# diva eval's metric references: their own venv (requirements-eval.txt) and PEDANT's four pickles
# from github.com/zli12321/pedant_models@12b835a in $DIVA_HOME/models/pedant-12b835a/.
"${DIVA_REF_EVAL_VENV:-$HOME/.cache/diva/venv-ref-eval}/bin/python" "$here/make_eval_metric_fixtures.py" \
  --out "$fx/eval" --pedant-dir "$diva_home/models/pedant-12b835a"
if [[ "${1:-}" == "--transcripts" ]]; then
  "$py" "$here/transcribe_faster_whisper.py" --model "$model" \
    --manifest "$diva_home/data/asterisk/manifest.jsonl" --out "$fx/asterisk/faster_whisper_tiny_en.jsonl"
  python3 "$here/wer.py" "$fx/asterisk/faster_whisper_tiny_en.jsonl"
fi
