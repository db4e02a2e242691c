//! The default DiVA model: `$DIVA_MODEL`, else the model compiled into the
//! binary (the `diva` crate passes its bytes in, so this works for a binary
//! copied anywhere or installed with `cargo install`).
//!
//! Model loaders read directories, so the embedded files are written once to
//! `$DIVA_HOME/models/NAME-<sha256 prefix>/` and reused; the hash covers every
//! file, so a binary with other weights never reads a stale copy. The copy is
//! assembled in a temporary directory and renamed into place, so processes
//! starting together are fine (the first rename wins, the others reuse it).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cache;
use super::fetch::{hex, MARKER};
use crate::{Error, Result};

/// A model compiled into the binary: its name and `(file name, bytes)` pairs.
pub struct ShippedModel {
    pub name: &'static str,
    pub files: &'static [(&'static str, &'static [u8])],
}

impl ShippedModel {
    /// Short content hash over every file's name and bytes.
    pub fn short_sha(&self) -> String {
        let mut h = Sha256::new();
        for (name, bytes) in self.files {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        hex(&h.finalize()[..6])
    }

    /// The directory holding this model under `models_dir`, written if it is
    /// not there yet.
    pub fn materialize(&self, models_dir: &Path) -> Result<PathBuf> {
        let dir = models_dir.join(format!("{}-{}", self.name, self.short_sha()));
        if self.is_intact(&dir) {
            return Ok(dir);
        }
        std::fs::create_dir_all(models_dir)
            .map_err(|e| Error::io(format!("cannot create {}", models_dir.display()), e))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".tmp-{}.", self.name))
            .tempdir_in(models_dir)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a directory in {}", models_dir.display()),
                    e,
                )
            })?;
        let new = tmp.path().join("model");
        std::fs::create_dir(&new)
            .map_err(|e| Error::io(format!("cannot create {}", new.display()), e))?;
        for (name, bytes) in self.files {
            let p = new.join(name);
            std::fs::write(&p, bytes)
                .map_err(|e| Error::io(format!("cannot write {}", p.display()), e))?;
        }
        let marker = new.join(MARKER);
        std::fs::write(&marker, format!("name {}\nembedded\n", self.name))
            .map_err(|e| Error::io(format!("cannot write {}", marker.display()), e))?;
        if dir.exists() && !self.is_intact(&dir) {
            // A damaged copy (files edited or removed by hand): move it aside.
            let _ = std::fs::rename(&dir, tmp.path().join("old"));
        }
        match std::fs::rename(&new, &dir) {
            Ok(()) => Ok(dir),
            // Another process renamed its copy in first.
            Err(_) if self.is_intact(&dir) => Ok(dir),
            Err(e) => Err(Error::io(
                format!("cannot move the shipped model into {}", dir.display()),
                e,
            )),
        }
    }

    /// Complete (marker present) with every file at its embedded size.
    fn is_intact(&self, dir: &Path) -> bool {
        cache::is_complete(dir)
            && self.files.iter().all(|(name, bytes)| {
                std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() == bytes.len() as u64)
            })
    }
}

/// The default DiVA model directory: `$DIVA_MODEL` if set, else `shipped`
/// (when the binary has one) written under `$DIVA_HOME/models`, else `None`.
pub fn default_diva_model(shipped: Option<&ShippedModel>) -> Result<Option<PathBuf>> {
    if let Some(p) = std::env::var_os("DIVA_MODEL").filter(|p| !p.is_empty()) {
        return Ok(Some(PathBuf::from(p)));
    }
    match shipped {
        Some(m) => m.materialize(&cache::models_dir()).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static MODEL: ShippedModel = ShippedModel {
        name: "toy",
        files: &[("config.json", b"{}"), ("model.safetensors", b"weights")],
    };

    #[test]
    fn written_once_reused_and_repaired() {
        let home = tempfile::tempdir().unwrap();
        let dir = MODEL.materialize(home.path()).unwrap();
        assert_eq!(
            dir.file_name().unwrap().to_str().unwrap(),
            format!("toy-{}", MODEL.short_sha())
        );
        assert_eq!(
            std::fs::read(dir.join("model.safetensors")).unwrap(),
            b"weights"
        );
        // Reused: a file written meanwhile survives a second call.
        std::fs::write(dir.join("extra"), b"x").unwrap();
        assert_eq!(MODEL.materialize(home.path()).unwrap(), dir);
        assert!(dir.join("extra").is_file());
        // A damaged copy is replaced.
        std::fs::write(dir.join("model.safetensors"), b"cut").unwrap();
        assert_eq!(MODEL.materialize(home.path()).unwrap(), dir);
        assert_eq!(
            std::fs::read(dir.join("model.safetensors")).unwrap(),
            b"weights"
        );
        // No temporary directories are left behind.
        let left: Vec<_> = std::fs::read_dir(home.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn racing_processes_share_one_copy() {
        let home = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let h: Vec<_> = (0..4)
                .map(|_| s.spawn(|| MODEL.materialize(home.path()).unwrap()))
                .collect();
            h.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(dirs.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(std::fs::read(dirs[0].join("config.json")).unwrap(), b"{}");
    }
}
