#![no_main]

libfuzzer_sys::fuzz_target!(init: diva_fuzz::init(), |data: &[u8]| {
    diva_fuzz::serve_targets::serve_multipart(data);
});
