//! `diva train` under faults (issue 20), on real weights (tiny.en + SmolLM2)
//! and real speech (Asterisk prompts) at a CPU-sized shape:
//! - killed with SIGKILL at 20+ random moments (during steps, validation and
//!   checkpoint writes) and resumed each time, a run ends with the losses,
//!   validation records and weights of an uninterrupted one, bit for bit, and
//!   its metrics.jsonl has each record once, none cut short;
//! - a full disk while writing a checkpoint (a small tmpfs; needs root, else
//!   the test says why it skips) is a clear error, the previous checkpoint
//!   stays intact and loadable, and once space is back `--resume` finishes the
//!   run with the uninterrupted run's weights; a full disk under the encoder
//!   cache is a clear error too, and the run works once space is back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{asterisk_manifest as manifest, text};

/// A small deterministic generator (xorshift64*) for the kill moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

const STEPS: u64 = 6;
const CONFIG: &str = "num_queries = 16\nbatch_size = 2\nmicro_batch = 2\nsteps = 6\n\
checkpoint_every = 2\nkeep_last = 2\nval_every = 2\nval_reply_clips = 0\nretrieval_pool = 4\n";

/// A model's tensors by name, as f32.
type Weights = BTreeMap<String, Vec<f32>>;

/// One run directory (`out`) with its config, data and caches.
struct Run {
    dir: PathBuf,
    out: PathBuf,
    cache: PathBuf,
}

impl Run {
    fn new(dir: &Path, out: PathBuf, cache: &Path) -> Self {
        std::fs::write(dir.join("c.toml"), CONFIG).unwrap();
        if !dir.join("m0.jsonl").exists() {
            manifest(dir, 0, 8);
            manifest(dir, 8, 4);
        }
        Run {
            dir: dir.to_path_buf(),
            out,
            cache: cache.to_path_buf(),
        }
    }
    fn command(&self, resume: bool) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_diva"));
        c.arg("train")
            .arg("--config")
            .arg(self.dir.join("c.toml"))
            .arg("--data")
            .arg(self.dir.join("m0.jsonl"))
            .arg("--val")
            .arg(self.dir.join("m8.jsonl"))
            .arg("--out")
            .arg(&self.out)
            .arg("--cache-dir")
            .arg(&self.cache);
        if resume {
            c.arg("--resume");
        }
        c
    }
    fn run(&self, resume: bool) -> Output {
        self.command(resume).output().expect("run diva train")
    }
    fn has_checkpoint(&self) -> bool {
        std::fs::read_dir(self.out.join("checkpoints")).is_ok_and(|r| {
            r.filter_map(|e| e.ok())
                .any(|e| e.path().join("trainer_state.json").is_file())
        })
    }
    fn metrics(&self) -> String {
        std::fs::read_to_string(self.out.join("metrics.jsonl")).unwrap_or_default()
    }
    /// What must match an uninterrupted run: per record, in order, its step
    /// and kind, and the losses (training) or the scores (validation, less
    /// its wall time).
    fn records(&self) -> Vec<(u64, String)> {
        self.metrics()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("a torn metrics line {l:?}: {e}"));
                let step = v["step"].as_u64().unwrap();
                match v.get("val") {
                    Some(val) => {
                        let mut val = val.clone();
                        val.as_object_mut().unwrap().remove("elapsed_s");
                        (step, format!("val {val}"))
                    }
                    None => {
                        let f = |k: &str| v[k].as_f64().unwrap();
                        (
                            step,
                            format!(
                                "loss {:?}",
                                [f("loss"), f("distill"), f("align"), f("grad_norm"), f("lr")]
                            ),
                        )
                    }
                }
            })
            .collect()
    }
    fn weights(&self, dir: &Path) -> Weights {
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect()
    }
}

/// An uninterrupted run in `dir` (sharing `cache`): its records and weights.
fn reference(dir: &Path, cache: &Path) -> (Vec<(u64, String)>, Weights) {
    let run = Run::new(dir, dir.join("reference"), cache);
    let out = run.run(false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records = run.records();
    let steps: Vec<u64> = records
        .iter()
        .filter(|r| r.1.starts_with("loss"))
        .map(|r| r.0)
        .collect();
    assert_eq!(steps, (1..=STEPS).collect::<Vec<_>>());
    let vals: Vec<u64> = records
        .iter()
        .filter(|r| r.1.starts_with("val"))
        .map(|r| r.0)
        .collect();
    assert_eq!(vals, vec![0, 2, 4, 6]);
    (records, run.weights(&run.out))
}

/// When a trial kills the run.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// At a random time after the start.
    Random(Duration),
    /// While a step checkpoint is being written (its temporary directory exists).
    CheckpointWrite,
    /// Just after a checkpoint appeared: the run directory's model is being
    /// refreshed, or validation runs.
    AfterCheckpoint(Duration),
    /// Some time into the step after the last logged one.
    MidStep(Duration),
}

