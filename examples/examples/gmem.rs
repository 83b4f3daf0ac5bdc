//! A guest_memfd-backed VM on this host's /dev/kvm, with shared/private conversions driven by
//! synthetic `KVM_EXIT_HYPERCALL` (`KVM_HC_MAP_GPA_RANGE`), `KVM_EXIT_MEMORY_FAULT` and GHCB
//! page-state-change requests through cgs-gmem's one conversion path.
//!
//! ```text
//! cargo run -p cgs-examples --example gmem
//! ```
//!
//! Guest RAM (4 MiB at GPA 0) is a vm-memory region (the shared side) plus a guest_memfd bound
//! with `KVM_SET_USER_MEMORY_REGION2` (the private side). The guest prints the string at GPA
//! 0x2000 on the serial port. Conversions then flip ranges, printing the page-state map and
//! what a listener (a stand-in for VFIO/vhost-user) is told; converting the string's page to
//! private discards its shared copy, so the guest's second run prints nothing.
//!
//! Hosts without `KVM_SET_MEMORY_ATTRIBUTES` (like plain nested KVM) keep the attributes in a
//! userspace record; the example says which one it uses. Guest `VMMCALL`s do not reach
//! userspace on such hosts, so the exits are synthesized with the values KVM would report.

use std::process::ExitCode;
use std::sync::Arc;

use cgs_core::testing::{set_real_mode_entry, SERIAL_PORT};
use cgs_core::{Error, Result};
use cgs_gmem::attrs::{kvm_supports_private, MemoryAttributes, RecordingAttributes};
use cgs_gmem::binding::{Discard, GmemLayout, GmemSlot};
use cgs_gmem::convert::Converter;
use cgs_gmem::exits::{handle_exit, ExitOutcome};
use cgs_gmem::memfd::{supported_flags, GmemFlags, GuestMemfd};
use cgs_gmem::psc::{apply_buffer, PscBuffer, PscEntry, PscOp, RmpContext};
use cgs_gmem::rmp::Rmp;
use cgs_gmem::testing::{ListenerEvent, RecordingListener};
use cgs_gmem::tracker::MemState;
use cgs_gmem::uapi::{
    KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED, KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
    KVM_MEMORY_EXIT_FLAG_PRIVATE,
};
use kvm_ioctls::{HypercallExit, Kvm, VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

const RAM: u64 = 4 << 20;
const CODE: u64 = 0x1000;
const MSG: u64 = 0x2000;
const ASID: u32 = 1;
const SPA_BASE: u64 = 0x8_0000;

/// Real mode: print the NUL-terminated string at 0x2000 on COM1, then halt.
const PRINT_STRING_AT_0X2000: [u8; 15] = [
    0xbe, 0x00, 0x20, // mov si, 0x2000
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xac, // lodsb
    0x84, 0xc0, // test al, al
    0x74, 0x03, // jz done
    0xee, // out dx, al
    0xeb, 0xf8, // jmp lodsb
    0xf4, // hlt
];

fn mem_err(e: impl std::fmt::Display) -> Error {
    Error::invalid_input("guest memory", e.to_string())
}

fn run_guest(vcpu: &mut VcpuFd) -> Result<Vec<u8>> {
    set_real_mode_entry(vcpu, CODE as u16)?;
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match vcpu.run().map_err(|e| Error::kvm("KVM_RUN", e))? {
            VcpuExit::IoOut(SERIAL_PORT, data) => out.extend_from_slice(data),
            VcpuExit::Hlt => return Ok(out),
            other => {
                return Err(Error::invalid_input(
                    "guest exit",
                    format!("unexpected {other:?}"),
                ))
            }
        }
    }
    Err(Error::invalid_input("guest", "did not halt"))
}

