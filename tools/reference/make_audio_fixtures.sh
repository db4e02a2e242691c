#!/usr/bin/env bash
# Audio container/codec fixtures (tests/fixtures/audio/formats/) from one real 16 kHz clip:
# pocketsphinx-testdata cards/001.wav ("ten of clubs", 16 kHz s16 mono), samples 1600..16800
# (0.95 s, leading/trailing silence cut) = the 16 kHz original every file below is made from.
#
#   s16.wav          16-bit PCM, 16 kHz mono (plain WAVE_FORMAT_PCM header): the trimmed original
#   s24.wav          24-bit PCM (sox writes WAVE_FORMAT_EXTENSIBLE), exact (x<<8)
#   s32.wav          32-bit PCM (WAVE_FORMAT_EXTENSIBLE), exact (x<<16)
#   f32.wav          32-bit IEEE float (format 3 + fact chunk), exact (x/32768)
#   u8.wav           8-bit unsigned PCM, no dither (lossy: 8-bit quantisation)
#   stereo_44k.wav   s16 44.1 kHz, 2 channels: left = 0.9 * clip, right = 0.45 * clip
#                    (sox remix + rate -v 44100, no dither; 0.9 keeps the resampler from clipping)
#   clip.flac        flac -8 (lossless)
#   clip.mp3         lame -b 32 -m m (MPEG-2 layer III, 16 kHz mono, 32 kbps, with LAME/Xing tag)
#   clip.ogg         oggenc -q 0 --serial 1 (Vorbis, 16 kHz mono)
#   reference_16k.safetensors
#     pcm              f32 [15200]  the original samples (s16 / 32768)
#     from_stereo_44k  f32 [15200]  whisper.load_audio("stereo_44k.wav"): ffmpeg downmix to mono
#                                   ((L+R)/2 = 0.675*clip) + resample 44.1k -> 16k, s16-quantised
#   metadata: per-file format/frames (libsndfile) and the sample counts ffmpeg (whisper.load_audio)
#   decodes from clip.mp3 / clip.ogg (lossy; compare those against pcm by SNR, not exactly)
#
# Usage: make_audio_fixtures.sh [OUT_DIR]   (DIVA_HOME, DIVA_REF_VENV as in setup-venv)
# Needs: sox, flac, lame, vorbis-tools (oggenc), ffmpeg, and the reference venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../tests/fixtures/audio/formats}"
diva_home="${DIVA_HOME:-$HOME/.cache/diva}"
venv="${DIVA_REF_VENV:-$HOME/.cache/diva/venv-ref}"
src="$diva_home/data/pocketsphinx/cards/001.wav"
[[ -f "$src" ]] || { echo "missing $src (run scripts/fetch-data first)" >&2; exit 1; }
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$out"

# -D: no dither anywhere (deterministic, exact where the target depth allows)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
rm -f ./*.wav ./*.flac ./*.mp3 ./*.ogg reference_16k.safetensors
sox -D "$src" -b 16 -e signed-integer s16.wav trim 1600s 15200s
cp s16.wav "$tmp/source_16k.wav"
cd "$tmp"
sox -D source_16k.wav -b 24 -e signed-integer "$out/s24.wav"
sox -D source_16k.wav -b 32 -e signed-integer "$out/s32.wav"
sox -D source_16k.wav -b 32 -e floating-point "$out/f32.wav"
sox -D source_16k.wav -b 8 -e unsigned-integer "$out/u8.wav"
sox -D source_16k.wav -b 16 -e signed-integer -c 2 "$out/stereo_44k.wav" remix 1v0.9 1v0.45 rate -v 44100
flac -s -f -8 --no-padding --no-seektable -o "$out/clip.flac" source_16k.wav
lame --quiet -b 32 -m m source_16k.wav "$out/clip.mp3"
oggenc -Q -q 0 --serial 1 -o "$out/clip.ogg" source_16k.wav
cd "$out"
chmod 644 ./*

DIVA_REF_DIR="$here" "$venv/bin/python" - <<'PY'
import os, subprocess, sys
import numpy as np, soundfile as sf, whisper
sys.path.insert(0, os.environ["DIVA_REF_DIR"])
from st_util import save_file  # safetensors.numpy.save_file + sorted header

pcm, sr = sf.read("s16.wav", dtype="int16")
assert sr == 16000 and pcm.ndim == 1
ref = (pcm.astype(np.float32) / 32768.0).astype(np.float32)
tensors = {"pcm": ref}
tensors["from_stereo_44k"] = whisper.load_audio("stereo_44k.wav").astype(np.float32)
ffv = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
meta = {
    "generator": "tools/reference/make_audio_fixtures.sh",
    "source": "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: cards/001.wav, samples [1600, 16800)",
    "transcript": "ten of clubs",
    "sample_rate": "16000",
    "pcm": "s16 samples / 32768",
    "from_x": "whisper.load_audio(file) = ffmpeg -ac 1 -ar 16000 -f s16le, /32768",
    "stereo_44k": "left = 0.9 * clip, right = 0.45 * clip, sox rate -v 44100, s16, no dither",
    "ffmpeg_decoded_len_16k:clip.mp3": str(len(whisper.load_audio("clip.mp3"))),
    "ffmpeg_decoded_len_16k:clip.ogg": str(len(whisper.load_audio("clip.ogg"))),
    "encoders": "sox -D, flac -8 --no-padding --no-seektable, lame -b 32 -m m, oggenc -q 0 --serial 1",
    "openai_whisper": whisper.__version__,
    "ffmpeg": ffv,
}
for name in sorted(os.listdir(".")):
    if name.endswith((".wav", ".flac", ".mp3", ".ogg")):
        info = sf.info(name)
        meta[f"file:{name}"] = f"{info.samplerate} Hz, {info.channels} ch, {info.frames} frames, {info.format}/{info.subtype}"
save_file(tensors, "reference_16k.safetensors", metadata=meta)
os.chmod("reference_16k.safetensors", 0o644)
for k, v in tensors.items():
    print(k, v.dtype, list(v.shape))
PY
ls -l "$out"
