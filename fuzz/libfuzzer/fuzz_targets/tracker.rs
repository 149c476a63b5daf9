#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zest_fuzz::tracker::run(data));
