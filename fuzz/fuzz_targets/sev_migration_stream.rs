//! The SEV migration stream decoder: whole-buffer vs incremental decoding agree, accepted streams
//! re-encode byte for byte.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::fuzzing::fuzz_migration_stream(data));
