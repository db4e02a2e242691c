//! Where tensors live: `--device cpu | cuda | cuda:N`.
//!
//! [`parse_device`] turns the flag into a candle [`Device`]. Asking for CUDA
//! never panics: a diva built without the `cuda` feature says how to get one
//! (`scripts/build-cuda`), and a CUDA build on a machine without a driver or
//! GPU says so instead of dying in cudarc's library loader.

use std::fmt;

use candle_core::Device;

use crate::{Error, Result};

/// A parsed `--device` value, before any driver is touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    /// A CUDA device by ordinal (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl DeviceSpec {
    /// Parse `cpu`, `cuda` or `cuda:N` (case and surrounding spaces ignored).
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let bad = |why: &str| {
            Error::Config(format!(
                "--device {s:?}: {why}; expected `cpu`, `cuda` or `cuda:N` (N = GPU index, e.g. cuda:0)"
            ))
        };
        match t.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match t.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| bad("GPU index out of range")),
                Some(_) => Err(bad("the GPU index must be a non-negative integer")),
                None => Err(bad("unknown device")),
            },
        }
    }

    /// Open the device: CPU always works; CUDA needs a CUDA build, a driver and a GPU.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(ordinal) => open_cuda(ordinal),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Parse a `--device` value and open that device.
pub fn parse_device(s: &str) -> Result<Device> {
    DeviceSpec::parse(s)?.open()
}

/// Whether this binary was built with CUDA support (`--features cuda`).
pub const fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(ordinal: usize) -> Result<Device> {
    Err(Error::Config(format!(
        "CUDA was requested (--device cuda:{ordinal}) but this diva was built without CUDA \
         support: rebuild with scripts/build-cuda, or use --device cpu"
    )))
}

#[cfg(feature = "cuda")]
fn open_cuda(ordinal: usize) -> Result<Device> {
    let no_gpu = |cause: &str| {
        Error::Config(format!(
            "CUDA was requested (--device cuda:{ordinal}) but no CUDA driver/GPU is available on \
             this machine: run on a GPU machine or use --device cpu (cause: {cause})"
        ))
    };
    // cudarc loads libcuda (then cuBLAS, cuRAND) with dlopen on first use and
    // panics when a library is missing; catch that, without the panic report.
    match catch_quietly(|| Device::new_cuda(ordinal)) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(e)) => {
            let cause = e.to_string();
            if cause.contains("NO_DEVICE") || cause.contains("INSUFFICIENT_DRIVER") {
                Err(no_gpu(&cause))
            } else {
                Err(Error::Config(format!(
                    "CUDA was requested (--device cuda:{ordinal}) but it could not be opened: \
                     {cause}; check the GPU index (nvidia-smi -L) or use --device cpu"
                )))
            }
        }
        // cudarc's message goes on to list every file name it tried.
        Err(panic) if panic.contains("\"cuda\" shared library") => {
            Err(no_gpu(panic.split(" - searched").next().unwrap_or(&panic)))
        }
        Err(panic) => Err(Error::Config(format!(
            "CUDA was requested (--device cuda:{ordinal}) but CUDA could not be initialised: \
             {panic}; put the CUDA 13 libraries (libcublas, libcublasLt, libcurand) on \
             LD_LIBRARY_PATH (dist/cuda/run-diva adds the usual directories) or use --device cpu"
        ))),
    }
}

/// Run `f`, turning a panic into its message. The panic hook is process-wide,
/// so it is silenced only for the duration of the call (meant for start-up).
#[cfg(feature = "cuda")]
fn catch_quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    out.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "CUDA initialisation panicked".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_cuda() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse(" CPU ").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("cuda:0").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("CUDA:3").unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        assert_eq!(DeviceSpec::Cpu.to_string(), "cpu");
    }

    #[test]
    fn rejects_other_devices_clearly() {
        for s in [
            "",
            "gpu",
            "metal",
            "cuda:",
            "cuda:-1",
            "cuda:x",
            "cuda:1:2",
            "cuda0",
            "cuda:99999999999999999999999",
        ] {
            let e = DeviceSpec::parse(s).unwrap_err().to_string();
            assert!(
                e.contains("expected `cpu`, `cuda` or `cuda:N`"),
                "{s:?}: {e}"
            );
            assert!(e.starts_with("--device"), "{s:?}: {e}");
        }
    }

    #[test]
    fn cpu_always_opens() {
        assert!(matches!(parse_device("cpu").unwrap(), Device::Cpu));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_on_a_cpu_build_says_how_to_get_one() {
        assert!(!cuda_compiled());
        for s in ["cuda", "cuda:1"] {
            let e = parse_device(s).unwrap_err().to_string();
            assert!(
                e.contains(
                    "this diva was built without CUDA support: rebuild with scripts/build-cuda"
                ),
                "{e}"
            );
        }
        assert!(parse_device("cuda:1")
            .unwrap_err()
            .to_string()
            .contains("--device cuda:1"));
    }

    /// On a CUDA build: a GPU opens, anything else is an error, never a panic.
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_build_opens_or_explains() {
        assert!(cuda_compiled());
        match parse_device("cuda:0") {
            Ok(d) => assert!(d.is_cuda()),
            Err(e) => assert!(e.to_string().contains("--device cuda:0"), "{e}"),
        }
    }
}
