//! OVMF images: footer table, SEV metadata, every launch digest.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::measure::fuzzing::fuzz_ovmf(data));