/// Watch `run` (started as `child`) and SIGKILL it at `moment`. Returns
/// whether it was killed (false: it finished first).
fn kill_at(run: &Run, child: &mut std::process::Child, moment: Moment) -> bool {
    let t0 = Instant::now();
    let ckpts = run.out.join("checkpoints");
    let count = |pred: &dyn Fn(&str) -> bool| {
        std::fs::read_dir(&ckpts).map_or(0, |r| {
            r.filter_map(|e| e.ok())
                .filter(|e| pred(&e.file_name().to_string_lossy()))
                .count()
        })
    };
    let complete = || count(&|n| n.starts_with("step-"));
    let lines = || {
        run.metrics()
            .lines()
            .filter(|l| l.contains("\"loss\""))
            .count()
    };
    // The fewest step records seen since the start: a resumed run first drops
    // the records past its checkpoint, then appends.
    let (c0, mut fewest) = (complete(), lines());
    let mut fire_at: Option<Instant> = match moment {
        Moment::Random(d) => Some(t0 + d),
        _ => None,
    };
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let now = Instant::now();
        let logged = lines();
        if fire_at.is_none() {
            fire_at = match moment {
                Moment::CheckpointWrite if count(&|n| n.ends_with(".tmp")) > 0 => Some(now),
                Moment::AfterCheckpoint(d) if complete() > c0 => Some(now + d),
                Moment::MidStep(d) if logged > fewest => Some(now + d),
                _ => None,
            };
        }
        fewest = fewest.min(logged);
        if fire_at.is_some_and(|f| now >= f) {
            child.kill().unwrap(); // SIGKILL: no chance to save anything
            child.wait().unwrap();
            return true;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no progress in 300 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn killed_at_random_moments_and_resumed_equals_uninterrupted() {
    let t_test = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (want, want_weights) = reference(dir.path(), &cache);
    std::fs::remove_dir_all(dir.path().join("reference")).unwrap();

    let mut rng = Rng(0x2020_2020_2020_2020);
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    let mut attempt = 0;
    while total < 20 {
        attempt += 1;
        let run = Run::new(
            dir.path(),
            dir.path().join(format!("killed-{attempt}")),
            &cache,
        );
        loop {
            let moment = match rng.below(4) {
                0 => Moment::Random(rng.millis(300, 6000)),
                1 => Moment::CheckpointWrite,
                2 => Moment::AfterCheckpoint(rng.millis(0, 400)),
                _ => Moment::MidStep(rng.millis(0, 800)),
            };
            let mut child = run
                .command(run.has_checkpoint())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if !kill_at(&run, &mut child, moment) {
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "{}", text(&out.stderr));
                break;
            }
            total += 1;
            let kind = format!("{moment:?}");
            *kills
                .entry(kind[..kind.find('(').unwrap_or(kind.len())].to_string())
                .or_default() += 1;
        }
        // Every resume of this attempt ended where an uninterrupted run does.
        assert_eq!(run.records(), want, "attempt {attempt}: metrics differ");
        assert!(
            run.weights(&run.out) == want_weights,
            "attempt {attempt}: final weights differ"
        );
        let last = run.out.join(format!("checkpoints/step-{STEPS:06}"));
        assert!(
            run.weights(&last) == want_weights,
            "attempt {attempt}: last checkpoint differs"
        );
        std::fs::remove_dir_all(&run.out).unwrap();
    }
    eprintln!(
        "{total} kills in {attempt} runs ({kills:?}), {:.0} s",
        t_test.elapsed().as_secs_f64()
    );
    assert!(kills.len() == 4, "every kind of moment was hit: {kills:?}");
}

/// A tmpfs of `mb` MiB at `at` (root only); `None` with the reason when it
/// cannot be mounted.
fn tmpfs(at: &Path, mb: usize) -> Option<()> {
    std::fs::create_dir_all(at).unwrap();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(at)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs (needs root): {}",
                text(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run mount: {e}");
            None
        }
    }
}

fn resize(at: &Path, mb: usize) {
    let st = Command::new("mount")
        .args(["-o", &format!("remount,size={mb}m")])
        .arg(at)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Unmounts on drop, even when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_run_resumes_once_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (_, want_weights) = reference(dir.path(), &cache);
    let mnt = dir.path().join("mnt");
    if tmpfs(&mnt, 400).is_none() {
        return;
    }
    let _unmount = Unmount(mnt.clone());

    // A checkpoint is ~200 MB and the run directory's model ~120 MB: the
    // first checkpoint fits in 400 MB, the second does not.
    let run = Run::new(dir.path(), mnt.join("run"), &cache);
    let out = run.run(false);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "a full disk went unnoticed: {err}");
    assert!(
        err.contains("cannot save the checkpoint of step 4"),
        "{err}"
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("the disk is full: free space"), "{err}");
    assert!(err.contains("step-000002, is intact"), "{err}");
    // The previous checkpoint is intact and loadable, nothing half-written
    // is left to fill the disk.
    let ckpts: Vec<String> = std::fs::read_dir(run.out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ckpts, vec!["step-000002"], "{err}");
    let two = run.out.join("checkpoints/step-000002");
    assert!(!run.weights(&two).is_empty());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("trainer_state.json")).unwrap())
            .unwrap();
    assert_eq!(state["step"], 2);

    // Space is back: the run resumes from step 2 and ends as if nothing happened.
    resize(&mnt, 2048);
    let out = run.run(true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        run.weights(&run.out) == want_weights,
        "weights differ after the full disk"
    );
    std::fs::remove_dir_all(&run.out).unwrap();

    // The encoder cache on a full disk (a fresh cache, 1 MiB: not one clip's
    // states fit): a clear error naming the cache file; then a run works.
    resize(&mnt, 1);
    let small = Run::new(
        dir.path(),
        dir.path().join("small-cache-run"),
        &mnt.join("cache"),
    );
    let out = small.run(false);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(&mnt.join("cache/encoder").display().to_string()),
        "{err}"
    );
    assert!(err.contains("the disk is full: free space"), "{err}");
    resize(&mnt, 256);
    std::fs::remove_dir_all(&small.out).unwrap();
    let out = small.run(false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(small.weights(&small.out) == want_weights);
}
