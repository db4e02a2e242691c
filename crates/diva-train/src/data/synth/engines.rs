//! The text-to-speech engines `diva corpus synth` drives through their
//! command lines (flite, espeak-ng, piper): which voices are installed here,
//! and one call that turns a sentence into a WAV file.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A text-to-speech program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    Flite,
    Espeak,
    Piper,
}

impl Engine {
    /// The prefix of this engine's voice ids.
    pub fn prefix(self) -> &'static str {
        match self {
            Engine::Flite => "flite",
            Engine::Espeak => "espeak",
            Engine::Piper => "piper",
        }
    }
}

/// One voice of one engine. `name` is what the engine is given: a flite
/// voice, an espeak-ng voice with optional `+variant`, or a piper model path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Voice {
    pub engine: Engine,
    pub name: String,
}

impl Voice {
    pub fn new(engine: Engine, name: impl Into<String>) -> Self {
        Self {
            engine,
            name: name.into(),
        }
    }

    /// A stable id such as `flite-slt` or `espeak-en-us+m3`, used as the
    /// manifest's `speaker`.
    pub fn id(&self) -> String {
        let name = match self.engine {
            // Model paths differ between machines; the file name does not.
            Engine::Piper => Path::new(&self.name)
                .file_stem()
                .map_or_else(|| self.name.clone(), |s| s.to_string_lossy().into_owned()),
            _ => self.name.clone(),
        };
        format!("{}-{name}", self.engine.prefix())
    }

    /// The language code: flite's voices are all English; espeak-ng and
    /// piper names start with it (`en-us+m3`, `en_US-lessac-medium`).
    pub fn lang(&self) -> String {
        let stem = self.id();
        let name = stem.split_once('-').map_or("", |(_, n)| n);
        match self.engine {
            Engine::Flite => "en".into(),
            _ => name
                .split(['-', '_', '+'])
                .next()
                .filter(|l| !l.is_empty())
                .unwrap_or("en")
                .to_lowercase(),
        }
    }
}

/// Where the engine programs are, and the piper models to offer as voices.
/// Defaults look the programs up on `PATH`.
#[derive(Debug, Clone)]
pub struct Engines {
    pub flite: OsString,
    pub espeak: OsString,
    pub piper: OsString,
    pub piper_models: Vec<PathBuf>,
}

impl Default for Engines {
    fn default() -> Self {
        Self {
            flite: "flite".into(),
            espeak: "espeak-ng".into(),
            piper: "piper".into(),
            piper_models: Vec::new(),
        }
    }
}

/// The voices found, and one line per engine that offered none (and why).
#[derive(Debug, Clone, Default)]
pub struct VoiceList {
    pub voices: Vec<Voice>,
    pub skipped: Vec<String>,
}

/// espeak-ng's standard male and female variants; the others in `!v` are
/// novelty or robotic voices that would teach the model nothing useful.
const ESPEAK_VARIANTS: &[&str] = &[
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
];
/// The espeak-ng accents that get every variant; other accents come plain.
const ESPEAK_VARIANT_BASES: &[&str] = &["en-us", "en-gb"];

/// Finds every usable voice. A missing engine is skipped with a warning; no
/// voice at all is an error that says what to install.
pub fn list_voices(engines: &Engines) -> Result<VoiceList> {
    let mut list = VoiceList::default();
    match flite_voices(&engines.flite) {
        Ok(v) => list.voices.extend(v),
        Err(e) => {
            tracing::warn!("skipping flite: {e:#}");
            list.skipped.push(format!("flite: {e:#}"));
        }
    }
    match espeak_voices(&engines.espeak) {
        Ok(v) => list.voices.extend(v),
        Err(e) => {
            tracing::warn!("skipping espeak-ng: {e:#}");
            list.skipped.push(format!("espeak-ng: {e:#}"));
        }
    }
    if !engines.piper_models.is_empty() {
        if probe(&engines.piper, &["--help"]).is_ok() {
            for m in &engines.piper_models {
                if !m.is_file() {
                    bail!("piper model {} does not exist", m.display());
                }
                list.voices
                    .push(Voice::new(Engine::Piper, m.to_string_lossy().into_owned()));
            }
        } else {
            tracing::info!("skipping piper: {:?} is not installed", engines.piper);
            list.skipped
                .push(format!("piper: {:?} is not installed", engines.piper));
        }
    }
    if list.voices.is_empty() {
        bail!(
            "no text-to-speech engine found ({}); install one with `apt-get install flite espeak-ng`",
            list.skipped.join("; ")
        );
    }
    Ok(list)
}

