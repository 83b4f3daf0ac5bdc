//! s390 PV life cycle under arbitrary call orders: raw PV commands on the simulated Ultravisor,
//! or the backend through Lifecycle on a shared real KVM VM (that layer needs /dev/kvm).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_s390pv::fuzzing::fuzz_lifecycle(data));
