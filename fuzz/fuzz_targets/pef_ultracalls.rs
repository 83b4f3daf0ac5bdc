//! PEF ultracall/hcall sequences with guest-chosen arguments against the simulated ultravisor:
//! no panic, page-state invariants hold (no host read of a secure page).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_pef::fuzzing::fuzz_ultracalls(data));
