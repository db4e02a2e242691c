//! Any supported audio file → mono 16 kHz `f32` PCM, the input of the Whisper front end.

use std::path::Path;

use super::decode::{decode_bytes_limited, decode_file_limited, DecodedAudio};
use super::resample::resample;
use crate::{Error, Result};

/// The sample rate everything is converted to (Whisper's).
const TARGET_RATE: u32 = super::SAMPLE_RATE;

/// Peak absolute amplitude below which audio is treated as silent (1e-4 ≈ -80 dBFS: below
/// the LSB of 8-bit audio and ~3 LSB of 16-bit audio, i.e. digital silence or dither).
pub const SILENCE_PEAK: f32 = 1e-4;

/// Decode `path`, downmix to mono by averaging the channels, resample to 16 kHz and
/// reject silent audio.
pub fn load_pcm_16k(path: &Path) -> Result<Vec<f32>> {
    load_pcm_16k_limited(path, None)
}

/// [`load_pcm_16k`], refusing audio longer than `max_seconds` (when given) before it is
/// decoded in full (see [`decode_file_limited`]).
pub fn load_pcm_16k_limited(path: &Path, max_seconds: Option<f64>) -> Result<Vec<f32>> {
    let audio = decode_file_limited(path, max_seconds)?;
    to_pcm_16k(&audio, path)
}

/// [`load_pcm_16k`] for an in-memory file (an upload): `ext_hint` is the file extension
/// without the dot, if known; `name` is only used in error messages.
pub fn load_pcm_16k_bytes(bytes: Vec<u8>, ext_hint: Option<&str>, name: &Path) -> Result<Vec<f32>> {
    load_pcm_16k_bytes_limited(bytes, ext_hint, name, None)
}

/// [`load_pcm_16k_bytes`], refusing audio longer than `max_seconds` (when given) before it
/// is decoded in full (see [`decode_bytes_limited`]).
pub fn load_pcm_16k_bytes_limited(
    bytes: Vec<u8>,
    ext_hint: Option<&str>,
    name: &Path,
    max_seconds: Option<f64>,
) -> Result<Vec<f32>> {
    let audio = decode_bytes_limited(bytes, ext_hint, name, max_seconds)?;
    to_pcm_16k(&audio, name)
}

/// Average all channels into one. Mono input is returned as is (copied); no input
/// channels gives an empty signal.
pub fn downmix(audio: &DecodedAudio) -> Vec<f32> {
    match audio.channels.as_slice() {
        [] => Vec::new(),
        [mono] => mono.clone(),
        channels => {
            let frames = channels.iter().map(Vec::len).min().unwrap_or(0);
            let scale = 1.0 / channels.len() as f32;
            (0..frames)
                .map(|i| channels.iter().map(|c| c[i]).sum::<f32>() * scale)
                .collect()
        }
    }
}

fn to_pcm_16k(audio: &DecodedAudio, name: &Path) -> Result<Vec<f32>> {
    let mono = downmix(audio);
    let pcm = resample(&mono, audio.sample_rate, TARGET_RATE)
        .map_err(|e| Error::audio(name, format!("cannot convert to {TARGET_RATE} Hz: {e}")))?;
    if pcm.is_empty() {
        return Err(Error::audio(
            name,
            format!(
                "no audio samples: {} frames at {} Hz is shorter than one sample at {TARGET_RATE} Hz",
                audio.frames(),
                audio.sample_rate
            ),
        ));
    }
    check_not_silent(&pcm, name)?;
    Ok(pcm)
}

/// Error out if the peak amplitude of `pcm` is below [`SILENCE_PEAK`].
pub fn check_not_silent(pcm: &[f32], name: &Path) -> Result<()> {
    let peak = pcm.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak < SILENCE_PEAK {
        let dbfs = if peak > 0.0 {
            20.0 * peak.log10()
        } else {
            f32::NEG_INFINITY
        };
        let level = if dbfs.is_finite() {
            format!("{dbfs:.0} dBFS")
        } else {
            "-inf dBFS: all zeros".to_string()
        };
        return Err(Error::audio(
            name,
            format!("audio is silent (peak {level}); nothing to transcribe"),
        ));
    }
    Ok(())
}
