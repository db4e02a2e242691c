//! Checksums and careful writes for the on-disk caches (issue 20): an entry is
//! stored with the SHA-256 of its values, so a truncated or corrupted cache
//! file is detected and recomputed, never silently trained on; a failed write
//! (disk full) removes its temporary file and says which file and why.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use sha2::{Digest, Sha256};

/// SHA-256 of a tensor's shape and values (as f32, which every cached dtype
/// converts to exactly), as a `[32]` u8 tensor to store beside it.
pub fn digest(t: &Tensor) -> Result<Tensor> {
    let bytes = digest_bytes(t)?;
    Ok(Tensor::from_vec(bytes, 32, &Device::Cpu)?)
}

fn digest_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let mut h = Sha256::new();
    for d in t.dims() {
        h.update((*d as u64).to_le_bytes());
    }
    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    for v in values {
        h.update(v.to_le_bytes());
    }
    Ok(h.finalize().to_vec())
}

/// Whether `sum` (a stored [`digest`]) matches `t`.
pub fn matches(t: &Tensor, sum: &Tensor) -> bool {
    let Ok(stored) = sum
        .to_dtype(DType::U8)
        .and_then(|s| s.flatten_all()?.to_vec1::<u8>())
    else {
        return false;
    };
    digest_bytes(t).is_ok_and(|d| d == stored)
}

/// Write `tensors` to `path` atomically: `tmp` (beside it), then a rename. On
/// failure (a full disk, say) `tmp` is removed and the error names the file and
/// the cause; whatever was at `path` before is untouched.
pub fn save_atomic(tensors: &HashMap<String, Tensor>, path: &Path, tmp: &Path) -> Result<()> {
    let written = candle_core::safetensors::save(tensors, tmp)
        .map_err(anyhow::Error::from)
        .and_then(|()| std::fs::rename(tmp, path).map_err(anyhow::Error::from));
    if let Err(e) = written {
        let _ = std::fs::remove_file(tmp);
        return Err(write_error(path, &e));
    }
    Ok(())
}

/// "cannot write PATH: CAUSE", with advice when the cause is a full disk.
pub fn write_error(path: &Path, cause: &anyhow::Error) -> anyhow::Error {
    let full = cause.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.raw_os_error() == Some(28) || io.kind() == std::io::ErrorKind::StorageFull
        }) || c.to_string().contains("No space left on device")
    });
    let hint = if full {
        let dir = path.parent().unwrap_or(Path::new("."));
        format!(
            "; the disk is full: free space on the file system of {} and run again (what was saved before is unchanged)",
            dir.display()
        )
    } else {
        String::new()
    };
    anyhow::anyhow!("cannot write {}: {cause:#}{hint}", path.display())
}
