//! SNP CPUID pages returned by the firmware: parse never panics, parse → encode round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::fuzzing::fuzz_cpuid_page(data));
