//! Kernel-hashes tables: parse/encode round-trip and placement.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::measure::fuzzing::fuzz_kernel_hashes(data));