/// The page-state map: one character per 64 KiB (S shared, P private, m mixed), then the runs.
fn print_map<A: MemoryAttributes, D: Discard>(conv: &Converter<A, D>) {
    let t = conv.tracker();
    let line: String = (0..RAM / 0x1_0000)
        .map(|i| {
            let r = i * 16..(i + 1) * 16;
            match t.count(r, MemState::Private) {
                0 => 'S',
                16 => 'P',
                _ => 'm',
            }
        })
        .collect();
    println!("  map  |{line}|  (1 char = 64 KiB)");
    let runs: Vec<String> = t
        .runs(0..RAM / 4096, MemState::Private)
        .map(|r| format!("{:#x}..{:#x}", r.start * 4096, r.end * 4096))
        .collect();
    println!(
        "  private: {}",
        if runs.is_empty() {
            "none".to_string()
        } else {
            runs.join(", ")
        }
    );
}

fn print_events(log: &RecordingListener, seen: &mut usize) {
    let events = log.snapshot();
    for e in &events[*seen..] {
        match e {
            ListenerEvent::Populated(g, s) => println!("  listener: populated {g:#x}+{s:#x}"),
            ListenerEvent::Discarded(g, s) => println!("  listener: discarded {g:#x}+{s:#x}"),
        }
    }
    *seen = events.len();
}

fn hypercall<A: MemoryAttributes, D: Discard>(
    conv: &mut Converter<A, D>,
    gpa: u64,
    npages: u64,
    attrs: u64,
) {
    let mut ret = 0u64;
    let mut exit = VcpuExit::Hypercall(HypercallExit {
        nr: KVM_HC_MAP_GPA_RANGE,
        args: [gpa, npages, attrs, 0, 0, 0],
        ret: &mut ret,
        longmode: 1,
    });
    let out = handle_exit(conv, &mut exit);
    let what = match out {
        ExitOutcome::Converted(c) => format!("converted {} page(s)", c.changed_pages()),
        ExitOutcome::Refused { error, .. } => format!("refused: {error}"),
        other => format!("{other:?}"),
    };
    println!(
        "exit HYPERCALL MAP_GPA_RANGE gpa={gpa:#x} npages={npages} attrs={attrs:#x} -> ret={ret} ({what})"
    );
}

