//! Speech corpus synthesis: every line of a text file spoken by installed
//! TTS engines with varied voice, rate and pitch, levelled to one loudness
//! (plus optional gain and noise), written as 16 kHz WAV files and JSONL
//! manifests.
//!
//! The whole corpus is fixed up front by [`plan`] from the seed, the text
//! and the voices, so the result does not depend on thread scheduling, and a
//! rerun into the same directory finishes an interrupted run instead of
//! redoing it.

mod engines;
mod signal;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

pub use engines::{list_voices, synthesize, Engine, Engines, Prosody, Voice, VoiceList};
pub use signal::{
    add_noise, apply_gain, existing_wav_secs, normalize_rms, power, write_wav, NoiseColor, RATE,
    TARGET_RMS_DBFS,
};

use super::manifest::{write_manifest, Item};

/// Everything that shapes a corpus besides its text.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub out_dir: PathBuf,
    /// The voices to speak with (from [`list_voices`], possibly filtered).
    pub voices: Vec<Voice>,
    /// Ids of voices whose utterances all go to the `val` split.
    pub holdout: Vec<String>,
    /// Share of the text lines spoken by held-out voices (when there are any).
    pub val_share: f64,
    pub seed: u64,
    /// Times each line is spoken, each time by another voice.
    pub repeat: usize,
    /// Speaking-rate factor range (1 = the engine's normal pace).
    pub rate_range: (f32, f32),
    /// Gain range in dB relative to [`TARGET_RMS_DBFS`], which every
    /// utterance is brought to first; `None` leaves it there.
    pub gain_db: Option<(f32, f32)>,
    /// Probability that an utterance gets additive noise.
    pub noise_prob: f64,
    /// SNR range in dB for the noise.
    pub snr_db: (f32, f32),
    pub jobs: usize,
    pub engines: Engines,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("corpus"),
            voices: Vec::new(),
            holdout: Vec::new(),
            val_share: 0.1,
            seed: 0,
            repeat: 1,
            rate_range: (0.8, 1.2),
            gain_db: None,
            noise_prob: 0.0,
            snr_db: (15.0, 40.0),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            engines: Engines::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Noise {
    pub snr_db: f32,
    pub color: NoiseColor,
}

/// One utterance of the corpus, with every random choice already made.
#[derive(Debug, Clone)]
pub struct Utterance {
    pub id: String,
    pub text: String,
    pub voice: Voice,
    pub split: Split,
    pub prosody: Prosody,
    pub gain_db: Option<f32>,
    pub noise: Option<Noise>,
    noise_seed: u64,
}

impl Utterance {
    /// The record of this utterance in `plan.jsonl`.
    fn plan_line(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "text": self.text, "voice": self.voice.id(), "split": self.split,
            "rate": self.prosody.rate, "pitch": self.prosody.pitch,
            "gain_db": self.gain_db, "noise": self.noise, "noise_seed": self.noise_seed,
        })
    }
}

/// What became of one utterance.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Written {
        secs: f64,
    },
    /// A valid WAV was already there from an earlier run.
    Existing {
        secs: f64,
    },
    Failed(String),
}

/// The result of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub written: usize,
    pub existing: usize,
    /// `(utterance id, why)` for each utterance that could not be made.
    pub failures: Vec<(String, String)>,
    pub audio_secs: f64,
    /// The manifest items, in id order (also written to `manifest.jsonl`).
    pub items: Vec<Item>,
}

/// Reads one utterance per line, ignoring blank lines and `#` comments, and
/// keeps the first `limit` if given.
pub fn read_lines(path: &Path, limit: Option<usize>) -> Result<Vec<String>> {
    let content = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("text file {} does not exist", path.display())
        }
        _ => anyhow::anyhow!("cannot read text file {}: {e}", path.display()),
    })?;
    let content = String::from_utf8(content)
        .map_err(|e| anyhow::anyhow!("text file {} is not UTF-8: {e}", path.display()))?;
    let lines: Vec<String> = content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .take(limit.unwrap_or(usize::MAX))
        .map(str::to_string)
        .collect();
    ensure!(
        !lines.is_empty(),
        "text file {} has no utterances (blank lines and lines starting with # are ignored)",
        path.display()
    );
    Ok(lines)
}

