//! A POWER PEF guest's whole lifecycle on this host: the `pef-guest` backend over the simulated
//! POWER ultravisor, with a real KVM VM.
//!
//! ```text
//! cargo run -p cgs-examples --example pef
//! ```
//!
//! Steps: the VMM creates the VM and runs `kvm_init` (KVM_CAP_PPC_SECURE_GUEST checked and
//! enabled, migration blocked), loads the image, creates a vCPU, finalizes and runs the guest as a
//! normal guest (an x86 payload stands in for SLOF and the boot loader). The guest then calls
//! `UV_ESM` with the owner's ESM blob: the ultravisor checks its integrity, moves every page to
//! secure memory and the host loses access. The guest shares a page for I/O, the hypervisor pages
//! one out (encrypted) and the guest faults it back in. A reset issues `KVM_PPC_SVM_OFF`: refused
//! while a vCPU runs, then the guest is normal again with its secure pages scrubbed. Finally the
//! real ultravisor path shows what this non-POWER host reports.

use std::process::ExitCode;

use cgs_core::config::PefGuestConfig;
use cgs_core::testing::{map_guest_memory, run_to_halt, serial_payload, set_real_mode_entry};
use cgs_core::{Error, Lifecycle, PageType};
use cgs_pef::papr::{rc_name, UV_ESM, UV_SHARE_PAGE};
use cgs_pef::sim::FDT_MAGIC;
use cgs_pef::{
    EsmBlob, EsmRegion, PageState, PefGuest, SimConfig, SimUltravisor, UvKey, PAGE_SHIFT, PAGE_SIZE,
};
use kvm_ioctls::Kvm;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM_SIZE: usize = 1 << 20;
const LOAD_ADDR: u16 = 0x1000;
const FDT_GPA: u64 = 14 * PAGE_SIZE;
const ESM_GPA: u64 = 15 * PAGE_SIZE;

fn mem_err(e: impl std::fmt::Display) -> Error {
    Error::invalid_input("guest memory", e.to_string())
}

fn step(what: &str, result: impl std::fmt::Display) {
    println!("{what:<58} {result}");
}

