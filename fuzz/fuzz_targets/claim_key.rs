#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vouch::fuzzing::claim_key(data));
