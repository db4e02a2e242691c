#!/usr/bin/env bash
# Collect the real speech clips used by the mel / encoder parity fixtures into
# tests/fixtures/audio/real/ (or $1), byte-exact copies of upstream files except where noted.
#
# Inputs:
#   DIVA_HOME (default ~/.cache/diva) with data/asterisk and data/pocketsphinx from
#   scripts/fetch-data (Debian packages asterisk-core-sounds-en-wav 1.6.1-1, pocketsphinx-testdata).
#   alsa-utils .deb from Debian (apt-get download), for the 48 kHz clip.
# Needs: apt-get (download only, no install), dpkg-deb, flac, sha256sum.
#
# Clips:
#   asterisk_vm-newuser_8k.wav         asterisk sounds/vm-newuser.wav (8 kHz s16 mono, 6.07 s), copy
#   librivox_0880_16k.wav              pocketsphinx librivox/sense_and_sensibility_01_austen_64kb-0880.wav
#                                      (16 kHz s16 mono, 2.99 s), copy
#   alsa_front_center_48k.wav          alsa-utils /usr/share/sounds/alsa/Front_Center.wav
#                                      (48 kHz s16 mono, 1.43 s, a human voice saying "front center"), copy
#   asterisk_priv-callee-options_8k_31s.flac
#                                      asterisk sounds/priv-callee-options.wav (8 kHz, 31.13 s) losslessly
#                                      re-encoded with `flac -8` (samples identical to the WAV)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../tests/fixtures/audio/real}"
diva_home="${DIVA_HOME:-$HOME/.cache/diva}"
ast="$diva_home/data/asterisk/sounds"
ps="$diva_home/data/pocketsphinx"
mkdir -p "$out"

for f in "$ast/vm-newuser.wav" "$ast/priv-callee-options.wav" "$ps/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"; do
  [[ -f "$f" ]] || { echo "missing $f (run scripts/fetch-data first)" >&2; exit 1; }
done

cp "$ast/vm-newuser.wav" "$out/asterisk_vm-newuser_8k.wav"
cp "$ps/librivox/sense_and_sensibility_01_austen_64kb-0880.wav" "$out/librivox_0880_16k.wav"
# --no-seektable/--no-padding keep the file minimal; -8 is deterministic for a given flac version
flac -s -f -8 --no-padding --no-seektable -o "$out/asterisk_priv-callee-options_8k_31s.flac" "$ast/priv-callee-options.wav"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ -f /usr/share/sounds/alsa/Front_Center.wav ]]; then
  alsa_src=/usr/share/sounds/alsa/Front_Center.wav
  alsa_ver="$(dpkg-query -W -f='${Version}' alsa-utils 2>/dev/null || echo installed)"
else
  (cd "$tmp" && apt-get download alsa-utils >/dev/null 2>&1)
  deb="$(ls "$tmp"/alsa-utils_*.deb)"
  dpkg-deb -x "$deb" "$tmp/x"
  alsa_src="$tmp/x/usr/share/sounds/alsa/Front_Center.wav"
  alsa_ver="$(dpkg-deb -f "$deb" Version)"
fi
cp "$alsa_src" "$out/alsa_front_center_48k.wav"
chmod 644 "$out"/*
echo "alsa-utils $alsa_ver" >&2
(cd "$out" && sha256sum asterisk_vm-newuser_8k.wav librivox_0880_16k.wav alsa_front_center_48k.wav asterisk_priv-callee-options_8k_31s.flac)
