//! The thread that owns the model: it takes prepared requests in order and
//! streams each reply back as events. One request runs at a time (decode
//! steps of concurrent requests are not batched yet); the HTTP side bounds
//! how many wait.

use std::sync::mpsc;

use diva_core::generate::{Assistant, Part, StopReason};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::OwnedSemaphorePermit;

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

pub struct Job {
    pub request: Prepared,
    pub events: UnboundedSender<Event>,
    /// Held until the job is finished: the admission count.
    pub permit: OwnedSemaphorePermit,
}

/// Run jobs until every sender is gone.
pub fn run(assistant: Assistant, jobs: mpsc::Receiver<Job>) {
    for job in jobs {
        let events = job.events.clone();
        match answer(&assistant, &job.request, &job.events) {
            Ok(()) => {}
            // The client went away: nothing to tell it.
            Err(e) if events.is_closed() => tracing::debug!("cancelled: {e:?}"),
            Err(e) => {
                let _ = events.send(Event::Error(e));
            }
        }
        drop(job.permit);
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
