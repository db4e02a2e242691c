//! Audio front end: decoding every supported container/sample format, resampling quality
//! and time alignment, and clear errors for every kind of bad input.
//!
//! Run with `--nocapture` to see the measured quality numbers.

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};

use diva_core::audio::decode::{decode_bytes, decode_file, decode_file_limited, DecodedAudio};
use diva_core::audio::resample::resample;
use diva_core::audio::{
    downmix, load_pcm_16k, load_pcm_16k_bytes, load_pcm_16k_bytes_limited, load_pcm_16k_limited,
    SILENCE_PEAK,
};
use diva_core::Error;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------------
// A minimal RIFF/WAVE writer.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fmt {
    U8,
    S16,
    S24,
    S32,
    F32,
}

impl Fmt {
    fn bits(self) -> u16 {
        match self {
            Fmt::U8 => 8,
            Fmt::S16 => 16,
            Fmt::S24 => 24,
            Fmt::S32 | Fmt::F32 => 32,
        }
    }

    fn tag(self) -> u16 {
        if self == Fmt::F32 {
            3 // WAVE_FORMAT_IEEE_FLOAT
        } else {
            1 // WAVE_FORMAT_PCM
        }
    }

    /// The worst-case round-trip error: half a quantisation step (plus f32 rounding).
    fn tolerance(self) -> f32 {
        match self {
            Fmt::U8 => 0.5 / 128.0 + 1e-6,
            Fmt::S16 => 0.5 / 32768.0 + 1e-7,
            Fmt::S24 | Fmt::S32 => 1e-7,
            Fmt::F32 => 0.0,
        }
    }

    /// Encode one sample (in [-1, 1)) the way symphonia decodes it: integer PCM is
    /// `x * 2^(bits-1)`, 8-bit is unsigned with a +128 offset.
    fn encode(self, x: f32, out: &mut Vec<u8>) {
        let q = |bits: i32| {
            let full = 2f64.powi(bits - 1);
            (f64::from(x) * full).round().clamp(-full, full - 1.0) as i64
        };
        match self {
            Fmt::U8 => out.push((q(8) + 128) as u8),
            Fmt::S16 => out.extend_from_slice(&(q(16) as i16).to_le_bytes()),
            Fmt::S24 => out.extend_from_slice(&(q(24) as i32).to_le_bytes()[..3]),
            Fmt::S32 => out.extend_from_slice(&(q(32) as i32).to_le_bytes()),
            Fmt::F32 => out.extend_from_slice(&x.to_le_bytes()),
        }
    }
}

