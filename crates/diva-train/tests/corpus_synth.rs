//! `diva corpus synth` end to end with the real engines: espeak-ng is
//! required; flite is used when installed and must be skipped cleanly when not.

use std::path::{Path, PathBuf};

use diva_train::data::read_manifest;
use diva_train::data::synth::{
    list_voices, read_lines, synthesize_corpus, Engine, Engines, Outcome, Report, SynthConfig,
    Utterance, Voice,
};

const LINES: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "Six spoons of fresh snow peas.",
    "A big blue bucket of water.",
    "We also need a small plastic snake.",
    "She can scoop these things into three red bags.",
];

const HELD_OUT: &str = "espeak-en-us+m3";

fn flite_installed() -> bool {
    std::process::Command::new("flite")
        .arg("-lv")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn lines() -> Vec<String> {
    LINES.iter().map(|s| s.to_string()).collect()
}

/// Two espeak voices plus the held-out one, and two flite voices if flite is here.
fn voices() -> Vec<Voice> {
    let available = list_voices(&Engines::default()).unwrap().voices;
    let mut wanted = vec!["espeak-en-us", "espeak-en-gb+f2", HELD_OUT];
    if flite_installed() {
        wanted.extend(["flite-slt", "flite-kal"]);
    }
    wanted
        .iter()
        .map(|id| {
            available
                .iter()
                .find(|v| v.id() == *id)
                .unwrap_or_else(|| panic!("voice {id} not found"))
                .clone()
        })
        .collect()
}

fn config(out: &Path) -> SynthConfig {
    SynthConfig {
        out_dir: out.to_path_buf(),
        voices: voices(),
        holdout: vec![HELD_OUT.into()],
        val_share: 0.34,
        seed: 7,
        jobs: 2,
        ..SynthConfig::default()
    }
}

fn run(cfg: &SynthConfig) -> Report {
    synthesize_corpus(cfg, &lines(), &|_: &Utterance, _: &Outcome| {}).unwrap()
}

fn decode(path: &Path) -> Vec<f32> {
    let a = diva_core::audio::decode::decode_file(path).unwrap();
    assert_eq!(a.sample_rate, 16_000, "{}", path.display());
    assert_eq!(a.channels.len(), 1);
    a.channels.into_iter().next().unwrap()
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

fn wav_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("wavs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn detection_finds_espeak_and_skips_missing_flite_cleanly() {
    let list = list_voices(&Engines::default()).unwrap();
    assert!(list.voices.iter().any(|v| v.id() == "espeak-en-us"));
    assert!(list.voices.iter().any(|v| v.id() == HELD_OUT));
    assert!(!list.voices.iter().any(|v| v.id() == "flite-awb_time"));
    if flite_installed() {
        assert!(list.voices.iter().any(|v| v.id() == "flite-slt"));
    }
    let no_flite = Engines {
        flite: "/nonexistent/flite".into(),
        ..Engines::default()
    };
    let list = list_voices(&no_flite).unwrap();
    assert!(list.voices.iter().all(|v| v.engine != Engine::Flite));
    assert!(list.voices.iter().any(|v| v.engine == Engine::Espeak));
    assert_eq!(list.skipped.len(), 1);
    assert!(list.skipped[0].contains("flite"), "{:?}", list.skipped);
}

#[test]
fn no_engine_at_all_says_what_to_install() {
    let none = Engines {
        flite: "/nonexistent/flite".into(),
        espeak: "/nonexistent/espeak-ng".into(),
        ..Engines::default()
    };
    let err = list_voices(&none).unwrap_err().to_string();
    assert!(err.contains("apt-get install flite espeak-ng"), "{err}");
}

#[test]
fn corpus_has_decodable_audio_and_a_per_voice_split() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let report = run(&cfg);
    assert_eq!(report.written, LINES.len());
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(report.audio_secs > 6.0, "{}", report.audio_secs);

    let (all, skipped) = read_manifest(dir.path().join("manifest.jsonl")).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(all.len(), LINES.len());
    let (train, _) = read_manifest(dir.path().join("train.jsonl")).unwrap();
    let (val, _) = read_manifest(dir.path().join("val.jsonl")).unwrap();
    assert_eq!(train.len() + val.len(), all.len());
    // 0.34 of 6 lines.
    assert_eq!(val.len(), 2);
    assert!(val.iter().all(|i| i.speaker.as_deref() == Some(HELD_OUT)));
    assert!(val.iter().all(|i| i.split.as_deref() == Some("val")));
    assert!(train.iter().all(|i| i.speaker.as_deref() != Some(HELD_OUT)));
    assert!(train.iter().all(|i| i.split.as_deref() == Some("train")));
    let train_speakers: std::collections::HashSet<_> =
        train.iter().map(|i| i.speaker.clone().unwrap()).collect();
    assert_eq!(
        train_speakers.len(),
        (cfg.voices.len() - 1).min(train.len())
    );

    for item in &all {
        assert!(LINES.contains(&item.text.as_str()));
        assert_eq!(item.lang.as_deref(), Some("en"));
        let pcm = decode(&item.audio);
        assert!(
            pcm.len() > 8_000,
            "{}: {} samples",
            item.audio.display(),
            pcm.len()
        );
        // Every voice is levelled to the same loudness.
        let dbfs = 20.0 * rms(&pcm).log10();
        assert!(
            (dbfs + 23.0).abs() < 0.5,
            "{}: {dbfs:.2} dBFS",
            item.audio.display()
        );
    }
    // Manifests travel with their data: paths are relative to the directory.
    let raw = std::fs::read_to_string(dir.path().join("manifest.jsonl")).unwrap();
    assert!(raw.contains("\"audio\":\"wavs/000000.wav\""), "{raw}");
    assert!(!dir.path().join(".synth-tmp").exists());
}

#[test]
fn same_seed_gives_identical_bytes_and_a_rerun_resumes() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&config(a.path()));
    let cfg_b = SynthConfig {
        jobs: 1,
        ..config(b.path())
    };
    run(&cfg_b);
    let (fa, fb) = (wav_files(a.path()), wav_files(b.path()));
    assert_eq!(fa.len(), LINES.len());
    for (x, y) in fa.iter().zip(&fb) {
        assert_eq!(x.file_name(), y.file_name());
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{x:?} differs"
        );
    }
    for m in ["manifest.jsonl", "train.jsonl", "val.jsonl", "plan.jsonl"] {
        assert_eq!(
            std::fs::read(a.path().join(m)).unwrap(),
            std::fs::read(b.path().join(m)).unwrap(),
            "{m}"
        );
    }

    let again = run(&cfg_b);
    assert_eq!((again.written, again.existing), (0, LINES.len()));
    assert!((again.audio_secs - run(&config(a.path())).audio_secs).abs() < 1e-9);

    // A truncated file (a killed run) is redone, not kept.
    let victim = &fb[0];
    let len = std::fs::metadata(victim).unwrap().len();
    std::fs::write(victim, &std::fs::read(victim).unwrap()[..20]).unwrap();
    let again = run(&cfg_b);
    assert_eq!((again.written, again.existing), (1, LINES.len() - 1));
    assert_eq!(std::fs::metadata(victim).unwrap().len(), len);

    // Other settings must not be mixed into the same directory.
    let other_seed = SynthConfig {
        seed: 8,
        ..cfg_b.clone()
    };
    let err = synthesize_corpus(&other_seed, &lines(), &|_: &Utterance, _: &Outcome| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("other text or settings"), "{err}");
}

