//! The thread that owns the model: it takes prepared requests in order and
//! streams each reply back as events. One request runs at a time (decode
//! steps of concurrent requests are not batched yet); the HTTP side bounds
//! how many wait.

use std::sync::mpsc;

use diva_core::generate::{Assistant, Part, StopReason};
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

/// Run jobs until every sender is gone. `systems[0]` is the main system
/// (it also transcribes); an A/B study loads a second.
pub fn run(systems: Vec<Assistant>, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        metrics::gauge!("diva_running_requests").set(1.0);
        // The permit is released just before the last event goes out, so a
        // client that sends its next request the moment it has its reply is
        // admitted (not refused by a worker still tidying up).
        let mut permit = Some(job.permit);
        match job.work {
            Work::Chat {
                request,
                events,
                system,
            } => {
                let assistant = &systems[system.min(systems.len() - 1)];
                match answer(assistant, &request, &events, &mut permit) {
                    Ok(()) => {}
                    // The client went away: nothing to tell it.
                    Err(e) if events.is_closed() => tracing::debug!("cancelled: {e:?}"),
                    Err(e) => {
                        let _ = events.send(Event::Error(e));
                    }
                }
            }
            Work::Transcribe { pcm, reply } => {
                let r = systems[0].transcript(&pcm).map_err(internal);
                metrics::gauge!("diva_running_requests").set(0.0);
                drop(permit.take());
                let _ = reply.send(r);
            }
        }
        metrics::gauge!("diva_running_requests").set(0.0);
        drop(permit);
    }
}

/// The cascade hears through Whisper: audio pieces become their transcripts.
fn parts<'a>(
    assistant: &Assistant,
    pieces: &'a [Piece],
    transcripts: &'a mut Vec<String>,
) -> Result<Vec<Part<'a>>, ApiError> {
    if !assistant.hears_audio() {
        for p in pieces {
            if let Piece::Audio(pcm) = p {
                let (t, _) = assistant.transcribe(pcm).map_err(internal)?;
                transcripts.push(t);
            }
        }
    }
    let mut t = transcripts.iter();
    Ok(pieces
        .iter()
        .map(|p| match p {
            Piece::Text(s) => Part::Text(s),
            Piece::Audio(pcm) if assistant.hears_audio() => Part::Audio(pcm),
            Piece::Audio(_) => Part::Text(t.next().map(String::as_str).unwrap_or("")),
        })
        .collect())
}

fn internal(e: diva_core::Error) -> ApiError {
    match e {
        // Prompt too long for the context, and similar: the request's fault.
        diva_core::Error::Config(m) => ApiError::bad_request(m, Some("messages")),
        other => ApiError::internal(format!("{other}")),
    }
}

fn answer(
    assistant: &Assistant,
    r: &Prepared,
    events: &UnboundedSender<Event>,
    permit: &mut Option<OwnedSemaphorePermit>,
) -> Result<(), ApiError> {
    let mut conv = match &r.system {
        Some(s) => assistant.conversation_with_system(s).map_err(internal)?,
        None => assistant.conversation(),
    };
    let mut audio_tokens = 0;
    for turn in &r.history {
        match turn {
            Turn::User(pieces) => {
                let mut tr = Vec::new();
                let input = assistant
                    .user_input(&parts(assistant, pieces, &mut tr)?)
                    .map_err(internal)?;
                audio_tokens += input.audio_tokens;
                assistant.prefill(&mut conv, &input).map_err(internal)?;
            }
            Turn::Assistant(text) => assistant.push_reply(&mut conv, text).map_err(internal)?,
        }
    }
    let mut tr = Vec::new();
    let input = assistant
        .user_input(&parts(assistant, &r.last, &mut tr)?)
        .map_err(internal)?;
    audio_tokens += input.audio_tokens;
    let cached = conv.cached_tokens();
    let sink = |t: &str| {
        events
            .send(Event::Token(t.to_string()))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    };
    let reply = assistant
        .reply_parts(&mut conv, &input, &r.params, sink)
        .map_err(internal)?;
    let g = &reply.generation;
    let prompt_tokens = cached + g.prompt_tokens;
    metrics::counter!("diva_prompt_tokens_total").increment(prompt_tokens as u64);
    metrics::counter!("diva_audio_tokens_total").increment(audio_tokens as u64);
    metrics::counter!("diva_generated_tokens_total").increment(g.ids.len() as u64);
    metrics::histogram!("diva_time_to_first_token_seconds").record(reply.time_to_first_token_s());
    metrics::gauge!("diva_running_requests").set(0.0);
    drop(permit.take());
    let _ = events.send(Event::Done {
        finish_reason: match g.stop_reason {
            StopReason::MaxTokens => "length",
            StopReason::EndOfTurn | StopReason::StopString => "stop",
        },
        usage: Usage {
            prompt_tokens,
            completion_tokens: g.ids.len(),
            total_tokens: prompt_tokens + g.ids.len(),
            prompt_tokens_details: PromptTokensDetails { audio_tokens },
        },
        time_to_first_token_s: reply.time_to_first_token_s(),
    });
    Ok(())
}
