//! s390 Protected Virtualization on the Ultravisor simulator, step by step.
//!
//! A real KVM VM (on any architecture) carries the lifecycle; the simulated KVM + Ultravisor
//! works on real guest memory with real cryptography. The example builds a sample Secure
//! Execution image for the simulated host key, lets the "guest" ask for protection (diag 308
//! subcodes 8 and 10), dumps the protected guest, resets it, reboots it out of protected mode, and
//! then shows two failures QEMU users meet: a tampered image and an image for another host.
//!
//! ```sh
//! cargo run -p cgs-examples --example s390pv
//! ```

use cgs_core::config::S390PvGuestConfig;
use cgs_core::testing::kvm_or_skip;
use cgs_core::Lifecycle;
use cgs_s390pv::uv::sim::open_dump_blob;
use cgs_s390pv::{
    ComponentKind, ImageBuilder, MachineSpec, Pcf, ResetKind, S390PvGuest, SimConfig,
    SimUltravisor, Ultravisor,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: usize = 64 << 20;
const HDR: u64 = 0x8_0000;

type Guest = Lifecycle<S390PvGuest<SimUltravisor>>;

fn show(step: &str, guest: &mut Guest) {
    println!("== {step}");
    for e in guest.backend_mut().take_events() {
        println!("   {e}");
    }
    let blocker = guest.migration_blocker();
    println!(
        "   protected: {}, migration blocker: {}",
        guest.backend().is_protected(),
        blocker.map_or("none".to_string(), |b| format!("\"{b}\""))
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(kvm) = kvm_or_skip("s390pv example") else {
        return Ok(());
    };
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)])?;
    let sim = SimUltravisor::new(mem.clone(), SimConfig::random());
    println!(
        "simulated host key hash: {}",
        cgs_s390pv::crypto::host_key_hash(&sim.host_public_key())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );

    let kernel: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let img = ImageBuilder::new(vec![sim.host_public_key()], HDR)
        .pcf(Pcf::DEFAULT | Pcf::ALLOW_DUMPING)
        .component(ComponentKind::Kernel, 0x1_0000, kernel.clone())
        .component(
            ComponentKind::Cmdline,
            0x2_0000,
            b"console=ttysclp0".to_vec(),
        )
        .component(ComponentKind::Stage3b, 0x3_0000, vec![0x07; 1024])
        .build()?;
    img.load(&mem)?;
    println!(
        "image: {} byte SE header at {HDR:#x}, {} components, PV IPL block {} bytes",
        img.header.len(),
        img.components.len(),
        img.ipib.encode().len()
    );

    let backend = S390PvGuest::new(
        S390PvGuestConfig::new("pv0"),
        sim.clone(),
        MachineSpec::new(1, MEM as u64),
    )?;
    let mut guest = Lifecycle::new(backend);
    let vm = guest.create_vm(&kvm)?;
    guest.kvm_init(&kvm, &vm)?;
    let vcpu = guest.create_vcpu(&vm, 0)?;
    guest.set_vcpu_state(&vm, 0, &vcpu)?;
    guest.finalize(&vm)?;
    println!(
        "== kvm_init/finalize: ready = {} (the guest boots unprotected and asks for PV itself)",
        guest.is_ready()
    );
    let req = guest.device_requirements();
    println!(
        "   virtio ACCESS_PLATFORM: {}, disable-legacy: {}",
        req.virtio_access_platform, req.virtio_disable_legacy
    );

    guest.backend_mut().set_pv_iplb(&img.ipib.encode(), &mem)?;
    println!("== diag 308 subcode 8: PV IPL block accepted (rc 0x0001)");

    guest.backend_mut().protect(&vm, &mem)?;
    guest.backend_mut().start_ipl_cpu(&vcpu)?;
    show(
        "diag 308 subcode 10: protect, then start the IPL CPU",
        &mut guest,
    );
    println!(
        "   RAM discard disabled: {}",
        guest.device_requirements().disable_ram_discard
    );
    let mut peek = [0u8; 16];
    match sim.host_read(0x1_0000, &mut peek) {
        Ok(()) => println!("   host read of the kernel: allowed (unexpected)"),
        Err(e) => println!("   host read of the kernel: {e}"),
    }
    let mut seen = vec![0u8; 16];
    mem.read_slice(&mut seen, GuestAddress(0x1_0000))?;
    println!(
        "   the guest sees its decrypted kernel: {}",
        seen == kernel[..16]
    );

    let dump = guest.backend_mut().dump(&vm, &[&vcpu])?;
    show("dump", &mut guest);
    let secure = dump.storage_state.iter().filter(|b| **b == 1).count();
    println!(
        "   {} CPU dump(s) of {} bytes, storage state {} bytes ({secure} secure pages), completion {} bytes",
        dump.cpus.len(),
        dump.cpus[0].len(),
        dump.storage_state.len(),
        dump.completion.len()
    );
    println!(
        "   guest owner opens the completion data with the CCK: {}",
        open_dump_blob(&img.cck, b"complete", &dump.completion, 64).is_some()
    );

    guest
        .backend_mut()
        .machine_reset(&vm, ResetKind::LoadNormal)?;
    show(
        "diag 308 subcode 1 (load normal) while protected",
        &mut guest,
    );

    guest.reset(&vm)?;
    show("re-IPL (leave protected mode)", &mut guest);

    // The guest reboots; this time its kernel was modified on disk.
    img.load(&mem)?;
    mem.write_slice(&[0xff], GuestAddress(0x1_0100))?;
    match guest.backend_mut().protect(&vm, &mem) {
        Ok(()) => println!("tampered image was accepted (unexpected)"),
        Err(e) => {
            show("protect a tampered image", &mut guest);
            println!("   error: {}", e.error);
            println!(
                "   diag 308 response to the guest: {:#018x}",
                e.response.to_u64()
            );
        }
    }

    // An image built for another machine's host key.
    let other = SimConfig::random();
    let foreign = ImageBuilder::new(vec![other.host_key.public_key()], HDR)
        .component(ComponentKind::Kernel, 0x1_0000, kernel)
        .build()?;
    foreign.load(&mem)?;
    guest
        .backend_mut()
        .set_pv_iplb(&foreign.ipib.encode(), &mem)?;
    match guest.backend_mut().protect(&vm, &mem) {
        Ok(()) => println!("foreign image was accepted (unexpected)"),
        Err(e) => {
            show("protect an image for another host", &mut guest);
            println!("   error: {}", e.error);
        }
    }
    println!("firmware: {}", guest.backend().uv().firmware_name());
    Ok(())
}
