//! A chat template from an untrusted file (a GGUF's `tokenizer.chat_template`)
//! renders with a bound on work and on output size and without file-system
//! access; exceeding a bound is a clear error, quickly (issue 20).

use std::time::{Duration, Instant};

use diva_core::text::chat_template::{ChatTemplate, Message, MAX_RENDER_BYTES};

fn render(source: &str) -> (Result<String, String>, Duration) {
    let t = ChatTemplate::new(source, Some("<s>"), Some("</s>")).expect("the template parses");
    let t0 = Instant::now();
    let r = t
        .render(&[Message::user("hello")], true, &())
        .map_err(|e| e.to_string());
    (r, t0.elapsed())
}

#[test]
fn a_template_that_never_ends_runs_out_of_fuel() {
    let (r, took) =
        render("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}");
    let e = r.expect_err("10^10 iterations must not finish");
    assert!(e.contains("chat template does too much work"), "{e}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn a_template_whose_output_is_huge_is_refused() {
    // 9,000 × 10 KB = 90 MB, past the 16 MiB cap, in few instructions.
    let (r, took) =
        render("{% set s = 'xxxxxxxxxx' * 1000 %}{% for i in range(9000) %}{{ s }}{% endfor %}");
    let e = r.expect_err("90 MB of output must be refused");
    assert!(
        e.contains(&format!("longer than {} MiB", MAX_RENDER_BYTES >> 20)),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Just under the cap renders.
    let (r, _) =
        render("{% set s = 'xxxxxxxxxx' * 1000 %}{% for i in range(1000) %}{{ s }}{% endfor %}");
    assert_eq!(r.unwrap().len(), 10_000_000);
}

#[test]
fn a_template_cannot_read_files() {
    for source in [
        "{% include '/etc/passwd' %}",
        "{% import '/etc/hostname' as h %}",
        "{% extends '/etc/passwd' %}",
        "{% include '../../../../../../etc/passwd' %}",
    ] {
        let (r, _) = render(source);
        let e = r.expect_err(source);
        assert!(!e.contains("root:"), "{source}: {e}");
        assert!(e.contains("chat template"), "{source}: {e}");
    }
}
