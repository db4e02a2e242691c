//! Audio file → planar `f32` samples, via symphonia.
//!
//! Supported: WAV (PCM 8/16/24/32-bit, IEEE float 32/64-bit, A-law, µ-law, IMA/MS ADPCM),
//! FLAC, MP3 and OGG/Vorbis. Every sample format is converted to `f32` with symphonia's own
//! sample conversion (`AudioBufferRef::convert`), so integer PCM is scaled by `1 / 2^(bits-1)`
//! (e.g. `i16::MIN → -1.0`) and unsigned formats are re-centred.
//!
//! Everything that can go wrong comes back as [`Error::Audio`] naming the file and the
//! problem; no input (garbage bytes, empty files, truncated or hostile headers) panics —
//! as a last line of defence a panic inside symphonia is caught and reported as corrupt data.
//! A file that ends early (a recorder killed mid-write) decodes to what is there, with one
//! warning, as sox and ffmpeg do.
//!
//! Length limit: [`decode_file_limited`] / [`decode_bytes_limited`] refuse audio longer than
//! a given number of seconds *before* decoding it in full: from the length the container
//! declares when it declares one, else as soon as the decoded frames pass the limit, so an
//! hour of MP3 sent to a 30 s endpoint costs one header read, not an hour of decoding.
//!
//! Logs: diva's own warnings about a file are collected while it decodes and logged once
//! each, as `FILE: what`. symphonia logs through the `log` crate (bridged into `tracing`
//! by tracing-subscriber); its lines are emitted inside a `decoding{file=…}` span so they
//! name the file too.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use symphonia::core::audio::{AudioBuffer, Signal, SignalSpec};
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::explain::{codec_name, codec_problem, probe_problem, sniff_container};
use super::wav_header::{oversized_list, Patched, WavInfo};
use crate::{Error, Result};

/// A stream is reported as truncated (a warning; the frames present are used) when fewer
/// than this fraction of the frames its container declares (`codec_params.n_frames`: the
/// WAV data-chunk size, FLAC STREAMINFO, the MP3 Xing/LAME header, the last OGG granule
/// position) could be decoded. A little slack is needed because encoders round the
/// declared length and decoders may drop a final partial packet.
pub const TRUNCATION_THRESHOLD: f64 = 0.9;

/// Audio may run this much past a length limit before it is refused: encoders pad a few
/// milliseconds (an MP3's encoder delay, a resampler's tail), and a "30 s" recording is
/// rarely exactly 480,000 samples.
pub const LENGTH_SLACK_SECS: f64 = 0.05;

/// The list of formats quoted in "not a recognised audio file" errors.
pub const SUPPORTED_FORMATS: &str = "WAV, FLAC, MP3, OGG/Vorbis";

/// How many bytes at the start of a file are kept to explain errors (e.g. to name the
/// format tag of a WAV that symphonia refuses).
const HEAD_LEN: u64 = 64 * 1024;

/// The most we read from a pipe or device (regular files are streamed instead).
const MAX_STREAM_BYTES: u64 = 2 << 30;

/// Consecutive demuxer errors after which we stop trying to resynchronise.
const MAX_CONSECUTIVE_ERRORS: usize = 64;

/// Stream resets (e.g. chained OGG streams) we are prepared to follow.
const MAX_RESETS: usize = 16;

/// Decoded audio: one `Vec` per channel (planar), all the same length, samples nominally in
/// `[-1, 1]` (floating-point sources may exceed that slightly; they are not clipped).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    pub channels: Vec<Vec<f32>>,
    pub sample_rate: u32,
}

