//! s390 PV IPL parameter block: parse with diag 308's rules, round-trip what was accepted.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_s390pv::fuzzing::fuzz_pv_ipl_block(data));
