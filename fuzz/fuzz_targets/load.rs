#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hetsched_fuzz::load(data));
