#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zest_fuzz::peer_message::run(data));
