//! SNP guest messages: header checks, AES-GCM opening and report-response parsing never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::fuzzing::fuzz_guest_message(data));