/// Runs `program args` to completion and returns its stdout.
fn probe(program: &OsString, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => anyhow::anyhow!("{program:?} is not installed"),
            _ => anyhow::anyhow!("cannot run {program:?}: {e}"),
        })?;
    if !out.status.success() {
        bail!(
            "{program:?} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn flite_voices(flite: &OsString) -> Result<Vec<Voice>> {
    let listing = probe(flite, &["-lv"])?;
    let names = listing
        .split_once(':')
        .map_or(listing.as_str(), |(_, rest)| rest);
    let voices: Vec<Voice> = names
        .split_whitespace()
        // `*_time` voices are limited-domain: they can only say the time.
        .filter(|n| !n.ends_with("_time"))
        .map(|n| Voice::new(Engine::Flite, n))
        .collect();
    if voices.is_empty() {
        bail!("`flite -lv` listed no voices");
    }
    Ok(voices)
}

fn espeak_voices(espeak: &OsString) -> Result<Vec<Voice>> {
    let version = probe(espeak, &["--version"])?;
    let listing = probe(espeak, &["--voices=en"])?;
    let mut bases: Vec<String> = Vec::new();
    for row in listing.lines().skip(1) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        // Only espeak's own voices: `mb/` needs mbrola databases that are
        // rarely installed, and `!v/` rows are variants, added below.
        if cols.len() >= 5 && cols[4].starts_with("gmw/") && !bases.iter().any(|b| b == cols[1]) {
            bases.push(cols[1].to_string());
        }
    }
    if bases.is_empty() {
        bail!("`espeak-ng --voices=en` listed no English voices");
    }
    let variants_dir = version
        .split_once("Data at:")
        .map(|(_, d)| Path::new(d.trim()).join("voices").join("!v"));
    let mut voices: Vec<Voice> = bases
        .iter()
        .map(|b| Voice::new(Engine::Espeak, b.clone()))
        .collect();
    for base in ESPEAK_VARIANT_BASES
        .iter()
        .filter(|b| bases.iter().any(|x| x == *b))
    {
        for v in ESPEAK_VARIANTS {
            if variants_dir.as_ref().is_some_and(|d| d.join(v).is_file()) {
                voices.push(Voice::new(Engine::Espeak, format!("{base}+{v}")));
            }
        }
    }
    Ok(voices)
}

/// How a sentence is spoken, engine-independently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prosody {
    /// Speaking-rate factor: 1 is the engine's normal pace, 1.2 is 20 % faster.
    pub rate: f32,
    /// Pitch offset in [-1, 1]: ±15 % of a flite voice's mean F0, espeak-ng
    /// pitch 30..70 (50 is its default).
    pub pitch: f32,
}

/// espeak-ng words per minute at rate 1: a little slower than its default
/// 175, so that the default rate range spans roughly 130..200.
const ESPEAK_WPM: f32 = 165.0;
/// Longest an engine may take for one sentence before it is killed.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(120);

/// The default mean F0 (Hz) of flite's voices, found by searching for the
/// `int_f0_target_mean` that reproduces the default output bit for bit. `rms`
/// ignores the setting, and unknown voices are left at their default.
fn flite_f0(voice: &str) -> Option<f32> {
    match voice {
        "kal" | "kal16" => Some(95.0),
        "awb" => Some(132.0),
        "slt" => Some(172.0),
        _ => None,
    }
}

/// Synthesizes `text` with `voice` into the WAV file `out` (at the engine's
/// own sample rate). The text is passed as one argument (or on stdin for
/// piper), never through a shell.
pub fn synthesize(
    engines: &Engines,
    voice: &Voice,
    text: &str,
    prosody: Prosody,
    out: &Path,
) -> Result<()> {
    let rate = prosody.rate.max(0.1);
    let mut stdin_text = None;
    let mut cmd = match voice.engine {
        Engine::Flite => {
            let mut c = Command::new(&engines.flite);
            c.arg("-voice").arg(&voice.name);
            c.arg("--setf")
                .arg(format!("duration_stretch={:.4}", 1.0 / rate));
            if let Some(f0) = flite_f0(&voice.name) {
                let f0 = f0 * (1.0 + 0.15 * prosody.pitch);
                c.arg("--setf").arg(format!("int_f0_target_mean={f0:.2}"));
            }
            c.arg("-t").arg(text).arg("-o").arg(out);
            c
        }
        Engine::Espeak => {
            let mut c = Command::new(&engines.espeak);
            let wpm = (ESPEAK_WPM * rate).round() as i32;
            let pitch = (50.0 + 20.0 * prosody.pitch).round() as i32;
            c.arg("-v").arg(&voice.name);
            c.arg("-s")
                .arg(wpm.to_string())
                .arg("-p")
                .arg(pitch.to_string());
            // `--` keeps a sentence that starts with '-' from being read as a flag.
            c.arg("-w").arg(out).arg("--").arg(text);
            c
        }
        Engine::Piper => {
            let mut c = Command::new(&engines.piper);
            c.arg("--model")
                .arg(&voice.name)
                .arg("--output_file")
                .arg(out);
            c.arg("--length_scale").arg(format!("{:.4}", 1.0 / rate));
            // piper reads one utterance per line, so the text must be one line.
            stdin_text = Some(text.replace(['\n', '\r'], " "));
            c
        }
    };
    run_engine(&mut cmd, stdin_text, voice)?;
    let len = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    if len <= 44 {
        bail!("{} produced no audio", voice.id());
    }
    Ok(())
}

fn run_engine(cmd: &mut Command, stdin_text: Option<String>, voice: &Voice) -> Result<()> {
    cmd.stdin(if stdin_text.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start the engine for {}", voice.id()))?;
    if let (Some(text), Some(mut stdin)) = (stdin_text, child.stdin.take()) {
        // Closing stdin (dropping it) tells piper the input is complete.
        let _ = stdin.write_all(format!("{text}\n").as_bytes());
    }
    // Drained on a thread so a chatty engine cannot block on a full pipe.
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > ENGINE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} took longer than {ENGINE_TIMEOUT:?}", voice.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let err = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("{} failed ({status}): {}", voice.id(), err.trim());
    }
    Ok(())
}
