//! Whisper's log-mel spectrogram, numerically OpenAI's recipe
//! (`whisper/audio.py::log_mel_spectrogram` applied to `pad_or_trim(audio)`).
//!
//! Steps, with the constants named as in the Whisper paper/code:
//! 1. pad or trim the 16 kHz signal to 30 s (`N_SAMPLES`);
//! 2. STFT with a periodic Hann window of `N_FFT` = 400, hop `HOP_LENGTH` = 160,
//!    centred frames with reflect padding of `N_FFT / 2` (torch.stft defaults),
//!    keeping `N_FRAMES` = 3000 frames (the last of the 3001 is dropped);
//! 3. power spectrum → slaney-scale, slaney-normalised mel filter bank
//!    (librosa.filters.mel, which produced OpenAI's `mel_filters.npz`);
//! 4. `log10(max(x, 1e-10))`, floored at `max - 8`, then `(x + 4) / 4`.
//!
//! `candle_transformers::models::whisper::audio::pcm_to_mel` is *not* used: it
//! skips the centre/reflect padding and doubles bins 1..199, so it does not
//! match OpenAI's numbers.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const SAMPLE_RATE: u32 = 16_000;
pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;
pub const CHUNK_LENGTH_S: usize = 30;
/// Samples in one 30 s window.
pub const N_SAMPLES: usize = CHUNK_LENGTH_S * SAMPLE_RATE as usize;
/// Mel frames in one 30 s window.
pub const N_FRAMES: usize = N_SAMPLES / HOP_LENGTH;
const N_FREQS: usize = N_FFT / 2 + 1;
const LOG_FLOOR: f32 = 1e-10;
const DYNAMIC_RANGE_LOG10: f32 = 8.0;

/// A slaney mel filter bank for Whisper's STFT, `[n_mels × N_FREQS]` row-major.
#[derive(Clone)]
pub struct MelFilters {
    n_mels: usize,
    weights: Vec<f32>,
    /// Per filter, the FFT bins where its triangle is non-zero: each bin
    /// feeds at most two filters, so the dense product would be ~98% zeros.
    support: Vec<std::ops::Range<usize>>,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
}

impl std::fmt::Debug for MelFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelFilters")
            .field("n_mels", &self.n_mels)
            .finish()
    }
}

fn hz_to_mel_slaney(hz: f64) -> f64 {
    // Linear below 1 kHz, logarithmic above (Slaney's Auditory Toolbox).
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        min_log_mel + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

fn mel_to_hz_slaney(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    let min_log_mel = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        MIN_LOG_HZ * (logstep * (mel - min_log_mel)).exp()
    } else {
        F_SP * mel
    }
}

impl MelFilters {
    /// librosa.filters.mel(sr=16000, n_fft=400, n_mels, fmin=0, fmax=8000,
    /// htk=False, norm="slaney"), computed in f64 and rounded to f32 as librosa does.
    pub fn new(n_mels: usize) -> Self {
        let sr = SAMPLE_RATE as f64;
        let fft_freqs: Vec<f64> = (0..N_FREQS)
            .map(|i| i as f64 * (sr / 2.0) / (N_FREQS - 1) as f64)
            .collect();
        let (mel_min, mel_max) = (hz_to_mel_slaney(0.0), hz_to_mel_slaney(sr / 2.0));
        let mel_f: Vec<f64> = (0..n_mels + 2)
            .map(|i| {
                let m = mel_min + (mel_max - mel_min) * i as f64 / (n_mels + 1) as f64;
                mel_to_hz_slaney(m)
            })
            .collect();
        let mut weights = vec![0f32; n_mels * N_FREQS];
        for m in 0..n_mels {
            let (lo, mid, hi) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
            // Slaney normalisation: each triangle has unit area in Hz.
            let enorm = 2.0 / (hi - lo);
            for (k, &f) in fft_freqs.iter().enumerate() {
                let lower = (f - lo) / (mid - lo);
                let upper = (hi - f) / (hi - mid);
                let w = lower.min(upper).max(0.0);
                weights[m * N_FREQS + k] = (w * enorm) as f32;
            }
        }
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        // torch.hann_window(N_FFT) is periodic: 0.5 - 0.5 cos(2πn/N).
        let window = (0..N_FFT)
            .map(|n| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32
            })
            .collect();
        let support = (0..n_mels)
            .map(|m| {
                let row = &weights[m * N_FREQS..(m + 1) * N_FREQS];
                let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w != 0.0).map_or(0, |l| l + 1);
                first..last.max(first)
            })
            .collect();
        MelFilters {
            n_mels,
            weights,
            support,
            fft,
            window,
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The filter bank, `[n_mels × 201]` row-major.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }
}

