#!/usr/bin/env python3
"""CTranslate2 Whisper tiny.en encoder parity fixture (tests/fixtures/encoder/tiny_en_ct2.safetensors).

  mel          f32 [80,3000]   whisper.log_mel_spectrogram(whisper.pad_or_trim(whisper.load_audio(clip)), 80)
                               (identical to mel80 of tests/fixtures/mel/asterisk_vm-newuser_8k.safetensors)
  encoder_out  f32 [1500,384]  ctranslate2.models.Whisper(model_dir, device="cpu",
                               compute_type="float32").encode(mel[None]) (batch dim dropped)

Cross-check (metadata only): the same encoder rebuilt in transformers' WhisperEncoder from the
model.bin weights (read with ct2_bin.py, f16 -> f32), eager attention; max |diff| is recorded.

Usage: make_encoder_fixture.py --model DIR [--audio CLIP] [--out FILE]
  DIR defaults to $DIVA_HOME/models/whisper-tiny.en (DIVA_HOME defaults to ~/.cache/diva).
"""
import argparse
import hashlib
import os
import re
import sys

import ctranslate2
import numpy as np
import torch
import whisper
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_util import save_file  # noqa: E402  (safetensors.numpy.save_file + sorted header)

from ct2_bin import read_ct2  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def hf_encoder_from_ct2(variables, n_layers, n_heads, d_model, ffn):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=n_layers,
        encoder_attention_heads=n_heads,
        encoder_ffn_dim=ffn,
        max_source_positions=1500,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
    )
    cfg._attn_implementation = "eager"
    enc = WhisperEncoder(cfg).eval()

    def t(name):
        return torch.from_numpy(variables[name].astype(np.float32))

    sd = {
        "conv1.weight": t("encoder/conv1/weight"),
        "conv1.bias": t("encoder/conv1/bias"),
        "conv2.weight": t("encoder/conv2/weight"),
        "conv2.bias": t("encoder/conv2/bias"),
        "embed_positions.weight": t("encoder/position_encodings/encodings"),
        "layer_norm.weight": t("encoder/layer_norm/gamma"),
        "layer_norm.bias": t("encoder/layer_norm/beta"),
    }
    for i in range(n_layers):
        p = f"encoder/layer_{i}"
        qkv_w = t(f"{p}/self_attention/linear_0/weight")
        qkv_b = t(f"{p}/self_attention/linear_0/bias")
        q_w, k_w, v_w = torch.split(qkv_w, d_model, dim=0)
        q_b, k_b, v_b = torch.split(qkv_b, d_model, dim=0)
        assert float(k_b.abs().max()) == 0.0, "CT2 key bias expected to be zero"
        h = f"layers.{i}"
        sd.update(
            {
                f"{h}.self_attn.q_proj.weight": q_w,
                f"{h}.self_attn.q_proj.bias": q_b,
                f"{h}.self_attn.k_proj.weight": k_w,
                f"{h}.self_attn.v_proj.weight": v_w,
                f"{h}.self_attn.v_proj.bias": v_b,
                f"{h}.self_attn.out_proj.weight": t(f"{p}/self_attention/linear_1/weight"),
                f"{h}.self_attn.out_proj.bias": t(f"{p}/self_attention/linear_1/bias"),
                f"{h}.self_attn_layer_norm.weight": t(f"{p}/self_attention/layer_norm/gamma"),
                f"{h}.self_attn_layer_norm.bias": t(f"{p}/self_attention/layer_norm/beta"),
                f"{h}.fc1.weight": t(f"{p}/ffn/linear_0/weight"),
                f"{h}.fc1.bias": t(f"{p}/ffn/linear_0/bias"),
                f"{h}.fc2.weight": t(f"{p}/ffn/linear_1/weight"),
                f"{h}.fc2.bias": t(f"{p}/ffn/linear_1/bias"),
                f"{h}.final_layer_norm.weight": t(f"{p}/ffn/layer_norm/gamma"),
                f"{h}.final_layer_norm.bias": t(f"{p}/ffn/layer_norm/beta"),
            }
        )
    enc.load_state_dict(sd, strict=True)
    return enc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    diva_home = os.environ.get("DIVA_HOME", os.path.expanduser("~/.cache/diva"))
    ap.add_argument("--model", default=os.path.join(diva_home, "models", "whisper-tiny.en"))
    ap.add_argument("--audio", default=os.path.join(REPO, "tests", "fixtures", "audio", "real", "asterisk_vm-newuser_8k.wav"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "encoder", "tiny_en_ct2.safetensors"))
    ap.add_argument("--no-hf-check", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    pcm = whisper.load_audio(args.audio)
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(pcm), n_mels=80).numpy().astype(np.float32)
    features = np.ascontiguousarray(mel[None])  # [1,80,3000]

    model = ctranslate2.models.Whisper(args.model, device="cpu", compute_type="float32", intra_threads=1)
    out = model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True)
    enc = np.array(out).astype(np.float32)
    assert enc.shape == (1, 1500, 384), enc.shape

    with open(os.path.join(args.model, "model.bin"), "rb") as f:
        model_sha = hashlib.sha256(f.read()).hexdigest()
    meta = {
        "generator": "tools/reference/make_encoder_fixture.py",
        "ctranslate2": ctranslate2.__version__,
        "compute_type": "float32",
        "device": "cpu",
        "model": "whisper-tiny.en CTranslate2 (float16 weights in model.bin)",
        "model_bin_sha256": model_sha,
        "audio": os.path.basename(args.audio),
        "openai_whisper": whisper.__version__,
        "torch": torch.__version__,
        "method": "mel=log_mel_spectrogram(pad_or_trim(load_audio(audio)),80); encoder_out=Whisper.encode(mel[None])[0]",
    }

    if not args.no_hf_check:
        import transformers

        _, spec, _, variables, _ = read_ct2(os.path.join(args.model, "model.bin"))
        n_layers = len({k.split("/")[1] for k in variables if re.match(r"encoder/layer_\d+/", k)})
        n_heads = int(variables["encoder/num_heads"])
        d_model = variables["encoder/conv1/weight"].shape[0]
        ffn = variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]
        hf = hf_encoder_from_ct2(variables, n_layers, n_heads, d_model, ffn)
        with torch.no_grad():
            hf_out = hf(torch.from_numpy(features)).last_hidden_state.numpy()
        diff = np.abs(hf_out - enc)
        meta["hf_check_transformers"] = transformers.__version__
        meta["hf_check_max_abs_diff"] = f"{diff.max():.3e}"
        meta["hf_check_mean_abs_diff"] = f"{diff.mean():.3e}"
        print(f"HF WhisperEncoder vs CT2: max|d|={diff.max():.3e} mean|d|={diff.mean():.3e} "
              f"(|enc| max {np.abs(enc).max():.3f}, mean {np.abs(enc).mean():.3f})")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    save_file({"mel": mel, "encoder_out": enc[0]}, args.out, metadata=meta)
    os.chmod(args.out, 0o644)
    print(f"wrote {args.out}: mel {list(mel.shape)}, encoder_out {list(enc[0].shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
