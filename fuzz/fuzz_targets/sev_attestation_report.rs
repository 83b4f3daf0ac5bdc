//! SNP attestation reports: parse never panics, body round-trips, verify never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::fuzzing::fuzz_attestation_report(data));