/// Reflect-pad by `pad` on both sides without repeating the edge sample
/// (numpy/torch "reflect").
fn reflect_pad(x: &[f32], pad: usize) -> Vec<f32> {
    debug_assert!(x.len() > pad);
    let n = x.len();
    let mut out = Vec::with_capacity(n + 2 * pad);
    out.extend((0..pad).map(|k| x[pad - k]));
    out.extend_from_slice(x);
    out.extend((0..pad).map(|j| x[n - 2 - j]));
    out
}

/// log10 mel energies of frames `frames` of the padded signal, written into
/// `out` frame-major (`[frames.len() × n_mels]`).
fn log_mel_frames(
    filters: &MelFilters,
    padded: &[f32],
    frames: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let mut input = filters.fft.make_input_vec();
    let mut spectrum = filters.fft.make_output_vec();
    let mut scratch = filters.fft.make_scratch_vec();
    let mut power = vec![0f32; N_FREQS];
    let n_mels = filters.n_mels;
    for (row, t) in frames.enumerate() {
        let start = t * HOP_LENGTH;
        for ((dst, &s), &w) in input
            .iter_mut()
            .zip(&padded[start..start + N_FFT])
            .zip(&filters.window)
        {
            *dst = s * w;
        }
        filters
            .fft
            .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
            .expect("FFT buffers are sized by the planner");
        for (dst, c) in power.iter_mut().zip(&spectrum) {
            *dst = c.norm_sqr();
        }
        for (m, dst) in out[row * n_mels..(row + 1) * n_mels].iter_mut().enumerate() {
            let r = filters.support[m].clone();
            let w = &filters.weights[m * N_FREQS + r.start..m * N_FREQS + r.end];
            let e: f32 = w.iter().zip(&power[r]).map(|(a, b)| a * b).sum();
            *dst = e.max(LOG_FLOOR).log10();
        }
    }
}

/// Log-mel of one 30 s window: `pcm` (16 kHz mono) is padded with zeros or
/// trimmed to `N_SAMPLES`. Returns `[n_mels × N_FRAMES]` row-major.
pub fn log_mel(pcm: &[f32], filters: &MelFilters) -> Vec<f32> {
    log_mel_window(pcm, filters, N_FRAMES)
}

/// Log-mel of a window of `frames` mel frames (`frames · HOP_LENGTH`
/// samples; at most [`N_FRAMES`]): `pcm` padded with zeros or trimmed to it,
/// then OpenAI's recipe as for the 30 s window. [`log_mel`] is this with
/// `N_FRAMES`; a shorter window is whisper.cpp's `audio_ctx` (see
/// [`AudioCtx`]). Returns `[n_mels × frames]` row-major.
pub fn log_mel_window(pcm: &[f32], filters: &MelFilters, frames: usize) -> Vec<f32> {
    let frames = frames.min(N_FRAMES);
    let samples = frames * HOP_LENGTH;
    let mut audio = vec![0f32; samples];
    let n = pcm.len().min(samples);
    audio[..n].copy_from_slice(&pcm[..n]);
    let padded = reflect_pad(&audio, N_FFT / 2);

    // Frames are independent: split them across the available cores.
    let n_mels = filters.n_mels;
    let mut by_frame = vec![0f32; frames * n_mels];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let per = frames.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (i, chunk) in by_frame.chunks_mut(per * n_mels).enumerate() {
            let padded = &padded;
            s.spawn(move || {
                let start = i * per;
                log_mel_frames(filters, padded, start..start + chunk.len() / n_mels, chunk)
            });
        }
    });
    // Whisper's layout is mel-major: [n_mels × frames].
    let mut mel = vec![0f32; n_mels * frames];
    for (t, frame) in by_frame.chunks_exact(n_mels).enumerate() {
        for (m, &v) in frame.iter().enumerate() {
            mel[m * frames + t] = v;
        }
    }
    let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let floor = max - DYNAMIC_RANGE_LOG10;
    for v in mel.iter_mut() {
        *v = (v.max(floor) + 4.0) / 4.0;
    }
    mel
}

