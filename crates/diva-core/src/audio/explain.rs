//! What a file's first bytes say (container magic) and how to turn symphonia's
//! open/codec errors into messages that name the problem and the fix.

use std::io::ErrorKind;

use symphonia::core::codecs::{self, CodecType};
use symphonia::core::errors::Error as SymError;

use super::decode::SUPPORTED_FORMATS;
use super::wav_header::WavInfo;

/// Explain a failure to open the container.
pub(crate) fn probe_problem(e: &SymError, head: &[u8]) -> String {
    let container = sniff_container(head);
    match e {
        SymError::Unsupported(msg) if msg.contains("unsupported wave format") => {
            match WavInfo::sniff(head).and_then(|w| w.format_tag) {
                Some(tag) => format!(
                    "unsupported codec: WAV format tag {tag:#06x} ({}); supported WAV encodings \
                     are PCM, IEEE float, A-law, µ-law and IMA/MS ADPCM",
                    wav_tag_name(tag)
                ),
                None => format!("unsupported codec in WAV file ({msg})"),
            }
        }
        SymError::Unsupported(msg) if msg.starts_with("wav:") => {
            format!("unsupported WAV variant ({msg})")
        }
        SymError::Unsupported(msg) if msg.contains("probe") => match container {
            Some(kind) => format!("{kind} file that symphonia cannot open ({msg})"),
            None => format!("not a recognised audio file (supported: {SUPPORTED_FORMATS})"),
        },
        SymError::Unsupported(msg) => format!("unsupported audio format ({msg})"),
        SymError::IoError(io) if io.kind() == ErrorKind::UnexpectedEof => match container {
            Some(kind) => format!("truncated or corrupt {kind} header (unexpected end of file)"),
            None => format!("not a recognised audio file (supported: {SUPPORTED_FORMATS})"),
        },
        SymError::IoError(io) => format!("cannot read file: {io}"),
        SymError::DecodeError(msg) => match container {
            Some(kind) => format!("corrupt {kind} header ({msg})"),
            None => format!("corrupt or unrecognised audio file ({msg})"),
        },
        other => format!("cannot open audio stream: {other}"),
    }
}

/// Explain a failure to create a decoder for `codec`.
pub(crate) fn codec_problem(e: &SymError, codec: CodecType) -> String {
    match e {
        SymError::Unsupported(_) => format!(
            "unsupported codec: {} (diva decodes PCM, FLAC, MP3 and Vorbis; convert the file, \
             e.g. `ffmpeg -i in -ar 16000 -ac 1 out.wav`)",
            codec_name(codec)
        ),
        other => format!(
            "cannot initialise the {} decoder: {other}",
            codec_name(codec)
        ),
    }
}

/// A human name for a symphonia codec type, registered or not.
pub(crate) fn codec_name(codec: CodecType) -> String {
    if let Some(desc) = symphonia::default::get_codecs().get_codec(codec) {
        return desc.long_name.to_string();
    }
    let name = match codec {
        codecs::CODEC_TYPE_AAC => "AAC",
        codecs::CODEC_TYPE_ALAC => "ALAC (Apple Lossless)",
        codecs::CODEC_TYPE_OPUS => "Opus",
        codecs::CODEC_TYPE_SPEEX => "Speex",
        codecs::CODEC_TYPE_MP1 => "MPEG Layer I",
        codecs::CODEC_TYPE_MP2 => "MPEG Layer II",
        codecs::CODEC_TYPE_WMA => "Windows Media Audio",
        codecs::CODEC_TYPE_EAC3 => "E-AC-3",
        codecs::CODEC_TYPE_AC4 => "AC-4",
        codecs::CODEC_TYPE_DCA => "DTS",
        codecs::CODEC_TYPE_WAVPACK => "WavPack",
        codecs::CODEC_TYPE_MONKEYS_AUDIO => "Monkey's Audio",
        codecs::CODEC_TYPE_TTA => "TTA",
        codecs::CODEC_TYPE_MUSEPACK => "Musepack",
        codecs::CODEC_TYPE_ADPCM_G722 => "G.722 ADPCM",
        codecs::CODEC_TYPE_ADPCM_G726 | codecs::CODEC_TYPE_ADPCM_G726LE => "G.726 ADPCM",
        codecs::CODEC_TYPE_ADPCM_IMA_QT => "IMA ADPCM (QuickTime)",
        codecs::CODEC_TYPE_ATRAC1
        | codecs::CODEC_TYPE_ATRAC3
        | codecs::CODEC_TYPE_ATRAC3PLUS
        | codecs::CODEC_TYPE_ATRAC9 => "ATRAC",
        _ => return format!("codec id {codec}"),
    };
    name.to_string()
}

/// What the first bytes look like, for error messages.
pub(crate) fn sniff_container(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        Some("WAV")
    } else if head.starts_with(b"RIFF") || head.starts_with(b"RIFX") || head.starts_with(b"RF64") {
        Some("RIFF")
    } else if head.starts_with(b"fLaC") {
        Some("FLAC")
    } else if head.starts_with(b"OggS") {
        Some("OGG")
    } else if head.starts_with(b"ID3") {
        Some("MP3")
    } else {
        None
    }
}

fn wav_tag_name(tag: u16) -> &'static str {
    match tag {
        0x0000 => "unknown",
        0x0022 => "DSP Group TrueSpeech",
        0x0031 => "GSM 6.10",
        0x0040 => "G.721 ADPCM",
        0x0050 => "MPEG audio",
        0x0055 => "MPEG Layer III, i.e. MP3 inside a WAV container",
        0x0064 | 0x0065 => "G.726 ADPCM",
        0x0092 => "Dolby AC-3 SPDIF",
        0x00ff | 0x1610 => "AAC",
        0x0160..=0x0163 => "Windows Media Audio",
        0x2000 => "Dolby AC-3",
        0x2001 => "DTS",
        0xf1ac => "FLAC inside a WAV container",
        _ => "not a supported encoding",
    }
}