impl DecodedAudio {
    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Decode the audio file at `path`. The file extension is used as a format hint.
pub fn decode_file(path: &Path) -> Result<DecodedAudio> {
    decode_file_limited(path, None)
}

/// [`decode_file`], refusing audio longer than `max_seconds` (when given, with
/// [`LENGTH_SLACK_SECS`] of slack) before it is decoded in full.
pub fn decode_file_limited(path: &Path, max_seconds: Option<f64>) -> Result<DecodedAudio> {
    let meta = std::fs::metadata(path).map_err(|e| Error::audio(path, open_problem(&e)))?;
    if meta.is_dir() {
        return Err(Error::audio(path, "is a directory, not an audio file"));
    }
    if !meta.is_file() {
        // A pipe or device (e.g. `/dev/stdin`): not seekable, so read it into memory.
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|f| f.take(MAX_STREAM_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| Error::audio(path, open_problem(&e)))?;
        if bytes.len() as u64 > MAX_STREAM_BYTES {
            return Err(Error::audio(
                path,
                format!("input stream is larger than {} GiB", MAX_STREAM_BYTES >> 30),
            ));
        }
        let ext = path.extension().and_then(|e| e.to_str());
        return decode_bytes_limited(bytes, ext, path, max_seconds);
    }
    if meta.len() == 0 {
        return Err(Error::audio(path, "empty file (0 bytes)"));
    }
    let mut file = File::open(path).map_err(|e| Error::audio(path, open_problem(&e)))?;
    let mut head = Vec::new();
    (&mut file)
        .take(HEAD_LEN)
        .read_to_end(&mut head)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .map_err(|e| Error::audio(path, format!("cannot read file: {e}")))?;
    if head.is_empty() {
        return Err(Error::audio(path, "empty file (0 bytes)"));
    }
    let ext = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), ext, path, &head, max_seconds)
}

/// Decode an in-memory audio file (e.g. an upload). `extension_hint` is the file
/// extension without the dot, if known; `name` is only used in error messages.
pub fn decode_bytes(
    bytes: Vec<u8>,
    extension_hint: Option<&str>,
    name: &Path,
) -> Result<DecodedAudio> {
    decode_bytes_limited(bytes, extension_hint, name, None)
}

/// [`decode_bytes`], refusing audio longer than `max_seconds` (when given) before it is
/// decoded in full.
pub fn decode_bytes_limited(
    bytes: Vec<u8>,
    extension_hint: Option<&str>,
    name: &Path,
    max_seconds: Option<f64>,
) -> Result<DecodedAudio> {
    if bytes.is_empty() {
        return Err(Error::audio(name, "empty file (0 bytes)"));
    }
    let head = bytes[..bytes.len().min(HEAD_LEN as usize)].to_vec();
    decode_source(
        Box::new(std::io::Cursor::new(bytes)),
        extension_hint,
        name,
        &head,
        max_seconds,
    )
}

fn open_problem(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => format!("file not found ({e})"),
        ErrorKind::PermissionDenied => format!("cannot read file: permission denied ({e})"),
        _ => format!("cannot read file: {e}"),
    }
}

fn decode_source(
    source: Box<dyn MediaSource>,
    ext: Option<&str>,
    name: &Path,
    head: &[u8],
    max_seconds: Option<f64>,
) -> Result<DecodedAudio> {
    let mut notes = Notes::default();
    let result = {
        // An error-level span is enabled under every filter that shows anything, so
        // symphonia's own log lines always carry the file name.
        let _span = tracing::error_span!("decoding", file = %name.display()).entered();
        // symphonia is written not to panic on malformed input, but a server or a batch
        // job must survive the odd bug: turn a panic into an ordinary "corrupt data" error.
        catch_unwind(AssertUnwindSafe(|| {
            decode_stream(source, ext, name, head, max_seconds, &mut notes)
        }))
    };
    notes.log(name);
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::audio(
            name,
            format!("corrupt audio data: the decoder crashed ({what})"),
        ))
    })
}

/// Warnings about one file, each logged once (with a count) after it is decoded.
#[derive(Default)]
struct Notes(Vec<(String, usize)>);

impl Notes {
    fn add(&mut self, note: impl Into<String>) {
        let note = note.into();
        match self.0.iter_mut().find(|(n, _)| *n == note) {
            Some((_, count)) => *count += 1,
            None => self.0.push((note, 1)),
        }
    }

