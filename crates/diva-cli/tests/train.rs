//! `diva train` as a user runs it, on real weights (tiny.en + SmolLM2) and
//! real speech (Asterisk prompts), at a CPU-sized shape:
//! - a run killed with SIGKILL and resumed logs the same losses and ends with
//!   the same weights as an uninterrupted run;
//! - Ctrl-C stops cleanly after saving a checkpoint;
//! - misuse gets a clear error;
//! - checkpoints are in the official layout and the run directory is a model
//!   that `diva eval-distill` and `diva chat` load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{asterisk_manifest as manifest, text};

const CONFIG: &str = "num_queries = 16\nbatch_size = 2\nmicro_batch = 2\nsteps = 6\n\
checkpoint_every = 2\nkeep_last = 2\nval_every = 0\nval_reply_clips = 0\n";

struct Run {
    dir: tempfile::TempDir,
    cache: PathBuf,
    config: PathBuf,
    data: PathBuf,
}

impl Run {
    fn new(shared: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("c.toml");
        std::fs::write(&config, CONFIG).unwrap();
        Run {
            data: manifest(dir.path(), 0, 8),
            cache: shared.to_path_buf(),
            config,
            dir,
        }
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    fn command(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_diva"));
        c.args(["train", "--config"])
            .arg(&self.config)
            .arg("--data")
            .arg(&self.data)
            .arg("--out")
            .arg(self.out())
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(extra);
        c
    }
    fn run(&self, extra: &[&str]) -> Output {
        self.command(extra).output().expect("run diva train")
    }
    /// step → (loss, distill, align, grad_norm), the last line logged per step.
    fn losses(&self) -> BTreeMap<u64, [f64; 4]> {
        let body = std::fs::read_to_string(self.out().join("metrics.jsonl")).unwrap();
        body.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("loss").is_some())
            .map(|v| {
                let f = |k: &str| v[k].as_f64().unwrap();
                (
                    v["step"].as_u64().unwrap(),
                    [f("loss"), f("distill"), f("align"), f("grad_norm")],
                )
            })
            .collect()
    }
    fn weights(&self) -> std::collections::HashMap<String, Vec<f32>> {
        candle_core::safetensors::load(
            self.out().join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
    }
}

fn wait_for(p: &Path, child: &mut std::process::Child, limit: Duration) {
    let t = Instant::now();
    while !p.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "diva train exited ({status}) before {} appeared",
                p.display()
            );
        }
        assert!(t.elapsed() < limit, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killed_and_resumed_equals_uninterrupted() {
    let shared = tempfile::tempdir().unwrap();
    let full = Run::new(shared.path());
    let out = full.run(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = full.losses();
    assert_eq!(
        want.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5, 6]
    );

    let killed = Run::new(shared.path());
    let mut child = killed
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &killed
            .out()
            .join("checkpoints/step-000002/trainer_state.json"),
        &mut child,
        Duration::from_secs(300),
    );
    child.kill().unwrap(); // SIGKILL: no chance to save anything
    child.wait().unwrap();
    let before = killed.losses();
    assert!(before.len() < 6, "the run was killed before it finished");

    let out = killed.run(&["--resume"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = killed.losses();
    assert_eq!(
        got, want,
        "resumed losses differ from the uninterrupted run"
    );
    assert_eq!(killed.weights(), full.weights(), "final weights differ");

    // Only the newest `keep_last` step checkpoints remain, all complete.
    let mut kept: Vec<String> = std::fs::read_dir(killed.out().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept, vec!["step-000004", "step-000006"]);
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_stops() {
    let shared = tempfile::tempdir().unwrap();
    let run = Run::new(shared.path());
    let mut child = run
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        &run.out().join("metrics.jsonl"),
        &mut child,
        Duration::from_secs(300),
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let last = *run.losses().keys().last().unwrap();
    if last < 6 {
        assert!(err.contains("stopped after"), "{err}");
    }
    let ckpt = run
        .out()
        .join(format!("checkpoints/step-{last:06}/trainer_state.json"));
    assert!(
        ckpt.is_file(),
        "no checkpoint at the stopping step {last}: {err}"
    );
}

#[test]
fn misuse_is_explained() {
    let shared = tempfile::tempdir().unwrap();
    let run = Run::new(shared.path());
    let out = run.run(&["--resume"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("no checkpoint"),
        "{}",
        text(&out.stderr)
    );

    let out = run.run(&["--preset", "huge"]);
    assert!(
        text(&out.stderr).contains("unknown preset"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(&run.config, "num_querys = 3\n").unwrap();
    let out = run.run(&[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("num_querys"),
        "{}",
        text(&out.stderr)
    );

    let missing = run.dir.path().join("nope.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_diva"))
        .args(["train", "--data"])
        .arg(&missing)
        .arg("--out")
        .arg(run.out())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("nope.jsonl"),
        "{}",
        text(&out.stderr)
    );
}