fn run() -> Result<()> {
    let kvm = Kvm::new().map_err(|e| Error::kvm("open /dev/kvm", e))?;
    let vm = kvm
        .create_vm()
        .map_err(|e| Error::kvm("KVM_CREATE_VM", e))?;
    let flags = supported_flags(&vm)
        .ok_or_else(|| Error::unsupported("guest_memfd", "KVM_CAP_GUEST_MEMFD missing"))?;
    println!("guest_memfd supported, flags {flags:?}");

    // Shared side: the VMM's vm-memory region. Private side: a guest_memfd.
    let mem =
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).map_err(mem_err)?;
    let gmem = Arc::new(GuestMemfd::create(&vm, RAM, GmemFlags::empty())?);
    let mut layout = GmemLayout::new();
    for (i, region) in mem.iter().enumerate() {
        let slot = GmemSlot::from_region(i as u32, region, gmem.clone(), region.start_addr().0)?;
        // SAFETY: `mem` owns the mapping and lives until the end of `run`, after the vCPU is
        // done.
        unsafe { layout.bind(&vm, slot)? };
    }
    println!(
        "memslot 0: GPA 0..{RAM:#x} bound with KVM_SET_USER_MEMORY_REGION2 (guest_memfd offset 0)"
    );
    if kvm_supports_private(&vm) {
        println!(
            "note: KVM supports private memory; this example still records attributes in userspace"
        );
    } else {
        println!(
            "KVM_SET_MEMORY_ATTRIBUTES is not available here: attributes are recorded in userspace"
        );
    }

    let mut conv = Converter::new(
        &[(0, RAM)],
        MemState::Shared,
        RecordingAttributes::new(RAM / 4096),
        layout,
    )?;
    let log = RecordingListener::new();
    let mut seen = 0;
    conv.register_listener(Box::new(log.clone()))
        .map_err(|e| Error::invalid_input("listener", e.to_string()))?;
    println!("\nlistener registered (shared ranges replayed):");
    print_events(&log, &mut seen);
    print_map(&conv);

    mem.write_slice(&PRINT_STRING_AT_0X2000, GuestAddress(CODE))
        .map_err(mem_err)?;
    mem.write_slice(b"hello from shared memory\n\0", GuestAddress(MSG))
        .map_err(mem_err)?;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| Error::kvm("KVM_CREATE_VCPU", e))?;
    let out = run_guest(&mut vcpu)?;
    print!("\nguest run 1 wrote: {}", String::from_utf8_lossy(&out));

    println!("\n-- conversions (private_mem_conversions_test style) --");
    let enc = KVM_MAP_GPA_RANGE_ENCRYPTED;
    hypercall(
        &mut conv,
        0x20_0000,
        512,
        enc | KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
    );
    print_events(&log, &mut seen);
    print_map(&conv);
    for p in [1u64, 3, 5] {
        hypercall(&mut conv, 0x20_0000 + p * 4096, 1, 0);
    }
    print_events(&log, &mut seen);
    print_map(&conv);
    hypercall(
        &mut conv,
        0x20_1000,
        512,
        enc | KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
    );
    hypercall(
        &mut conv,
        0x20_0000,
        512,
        enc | KVM_MAP_GPA_RANGE_PAGE_SZ_2M,
    );
    print_events(&log, &mut seen);

    let mut exit = VcpuExit::MemoryFault {
        flags: KVM_MEMORY_EXIT_FLAG_PRIVATE,
        gpa: MSG,
        size: 4096,
    };
    match handle_exit(&mut conv, &mut exit) {
        ExitOutcome::Converted(c) => println!(
            "exit MEMORY_FAULT gpa={MSG:#x} size=0x1000 flags=PRIVATE -> converted {} page(s), shared copy discarded",
            c.changed_pages()
        ),
        other => println!("exit MEMORY_FAULT -> {other:?}"),
    }
    print_events(&log, &mut seen);
    print_map(&conv);

    // A GHCB PSC buffer, applied to the tracker and an RMP model.
    let mut rmp = Rmp::new(SPA_BASE + RAM / 4096);
    let spa_of = |g: u64| (g < RAM / 4096).then_some(SPA_BASE + g);
    let mut ctx = RmpContext {
        rmp: &mut rmp,
        asid: ASID,
        spa_of: &spa_of,
    };
    let entry = |gfn: u64, op: PscOp, huge: bool| PscEntry {
        cur_page: 0,
        gfn,
        op: op.raw(),
        huge,
        reserved: 0,
    };
    let mut buf = PscBuffer {
        cur_entry: 0,
        end_entry: 2,
        reserved: 0,
        entries: vec![
            entry(0x100, PscOp::Private, false),
            entry(0x101, PscOp::Private, false),
            entry(0x201, PscOp::Private, true), // misaligned 2M entry: stops here
        ],
    };
    let outcome = apply_buffer(&mut conv, Some(&mut ctx), &mut buf);
    println!(
        "PSC buffer (3 entries) -> completed {}, cur_entry {}, SW_EXITINFO2 {:#x}; RMP assigned entries: {}",
        outcome.completed,
        buf.cur_entry,
        outcome.exit_info2,
        ctx.rmp.assigned_count()
    );
    if let Some(e) = ctx.rmp.entry(SPA_BASE + 0x100) {
        println!(
            "  RMP entry of GFN 0x100: assigned={} asid={} gpa={:#x} validated={} ({:?})",
            e.assigned,
            e.asid,
            e.gpa,
            e.validated,
            e.state()
        );
    }
    print_events(&log, &mut seen);
    print_map(&conv);

    let out = run_guest(&mut vcpu)?;
    println!(
        "\nguest run 2 wrote {} bytes: the string's page was converted to private, so its shared copy is gone",
        out.len()
    );
    // Back to shared; the guest_memfd copy is punched, the shared side reads zero until rewritten.
    hypercall(&mut conv, MSG, 1, 0);
    mem.write_slice(b"shared again\n\0", GuestAddress(MSG))
        .map_err(mem_err)?;
    let out = run_guest(&mut vcpu)?;
    print!("guest run 3 wrote: {}", String::from_utf8_lossy(&out));
    print_events(&log, &mut seen);
    print_map(&conv);
    let s = conv.stats();
    println!(
        "\nstats: {} conversions, {} no-ops, {} refused, {} pages to private, {} pages to shared",
        s.converted, s.noop, s.failed, s.pages_to_private, s.pages_to_shared
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
