//! SEV transport packet headers and RECEIVE_UPDATE_DATA-style packet opening.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::fuzzing::fuzz_packet_header(data));
