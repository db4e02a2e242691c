//! `diva`: the command line. Argument parsing and wiring only; the work lives
//! in the library crates.

mod cmd;
mod common;
mod sampling_args;

use clap::{Parser, Subcommand};

/// glibc's malloc hands every large tensor buffer (Whisper's 1500×1500
/// attention scores are 54 MB) back to the kernel and page-faults a fresh one
/// in for the next op. Keeping freed memory in the heap removes ~85% of the
/// encoder's page faults and ~30% of its CPU time (docs/benchmarks.md).
/// jemalloc's defaults did not help (more faults, measured).
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[derive(Parser)]
#[command(
    name = "diva",
    version,
    about = "Distilled voice assistants from any text LLM (DiVA), in Rust"
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Transcribe audio files with Whisper (greedy, no timestamps).
    Transcribe(cmd::transcribe::Args),
    /// Spoken chat: audio in, the LLM's reply streamed out.
    Chat(cmd::chat::Args),
    /// Write a DiVA checkpoint in the full official layout.
    Export(cmd::export::Args),
    /// Chat with the text LLM (one prompt, or --interactive).
    Generate(cmd::generate::Args),
    /// Fetch and list the default models.
    #[command(subcommand)]
    Models(cmd::models::Cmd),
    /// Evaluate (ASR word error rate, …).
    #[command(subcommand)]
    Eval(cmd::eval::Cmd),
    /// Measure speed (writes JSON to stdout, a table to stderr).
    #[command(subcommand)]
    Bench(cmd::bench::Cmd),
    /// Distil a connector from (audio, transcript) pairs (the DiVA recipe).
    Train(cmd::train::Args),
    /// An OpenAI-compatible server: POST /v1/chat/completions with audio.
    Serve(cmd::serve::Args),
    /// Distillation metrics of a model (or the cascade) on a manifest.
    EvalDistill(cmd::eval_distill::Args),
    /// Build speech corpora with the installed TTS engines.
    #[command(subcommand)]
    Corpus(cmd::corpus::Cmd),
    /// Import speech datasets into a training manifest.
    #[command(subcommand)]
    Data(cmd::data::Cmd),
}

/// Commands whose models are dense (f32/f16/bf16) whatever the files hold:
/// they run candle on one CPU pool (`diva_core::cpu_pools`). Chat and generate
/// decide after resolving their LLM; `bench llm` compares quantized kernels.
fn dense_by_construction(c: &Command) -> bool {
    matches!(
        c,
        Command::Train(_)
            | Command::EvalDistill(_)
            | Command::Transcribe(_)
            | Command::Export(_)
            | Command::Bench(cmd::bench::Cmd::Train(_))
            | Command::Bench(cmd::bench::Cmd::Frontend(_))
            | Command::Bench(cmd::bench::Cmd::Parity(_))
    )
}

/// A closed stdout (`diva chat … | head -1`) is a normal way for a reader to
/// say "enough": end quietly with success. Commands write through
/// [`common::out`] and their `BrokenPipe` error reaches `main`; this hook is
/// the backstop for a `println!` that still panics on one (std's message is
/// "failed printing to stdout: Broken pipe"). Resetting SIGPIPE to its default
/// instead would kill the process at any write, mid-checkpoint included.
fn quiet_exit_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    quiet_exit_on_closed_stdout();
    let cli = Cli::parse();
    // A server says where it listens and logs one line per request by default.
    let verbose = match cli.command {
        Command::Serve(_) => cli.verbose.max(1),
        _ => cli.verbose,
    };
    common::init_logging(verbose, cli.quiet);
    if dense_by_construction(&cli.command) {
        diva_core::cpu_pools::use_one_pool_for_dense_models();
    }
    let result = match cli.command {
        Command::Transcribe(a) => cmd::transcribe::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Models(c) => cmd::models::run(c),
        Command::Bench(c) => cmd::bench::run(c),
        Command::Eval(c) => cmd::eval::run(c),
        Command::Train(a) => cmd::train::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::EvalDistill(a) => cmd::eval_distill::run(a),
        Command::Corpus(c) => cmd::corpus::run(c),
        Command::Data(c) => cmd::data::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) if common::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command a user can run, with its path (`["eval", "asr"]`).
    fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push((path.clone(), cmd.clone()));
        }
        for s in subs {
            let mut p = path.clone();
            p.push(s.get_name().to_string());
            leaves(s, p, out);
        }
    }

    /// Walks clap's whole tree: every runnable command's help ends with
    /// examples of that very command, and every flag says what it does.
    #[test]
    fn every_command_has_examples_and_every_flag_a_description() {
        let mut all = Vec::new();
        leaves(&super::Cli::command(), vec![], &mut all);
        assert!(all.len() >= 15, "only {} commands found", all.len());
        let mut problems = Vec::new();
        for (path, cmd) in &all {
            let name = path.join(" ");
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    problems.push(format!("diva {name}: {id} has no description"));
                }
            }
            let after = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !after.contains(&format!("Examples:\n  diva {name}")) {
                problems.push(format!("diva {name}: --help has no example of itself"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Every `diva …` line in the README's code blocks parses with today's
    /// flags. Two README conventions are undone first: `[a|b]` (pick one;
    /// the first is used) and a trailing `# comment`; lines with `...`
    /// (elided arguments) are skipped.
    #[test]
    fn readme_command_lines_parse() {
        let readme = include_str!("../../../README.md");
        let mut lines = Vec::new();
        let mut in_code = false;
        let mut pending = String::new();
        for l in readme.lines() {
            if l.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if !in_code {
                continue;
            }
            let l = match l.find("  #") {
                Some(i) => &l[..i],
                None => l,
            };
            let l = l.trim();
            if let Some(cont) = l.strip_suffix('\\') {
                if !pending.is_empty() || cont.starts_with("diva ") {
                    pending.push_str(cont);
                    pending.push(' ');
                }
                continue;
            }
            let full = std::mem::take(&mut pending) + l;
            if full.starts_with("diva ") && !full.contains("...") {
                lines.push(full);
            }
        }
        assert!(
            lines.len() >= 20,
            "only {} README command lines found",
            lines.len()
        );
        let opt = regex_lite_optional();
        let mut bad = Vec::new();
        for line in &lines {
            let line = opt(line);
            let argv = shlex::split(&line).unwrap_or_else(|| panic!("unbalanced quotes: {line}"));
            if let Err(e) = <super::Cli as clap::Parser>::try_parse_from(&argv) {
                bad.push(format!(
                    "{line}\n  {}",
                    e.to_string().lines().next().unwrap_or("")
                ));
            }
        }
        assert!(
            bad.is_empty(),
            "README lines that do not parse:\n{}",
            bad.join("\n")
        );
    }

    /// `[a|b|c]` → `a`, `[--flag x]` → `--flag x`.
    fn regex_lite_optional() -> impl Fn(&str) -> String {
        |s: &str| {
            let mut out = String::new();
            let mut rest = s;
            while let Some(i) = rest.find('[') {
                let Some(j) = rest[i..].find(']') else { break };
                out.push_str(&rest[..i]);
                let inner = &rest[i + 1..i + j];
                out.push_str(inner.split('|').next().unwrap_or(""));
                rest = &rest[i + j + 1..];
            }
            out.push_str(rest);
            out
        }
    }
}
