//! PEF ESM blobs (the guest's UV_ESM input): parse never panics, parse → encode round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_pef::fuzzing::fuzz_esm_blob(data));
