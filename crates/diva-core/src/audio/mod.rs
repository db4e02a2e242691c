//! The audio front end: any file → mono 16 kHz PCM → Whisper log-mel.

pub mod container;
pub mod decode;
mod explain;
pub mod load;
pub mod mel;
pub mod resample;
mod wav_header;

pub use load::{
    downmix, load_pcm_16k, load_pcm_16k_bytes, load_pcm_16k_bytes_limited, load_pcm_16k_limited,
    SILENCE_PEAK,
};
pub use mel::{log_mel, log_mel_window, AudioCtx, MelFilters, N_FRAMES, N_SAMPLES, SAMPLE_RATE};
