#![no_main]

libfuzzer_sys::fuzz_target!(init: diva_fuzz::init(), |data: &[u8]| {
    diva_fuzz::core_targets::chat_template(data);
});
