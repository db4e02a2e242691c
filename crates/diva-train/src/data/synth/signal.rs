//! Augmentation of synthesized speech (gain, additive noise) and the 16 kHz
//! mono 16-bit WAV files the corpus is written as.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use rand::Rng;

/// The corpus sample rate (Whisper's).
pub const RATE: u32 = diva_core::audio::SAMPLE_RATE;

/// Spectral shape of additive noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseColor {
    White,
    Pink,
}

/// Mean power (mean square) of a signal.
pub fn power(pcm: &[f32]) -> f64 {
    if pcm.is_empty() {
        return 0.0;
    }
    pcm.iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / pcm.len() as f64
}

/// The level every utterance is brought to before `--gain-db`: engines
/// differ by up to ~14 dB (flite kal16 vs slt), which would let loudness
/// identify the voice. -23 dBFS RMS leaves espeak-ng's peaky output
/// (crest factor ~19 dB) a few dB of headroom for positive gains and noise.
pub const TARGET_RMS_DBFS: f32 = -23.0;

/// Scales `pcm` to an RMS of `dbfs` (silence is left alone).
pub fn normalize_rms(pcm: &mut [f32], dbfs: f32) {
    let p = power(pcm);
    if p > 0.0 {
        apply_gain(pcm, dbfs - (10.0 * p.log10()) as f32);
    }
}

pub fn apply_gain(pcm: &mut [f32], db: f32) {
    let g = 10f32.powf(db / 20.0);
    pcm.iter_mut().for_each(|s| *s *= g);
}

/// Adds noise so that the power ratio of `pcm` (the whole file, pauses
/// included) to the noise is `snr_db`. The noise is scaled by its own
/// measured power, so the ratio is exact rather than exact on average.
pub fn add_noise(pcm: &mut [f32], snr_db: f32, color: NoiseColor, rng: &mut impl Rng) {
    let signal = power(pcm);
    if signal == 0.0 {
        return;
    }
    let white = (0..pcm.len()).map(|_| rng.random_range(-1.0f32..1.0));
    let noise: Vec<f32> = match color {
        NoiseColor::White => white.collect(),
        NoiseColor::Pink => pink(white),
    };
    let noise_power = power(&noise);
    if noise_power == 0.0 {
        return;
    }
    let scale = (signal / noise_power / 10f64.powf(f64::from(snr_db) / 10.0)).sqrt() as f32;
    for (s, n) in pcm.iter_mut().zip(noise) {
        *s += scale * n;
    }
}

/// Paul Kellet's economy pink filter: three one-pole sections whose sum
/// falls at roughly -3 dB/octave (designed for 44.1 kHz; at 16 kHz the
/// slope holds over the speech band, which is all "pink-ish" needs).
fn pink(white: impl Iterator<Item = f32>) -> Vec<f32> {
    let (mut b0, mut b1, mut b2) = (0f32, 0f32, 0f32);
    white
        .map(|w| {
            b0 = 0.99765 * b0 + w * 0.099_046;
            b1 = 0.96300 * b1 + w * 0.296_516_4;
            b2 = 0.57000 * b2 + w * 1.052_691_3;
            b0 + b1 + b2 + w * 0.1848
        })
        .collect()
}

/// Writes 16 kHz mono 16-bit PCM, clipping to [-1, 1]. The file appears
/// under its name only once complete, so an interrupted run never leaves a
/// truncated file that a resumed run would take for finished work.
pub fn write_wav(path: &Path, pcm: &[f32]) -> Result<()> {
    let data_len = u32::try_from(pcm.len() * 2).context("audio too long for a WAV file")?;
    let mut buf = Vec::with_capacity(44 + pcm.len() * 2);
    buf.extend_from_slice(b"RIFF");
    buf.extend_from_slice(&(36 + data_len).to_le_bytes());
    buf.extend_from_slice(b"WAVEfmt ");
    buf.extend_from_slice(&16u32.to_le_bytes());
    buf.extend_from_slice(&1u16.to_le_bytes()); // PCM
    buf.extend_from_slice(&1u16.to_le_bytes()); // mono
    buf.extend_from_slice(&RATE.to_le_bytes());
    buf.extend_from_slice(&(RATE * 2).to_le_bytes());
    buf.extend_from_slice(&2u16.to_le_bytes());
    buf.extend_from_slice(&16u16.to_le_bytes());
    buf.extend_from_slice(b"data");
    buf.extend_from_slice(&data_len.to_le_bytes());
    for &s in pcm {
        let q = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        buf.extend_from_slice(&q.to_le_bytes());
    }
    let name = path.file_name().context("output path has no file name")?;
    let tmp = path.with_file_name(format!(".{}.part", name.to_string_lossy()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buf)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// The duration in seconds of `path` if it is a readable 16 kHz mono WAV
/// with at least one sample, i.e. finished work a resumed run may keep.
pub fn existing_wav_secs(path: &Path) -> Option<f64> {
    if !path.is_file() {
        return None;
    }
    let audio = diva_core::audio::decode::decode_file(path).ok()?;
    (audio.sample_rate == RATE && audio.channels.len() == 1 && audio.frames() > 0)
        .then(|| audio.duration_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn wav_round_trips_through_diva_decoder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let pcm: Vec<f32> = (0..1600).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        write_wav(&path, &pcm).unwrap();
        let back = diva_core::audio::decode::decode_file(&path).unwrap();
        assert_eq!(back.sample_rate, RATE);
        assert_eq!(back.channels[0].len(), pcm.len());
        let err = pcm
            .iter()
            .zip(&back.channels[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1.0 / 32767.0, "{err}");
        assert!((existing_wav_secs(&path).unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn noise_lands_at_the_requested_snr() {
        for color in [NoiseColor::White, NoiseColor::Pink] {
            let clean: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.07).sin() * 0.3).collect();
            let mut noisy = clean.clone();
            add_noise(
                &mut noisy,
                12.0,
                color,
                &mut rand::rngs::StdRng::seed_from_u64(1),
            );
            let diff: Vec<f32> = noisy.iter().zip(&clean).map(|(a, b)| a - b).collect();
            let snr = 10.0 * (power(&clean) / power(&diff)).log10();
            assert!((snr - 12.0).abs() < 1e-3, "{color:?}: {snr}");
        }
    }
}
