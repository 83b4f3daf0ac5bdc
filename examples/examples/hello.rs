//! Start a real guest on this host's /dev/kvm through the confidential-guest lifecycle.
//!
//! ```text
//! cargo run -p cgs-examples --example hello                   # runs, prints what the guest wrote
//! cargo run -p cgs-examples --example hello -- --skip-finalize  # the ready guard refuses to run
//! ```
//!
//! Steps, in the order every backend follows: create the VM with the backend's type, `kvm_init`,
//! vm-memory guest memory mapped into the VM, a real-mode payload loaded through the
//! launch-update call, a vCPU with its initial state, finalize, then the ready guard before
//! `KVM_RUN`. The vCPU runs until it writes its message to the serial port and halts.

use std::process::ExitCode;

use cgs_core::testing::{map_guest_memory, run_to_halt, serial_payload, set_real_mode_entry};
use cgs_core::{Lifecycle, PageType, Unprotected};
use kvm_ioctls::Kvm;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const LOAD_ADDR: u16 = 0x1000;

fn run(skip_finalize: bool) -> cgs_core::Result<()> {
    let kvm = Kvm::new().map_err(|e| cgs_core::Error::kvm("open /dev/kvm", e))?;
    let mut guest = Lifecycle::new(Unprotected::new("cgs0"));

    let vm = guest.create_vm(&kvm)?;
    println!("VM created (type {})", cgs_core::probe::vm_type_name(0));
    guest.kvm_init(&kvm, &vm)?;

    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)])
        .map_err(|e| cgs_core::Error::invalid_input("guest memory", e.to_string()))?;
    map_guest_memory(&vm, &mem)?;

    let payload = serial_payload(LOAD_ADDR, b"Hello from a cgs guest!\n")?;
    mem.write_slice(&payload, GuestAddress(LOAD_ADDR.into()))
        .map_err(|e| cgs_core::Error::invalid_input("guest memory", e.to_string()))?;
    guest.launch_update_memory(
        &vm,
        &mem,
        GuestAddress(LOAD_ADDR.into()),
        payload.len(),
        PageType::Normal,
    )?;
    println!(
        "payload launch-updated at {LOAD_ADDR:#x} ({} bytes)",
        payload.len()
    );

    let mut vcpu = guest.create_vcpu(&vm, 0)?;
    set_real_mode_entry(&vcpu, LOAD_ADDR)?;
    guest.set_vcpu_state(&vm, 0, &vcpu)?;

    if skip_finalize {
        println!("skipping finalize (state: {})", guest.state());
    } else {
        guest.finalize(&vm)?;
        println!("finalized: guest is {}", guest.state());
    }

    let out = run_to_halt(&guest, &mut vcpu, 1000)?;
    print!("guest wrote: {}", String::from_utf8_lossy(&out));
    println!("vCPU halted");
    Ok(())
}

fn main() -> ExitCode {
    let skip_finalize = std::env::args().any(|a| a == "--skip-finalize");
    match run(skip_finalize) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
