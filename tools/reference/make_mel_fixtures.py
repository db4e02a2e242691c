#!/usr/bin/env python3
"""Whisper log-mel parity fixtures (tests/fixtures/mel/).

For each real clip in --audio-dir (prepared by prepare_real_clips.sh) writes
<out>/<name>.safetensors with (all f32):
  pcm     [n]         whisper.load_audio(path): ffmpeg -> mono s16le 16 kHz -> /32768
                      (note: s16-quantised after ffmpeg's resampler)
  mel80   [80,3000]   whisper.log_mel_spectrogram(whisper.pad_or_trim(pcm), n_mels=80)
  mel128  [128,3000]  same with n_mels=128
The >30 s clip stores only mel80 (its pcm would be ~2 MB; pad_or_trim keeps the first
480000 samples = first 30 s). Metadata: source file, original sample rate, channels,
duration, transcript, versions.

Also writes <out>/filters.safetensors: whisper's mel filterbanks (mel_filters.npz)
  mel_filters80 [80,201], mel_filters128 [128,201] (f32).

Usage: make_mel_fixtures.py [--audio-dir tests/fixtures/audio/real] [--out tests/fixtures/mel]
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import soundfile as sf
import torch
import whisper
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_util import save_file  # noqa: E402  (safetensors.numpy.save_file + sorted header)

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# name, file, origin, transcript, keys
CLIPS = [
    (
        "asterisk_vm-newuser_8k",
        "asterisk_vm-newuser_8k.wav",
        "Debian asterisk-core-sounds-en-wav 1.6.1-1: sounds/en/vm-newuser.wav (CC-BY-SA-3.0, Allison Smith)",
        "Welcome to Comedian Mail. First, I will guide you through a short setup process.",
        ("pcm", "mel80", "mel128"),
    ),
    (
        "librivox_0880_16k",
        "librivox_0880_16k.wav",
        "Debian pocketsphinx-testdata 0.8+5prealpha+1-15: librivox/sense_and_sensibility_01_austen_64kb-0880.wav (package BSD-2; LibriVox recording, public domain)",
        "he was not an ill disposed young man",
        ("pcm", "mel80", "mel128"),
    ),
    (
        "alsa_front_center_48k",
        "alsa_front_center_48k.wav",
        "Debian alsa-utils 1.2.8-1: /usr/share/sounds/alsa/Front_Center.wav (alsa-utils, GPL-2)",
        "Front center.",
        ("pcm", "mel80", "mel128"),
    ),
    (
        "asterisk_priv-callee-options_8k_31s",
        "asterisk_priv-callee-options_8k_31s.flac",
        "Debian asterisk-core-sounds-en-wav 1.6.1-1: sounds/en/priv-callee-options.wav (CC-BY-SA-3.0), flac -8 (lossless)",
        "Dial 1 if you wish this caller to reach you directly now, and in the future. Dial 2 if you wish to send this caller to voicemail now and forevermore. ...",
        ("mel80",),
    ),
]


def ffmpeg_version() -> str:
    try:
        out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
        return out.splitlines()[0]
    except Exception:  # pragma: no cover
        return "unknown"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio-dir", default=os.path.join(REPO, "tests", "fixtures", "audio", "real"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "mel"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    versions = {
        "openai_whisper": whisper.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ffmpeg": ffmpeg_version(),
    }

    filt = {
        "mel_filters80": whisper.audio.mel_filters("cpu", 80).numpy().astype(np.float32),
        "mel_filters128": whisper.audio.mel_filters("cpu", 128).numpy().astype(np.float32),
    }
    save_file(
        filt,
        os.path.join(args.out, "filters.safetensors"),
        metadata={
            "generator": "tools/reference/make_mel_fixtures.py",
            "source": "whisper/assets/mel_filters.npz (librosa.filters.mel(sr=16000, n_fft=400, n_mels=N), slaney)",
            **versions,
        },
    )

    for name, fname, origin, text, keys in CLIPS:
        path = os.path.join(args.audio_dir, fname)
        info = sf.info(path)
        pcm = whisper.load_audio(path)  # f32, 16 kHz mono
        tensors = {}
        if "pcm" in keys:
            tensors["pcm"] = pcm.astype(np.float32)
        padded = whisper.pad_or_trim(pcm)
        for n in (80, 128):
            if f"mel{n}" in keys:
                mel = whisper.log_mel_spectrogram(padded, n_mels=n)
                tensors[f"mel{n}"] = mel.numpy().astype(np.float32)
        meta = {
            "generator": "tools/reference/make_mel_fixtures.py",
            "source_file": fname,
            "origin": origin,
            "transcript": text,
            "original_sample_rate": str(info.samplerate),
            "channels": str(info.channels),
            "original_frames": str(info.frames),
            "duration_s": f"{info.frames / info.samplerate:.6f}",
            "subtype": info.subtype,
            "pcm_len_16k": str(len(pcm)),
            "method": "pcm=whisper.load_audio(path); melN=whisper.log_mel_spectrogram(whisper.pad_or_trim(pcm), n_mels=N)",
            **versions,
        }
        out = os.path.join(args.out, f"{name}.safetensors")
        save_file(tensors, out, metadata=meta)
        os.chmod(out, 0o644)
        desc = ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items())
        print(f"{name}: sr={info.samplerate} ch={info.channels} dur={info.frames / info.samplerate:.3f}s -> {desc}")
    os.chmod(os.path.join(args.out, "filters.safetensors"), 0o644)
    return 0


if __name__ == "__main__":
    sys.exit(main())
