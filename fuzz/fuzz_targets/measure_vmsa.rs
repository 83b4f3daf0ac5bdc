//! VMSA pages and VMSA builder inputs: page and state round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::measure::fuzzing::fuzz_vmsa(data));
