#!/usr/bin/env python3
"""Hugging Face style parquet fixtures with embedded audio bytes (tests/fixtures/parquet/).

Mimics what `datasets.Dataset.to_parquet()` and the hub's refs/convert/parquet write for an
`Audio` column: a struct `audio {bytes: binary, path: string}` holding the encoded file, plus a
transcript column whose name depends on the dataset. Audio is synthetic (decaying tones), so the
fixtures carry no third-party content. pyarrow defaults: snappy compression, parquet v2.6.

Writes:
  commonvoice_style.parquet  5 rows, 2 row groups of <= 3 rows. Columns client_id, audio, sentence,
                             normalized_text, locale:
    0  audio {wav 0.50 s 440 Hz, "common_voice_en_001.wav"}  "Hello there."  -> imported
    1  audio {wav 0.25 s 660 Hz, path null}                  "Second clip."  -> imported (wav sniffed)
    2  audio {wav 0.25 s 550 Hz, "common_voice_en_003.wav"}  ""              -> skipped: empty text
    3  audio null                                            "No audio here." -> skipped: no audio
    4  audio {bytes null, "common_voice_en_005.wav"}         "Bytes missing." -> skipped: no audio
  librispeech_style.parquet  1 row: id "1272-0000", speaker_id int64 1272, chapter_id int64,
                             text "A FLAC ROW", audio {flac 0.20 s, "1272-0000.flac"}
  no_text.parquet            1 row: audio {wav, "x.wav"}, label int64 (no transcript column)

Every run writes the same bytes (fixed signals, no timestamps in parquet metadata).
Needs numpy, soundfile and pyarrow (pyarrow is in requirements.txt).

Usage: make_parquet_fixture.py [--out tests/fixtures/parquet]
"""
import argparse
import io
import json
import os
import wave

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SR = 16000


def tone(seconds, freq):
    t = np.arange(int(round(seconds * SR))) / SR
    env = np.exp(-3.0 * t / seconds)
    return (0.5 * env * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(x):
    pcm = np.round(np.clip(x, -1, 1) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def flac_bytes(x):
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


AUDIO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def hf_metadata(features):
    # datasets stores its feature spec under the "huggingface" schema metadata key.
    return {b"huggingface": json.dumps({"info": {"features": features}}, sort_keys=True).encode()}


def write(table, path, row_group_size):
    pq.write_table(table, path, row_group_size=row_group_size, compression="snappy")
    print(f"{path}: {table.num_rows} rows, {os.path.getsize(path)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures", "parquet"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    audio_feature = {"_type": "Audio", "sampling_rate": SR}
    string = {"_type": "Value", "dtype": "string"}
    int64 = {"_type": "Value", "dtype": "int64"}

    cv_audio = [
        {"bytes": wav_bytes(tone(0.50, 440)), "path": "common_voice_en_001.wav"},
        {"bytes": wav_bytes(tone(0.25, 660)), "path": None},
        {"bytes": wav_bytes(tone(0.25, 550)), "path": "common_voice_en_003.wav"},
        None,
        {"bytes": None, "path": "common_voice_en_005.wav"},
    ]
    sentences = ["Hello there.", "Second clip.", "", "No audio here.", "Bytes missing."]
    cv = pa.table(
        {
            "client_id": pa.array(["spk_a", "spk_b", "spk_c", "spk_d", "spk_e"]),
            "audio": pa.array(cv_audio, type=AUDIO_TYPE),
            "sentence": pa.array(sentences),
            "normalized_text": pa.array([s.lower().strip(".") for s in sentences]),
            "locale": pa.array(["en"] * 5),
        }
    ).replace_schema_metadata(
        hf_metadata(
            {
                "client_id": string,
                "audio": audio_feature,
                "sentence": string,
                "normalized_text": string,
                "locale": string,
            }
        )
    )
    write(cv, os.path.join(args.out, "commonvoice_style.parquet"), 3)

    ls = pa.table(
        {
            "audio": pa.array(
                [{"bytes": flac_bytes(tone(0.20, 330)), "path": "1272-0000.flac"}], type=AUDIO_TYPE
            ),
            "text": pa.array(["A FLAC ROW"]),
            "speaker_id": pa.array([1272], type=pa.int64()),
            "chapter_id": pa.array([128104], type=pa.int64()),
            "id": pa.array(["1272-0000"]),
        }
    ).replace_schema_metadata(
        hf_metadata(
            {"audio": audio_feature, "text": string, "speaker_id": int64, "chapter_id": int64, "id": string}
        )
    )
    write(ls, os.path.join(args.out, "librispeech_style.parquet"), 100)

    nt = pa.table(
        {
            "audio": pa.array([{"bytes": wav_bytes(tone(0.05, 440)), "path": "x.wav"}], type=AUDIO_TYPE),
            "label": pa.array([3], type=pa.int64()),
        }
    ).replace_schema_metadata(hf_metadata({"audio": audio_feature, "label": int64}))
    write(nt, os.path.join(args.out, "no_text.parquet"), 100)


if __name__ == "__main__":
    main()
