#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vouch::fuzzing::namespaced_key(data));
