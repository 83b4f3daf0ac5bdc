//! KVM_EXIT_MEMORY_FAULT exits through the conversion path.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cgs_gmem::fuzzing::fuzz_memory_fault_exit(data));