/// SplitMix64's finaliser: decorrelates the per-utterance RNG seeds so that
/// neighbouring ids do not get related random streams.
fn mix(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn lerp((lo, hi): (f32, f32), u: f32) -> f32 {
    lo + (hi - lo) * u
}

/// Fixes every utterance: id, voice, split and parameters. Lines, not
/// utterances, are split, so a val sentence is never also heard in train.
/// Voices are dealt round-robin, which keeps them balanced and gives the
/// repeats of a line different voices.
pub fn plan(cfg: &SynthConfig, lines: &[String]) -> Result<Vec<Utterance>> {
    let ordered = |(lo, hi): (f32, f32)| lo <= hi && lo.is_finite() && hi.is_finite();
    ensure!(cfg.repeat >= 1, "--repeat must be at least 1");
    ensure!(
        ordered(cfg.rate_range) && cfg.rate_range.0 > 0.0,
        "rate range {:?} must be positive with low <= high",
        cfg.rate_range
    );
    ensure!(
        ordered(cfg.snr_db),
        "SNR range {:?} needs low <= high",
        cfg.snr_db
    );
    if let Some(g) = cfg.gain_db {
        ensure!(ordered(g), "gain range {g:?} needs low <= high");
    }
    ensure!(
        (0.0..=1.0).contains(&cfg.noise_prob),
        "noise probability {} is not in [0, 1]",
        cfg.noise_prob
    );
    ensure!(
        (0.0..=1.0).contains(&cfg.val_share),
        "val share {} is not in [0, 1]",
        cfg.val_share
    );

    let mut seen = HashSet::new();
    let pool: Vec<&Voice> = cfg.voices.iter().filter(|v| seen.insert(v.id())).collect();
    ensure!(!pool.is_empty(), "no voices to synthesize with");
    for h in &cfg.holdout {
        if !seen.contains(h) {
            let ids: Vec<String> = pool.iter().map(|v| v.id()).collect();
            bail!(
                "held-out voice {h} is not among the voices in use ({})",
                ids.join(", ")
            );
        }
    }
    let (held, train): (Vec<&Voice>, Vec<&Voice>) =
        pool.iter().partition(|v| cfg.holdout.contains(&v.id()));
    ensure!(
        !train.is_empty(),
        "every voice is held out; at least one must be left for training"
    );

    let mut val_lines = vec![false; lines.len()];
    if !held.is_empty() {
        let mut k = (cfg.val_share * lines.len() as f64).round() as usize;
        if cfg.val_share > 0.0 {
            k = k.max(1);
        }
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(cfg.seed, u64::MAX)));
        for &i in order.iter().take(k.min(lines.len())) {
            val_lines[i] = true;
        }
    }

    let (mut n_train, mut n_val) = (0usize, 0usize);
    let mut utts = Vec::with_capacity(lines.len() * cfg.repeat);
    for (li, text) in lines.iter().enumerate() {
        for r in 0..cfg.repeat {
            let index = (li * cfg.repeat + r) as u64;
            // Every value is drawn whether or not it is used, so switching
            // an augmentation on changes nothing else about the utterance.
            let mut rng = StdRng::seed_from_u64(mix(cfg.seed, index));
            let rate = lerp(cfg.rate_range, rng.random());
            let pitch = rng.random_range(-1.0f32..=1.0);
            let gain_u: f32 = rng.random();
            let noise_u: f64 = rng.random();
            let snr_u: f32 = rng.random();
            let pink: bool = rng.random();
            let noise_seed: u64 = rng.random();
            let (voice, split) = if val_lines[li] {
                n_val += 1;
                (held[(n_val - 1) % held.len()], Split::Val)
            } else {
                n_train += 1;
                (train[(n_train - 1) % train.len()], Split::Train)
            };
            let id = if cfg.repeat > 1 {
                format!("{li:06}-{r}")
            } else {
                format!("{li:06}")
            };
            utts.push(Utterance {
                id,
                text: text.clone(),
                voice: voice.clone(),
                split,
                prosody: Prosody { rate, pitch },
                gain_db: cfg.gain_db.map(|g| lerp(g, gain_u)),
                noise: (noise_u < cfg.noise_prob).then(|| Noise {
                    snr_db: lerp(cfg.snr_db, snr_u),
                    color: if pink {
                        NoiseColor::Pink
                    } else {
                        NoiseColor::White
                    },
                }),
                noise_seed,
            });
        }
    }
    Ok(utts)
}

