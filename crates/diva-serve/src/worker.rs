//! The thread that owns the models and runs continuous batching: requests
//! join the running batch between decode steps and leave it when their reply
//! ends, and each step runs every running reply's next token through the LLM
//! as one batch (one per loaded system), so the weights are read once per
//! step for all streams. A joining request's prompt (audio encoding, the
//! connector, prefill) runs alone between two steps. The HTTP side bounds
//! how many run and wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use candle_core::Tensor;
use diva_core::generate::{Assistant, Conversation, Decoder, Part, StopReason};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::api::{ApiError, PromptTokensDetails, Usage};
use crate::prepare::{Piece, Prepared, Turn};

/// What the worker sends back for one request.
#[derive(Debug)]
pub enum Event {
    Token(String),
    Done {
        finish_reason: &'static str,
        usage: Usage,
        time_to_first_token_s: f64,
    },
    Error(ApiError),
}

pub enum Work {
    Chat {
        request: Prepared,
        events: UnboundedSender<Event>,
        /// Which loaded system answers (0: the main one; 1: the A/B study's other).
        system: usize,
    },
    /// Whisper's transcript of 16 kHz PCM: the text of each 30 s window.
    Transcribe {
        pcm: Vec<f32>,
        reply: oneshot::Sender<Result<Vec<String>, ApiError>>,
    },
}

pub struct Job {
    pub work: Work,
    /// Held until the job is finished: the admission count.
    pub permit: OwnedSemaphorePermit,
}

/// A reply in the running batch.
struct Running<'s> {
    system: usize,
    conv: Conversation,
    decoder: Decoder<'s>,
    events: UnboundedSender<Event>,
    permit: OwnedSemaphorePermit,
    prompt_tokens: usize,
    audio_tokens: usize,
    time_to_first_token_s: f64,
    /// The token chosen this step, to go through the LLM.
    next: u32,
}

