#!/usr/bin/env python3
"""Build JSONL speech manifests for the data that scripts/fetch-data unpacks.

    make-manifest.py asterisk     DATA_DIR   # DATA_DIR has sounds/ and core-sounds-en.txt(.gz)
    make-manifest.py pocketsphinx DATA_DIR   # DATA_DIR has librivox/ and cards/

Writes DATA_DIR/manifest.jsonl: one {"id", "audio", "text"} object per line,
sorted by id, "audio" an absolute path. A summary goes to stderr.
Stdlib only.
"""
import gzip
import json
import os
import re
import sys
import wave

MARKUP = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")


def log(msg):
    print(msg, file=sys.stderr)


def clean(text):
    """Drop [..], <..>, (..) annotations and squeeze whitespace."""
    return " ".join(MARKUP.sub(" ", text).split())


def write_manifest(path, rows):
    rows.sort(key=lambda r: r["id"])
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def audio_info(paths):
    kinds = {}
    for p in paths:
        with wave.open(p) as w:
            k = (w.getframerate(), w.getnchannels(), 8 * w.getsampwidth())
        kinds[k] = kinds.get(k, 0) + 1
    return ", ".join(
        f"{n} x {sr} Hz/{ch} ch/{bits} bit" for (sr, ch, bits), n in sorted(kinds.items())
    )


def asterisk(root):
    root = os.path.abspath(root)
    sounds = os.path.join(root, "sounds")
    txt = os.path.join(root, "core-sounds-en.txt")
    opener = open
    if not os.path.exists(txt):
        txt += ".gz"
        opener = gzip.open
    transcripts = {}
    with opener(txt, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            key, sep, text = line.partition(":")
            if not sep:
                log(f"asterisk: skipping unparsable line: {line!r}")
                continue
            transcripts[key.strip()] = text.strip()

    wavs = {}
    for dirpath, _, files in os.walk(sounds):
        for fn in files:
            if fn.endswith(".wav"):
                full = os.path.join(dirpath, fn)
                wavs[os.path.relpath(full, sounds)[: -len(".wav")]] = full

    rows, nonspeech, missing_text = [], [], []
    for key, path in wavs.items():
        if key not in transcripts:
            missing_text.append(key)
            continue
        text = clean(transcripts[key])
        if not text:
            nonspeech.append(f"{key} ({transcripts[key]})")
            continue
        rows.append({"id": key, "audio": path, "text": text})
    no_wav = sorted(set(transcripts) - set(wavs))
    out = os.path.join(root, "manifest.jsonl")
    write_manifest(out, rows)

    log(f"asterisk: {len(wavs)} wavs, {len(transcripts)} transcript lines, "
        f"{len(rows)} in manifest")
    log(f"asterisk: audio: {audio_info(list(wavs.values()))}")
    if nonspeech:
        log(f"asterisk: {len(nonspeech)} wavs left out, transcript is only a "
            f"non-speech annotation: {'; '.join(sorted(nonspeech))}")
    if missing_text:
        log(f"asterisk: {len(missing_text)} wavs without transcript: "
            f"{' '.join(sorted(missing_text))}")
    if no_wav:
        log(f"asterisk: {len(no_wav)} transcripts without wav: {' '.join(no_wav)}")
    log(f"asterisk: wrote {out}")


SPHINX_LINE = re.compile(r"^(.*?)\s*\(([^()]+)\)\s*$")


def pocketsphinx(root):
    """Sphinx .transcription files: '<s> words </s> (utt-id)'."""
    root = os.path.abspath(root)
    rows, missing = [], []
    nwav = 0
    wav_paths = []
    for sub in sorted(os.listdir(root)):
        d = os.path.join(root, sub)
        if not os.path.isdir(d):
            continue
        for fn in sorted(os.listdir(d)):
            if fn.endswith(".wav"):
                nwav += 1
                wav_paths.append(os.path.join(d, fn))
        for fn in sorted(os.listdir(d)):
            if not fn.endswith("transcription"):
                continue
            with open(os.path.join(d, fn), encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line:
                        continue
                    m = SPHINX_LINE.match(line)
                    if not m:
                        log(f"pocketsphinx: skipping unparsable line in {sub}/{fn}: {line!r}")
                        continue
                    text, utt = m.group(1), m.group(2).split()[0]
                    text = " ".join(re.sub(r"</?s>|<sil>", " ", text).split())
                    wav = os.path.join(d, utt + ".wav")
                    if not os.path.exists(wav):
                        missing.append(f"{sub}/{utt}")
                        continue
                    rows.append({"id": f"{sub}/{utt}", "audio": wav, "text": text})
    out = os.path.join(root, "manifest.jsonl")
    write_manifest(out, rows)
    log(f"pocketsphinx: {nwav} wavs, {len(rows)} in manifest")
    log(f"pocketsphinx: audio: {audio_info(wav_paths)}")
    if missing:
        log(f"pocketsphinx: transcripts without wav: {' '.join(missing)}")
    unmatched = sorted(set(wav_paths) - {r['audio'] for r in rows})
    if unmatched:
        log(f"pocketsphinx: wavs without transcript: {' '.join(unmatched)}")
    log(f"pocketsphinx: wrote {out}")


def main(argv):
    if len(argv) != 3 or argv[1] not in ("asterisk", "pocketsphinx"):
        log(__doc__)
        return 2
    {"asterisk": asterisk, "pocketsphinx": pocketsphinx}[argv[1]](argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
