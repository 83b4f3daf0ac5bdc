//! SEV, SEV-ES and SEV-SNP lifecycle under arbitrary call orders on the simulated secure
//! processor, checked against a reference model and the offline launch digest (needs /dev/kvm).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_sev::fuzzing::fuzz_lifecycle(data));