/// Run jobs until every sender is gone and the batch is empty, with at most
/// `max_batch` replies decoding together. `systems[0]` is the main system
/// (it also transcribes); an A/B study loads a second. `running` mirrors
/// the batch's size for the metrics.
pub fn run(
    systems: Vec<Assistant>,
    jobs: mpsc::Receiver<Job>,
    max_batch: usize,
    running: Arc<AtomicUsize>,
    mut cache: AudioCache,
) {
    let systems = &systems;
    let mut batch: Vec<Running> = Vec::new();
    let mut open = true;
    loop {
        // Join: wait for work when idle, else take what is waiting.
        if batch.is_empty() {
            if !open {
                return;
            }
            match jobs.recv() {
                Ok(job) => start(systems, job, &mut batch, &mut cache),
                Err(_) => return,
            }
        }
        while open && batch.len() < max_batch.max(1) {
            match jobs.try_recv() {
                Ok(job) => start(systems, job, &mut batch, &mut cache),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        running.store(batch.len(), Ordering::Relaxed);
        metrics::gauge!("diva_running_requests").set(batch.len() as f64);
        if batch.is_empty() {
            continue;
        }

        // Each reply picks its next token; the finished ones leave.
        let mut i = 0;
        while i < batch.len() {
            let r = &mut batch[i];
            match r
                .decoder
                .next(r.conv.cached_tokens(), token_sink(&r.events))
            {
                Ok(Some(id)) => {
                    r.next = id;
                    i += 1;
                }
                Ok(None) => finish(batch.swap_remove(i)),
                Err(e) => fail(batch.swap_remove(i), e),
            }
        }

        // One batched forward per system for the rest.
        if !batch.is_empty() {
            metrics::histogram!("diva_decode_batch_size").record(batch.len() as f64);
        }
        for (system, assistant) in systems.iter().enumerate() {
            let (ids, (mut convs, mut decoders)): (Vec<u32>, (Vec<_>, Vec<_>)) = batch
                .iter_mut()
                .filter(|r| r.system == system)
                .map(|r| (r.next, (&mut r.conv, &mut r.decoder)))
                .unzip();
            if ids.is_empty() {
                continue;
            }
            if let Err(e) = assistant.feed_rows(&ids, &mut convs, &mut decoders) {
                // A failed step leaves the caches undefined: every reply of
                // this system ends with the error.
                let msg = format!("{e}");
                let (failed, kept): (Vec<_>, Vec<_>) =
                    batch.drain(..).partition(|r| r.system == system);
                batch = kept;
                for r in failed {
                    let _ = r.events.send(Event::Error(ApiError::internal(msg.clone())));
                }
            }
        }
    }
}

/// A new job: a transcription is answered at once; a chat's prompt is
/// processed and its reply joins the batch.
fn start<'s>(
    systems: &'s [Assistant],
    job: Job,
    batch: &mut Vec<Running<'s>>,
    cache: &mut AudioCache,
) {
    let t0 = Instant::now();
    match job.work {
        Work::Transcribe { pcm, reply } => {
            let r = systems[0].transcript(&pcm).map_err(internal);
            // The permit goes before the reply, so a client that sends its
            // next request the moment it has this one is admitted.
            drop(job.permit);
            let _ = reply.send(r);
        }
        Work::Chat {
            request,
            events,
            system,
        } => {
            let system = system.min(systems.len() - 1);
            match begin(system, &systems[system], &request, cache) {
                Ok((conv, decoder, prompt_tokens, audio_tokens)) => batch.push(Running {
                    system,
                    conv,
                    decoder,
                    events,
                    permit: job.permit,
                    prompt_tokens,
                    audio_tokens,
                    time_to_first_token_s: t0.elapsed().as_secs_f64(),
                    next: 0,
                }),
                // The client went away: nothing to tell it.
                Err(e) if events.is_closed() => tracing::debug!("cancelled: {e:?}"),
                Err(e) => {
                    drop(job.permit);
                    let _ = events.send(Event::Error(e));
                }
            }
        }
    }
}

/// The history into a new conversation, then the last user message's prompt.
fn begin<'s>(
    system: usize,
    assistant: &'s Assistant,
    r: &Prepared,
    cache: &mut AudioCache,
) -> Result<(Conversation, Decoder<'s>, usize, usize), ApiError> {
    let mut conv = match &r.system {
        Some(s) => assistant.conversation_with_system(s).map_err(internal)?,
        None => assistant.conversation(),
    };
    let mut audio_tokens = 0;
    for turn in &r.history {
        match turn {
            Turn::User(pieces) => {
                let h = heard(system, assistant, pieces, cache)?;
                let input = assistant.user_input(&parts(pieces, &h)).map_err(internal)?;
                audio_tokens += input.audio_tokens;
                assistant.prefill(&mut conv, &input).map_err(internal)?;
            }
            Turn::Assistant(text) => assistant.push_reply(&mut conv, text).map_err(internal)?,
        }
    }
    let h = heard(system, assistant, &r.last, cache)?;
    let input = assistant
        .user_input(&parts(&r.last, &h))
        .map_err(internal)?;
    audio_tokens += input.audio_tokens;
    let decoder = assistant
        .begin_reply(&mut conv, &input, &r.params)
        .map_err(internal)?;
    // The cache now holds the whole prompt.
    let prompt_tokens = conv.cached_tokens();
    Ok((conv, decoder, prompt_tokens, audio_tokens))
}

