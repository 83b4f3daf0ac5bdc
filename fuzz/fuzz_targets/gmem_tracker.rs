//! Page-state tracker against a per-page Vec<bool> model.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_gmem::fuzzing::fuzz_tracker(data));
