#![no_main]

libfuzzer_sys::fuzz_target!(init: diva_fuzz::init(), |data: &[u8]| {
    diva_fuzz::train_targets::train_config(data);
});