#[test]
fn a_bad_voice_is_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.holdout.clear();
    cfg.voices = vec![
        Voice::new(Engine::Espeak, "en-us"),
        Voice::new(Engine::Espeak, "zz-no-such-voice"),
    ];
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let report = synthesize_corpus(&cfg, &lines(), &|_, o| {
        if matches!(o, Outcome::Failed(_)) {
            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .unwrap();
    assert_eq!(report.written, 3);
    assert_eq!(report.failures.len(), 3);
    assert_eq!(failed.into_inner(), 3);
    assert!(
        report.failures[0].1.contains("zz-no-such-voice"),
        "{:?}",
        report.failures
    );
    let (all, _) = read_manifest(dir.path().join("manifest.jsonl")).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all
        .iter()
        .all(|i| i.speaker.as_deref() == Some("espeak-en-us")));
}

#[test]
fn noise_lands_near_the_requested_snr() {
    let (clean_dir, noisy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let clean = config(clean_dir.path());
    run(&clean);
    let noisy = SynthConfig {
        out_dir: noisy_dir.path().to_path_buf(),
        noise_prob: 1.0,
        snr_db: (20.0, 20.0),
        ..clean.clone()
    };
    run(&noisy);
    for (c, n) in wav_files(clean_dir.path())
        .iter()
        .zip(&wav_files(noisy_dir.path()))
    {
        let (c, n) = (decode(c), decode(n));
        assert_eq!(c.len(), n.len(), "noise must not change the speech itself");
        let diff: Vec<f32> = n.iter().zip(&c).map(|(a, b)| a - b).collect();
        let snr = 20.0 * (rms(&c) / rms(&diff)).log10();
        assert!((snr - 20.0).abs() < 3.0, "SNR {snr:.2} dB");
    }
}

#[test]
fn gain_scales_the_level() {
    let (plain_dir, quiet_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = config(plain_dir.path());
    run(&plain);
    run(&SynthConfig {
        out_dir: quiet_dir.path().to_path_buf(),
        gain_db: Some((-12.0, -12.0)),
        ..plain.clone()
    });
    let (p, q) = (
        decode(&wav_files(plain_dir.path())[0]),
        decode(&wav_files(quiet_dir.path())[0]),
    );
    let db = 20.0 * (rms(&q) / rms(&p)).log10();
    assert!((db + 12.0).abs() < 0.1, "{db}");
}

#[test]
fn repeat_and_limit_shape_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    std::fs::write(
        &text,
        "# a comment\n\nfirst line\n  second line  \nthird line\n",
    )
    .unwrap();
    let lines = read_lines(&text, Some(2)).unwrap();
    assert_eq!(lines, ["first line", "second line"]);
    let mut cfg = config(&dir.path().join("out"));
    cfg.holdout.clear();
    cfg.repeat = 3;
    let report = synthesize_corpus(&cfg, &lines, &|_, _| {}).unwrap();
    assert_eq!(report.written, 6);
    let ids: Vec<_> = report.items.iter().map(|i| i.id.clone().unwrap()).collect();
    assert_eq!(
        ids,
        ["000000-0", "000000-1", "000000-2", "000001-0", "000001-1", "000001-2"]
    );
    // The repeats of a line are spoken by different voices.
    for chunk in report.items.chunks(3) {
        let speakers: std::collections::HashSet<_> = chunk.iter().map(|i| &i.speaker).collect();
        assert_eq!(speakers.len(), 3);
    }
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_lines(&dir.path().join("missing.txt"), None).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n# only a comment\n   \n").unwrap();
    let err = read_lines(&empty, None).unwrap_err();
    assert!(err.to_string().contains("has no utterances"), "{err}");

    // A file where the output directory should be.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let err = synthesize_corpus(&config(&blocker.join("out")), &lines(), &|_, _| {}).unwrap_err();
    assert!(
        format!("{err:#}").contains("cannot create output directory"),
        "{err:#}"
    );

    let mut cfg = config(&dir.path().join("out"));
    cfg.holdout = vec!["espeak-nope".into()];
    let err = synthesize_corpus(&cfg, &lines(), &|_, _| {}).unwrap_err();
    assert!(
        err.to_string().contains("held-out voice espeak-nope"),
        "{err}"
    );
}
