//! Files that end early decode to what is there, with one warning naming the
//! file, as sox and ffmpeg do; files with nothing to decode are still refused
//! quickly; symphonia's own log lines name the file they are about.
//!
//! The log output is captured through the same path the CLI uses
//! (tracing-subscriber's fmt layer, which also bridges the `log` crate).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use diva_core::audio::decode::decode_file;

/// Everything logged in this test binary (tests tell their lines apart by
/// file name).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_ansi(false)
            .with_target(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init()
            .expect("install the log capture");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured lines that mention `name`.
fn lines_about(name: &str) -> Vec<String> {
    String::from_utf8_lossy(&logs().lock().unwrap())
        .lines()
        .filter(|l| l.contains(name))
        .map(str::to_string)
        .collect()
}

/// A 16 kHz mono 16-bit WAV header whose sizes say `data_len` bytes.
fn header(data_len: u32) -> Vec<u8> {
    let mut h = b"RIFF".to_vec();
    // (0xFFFFFFFF would mean "length unknown", a streaming writer's header.)
    h.extend_from_slice(
        &36u32
            .saturating_add(data_len)
            .min(u32::MAX - 1)
            .to_le_bytes(),
    );
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&16_000u32.to_le_bytes());
    h.extend_from_slice(&32_000u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// One second of a 440 Hz tone as 16-bit samples.
fn one_second() -> Vec<u8> {
    (0..16_000)
        .flat_map(|i| {
            let x = (i as f64 * 440.0 * std::f64::consts::TAU / 16_000.0).sin() * 0.5;
            ((x * 32767.0) as i16).to_le_bytes()
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn wav_cut_mid_write_decodes_what_is_there_and_warns_once() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    // The header promises 2 s; the recorder died after 1 s.
    let mut bytes = header(2 * 32_000);
    bytes.extend(one_second());
    let path = write(dir.path(), "recorder_killed.wav", &bytes);
    let audio = decode_file(&path).unwrap();
    assert_eq!(audio.frames(), 16_000);
    assert_eq!(audio.sample_rate, 16_000);
    let expected = format!(
        "{}: truncated WAV: header promises 32000 frames, 16000 present; using what is there",
        path.display()
    );
    let lines = lines_about("recorder_killed.wav");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("WARN") && lines[0].ends_with(&expected),
        "{lines:#?}"
    );
}

#[test]
fn a_header_claiming_2_pow_31_frames_decodes_the_second_that_is_there() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    // 0x7FFFFFFF frames of 2 bytes: a data chunk of 0xFFFFFFFE bytes.
    let mut bytes = header(0xFFFF_FFFE);
    bytes.extend(one_second());
    let path = write(dir.path(), "huge_header.wav", &bytes);
    let audio = decode_file(&path).unwrap();
    assert_eq!(audio.frames(), 16_000);
    let lines = lines_about("huge_header.wav");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("header promises 2147483647 frames, 16000 present"),
        "{lines:#?}"
    );
}

#[test]
fn a_4_gb_header_with_nothing_after_it_is_refused_quickly() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty_promise.wav", &header(0xFFFF_FFFE));
    let t = Instant::now();
    let e = decode_file(&path).unwrap_err().to_string();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(e.contains("empty_promise.wav"), "{e}");
    assert!(
        e.contains("truncated WAV: the header promises 2147483647 frames but the file ends before the first one"),
        "{e}"
    );
}

#[test]
fn symphonia_log_lines_name_the_file() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    // MPEG frame sync words scattered in noise: symphonia's MP3 demuxer logs
    // the junk it skips (through the `log` crate) before giving up.
    let mut bytes = Vec::new();
    let mut x: u32 = 12345;
    for i in 0..40_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        bytes.push((x >> 16) as u8);
        if i % 997 == 0 {
            bytes.extend_from_slice(&[0xff, 0xfb, 0x90, 0x64]);
        }
    }
    let path = write(dir.path(), "noise_named.mp3", &bytes);
    let _ = decode_file(&path);
    let all = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    let junk: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("skipping junk"))
        .collect();
    assert!(
        !junk.is_empty(),
        "symphonia logged nothing to check:\n{all}"
    );
    for l in junk {
        assert!(
            l.contains("decoding{file=") && l.contains("noise_named.mp3"),
            "{l}"
        );
    }
}
