//! KVM_HC_MAP_GPA_RANGE hypercall exits through the conversion path.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_gmem::fuzzing::fuzz_hypercall_exit(data));