fn run() -> cgs_core::Result<()> {
    let kvm = Kvm::new().map_err(|e| Error::kvm("open /dev/kvm", e))?;
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).map_err(mem_err)?;

    // The guest owner's image, sealed for this (simulated) ultravisor.
    let key = UvKey::from_bytes(*b"example ultravisor key, 32 bytes");
    let payload = serial_payload(LOAD_ADDR, b"hello from a PEF guest\n")?;
    mem.write_slice(&payload, GuestAddress(LOAD_ADDR.into()))
        .map_err(mem_err)?;
    mem.write_slice(&FDT_MAGIC.to_be_bytes(), GuestAddress(FDT_GPA))
        .map_err(mem_err)?;
    let blob = EsmBlob::seal(
        &key,
        &[EsmRegion {
            gpa: 0,
            len: PAGE_SIZE,
        }],
        |gpa, buf| mem.read_slice(buf, GuestAddress(gpa)),
    )
    .map_err(|e| Error::invalid_input("ESM blob", format!("{e:?}")))?;
    mem.write_slice(&blob.to_bytes(), GuestAddress(ESM_GPA))
        .map_err(mem_err)?;
    step(
        "owner sealed ESM blob over [0, +64 KiB)",
        format!("{} bytes", blob.to_bytes().len()),
    );

    let uv = SimUltravisor::new(SimConfig::new(key), &mem)?;
    let mut guest = Lifecycle::new(PefGuest::with_ultravisor(PefGuestConfig::new("pef0"), uv));
    let vm = guest.create_vm(&kvm)?;
    map_guest_memory(&vm, &mem)?;
    step("create VM", "ok");
    guest.kvm_init(&kvm, &vm)?;
    step(
        "kvm_init: KVM_CAP_PPC_SECURE_GUEST checked and enabled",
        guest.backend().ultravisor().svm_enabled(),
    );
    step(
        "migration blocker",
        guest
            .migration_blocker()
            .map_or("none".to_string(), |b| b.to_string()),
    );
    let req = guest.device_requirements();
    step(
        "virtio VIRTIO_F_ACCESS_PLATFORM required",
        req.virtio_access_platform,
    );

    let mut vcpu = guest.create_vcpu(&vm, 0)?;
    guest.launch_update_memory(
        &vm,
        &mem,
        GuestAddress(0),
        PAGE_SIZE as usize,
        PageType::Normal,
    )?;
    set_real_mode_entry(&vcpu, LOAD_ADDR)?;
    guest.set_vcpu_state(&vm, 0, &vcpu)?;
    guest.finalize(&vm)?;
    step("launch: image loaded, vCPU 0 set, finalize", guest.state());

    let out = run_to_halt(&guest, &mut vcpu, 100)?;
    step(
        "guest runs (normal mode) and prints",
        String::from_utf8_lossy(&out).trim(),
    );

    let sim = guest.backend_mut().ultravisor_mut();
    let rc = sim.guest_ultracall(UV_ESM, [ESM_GPA, FDT_GPA]);
    step("guest: UV_ESM(esm blob, fdt)", rc_name(rc));
    for e in sim.events().filter(|e| e.call.starts_with("H_SVM_INIT")) {
        step("  ultravisor -> KVM", e);
    }
    step("  secure pages", sim.count(PageState::Secure));
    let mut probe = [0u8; 8];
    step(
        "host reads the guest's code page",
        match sim.host_read(LOAD_ADDR.into(), &mut probe) {
            Ok(()) => format!("read {probe:02x?}"),
            Err(e) => format!("refused: {e}"),
        },
    );
    let mut raw = vec![0u8; payload.len()];
    mem.read_slice(&mut raw, GuestAddress(LOAD_ADDR.into()))
        .map_err(mem_err)?;
    step(
        "host mapping of that page holds the payload",
        raw == payload,
    );

    let io_gfn = 2;
    let rc = sim.guest_ultracall(UV_SHARE_PAGE, [io_gfn, 1]);
    step(
        "guest: UV_SHARE_PAGE(gfn 2, 1) for a virtio buffer",
        rc_name(rc),
    );
    sim.guest_write(io_gfn << PAGE_SHIFT, b"virtio request")?;
    let mut req_buf = [0u8; 14];
    sim.host_read(io_gfn << PAGE_SHIFT, &mut req_buf)?;
    step(
        "  host reads the shared buffer",
        String::from_utf8_lossy(&req_buf),
    );

    let rc = sim.h_svm_page_out(0, 0, PAGE_SHIFT.into());
    step(
        "ultravisor: H_SVM_PAGE_OUT(page 0) under memory pressure",
        rc_name(rc),
    );
    mem.read_slice(&mut raw, GuestAddress(LOAD_ADDR.into()))
        .map_err(mem_err)?;
    step(
        "  host now holds page 0 encrypted (payload visible)",
        raw == payload,
    );
    let mut code = [0u8; 3];
    sim.guest_read(LOAD_ADDR.into(), &mut code)?;
    step(
        "  guest touches it: paged back in, first bytes",
        format!("{code:02x?} ({:?})", sim.page_state(0)?),
    );

    sim.set_running_vcpus(1);
    step(
        "reset while vCPU 0 runs",
        match guest.reset(&vm) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("refused: {e}"),
        },
    );
    guest.backend_mut().ultravisor_mut().set_running_vcpus(0);
    guest.reset(&vm)?;
    let sim = guest.backend().ultravisor();
    step(
        "reset: KVM_PPC_SVM_OFF",
        format!(
            "{:?} guest, {} terminations",
            sim.mode(),
            sim.terminations()
        ),
    );
    sim.host_read(LOAD_ADDR.into(), &mut probe)?;
    step(
        "host reads the former secure page",
        format!("{probe:02x?} (scrubbed)"),
    );
    step(
        "migration blocker after reset",
        guest
            .migration_blocker()
            .map_or("none".to_string(), |b| b.to_string()),
    );

    // The real ultravisor path on this host.
    let mut real = Lifecycle::new(PefGuest::new(PefGuestConfig::new("pef1")));
    let vm2 = real.create_vm(&kvm)?;
    step(
        "real ultravisor: kvm_init",
        match real.kvm_init(&kvm, &vm2) {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        },
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