    fn log(&self, name: &Path) {
        for (note, count) in &self.0 {
            match count {
                1 => tracing::warn!("{}: {note}", name.display()),
                n => tracing::warn!("{}: {note} ({n} times)", name.display()),
            }
        }
    }
}

fn decode_stream(
    source: Box<dyn MediaSource>,
    ext: Option<&str>,
    name: &Path,
    head: &[u8],
    max_seconds: Option<f64>,
    notes: &mut Notes,
) -> Result<DecodedAudio> {
    let mut hint = Hint::new();
    if let Some(ext) = ext {
        hint.with_extension(ext);
    }
    let wav = WavInfo::sniff(head);
    if let Some(WavInfo {
        sample_rate: Some(0),
        ..
    }) = wav
    {
        // symphonia would panic building a 1/0 time base.
        return Err(Error::audio(name, "invalid header: sample rate is 0 Hz"));
    }
    let mut source = source;
    if let (Some(_), Some(len)) = (&wav, source.byte_len()) {
        let oversized = oversized_list(&mut source, len)
            .map_err(|e| Error::audio(name, format!("cannot read file: {e}")))?;
        if let Some((at, claim)) = oversized {
            return Err(Error::audio(
                name,
                format!(
                    "invalid header: the LIST chunk at byte {at} claims {claim} bytes but the \
                     file has only {} bytes after it (a damaged file; re-export it)",
                    len.saturating_sub(at + 8)
                ),
            ));
        }
    }
    // A WAV whose sizes promise more than the file holds (a recorder killed mid-write, a
    // header that reserved 4 GB): clamp them, remember the promise for the warning.
    let patches = match (&wav, source.byte_len()) {
        (Some(w), Some(len)) => w.size_patches(len),
        _ => Vec::new(),
    };
    let promised = wav
        .as_ref()
        .filter(|_| !patches.is_empty())
        .and_then(WavInfo::promised_frames);
    let source: Box<dyn MediaSource> = if patches.is_empty() {
        source
    } else {
        Box::new(Patched::new(source, patches))
    };
    let mss = MediaSourceStream::new(source, Default::default());
    let format_opts = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &format_opts, &MetadataOptions::default())
        .map_err(|e| Error::audio(name, probe_problem(&e, head)))?;
    let mut format = probed.format;

    let mut out: Option<Planar> = None;
    let mut stats = Stats::default();
    let mut resets = 0usize;
    let mut declared_frames: Option<u64> = None;

    // Each iteration of this loop decodes one (logical) stream; a `ResetRequired` from the
    // demuxer (a chained OGG stream, say) starts the next one with a fresh decoder.
    'streams: loop {
        let track = select_track(format.as_ref()).ok_or_else(|| {
            Error::audio(
                name,
                "no audio track found in the file (is it a video or a playlist?)",
            )
        })?;
        let track_id = track.id;
        let params = track.codec_params.clone();
        if params.sample_rate == Some(0) {
            return Err(Error::audio(name, "invalid header: sample rate is 0 Hz"));
        }
        if let Some(n) = params.n_frames {
            *declared_frames.get_or_insert(0) += n;
        }
        // Refuse from the declared length when there is one: no packet is decoded. A
        // streaming WAV's sizes (0xFFFFFFFF) declare nothing; the decode loop catches it.
        let declares = !wav.as_ref().is_some_and(WavInfo::length_unknown);
        if let (Some(max), Some(n), Some(rate), true) =
            (max_seconds, declared_frames, params.sample_rate, declares)
        {
            let secs = n as f64 / f64::from(rate);
            if secs > max + LENGTH_SLACK_SECS {
                return Err(too_long(
                    name,
                    max,
                    &format!("the header declares {secs:.2} s"),
                ));
            }
        }
        let mut decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| Error::audio(name, codec_problem(&e, params.codec)))?;

        let mut consecutive_errors = 0usize;
        loop {
            let packet = match format.next_packet() {
                Ok(packet) => {
                    consecutive_errors = 0;
                    packet
                }
                // The normal end of the stream (symphonia has no other EOF signal). A
                // truncated file ends the same way; that is caught by the frame count below.
                Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break 'streams,
                Err(SymError::ResetRequired) => {
                    resets += 1;
                    if resets > MAX_RESETS {
                        return Err(Error::audio(
                            name,
                            format!("corrupt audio data: the stream restarted more than {MAX_RESETS} times"),
                        ));
                    }
                    continue 'streams;
                }
                Err(SymError::IoError(e)) => {
                    return Err(Error::audio(name, format!("cannot read file: {e}")));
                }
                Err(SymError::DecodeError(msg)) => {
                    // The demuxer could not parse a packet; most demuxers resynchronise on
                    // the next call, but do not loop forever on a stream that never does.
                    notes.add(format!("skipping malformed data: {msg}"));
                    stats.demux_errors += 1;
                    consecutive_errors += 1;
                    if consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                        if stats.frames > 0 {
                            notes.add(format!("giving up on the rest of the stream after {MAX_CONSECUTIVE_ERRORS} errors in a row"));
                            break 'streams;
                        }
                        return Err(Error::audio(name, format!("corrupt audio data ({msg})")));
                    }
                    continue;
                }
                Err(e) => return Err(Error::audio(name, format!("cannot read audio stream: {e}"))),
            };
            if packet.track_id() != track_id {
                continue;
            }
            stats.packets += 1;
            match decoder.decode(&packet) {
                Ok(decoded) => {
                    if decoded.frames() == 0 {
                        continue;
                    }
                    let spec = *decoded.spec();
                    let planar = match &mut out {
                        Some(planar) => {
                            planar.check_spec(&spec, name)?;
                            planar
                        }
                        None => out.insert(Planar::new(&spec, name)?),
                    };
                    if planar.scratch.capacity() < decoded.capacity()
                        || planar.scratch.spec() != &spec
                    {
                        planar.scratch = AudioBuffer::new(decoded.capacity() as u64, spec);
                    }
                    decoded.convert(&mut planar.scratch);
                    for (c, channel) in planar.channels.iter_mut().enumerate() {
                        channel.extend_from_slice(planar.scratch.chan(c));
                    }
                    stats.frames += decoded.frames() as u64;
                    // No declared length (or a lying one): stop as soon as the limit is
                    // passed instead of decoding the rest.
                    if let Some(max) = max_seconds {
                        if stats.frames as f64 > (max + LENGTH_SLACK_SECS) * f64::from(spec.rate) {
                            return Err(too_long(
                                name,
                                max,
                                &format!(
                                    "more than that decoded, stopped at {:.1} s",
                                    stats.frames as f64 / f64::from(spec.rate)
                                ),
                            ));
                        }
                    }
                }
                Err(SymError::DecodeError(msg)) => {
                    notes.add(format!("skipping undecodable packet: {msg}"));
                    stats.failed_packets += 1;
                    stats.last_error = Some(msg);
                }
                Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    // A packet cut short (the file ends mid-packet).
                    notes.add("skipping incomplete final packet");
                    stats.failed_packets += 1;
                    stats.last_error = Some("packet cut short");
                }
                Err(SymError::ResetRequired) => {
                    // The decoder lost its state (e.g. a discontinuity): reset and go on.
                    decoder.reset();
                }
                Err(SymError::Unsupported(what)) => {
                    return Err(Error::audio(
                        name,
                        format!(
                            "unsupported codec feature: {what} (codec {})",
                            codec_name(params.codec)
                        ),
                    ));
                }
                Err(e) => return Err(Error::audio(name, format!("corrupt audio data: {e}"))),
            }
        }
    }

    if stats.failed_packets > 0 {
        notes.add(format!(
            "{} of {} packets could not be decoded and were skipped",
            stats.failed_packets, stats.packets
        ));
    }
    if promised.is_some() {
        declared_frames = promised;
    }
    if wav.as_ref().is_some_and(WavInfo::length_unknown) {
        declared_frames = None;
    }
    let kind = sniff_container(head).unwrap_or("audio");
    let Some(planar) = out.filter(|p| p.frames() > 0) else {
        return Err(Error::audio(
            name,
            match stats.last_error {
                Some(msg) => format!(
                    "corrupt audio data: none of {} packets could be decoded (last error: {msg})",
                    stats.packets
                ),
                None if stats.demux_errors > 0 => {
                    "corrupt audio data: no decodable audio packets found".to_string()
                }
                None => match declared_frames.filter(|&n| n > 0) {
                    Some(n) => format!(
                        "truncated {kind}: the header promises {n} frames but the file ends \
                         before the first one"
                    ),
                    None => "no audio samples: the file contains no audio frames".to_string(),
                },
            },
        ));
    };
    // "Most packets fail": more packets lost than decoded means the result is mostly holes.
    if stats.failed_packets * 2 > stats.packets {
        return Err(Error::audio(
            name,
            format!(
                "corrupt audio data: {} of {} packets could not be decoded (last error: {})",
                stats.failed_packets,
                stats.packets,
                stats.last_error.unwrap_or("unknown")
            ),
        ));
    }
    if let Some(expected) = declared_frames {
        if (stats.frames as f64) < TRUNCATION_THRESHOLD * expected as f64 {
            notes.add(format!(
                "truncated {kind}: header promises {expected} frames, {} present; using what \
                 is there",
                stats.frames
            ));
        }
    }
    let non_finite = planar
        .channels
        .iter()
        .flatten()
        .filter(|s| !s.is_finite())
        .count();
    if non_finite > 0 {
        return Err(Error::audio(
            name,
            format!("corrupt audio data: {non_finite} samples are NaN or infinite"),
        ));
    }
    Ok(DecodedAudio {
        channels: planar.channels,
        sample_rate: planar.sample_rate,
    })
}

