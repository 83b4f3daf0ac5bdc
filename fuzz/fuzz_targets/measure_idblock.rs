//! SNP ID blocks and ID auth: parse round-trip, signature verification.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::measure::fuzzing::fuzz_idblock(data));
