//! QEMU `-object` strings: parse → display → parse round-trip, serde round-trip.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_core::fuzzing::fuzz_config(data));
