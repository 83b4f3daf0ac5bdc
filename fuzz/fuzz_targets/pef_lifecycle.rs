//! PEF lifecycle under arbitrary call orders, interleaved with guest ultracalls, on the
//! simulated ultravisor and a shared real KVM VM (needs /dev/kvm).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_pef::fuzzing::fuzz_lifecycle(data));
