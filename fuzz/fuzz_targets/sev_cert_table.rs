//! SNP extended-request certificate tables: parse never panics, parse → encode round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::fuzzing::fuzz_cert_table(data));