/// The error for audio over a length limit: `how` says how we know.
fn too_long(name: &Path, max: f64, how: &str) -> Error {
    // 30.05 stays 30.05, 1800.0 prints as 1800.
    let max = format!("{max:.2}");
    let max = max.trim_end_matches('0').trim_end_matches('.');
    Error::audio(
        name,
        format!(
            "audio is longer than the {max} s limit ({how}); trim it to at most {max} s \
             (e.g. `sox in.wav out.wav trim 0 {max}`)"
        ),
    )
}

#[derive(Default)]
struct Stats {
    packets: u64,
    failed_packets: u64,
    demux_errors: u64,
    frames: u64,
    last_error: Option<&'static str>,
}

/// The growing output plus a reusable conversion buffer.
struct Planar {
    channels: Vec<Vec<f32>>,
    sample_rate: u32,
    scratch: AudioBuffer<f32>,
}

impl Planar {
    fn new(spec: &SignalSpec, name: &Path) -> Result<Planar> {
        if spec.rate == 0 {
            return Err(Error::audio(name, "invalid header: sample rate is 0 Hz"));
        }
        let n = spec.channels.count();
        if n == 0 {
            return Err(Error::audio(
                name,
                "invalid header: the audio has 0 channels",
            ));
        }
        Ok(Planar {
            channels: vec![Vec::new(); n],
            sample_rate: spec.rate,
            scratch: AudioBuffer::unused(),
        })
    }

    fn check_spec(&self, spec: &SignalSpec, name: &Path) -> Result<()> {
        if spec.rate != self.sample_rate || spec.channels.count() != self.channels.len() {
            return Err(Error::audio(
                name,
                format!(
                    "the audio format changes mid-stream ({} Hz × {} channels, then {} Hz × {} \
                     channels); split the file first",
                    self.sample_rate,
                    self.channels.len(),
                    spec.rate,
                    spec.channels.count()
                ),
            ));
        }
        Ok(())
    }

    fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// The default track if it carries a codec, else the first track that does.
fn select_track(format: &dyn FormatReader) -> Option<&symphonia::core::formats::Track> {
    format
        .default_track()
        .filter(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .or_else(|| {
            format
                .tracks()
                .iter()
                .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        })
}