/// Creates the output directories and proves they can be written to, so a
/// bad `--out` fails at once rather than as one failure per utterance.
fn prepare_out_dir(out: &Path) -> Result<()> {
    for dir in [out.join("wavs"), out.join(".synth-tmp")] {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    }
    let probe = out
        .join(".synth-tmp")
        .join(format!(".probe.{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("output directory {} is not writable", out.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Records the plan, refusing to mix it into a directory made from another
/// plan: kept files would then carry the wrong text or voice.
fn check_and_write_plan(out: &Path, utts: &[Utterance]) -> Result<()> {
    let mut text = String::new();
    for u in utts {
        text.push_str(&u.plan_line().to_string());
        text.push('\n');
    }
    let path = out.join("plan.jsonl");
    if let Ok(old) = std::fs::read_to_string(&path) {
        if old == text {
            return Ok(());
        }
        bail!(
            "{} holds a corpus made from other text or settings (seed, voices, --limit, \
             --repeat, ranges…); use another --out or delete it",
            out.display()
        );
    }
    let tmp = out.join(".plan.jsonl.part");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

fn wav_path(out: &Path, id: &str) -> PathBuf {
    out.join("wavs").join(format!("{id}.wav"))
}

fn make_one(cfg: &SynthConfig, u: &Utterance) -> Result<Outcome> {
    let wav = wav_path(&cfg.out_dir, &u.id);
    if let Some(secs) = existing_wav_secs(&wav) {
        return Ok(Outcome::Existing { secs });
    }
    let raw = cfg.out_dir.join(".synth-tmp").join(format!("{}.wav", u.id));
    let pcm = synthesize(&cfg.engines, &u.voice, &u.text, u.prosody, &raw).and_then(|()| {
        // Also rejects silence, which is how an engine that "succeeds"
        // without speaking (e.g. on text of only punctuation) shows up.
        diva_core::audio::load_pcm_16k(&raw).map_err(anyhow::Error::from)
    });
    let _ = std::fs::remove_file(&raw);
    let mut pcm = pcm?;
    normalize_rms(&mut pcm, TARGET_RMS_DBFS);
    if let Some(db) = u.gain_db {
        apply_gain(&mut pcm, db);
    }
    if let Some(n) = u.noise {
        add_noise(
            &mut pcm,
            n.snr_db,
            n.color,
            &mut StdRng::seed_from_u64(u.noise_seed),
        );
    }
    write_wav(&wav, &pcm)?;
    Ok(Outcome::Written {
        secs: pcm.len() as f64 / f64::from(RATE),
    })
}

/// Synthesizes the corpus for `lines` into `cfg.out_dir`: `wavs/<id>.wav`,
/// `manifest.jsonl` (all), `train.jsonl`, `val.jsonl` and `plan.jsonl` (every
/// utterance's parameters). `on_done` is called once per utterance, from
/// worker threads. A failed utterance is reported and left out; it never
/// stops the run.
pub fn synthesize_corpus(
    cfg: &SynthConfig,
    lines: &[String],
    on_done: &(dyn Fn(&Utterance, &Outcome) + Sync),
) -> Result<Report> {
    let utts = plan(cfg, lines)?;
    let out = &cfg.out_dir;
    prepare_out_dir(out)?;
    check_and_write_plan(out, &utts)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.jobs.max(1))
        .build()
        .context("starting worker threads")?;
    let outcomes: Vec<Outcome> = pool.install(|| {
        utts.par_iter()
            .map(|u| {
                let o = make_one(cfg, u).unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
                on_done(u, &o);
                o
            })
            .collect()
    });
    let _ = std::fs::remove_dir_all(out.join(".synth-tmp"));

    let mut report = Report::default();
    for (u, o) in utts.iter().zip(outcomes) {
        let secs = match o {
            Outcome::Written { secs } => {
                report.written += 1;
                secs
            }
            Outcome::Existing { secs } => {
                report.existing += 1;
                secs
            }
            Outcome::Failed(why) => {
                report.failures.push((u.id.clone(), why));
                continue;
            }
        };
        report.audio_secs += secs;
        report.items.push(Item {
            audio: wav_path(out, &u.id),
            text: u.text.clone(),
            id: Some(u.id.clone()),
            speaker: Some(u.voice.id()),
            lang: Some(u.voice.lang()),
            split: Some(u.split.as_str().into()),
        });
    }
    write_manifest(out.join("manifest.jsonl"), &report.items)?;
    for split in [Split::Train, Split::Val] {
        let items: Vec<Item> = report
            .items
            .iter()
            .filter(|i| i.split.as_deref() == Some(split.as_str()))
            .cloned()
            .collect();
        write_manifest(out.join(format!("{}.jsonl", split.as_str())), &items)?;
    }
    Ok(report)
}