/// A 44-byte canonical WAVE header. `data_len` is what the header *claims*.
fn wav_header(tag: u16, channels: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block_align = channels * bits.div_ceil(8);
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&36u32.saturating_add(data_len).to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&tag.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// A complete WAV file holding `channels` (planar, equal lengths).
fn wav_bytes(channels: &[Vec<f32>], rate: u32, fmt: Fmt) -> Vec<u8> {
    let frames = channels[0].len();
    let mut data = Vec::new();
    for i in 0..frames {
        for ch in channels {
            fmt.encode(ch[i], &mut data);
        }
    }
    let mut bytes = wav_header(
        fmt.tag(),
        channels.len() as u16,
        rate,
        fmt.bits(),
        data.len() as u32,
    );
    bytes.extend_from_slice(&data);
    bytes
}

fn sine(freq: f64, rate: u32, n: usize, amp: f64) -> Vec<f32> {
    (0..n)
        .map(|i| (amp * (TAU * freq * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

/// Assert `result` is an `Error::Audio` about `path` whose message contains every one of
/// `needles`; returns the message.
#[track_caller]
fn expect_audio_error<T: std::fmt::Debug>(
    result: diva_core::Result<T>,
    path: &Path,
    needles: &[&str],
) -> String {
    let err = result.expect_err("expected an error");
    let msg = err.to_string();
    match &err {
        Error::Audio { path: p, problem } => {
            assert_eq!(p, path, "error names the wrong file: {msg}");
            assert!(!problem.is_empty());
        }
        other => panic!("expected Error::Audio, got {other:?}"),
    }
    let file_name = path.file_name().unwrap().to_string_lossy();
    assert!(
        msg.contains(&*file_name),
        "message does not name the file: {msg}"
    );
    for needle in needles {
        assert!(
            msg.contains(needle),
            "message {msg:?} does not mention {needle:?}"
        );
    }
    assert!(!msg.contains("crashed"), "symphonia panicked: {msg}");
    msg
}

// ---------------------------------------------------------------------------------------
// Decoding hand-written WAVs.
// ---------------------------------------------------------------------------------------

#[test]
fn wav_every_sample_format_round_trips() {
    let scratch = Scratch::new();
    let x = sine(440.0, 16_000, 16_000, 0.5);
    for fmt in [Fmt::U8, Fmt::S16, Fmt::S24, Fmt::S32, Fmt::F32] {
        let bytes = wav_bytes(std::slice::from_ref(&x), 16_000, fmt);
        let path = scratch.write(&format!("sine_{fmt:?}.wav"), &bytes);
        let audio = decode_file(&path).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
        assert_eq!(audio.sample_rate, 16_000, "{fmt:?}");
        assert_eq!(audio.channels.len(), 1, "{fmt:?}");
        let err = max_abs_diff(&audio.channels[0], &x);
        println!(
            "WAV {fmt:?}: max round-trip error {err:.3e} (bound {:.3e})",
            fmt.tolerance()
        );
        assert!(
            err <= fmt.tolerance(),
            "{fmt:?}: max error {err} > {}",
            fmt.tolerance()
        );

        // The in-memory path decodes identically.
        let from_bytes = decode_bytes(bytes, Some("wav"), Path::new("upload.wav")).unwrap();
        assert_eq!(from_bytes, audio, "{fmt:?}");
    }
}

#[test]
fn wav_full_scale_extremes_map_to_minus_one() {
    // The most negative code of every integer format is exactly -1.0.
    let scratch = Scratch::new();
    for fmt in [Fmt::U8, Fmt::S16, Fmt::S24, Fmt::S32] {
        let x = vec![-1.0f32, 0.0, 0.25, -0.25];
        let path = scratch.write(
            &format!("ext_{fmt:?}.wav"),
            &wav_bytes(std::slice::from_ref(&x), 8000, fmt),
        );
        let audio = decode_file(&path).unwrap();
        assert_eq!(audio.channels[0], x, "{fmt:?}");
    }
}

#[test]
fn wav_8k_mono_loads_as_16k() {
    let scratch = Scratch::new();
    let n = 8000;
    let x = sine(440.0, 8000, n, 0.5);
    let path = scratch.write("sine_8k.wav", &wav_bytes(&[x], 8000, Fmt::S16));
    let audio = decode_file(&path).unwrap();
    assert_eq!(
        (audio.sample_rate, audio.channels.len(), audio.frames()),
        (8000, 1, n)
    );

    let pcm = load_pcm_16k(&path).unwrap();
    assert_eq!(pcm.len(), 2 * n);
    let reference = sine(440.0, 16_000, 2 * n, 0.5);
    let edge = 160; // 10 ms
    let err = max_abs_diff(&pcm[edge..2 * n - edge], &reference[edge..2 * n - edge]);
    println!("8 kHz s16 WAV → load_pcm_16k: max error vs analytic sine {err:.3e}");
    assert!(err < 1e-3, "max error {err}");
}

#[test]
fn wav_44k_stereo_channels_and_downmix() {
    let scratch = Scratch::new();
    let n = 44_100;
    let left = sine(440.0, 44_100, n, 0.5);
    let right = sine(660.0, 44_100, n, 0.25);
    let path = scratch.write(
        "stereo.wav",
        &wav_bytes(&[left.clone(), right.clone()], 44_100, Fmt::F32),
    );
    let audio = decode_file(&path).unwrap();
    assert_eq!(audio.sample_rate, 44_100);
    assert_eq!(audio.channels.len(), 2);
    assert_eq!(audio.channels[0], left);
    assert_eq!(audio.channels[1], right);

    let mono = downmix(&audio);
    assert_eq!(mono.len(), n);
    for i in 0..n {
        assert!(
            (mono[i] - (left[i] + right[i]) / 2.0).abs() < 1e-7,
            "frame {i}"
        );
    }
    let single = DecodedAudio {
        channels: vec![left.clone()],
        sample_rate: 44_100,
    };
    assert_eq!(downmix(&single), left);

    let pcm = load_pcm_16k(&path).unwrap();
    assert_eq!(pcm.len(), 16_000);
    let reference: Vec<f32> = sine(440.0, 16_000, 16_000, 0.5)
        .iter()
        .zip(sine(660.0, 16_000, 16_000, 0.25))
        .map(|(a, b)| (a + b) / 2.0)
        .collect();
    let err = max_abs_diff(&pcm[160..15_840], &reference[160..15_840]);
    println!("44.1 kHz stereo f32 WAV → load_pcm_16k: max error vs analytic {err:.3e}");
    assert!(err < 1e-3, "max error {err}");
}

// ---------------------------------------------------------------------------------------
// Resampler.
// ---------------------------------------------------------------------------------------

#[test]
fn resample_8k_to_16k_matches_analytic_sine() {
    let n = 8000;
    let y = resample(&sine(440.0, 8000, n, 0.9), 8000, 16_000).unwrap();
    assert_eq!(y.len(), 2 * n);
    let reference = sine(440.0, 16_000, 2 * n, 0.9);
    let err = max_abs_diff(&y[160..2 * n - 160], &reference[160..2 * n - 160]);
    println!("resample 8k→16k, 440 Hz: max error {err:.3e} (middle, 10 ms edges skipped)");
    assert!(err < 1e-3, "max error {err}");
}

#[test]
fn resample_44k_to_16k_matches_analytic_sine() {
    for n in [44_100usize, 44_099, 12_345] {
        let y = resample(&sine(440.0, 44_100, n, 0.9), 44_100, 16_000).unwrap();
        let expected_len = (n as f64 * 16_000.0 / 44_100.0).round() as usize;
        assert_eq!(y.len(), expected_len, "n = {n}");
        let reference = sine(440.0, 16_000, expected_len, 0.9);
        let err = max_abs_diff(
            &y[160..expected_len - 160],
            &reference[160..expected_len - 160],
        );
        println!("resample 44.1k→16k, 440 Hz, {n} samples: max error {err:.3e}");
        assert!(err < 1e-3, "max error {err}");
    }
}

#[test]
fn resample_other_rates_match_analytic_sine() {
    for from in [11_025u32, 22_050, 24_000, 32_000, 48_000, 96_000] {
        let n = from as usize / 2;
        let y = resample(&sine(1000.0, from, n, 0.9), from, 16_000).unwrap();
        let expected_len = (n as f64 * 16_000.0 / f64::from(from)).round() as usize;
        assert_eq!(y.len(), expected_len, "{from}");
        let reference = sine(1000.0, 16_000, expected_len, 0.9);
        let err = max_abs_diff(
            &y[160..expected_len - 160],
            &reference[160..expected_len - 160],
        );
        println!("resample {from}→16k, 1 kHz: max error {err:.3e}");
        assert!(err < 1e-3, "{from}: max error {err}");
    }
}

#[test]
fn resample_rejects_content_above_the_new_nyquist() {
    // The tone fades in and out over 10 ms: an abrupt start or stop is a broadband click
    // that (correctly) has energy below 8 kHz, which is not what this test is about.
    let mut x = sine(10_000.0, 44_100, 44_100, 0.9);
    let ramp = 441;
    let n = x.len();
    for i in 0..ramp {
        let g = (0.5 - 0.5 * (std::f64::consts::PI * i as f64 / ramp as f64).cos()) as f32;
        x[i] *= g;
        x[n - 1 - i] *= g;
    }
    let y = resample(&x, 44_100, 16_000).unwrap();
    let ratio = rms(&y) / rms(&x);
    println!(
        "resample 44.1k→16k, 10 kHz tone: output/input RMS {ratio:.3e} ({:.0} dB)",
        20.0 * ratio.log10()
    );
    assert!(ratio < 1e-3, "10 kHz leaked through: RMS ratio {ratio}");
}

#[test]
fn resample_impulse_stays_in_place() {
    // Including impulses right at and around the resampler's 1024-frame chunk boundaries.
    for k in [0usize, 1, 100, 1023, 1024, 1025, 3000, 7999] {
        let mut x = vec![0.0f32; 8000];
        x[k] = 1.0;
        let y = resample(&x, 8000, 16_000).unwrap();
        let peak = (0..y.len())
            .max_by(|&a, &b| y[a].abs().total_cmp(&y[b].abs()))
            .unwrap();
        assert!(
            peak.abs_diff(2 * k) <= 1,
            "impulse at {k} peaked at {peak}, expected {}",
            2 * k
        );
        // The peak sample sits exactly on the impulse's time, so it is the impulse itself
        // (passband gain ~1 × the 0.947 cut-off).
        assert!(y[2 * k] > 0.9, "y[{}] = {}", 2 * k, y[2 * k]);
    }
    // Down-sampling: the peak lands on round(k * 16000 / 44100).
    for k in [441usize, 1000, 20_000] {
        let mut x = vec![0.0f32; 44_100];
        x[k] = 1.0;
        let y = resample(&x, 44_100, 16_000).unwrap();
        let peak = (0..y.len())
            .max_by(|&a, &b| y[a].abs().total_cmp(&y[b].abs()))
            .unwrap();
        let expected = (k as f64 * 16_000.0 / 44_100.0).round() as usize;
        assert!(
            peak.abs_diff(expected) <= 1,
            "44.1k impulse at {k} peaked at {peak}, expected {expected}"
        );
    }
}

#[test]
fn resample_identity_and_edge_cases() {
    let x = sine(440.0, 16_000, 1000, 0.5);
    assert_eq!(resample(&x, 16_000, 16_000).unwrap(), x);
    assert!(resample(&[], 8000, 16_000).unwrap().is_empty());
    assert_eq!(resample(&[0.5], 8000, 16_000).unwrap().len(), 2);
    assert!(matches!(resample(&x, 0, 16_000), Err(Error::Config(_))));
}

// ---------------------------------------------------------------------------------------
// Bad input: each one a clear Error::Audio naming the file.
// ---------------------------------------------------------------------------------------

#[test]
fn missing_file() {
    let scratch = Scratch::new();
    let path = scratch.dir.path().join("does_not_exist.wav");
    let msg = expect_audio_error(decode_file(&path), &path, &["file not found", "os error"]);
    println!("missing file: {msg}");
    expect_audio_error(load_pcm_16k(&path), &path, &["file not found"]);
}

#[test]
fn directory_instead_of_file() {
    let scratch = Scratch::new();
    let path = scratch.dir.path().join("dir.wav");
    std::fs::create_dir(&path).unwrap();
    expect_audio_error(decode_file(&path), &path, &["directory"]);
}

#[test]
fn empty_file() {
    let scratch = Scratch::new();
    let path = scratch.write("empty.wav", b"");
    let msg = expect_audio_error(decode_file(&path), &path, &["empty file (0 bytes)"]);
    println!("empty file: {msg}");
    let name = Path::new("empty_upload.mp3");
    expect_audio_error(
        decode_bytes(Vec::new(), Some("mp3"), name),
        name,
        &["empty file"],
    );
}

#[test]
fn text_file_named_wav() {
    let scratch = Scratch::new();
    let text = "This is not audio, just some text that happens to be called x.wav.\n".repeat(20);
    let path = scratch.write("x.wav", text.as_bytes());
    let msg = expect_audio_error(
        decode_file(&path),
        &path,
        &["not a recognised audio file (supported: WAV, FLAC, MP3, OGG/Vorbis)"],
    );
    println!("text file named .wav: {msg}");
    // Too short to hold any header at all.
    let path = scratch.write("tiny.wav", b"hi");
    expect_audio_error(decode_file(&path), &path, &["not a recognised audio file"]);
}

#[test]
fn garbage_bytes_named_mp3() {
    let scratch = Scratch::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut garbage = vec![0u8; 64 * 1024];
    rng.fill(&mut garbage[..]);
    let path = scratch.write("noise.mp3", &garbage);
    let msg = expect_audio_error(decode_file(&path), &path, &[]);
    println!("random bytes named .mp3: {msg}");
    assert!(
        msg.contains("not a recognised audio file") || msg.contains("corrupt"),
        "unhelpful message: {msg}"
    );
}

#[test]
fn truncated_wav_decodes_what_is_there() {
    let scratch = Scratch::new();
    let x = sine(440.0, 16_000, 16_000, 0.5);
    let full = wav_bytes(std::slice::from_ref(&x), 16_000, Fmt::S16);

    // Cut in the middle of the data chunk (the header still promises 16000 frames):
    // the frames present are decoded, as sox and ffmpeg do (tests/audio_truncated.rs
    // checks the warning).
    let half = &full[..44 + 2 * 8000 + 1];
    let path = scratch.write("cut.wav", half);
    let audio = decode_file(&path).unwrap();
    assert_eq!(audio.frames(), 8000);
    assert!(max_abs_diff(&audio.channels[0], &x[..8000]) <= Fmt::S16.tolerance());

    // Losing the last 5 % (within the documented 90 % threshold) is tolerated.
    let path = scratch.write("nearly.wav", &full[..44 + 2 * 15_200]);
    let audio = decode_file(&path).unwrap();
    assert!(
        audio.frames() >= 14_400 && audio.frames() <= 15_200,
        "{}",
        audio.frames()
    );

    // Cut inside the header.
    let path = scratch.write("header_only.wav", &full[..30]);
    let msg = expect_audio_error(decode_file(&path), &path, &["WAV"]);
    println!("WAV cut inside its header: {msg}");

    // A streaming WAV (sizes left at 0xFFFFFFFF by a writer that could not seek back)
    // decodes in full instead of being reported as truncated.
    let mut streaming = full.clone();
    streaming[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    streaming[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let path = scratch.write("streaming.wav", &streaming);
    assert_eq!(decode_file(&path).unwrap().frames(), 16_000);
}

#[test]
fn wav_with_unsupported_codec_tag() {
    let scratch = Scratch::new();
    // 0x0055: MP3 inside a WAV container; 0x0161: Windows Media Audio.
    for (tag, name) in [
        (0x0055u16, "MPEG Layer III"),
        (0x0161, "Windows Media Audio"),
    ] {
        let mut bytes = wav_header(tag, 1, 16_000, 16, 4000);
        bytes.extend(std::iter::repeat_n(0x11, 4000));
        let path = scratch.write(&format!("tag_{tag:04x}.wav"), &bytes);
        let msg = expect_audio_error(
            decode_file(&path),
            &path,
            &["unsupported codec", &format!("{tag:#06x}"), name],
        );
        println!("WAV format tag {tag:#06x}: {msg}");
    }
}

#[test]
fn wav_with_zero_sample_rate() {
    let scratch = Scratch::new();
    let mut bytes = wav_header(1, 1, 0, 16, 2000);
    bytes.extend(std::iter::repeat_n(0x22, 2000));
    let path = scratch.write("zero_rate.wav", &bytes);
    let msg = expect_audio_error(decode_file(&path), &path, &["sample rate is 0 Hz"]);
    println!("zero sample rate: {msg}");
}

#[test]
fn wav_with_no_frames() {
    let scratch = Scratch::new();
    let path = scratch.write("no_frames.wav", &wav_header(1, 1, 16_000, 16, 0));
    let msg = expect_audio_error(decode_file(&path), &path, &["no audio samples"]);
    println!("WAV with 0 data frames: {msg}");
    expect_audio_error(load_pcm_16k(&path), &path, &["no audio samples"]);
}

#[test]
fn silence_is_rejected() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "silence.wav",
        &wav_bytes(&[vec![0.0; 16_000]], 16_000, Fmt::S16),
    );
    // Decoding silence is fine; transcribing it is not.
    assert_eq!(decode_file(&path).unwrap().frames(), 16_000);
    let msg = expect_audio_error(
        load_pcm_16k(&path),
        &path,
        &["audio is silent", "nothing to transcribe"],
    );
    println!("digital silence: {msg}");

    // Near-silence (peak 3e-5 ≈ -90 dBFS) is also rejected and the level is reported.
    let faint = sine(440.0, 16_000, 16_000, 3e-5);
    assert!(faint.iter().all(|s| s.abs() < SILENCE_PEAK));
    let path = scratch.write("faint.wav", &wav_bytes(&[faint], 16_000, Fmt::F32));
    let msg = expect_audio_error(
        load_pcm_16k(&path),
        &path,
        &["audio is silent (peak -90 dBFS)"],
    );
    println!("near silence: {msg}");

    // A quiet but real signal (-60 dBFS) passes.
    let quiet = sine(440.0, 16_000, 16_000, 1e-3);
    let path = scratch.write(
        "quiet.wav",
        &wav_bytes(std::slice::from_ref(&quiet), 16_000, Fmt::F32),
    );
    assert_eq!(load_pcm_16k(&path).unwrap(), quiet);
    let name = Path::new("quiet_upload.wav");
    let bytes = wav_bytes(std::slice::from_ref(&quiet), 16_000, Fmt::F32);
    assert_eq!(load_pcm_16k_bytes(bytes, Some("wav"), name).unwrap(), quiet);
}

#[test]
fn float_wav_with_nan_is_corrupt() {
    let scratch = Scratch::new();
    let mut x = sine(440.0, 16_000, 1600, 0.5);
    x[100] = f32::NAN;
    let path = scratch.write("nan.wav", &wav_bytes(&[x], 16_000, Fmt::F32));
    expect_audio_error(decode_file(&path), &path, &["NaN"]);
}

/// Random and bit-flipped inputs never panic: every outcome is `Ok` or `Error::Audio`.
#[test]
fn hostile_inputs_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let valid = wav_bytes(&[sine(440.0, 8000, 4000, 0.5)], 8000, Fmt::S16);
    let name = Path::new("fuzz.bin");
    for round in 0..300 {
        let bytes: Vec<u8> = match round % 3 {
            // Pure noise of random length.
            0 => {
                let mut b = vec![0u8; rng.random_range(1..5000)];
                rng.fill(&mut b[..]);
                b
            }
            // A valid WAV with a few corrupted header bytes.
            1 => {
                let mut b = valid.clone();
                for _ in 0..rng.random_range(1..6) {
                    let i = rng.random_range(0..44);
                    b[i] = rng.random();
                }
                b
            }
            // Known container magic followed by noise.
            _ => {
                let magic: &[u8] = [
                    &b"RIFF"[..],
                    b"fLaC",
                    b"OggS",
                    b"ID3\x03\0",
                    b"\xff\xfb\x90\x64",
                ][rng.random_range(0..5)];
                let mut b = magic.to_vec();
                let mut tail = vec![0u8; rng.random_range(0..3000)];
                rng.fill(&mut tail[..]);
                b.extend(tail);
                b
            }
        };
        let ext = ["wav", "mp3", "flac", "ogg", "bin"][round % 5];
        match decode_bytes(bytes, Some(ext), name) {
            Ok(audio) => {
                assert!(audio.sample_rate > 0);
                assert!(!audio.channels.is_empty());
                assert!(audio.channels.iter().all(|c| c.len() == audio.frames()));
            }
            Err(Error::Audio { problem, .. }) => {
                assert!(
                    !problem.contains("crashed"),
                    "round {round}: symphonia panicked: {problem}"
                )
            }
            Err(other) => panic!("round {round}: expected Error::Audio, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real encoded fixtures (tests/fixtures/audio/formats, produced by scripts in the repo).
// ---------------------------------------------------------------------------------------

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/audio/formats")
}

/// The 16 kHz mono original all fixtures were encoded from.
fn reference_pcm(dir: &Path) -> Vec<f32> {
    let path = dir.join("reference_16k.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse reference safetensors");
    let view = st.tensor("pcm").expect("reference has a `pcm` tensor");
    let data = view.data();
    match view.dtype() {
        safetensors::Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        safetensors::Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32)
            .collect(),
        safetensors::Dtype::I16 => data
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes(b.try_into().unwrap())) / 32768.0)
            .collect(),
        other => panic!("unexpected reference dtype {other:?}"),
    }
}

/// Normalised cross-correlation of `x` against `reference` at the best lag within
/// `±max_lag` samples (`x[i + lag] ≈ reference[i]`). Returns (correlation, lag).
fn best_correlation(x: &[f32], reference: &[f32], max_lag: isize) -> (f64, isize) {
    let mut best = (f64::NEG_INFINITY, 0);
    for lag in -max_lag..=max_lag {
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        for (i, r) in reference.iter().enumerate() {
            let j = i as isize + lag;
            if j < 0 || j as usize >= x.len() {
                continue;
            }
            let (a, b) = (f64::from(x[j as usize]), f64::from(*r));
            xy += a * b;
            xx += a * a;
            yy += b * b;
        }
        let c = xy / (xx * yy).sqrt().max(1e-30);
        if c > best.0 {
            best = (c, lag);
        }
    }
    best
}

#[test]
fn real_fixtures_decode_and_match_reference() {
    let dir = fixture_dir();
    assert!(
        dir.is_dir(),
        "fixture directory {} is missing: it is committed with the repository \
         (tests/fixtures/audio/formats: s16.wav, s24.wav, s32.wav, f32.wav, stereo_44k.wav, \
         clip.flac, clip.mp3, clip.ogg, reference_16k.safetensors)",
        dir.display()
    );
    let reference = reference_pcm(&dir);
    assert!(!reference.is_empty());
    println!(
        "reference: {} samples ({:.2} s)",
        reference.len(),
        reference.len() as f64 / 16_000.0
    );

    // Lossless encodings of the 16 kHz original: sample-exact up to the format's precision.
    for (file, tolerance) in [
        ("u8.wav", 0.5f32 / 128.0 + 1e-4),
        ("s16.wav", 1e-3),
        ("s24.wav", 1e-5),
        ("s32.wav", 1e-5),
        ("f32.wav", 1e-5),
        ("clip.flac", 1e-3),
    ] {
        let path = dir.join(file);
        let audio = decode_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let pcm = load_pcm_16k(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pcm.len(), reference.len(), "{file}: length");
        let err = max_abs_diff(&pcm, &reference);
        println!(
            "{file}: {} Hz × {} ch, {} frames; max abs diff vs reference {err:.3e}",
            audio.sample_rate,
            audio.channels.len(),
            audio.frames()
        );
        assert!(err <= tolerance, "{file}: max abs diff {err} > {tolerance}");
    }

    // Stereo 44.1 kHz: decoded, downmixed and resampled back to 16 kHz.
    let path = dir.join("stereo_44k.wav");
    let audio = decode_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (audio.sample_rate, audio.channels.len()),
        (44_100, 2),
        "stereo_44k.wav"
    );
    let pcm = load_pcm_16k(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        pcm.len().abs_diff(reference.len()) <= 1,
        "stereo_44k.wav: {} samples",
        pcm.len()
    );
    let n = pcm.len().min(reference.len());
    let (corr, lag) = best_correlation(&pcm[..n], &reference[..n], 0);
    println!("stereo_44k.wav: correlation with reference after 44.1k→16k {corr:.6} (lag {lag})");
    assert!(corr > 0.999, "stereo_44k.wav: correlation {corr}");

    // Lossy codecs: allow for encoder delay, then require a close waveform match.
    for file in ["clip.mp3", "clip.ogg"] {
        let path = dir.join(file);
        let audio = decode_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let pcm = load_pcm_16k(&path).unwrap_or_else(|e| panic!("{e}"));
        let (corr, lag) = best_correlation(&pcm, &reference, 2000);
        println!(
            "{file}: {} Hz × {} ch, {} → {} samples at 16 kHz; best correlation {corr:.4} at lag {lag}",
            audio.sample_rate,
            audio.channels.len(),
            audio.frames(),
            pcm.len()
        );
        assert!(corr > 0.95, "{file}: correlation {corr} (lag {lag})");
    }
}

/// The real recordings (8 kHz telephone prompts, a 16 kHz audiobook, a 48 kHz ALSA sample)
/// all load as non-silent 16 kHz PCM of the right length.
#[test]
fn real_recordings_load_at_16k() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/audio/real");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("wav" | "flac" | "mp3" | "ogg")
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no recordings in {}", dir.display());
    for path in files {
        let audio = decode_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let pcm = load_pcm_16k(&path).unwrap_or_else(|e| panic!("{e}"));
        let expected =
            (audio.frames() as f64 * 16_000.0 / f64::from(audio.sample_rate)).round() as usize;
        assert_eq!(pcm.len(), expected, "{}", path.display());
        let peak = pcm.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        println!(
            "{}: {} Hz × {} ch, {:.2} s → {} samples at 16 kHz, peak {peak:.3}, RMS {:.4}",
            path.file_name().unwrap().to_string_lossy(),
            audio.sample_rate,
            audio.channels.len(),
            audio.duration_secs(),
            pcm.len(),
            rms(&pcm)
        );
        assert!(
            peak > 0.01 && peak <= 1.01,
            "{}: peak {peak}",
            path.display()
        );
    }
}

/// Issue 20: audio over a length limit is refused before it is decoded in full: from the
/// declared length when the container has one (no packet decoded), else as soon as the
/// decoded frames pass the limit (the error says where it stopped).
#[test]
fn audio_over_the_length_limit_is_refused_before_a_full_decode() {
    let scratch = Scratch::new();
    let rate = 8_000;
    let minute = wav_bytes(
        &[sine(440.0, rate, 60 * rate as usize, 0.5)],
        rate,
        Fmt::S16,
    );

    // A declared length: refused from the header.
    let path = scratch.write("minute.wav", &minute);
    let msg = expect_audio_error(
        decode_file_limited(&path, Some(30.0)),
        &path,
        &[
            "longer than the 30 s limit",
            "header declares 60.00 s",
            "trim",
        ],
    );
    println!("60 s WAV, 30 s limit: {msg}");
    expect_audio_error(
        load_pcm_16k_bytes_limited(minute.clone(), Some("wav"), &path, Some(29.5)),
        &path,
        &["longer than the 29.5 s limit", "header declares 60.00 s"],
    );

    // A streaming WAV declares nothing: decoding stops just past the limit, not at 60 s.
    let mut streaming = minute.clone();
    streaming[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    streaming[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let path = scratch.write("streaming_minute.wav", &streaming);
    let msg = expect_audio_error(
        decode_file_limited(&path, Some(10.0)),
        &path,
        &["longer than the 10 s limit", "stopped at 10."],
    );
    println!("streaming 60 s WAV, 10 s limit: {msg}");

    // Under the limit, or no limit: decoded in full, identical to the unlimited decode.
    let path = scratch.write("minute_ok.wav", &minute);
    let full = decode_file(&path).unwrap();
    assert_eq!(full.frames(), 60 * rate as usize);
    // Exactly at the limit passes; so does the slack past it, and no more.
    assert_eq!(decode_file_limited(&path, Some(60.0)).unwrap(), full);
    assert!(decode_file_limited(&path, Some(59.96)).is_ok());
    assert!(decode_file_limited(&path, Some(59.9)).is_err());
    assert_eq!(decode_file_limited(&path, None).unwrap(), full);
    assert_eq!(
        load_pcm_16k_limited(&path, Some(61.0)).unwrap(),
        load_pcm_16k(&path).unwrap()
    );

    // The compressed fixtures (declared or not, whichever their container does).
    let dir = fixture_dir();
    for file in ["clip.flac", "clip.mp3", "clip.ogg"] {
        let path = dir.join(file);
        let secs = decode_file(&path).unwrap().duration_secs();
        let msg = expect_audio_error(
            decode_file_limited(&path, Some(0.5)),
            &path,
            &["longer than the 0.5 s limit"],
        );
        println!("{file} ({secs:.2} s), 0.5 s limit: {msg}");
        assert!(
            decode_file_limited(&path, Some(secs + 0.1)).is_ok(),
            "{file}"
        );
    }
}
