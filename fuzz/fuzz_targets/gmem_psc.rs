//! GHCB page-state change (MSR protocol and PSC buffer) applied to tracker and RMP.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_gmem::fuzzing::fuzz_psc(data));