/// Encoder frames (20 ms each) in the full 30 s window.
pub const ENCODER_FRAMES: usize = N_FRAMES / 2;
/// Samples per encoder frame (two mel hops).
pub const SAMPLES_PER_ENCODER_FRAME: usize = 2 * HOP_LENGTH;
/// [`AudioCtx::Fit`] rounds the window up to whole seconds of encoder frames.
const FIT_STEP_FRAMES: usize = 50;

/// How much of the 30 s window the Whisper encoder runs on: whisper.cpp's
/// `audio_ctx`. The encoder's cost grows with the window (its attention
/// quadratically), and a 5 s question padded to 30 s spends most of it on
/// silence. A shorter window changes the encoder's states (its attention no
/// longer sees the padding it was trained with), so it is an option with its
/// cost measured (docs/benchmarks.md), never the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AudioCtx {
    /// The 30 s window, as Whisper and the paper run it.
    #[default]
    Full,
    /// The first `n` encoder frames (1..=1500, 20 ms each); audio past them
    /// is cut.
    Frames(usize),
    /// The clip's length rounded up to whole seconds (at least 1 s, at most 30 s).
    Fit,
}

impl AudioCtx {
    /// Encoder frames the window has for a clip of `samples` (16 kHz).
    pub fn encoder_frames(self, samples: usize) -> usize {
        match self {
            AudioCtx::Full => ENCODER_FRAMES,
            AudioCtx::Frames(n) => n.clamp(1, ENCODER_FRAMES),
            AudioCtx::Fit => samples
                .div_ceil(SAMPLES_PER_ENCODER_FRAME)
                .div_ceil(FIT_STEP_FRAMES)
                .max(1)
                .saturating_mul(FIT_STEP_FRAMES)
                .min(ENCODER_FRAMES),
        }
    }
}

impl std::str::FromStr for AudioCtx {
    type Err = String;

    /// `full`, `fit`, or a number of encoder frames (1–1500; 1500 is `full`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(AudioCtx::Full),
            "fit" => Ok(AudioCtx::Fit),
            n => match n.parse::<usize>() {
                Ok(ENCODER_FRAMES) => Ok(AudioCtx::Full),
                Ok(f) if (1..ENCODER_FRAMES).contains(&f) => Ok(AudioCtx::Frames(f)),
                _ => Err(format!(
                    "audio context {s:?}: expected `full`, `fit` or a number of encoder frames \
                     from 1 to {ENCODER_FRAMES} (20 ms each; 500 = 10 s)"
                )),
            },
        }
    }
}

impl std::fmt::Display for AudioCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioCtx::Full => write!(f, "full"),
            AudioCtx::Fit => write!(f, "fit"),
            AudioCtx::Frames(n) => write!(f, "{n}"),
        }
    }
}