/// Streamed text into a reply's events; a client that went away is a
/// broken pipe, which ends the reply.
fn token_sink(events: &UnboundedSender<Event>) -> impl FnMut(&str) -> std::io::Result<()> + '_ {
    |t: &str| {
        events
            .send(Event::Token(t.to_string()))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// A reply that ended: its last text, usage and finish reason.
fn finish(r: Running) {
    let events = r.events;
    let g = match r.decoder.finish(token_sink(&events)) {
        Ok(g) => g,
        Err(e) => {
            tracing::debug!("cancelled: {e}");
            return;
        }
    };
    let prompt_tokens = r.prompt_tokens;
    metrics::counter!("diva_prompt_tokens_total").increment(prompt_tokens as u64);
    metrics::counter!("diva_audio_tokens_total").increment(r.audio_tokens as u64);
    metrics::counter!("diva_generated_tokens_total").increment(g.ids.len() as u64);
    metrics::histogram!("diva_time_to_first_token_seconds").record(r.time_to_first_token_s);
    // Released just before the last event goes out (see `start`).
    drop(r.permit);
    let _ = events.send(Event::Done {
        finish_reason: match g.stop_reason {
            StopReason::MaxTokens => "length",
            StopReason::EndOfTurn | StopReason::StopString => "stop",
        },
        usage: Usage {
            prompt_tokens,
            completion_tokens: g.ids.len(),
            total_tokens: prompt_tokens + g.ids.len(),
            prompt_tokens_details: PromptTokensDetails {
                audio_tokens: r.audio_tokens,
            },
        },
        time_to_first_token_s: r.time_to_first_token_s,
    });
}

/// A reply that failed mid-way, or whose client went away.
fn fail(r: Running, e: diva_core::Error) {
    if r.events.is_closed() {
        tracing::debug!("cancelled after {} tokens: {e}", r.decoder.generated());
        return;
    }
    drop(r.permit);
    let _ = r.events.send(Event::Error(internal(e)));
}

/// What a system heard in a clip: its virtual tokens, or (the cascade,
/// which hears through Whisper) its transcript.
#[derive(Clone)]
enum Heard {
    Virtual(Tensor),
    Transcript(String),
}

/// Earlier audio turns come back with every request of a conversation; what
/// each system heard in a clip is kept by the clip's content hash (SHA-256
/// of its 16 kHz samples), so a clip is encoded (or transcribed) once. Least
/// recently used entries go first; capacity 0 disables it.
pub struct AudioCache {
    map: HashMap<(usize, [u8; 32]), (u64, Heard)>,
    clock: u64,
    capacity: usize,
}

impl AudioCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            clock: 0,
            capacity,
        }
    }

    fn hear(
        &mut self,
        system: usize,
        assistant: &Assistant,
        pcm: &[f32],
    ) -> Result<Heard, ApiError> {
        let compute = || -> Result<Heard, ApiError> {
            Ok(if assistant.hears_audio() {
                Heard::Virtual(assistant.virtual_tokens(pcm).map_err(internal)?)
            } else {
                Heard::Transcript(assistant.transcribe(pcm).map_err(internal)?.0)
            })
        };
        if self.capacity == 0 {
            return compute();
        }
        let mut h = Sha256::new();
        for x in pcm {
            h.update(x.to_le_bytes());
        }
        let key = (system, <[u8; 32]>::from(h.finalize()));
        self.clock += 1;
        if let Some((used, heard)) = self.map.get_mut(&key) {
            *used = self.clock;
            metrics::counter!("diva_audio_cache_hits_total").increment(1);
            return Ok(heard.clone());
        }
        metrics::counter!("diva_audio_cache_misses_total").increment(1);
        let heard = compute()?;
        if self.map.len() >= self.capacity {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (u, _))| *u)
                .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key, (self.clock, heard.clone()));
        Ok(heard)
    }
}

/// A user message's pieces as the system hears them (through the cache).
fn heard(
    system: usize,
    assistant: &Assistant,
    pieces: &[Piece],
    cache: &mut AudioCache,
) -> Result<Vec<Option<Heard>>, ApiError> {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Audio(pcm) => cache.hear(system, assistant, pcm).map(Some),
            Piece::Text(_) => Ok(None),
        })
        .collect()
}

fn parts<'a>(pieces: &'a [Piece], heard: &'a [Option<Heard>]) -> Vec<Part<'a>> {
    pieces
        .iter()
        .zip(heard)
        .map(|(p, h)| match (p, h) {
            (_, Some(Heard::Virtual(v))) => Part::Virtual(v),
            (_, Some(Heard::Transcript(t))) => Part::Text(t),
            (Piece::Text(s), None) => Part::Text(s),
            (Piece::Audio(pcm), None) => Part::Audio(pcm),
        })
        .collect()
}

fn internal(e: diva_core::Error) -> ApiError {
    match e {
        // Prompt too long for the context, and similar: the request's fault.
        diva_core::Error::Config(m) => ApiError::bad_request(m, Some("messages")),
        other => ApiError::internal(format!("{other}")),
    }
}
