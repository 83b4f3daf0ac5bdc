//! s390 Secure Execution header: parse, and re-encode what was accepted.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_s390pv::fuzzing::fuzz_se_header(data));