/// Split a long signal into consecutive 30 s windows (the last one shorter),
/// so that nothing past 30 s is silently dropped.
pub fn windows(pcm: &[f32]) -> impl Iterator<Item = &[f32]> {
    let n = pcm.len().max(1).div_ceil(N_SAMPLES);
    (0..n).map(move |i| &pcm[i * N_SAMPLES..((i + 1) * N_SAMPLES).min(pcm.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shorter_window_is_the_full_windows_first_frames() {
        // 3 s of a chirp-like signal; a 10 s window (1000 mel frames) and
        // the 30 s one agree on every frame whose STFT support stays inside
        // the shorter window (the last two see its reflect padding), since
        // both windows hold the same zeros after the clip and so the same
        // maximum for the floor.
        let pcm: Vec<f32> = (0..48_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                0.4 * (2.0 * std::f32::consts::PI * (200.0 + 300.0 * t) * t).sin()
            })
            .collect();
        let f = MelFilters::new(80);
        let full = log_mel(&pcm, &f);
        let short = log_mel_window(&pcm, &f, 1000);
        assert_eq!(short.len(), 80 * 1000);
        for m in 0..80 {
            for t in 0..998 {
                let (a, b) = (short[m * 1000 + t], full[m * N_FRAMES + t]);
                assert!((a - b).abs() <= 1e-6, "mel {m} frame {t}: {a} vs {b}");
            }
        }
        assert_eq!(log_mel_window(&pcm, &f, N_FRAMES), full);
        // More than 30 s is never asked of the encoder.
        assert_eq!(log_mel_window(&pcm, &f, 2 * N_FRAMES).len(), 80 * N_FRAMES);
    }

    #[test]
    fn audio_ctx_windows_and_parsing() {
        assert_eq!(AudioCtx::Full.encoder_frames(16_000), 1500);
        assert_eq!(AudioCtx::Frames(500).encoder_frames(16_000 * 20), 500);
        // Fit: whole seconds (50 frames), at least one, at most 30.
        assert_eq!(AudioCtx::Fit.encoder_frames(0), 50);
        assert_eq!(AudioCtx::Fit.encoder_frames(16_000), 50);
        assert_eq!(AudioCtx::Fit.encoder_frames(16_001), 100);
        assert_eq!(AudioCtx::Fit.encoder_frames(5 * 16_000 + 1234), 300);
        assert_eq!(AudioCtx::Fit.encoder_frames(45 * 16_000), 1500);
        for (s, want) in [
            ("full", AudioCtx::Full),
            ("FIT", AudioCtx::Fit),
            ("500", AudioCtx::Frames(500)),
            ("1500", AudioCtx::Full),
        ] {
            assert_eq!(s.parse::<AudioCtx>().unwrap(), want, "{s}");
            assert_eq!(want.to_string().parse::<AudioCtx>().unwrap(), want);
        }
        for bad in ["0", "1501", "-3", "10s", ""] {
            let e = bad.parse::<AudioCtx>().unwrap_err();
            assert!(e.contains("from 1 to 1500"), "{bad}: {e}");
        }
    }

    #[test]
    fn reflect_pad_matches_numpy() {
        // np.pad([1,2,3,4,5], 2, mode="reflect") == [3,2,1,2,3,4,5,4,3]
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(
            reflect_pad(&x, 2),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 3.0]
        );
    }

    #[test]
    fn slaney_filters_have_unit_area_triangles() {
        // Slaney normalisation: ∫ triangle dHz = 1, i.e. Σ w · Δf ≈ 1 for
        // filters wide enough to be sampled by several FFT bins.
        let f = MelFilters::new(80);
        let df = 16_000.0 / N_FFT as f32;
        let area: f32 = f.weights()[79 * N_FREQS..80 * N_FREQS].iter().sum::<f32>() * df;
        assert!((area - 1.0).abs() < 0.05, "area {area}");
        // Every filter has some support (none is all-zero) for 80 and 128 bins.
        for n in [80, 128] {
            let f = MelFilters::new(n);
            for m in 0..n {
                assert!(f.weights()[m * N_FREQS..(m + 1) * N_FREQS]
                    .iter()
                    .any(|&w| w > 0.0));
            }
        }
    }

    #[test]
    fn silence_maps_to_the_floor_and_shape_is_whisper_s() {
        let f = MelFilters::new(80);
        let mel = log_mel(&[], &f);
        assert_eq!(mel.len(), 80 * N_FRAMES);
        // log10(1e-10) = -10, so every value is (-10 + 4) / 4.
        assert!(mel.iter().all(|&v| (v + 1.5).abs() < 1e-6));
    }

    #[test]
    fn windows_cover_long_audio_without_loss() {
        let pcm = vec![0.1f32; N_SAMPLES * 2 + 5];
        let lens: Vec<usize> = windows(&pcm).map(|w| w.len()).collect();
        assert_eq!(lens, vec![N_SAMPLES, N_SAMPLES, 5]);
        assert_eq!(windows(&[]).count(), 1);
    }
}
