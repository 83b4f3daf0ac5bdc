//! A small real-mode guest that keeps writing memory, for migration tests and examples.
//!
//! Loaded at [`COUNTER_LOAD_ADDR`], it optionally first opts in to migration (writes
//! `KVM_MIGRATION_READY` to `MSR_KVM_MIGRATION_CONTROL`, see [`super::optin`]), then increments a 16-bit counter kept in `AX` and at
//! [`COUNTER_ADDR`], stores it into one of the eight pages at [`DATA_BASE`]`..+0x8000`
//! (page `counter % 8`), reports it with `out 0x80, ax` ([`PROGRESS_PORT`]) and, once the
//! counter reaches the target, prints its message on COM1 and halts. Every progress exit is a
//! point where the VMM may stop the vCPU, fetch the dirty log or save the vCPU for migration; a
//! migrated guest resumes the loop where it stopped.

use std::sync::Arc;

use cgs_core::testing::{map_guest_memory, set_real_mode_entry};
use cgs_core::{Error, Result};
use cgs_gmem::tracker::{MemState, PageTracker};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use cgs_core::config::SevGuestConfig;
use cgs_core::{Lifecycle, PageType};

use crate::backend::SevBackend;
use crate::firmware::sim::{SimFirmware, SimPlatform};
use crate::firmware::{Flavour, InitParams, LaunchStart, SevFirmware};

/// Guest-physical address the payload is loaded at (its entry point).
pub const COUNTER_LOAD_ADDR: u16 = 0x1000;
/// Guest-physical address of the counter.
pub const COUNTER_ADDR: u64 = 0x500;
/// First of the eight data pages the guest writes.
pub const DATA_BASE: u64 = 0x8000;
/// Port of the progress write (`out 0x80, ax`, two bytes: the counter).
pub const PROGRESS_PORT: u16 = 0x80;

const CODE_LEN: u16 = 0x2b;

#[rustfmt::skip]
const OPT_IN: [u8; 17] = [
    0x66, 0xb9, 0x08, 0x4d, 0x56, 0x4b, // mov ecx, MSR_KVM_MIGRATION_CONTROL
    0x66, 0x31, 0xd2,                   // xor edx, edx
    0x66, 0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, KVM_MIGRATION_READY
    0x0f, 0x30,                         // wrmsr
];

/// Offset of the counting loop's `out 0x80, ax` end (where a vCPU stopped on a progress write
/// resumes) from the load address.
pub fn resume_offset(opt_in: bool) -> u64 {
    0x15 + if opt_in { OPT_IN.len() as u64 } else { 0 }
}

/// The payload: (with `opt_in`, first opts in to migration,) counts to `target`, then prints
/// `msg` on COM1 and halts. Padded to 4 KiB.
pub fn counter_payload(target: u16, msg: &[u8], opt_in: bool) -> Result<Vec<u8>> {
    let prefix: &[u8] = if opt_in { &OPT_IN } else { &[] };
    let msg_addr = COUNTER_LOAD_ADDR + prefix.len() as u16 + CODE_LEN;
    if msg.contains(&0)
        || prefix.len() + usize::from(CODE_LEN) + msg.len() + 1 > 4096
        || target == 0
    {
        return Err(Error::invalid_input(
            "counter payload",
            "the message must fit in the page without NUL bytes and the target must be non-zero",
        ));
    }
    let [tl, th] = target.to_le_bytes();
    let [ml, mh] = msg_addr.to_le_bytes();
    #[rustfmt::skip]
    let mut code = prefix.to_vec();
    #[rustfmt::skip]
    code.extend_from_slice(&[
        0xa1, 0x00, 0x05,       // 0x00 mov ax, [0x500]
        0x40,                   // 0x03 inc ax
        0xa3, 0x00, 0x05,       // 0x04 mov [0x500], ax
        0x89, 0xc3,             // 0x07 mov bx, ax
        0x83, 0xe3, 0x07,       // 0x09 and bx, 7
        0xc1, 0xe3, 0x0c,       // 0x0c shl bx, 12
        0x89, 0x87, 0x00, 0x80, // 0x0f mov [bx + 0x8000], ax
        0xe7, 0x80,             // 0x13 out 0x80, ax
        0x3d, tl, th,           // 0x15 cmp ax, target
        0x72, 0xe9,             // 0x18 jb 0x03
        0xbe, ml, mh,           // 0x1a mov si, msg
        0xba, 0xf8, 0x03,       // 0x1d mov dx, 0x3f8
        0xac,                   // 0x20 lodsb
        0x84, 0xc0,             // 0x21 test al, al
        0x74, 0x03,             // 0x23 jz 0x28
        0xee,                   // 0x25 out dx, al
        0xeb, 0xf8,             // 0x26 jmp 0x20
        0xf4,                   // 0x28 hlt
        0xeb, 0xfd,             // 0x29 jmp 0x28
    ]);
    debug_assert_eq!(code.len(), prefix.len() + usize::from(CODE_LEN));
    code.extend_from_slice(msg);
    code.push(0);
    code.resize(4096, 0);
    Ok(code)
}

/// Guest RAM of the test guests: 64 KiB at GPA 0.
pub const TEST_MEM_SIZE: usize = 0x10000;

/// A small SEV guest on the simulated firmware and a real KVM VM, with its page-state tracker.
#[derive(Debug)]
pub struct SimGuest {
    /// The VM.
    pub vm: VmFd,
    /// Its memory ([`TEST_MEM_SIZE`] at GPA 0, memslot 0).
    pub mem: GuestMemoryMmap,
    /// Its single vCPU.
    pub vcpu: VcpuFd,
    /// Its firmware handle.
    pub fw: SimFirmware,
    /// Shared/private state of its pages (all private, as for a fresh SEV guest).
    pub tracker: PageTracker,
}

fn sim_vm(kvm: &Kvm, platform: &Arc<SimPlatform>) -> Result<SimGuest> {
    let vm = kvm
        .create_vm()
        .map_err(|e| Error::kvm("KVM_CREATE_VM", e))?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), TEST_MEM_SIZE)])
        .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
    map_guest_memory(&vm, &mem)?;
    let vcpu = vm
        .create_vcpu(0)
        .map_err(|e| Error::kvm("KVM_CREATE_VCPU", e))?;
    let mut fw = SimFirmware::new(platform);
    fw.init(&vm, &InitParams::Legacy(Flavour::Sev))?;
    Ok(SimGuest {
        vm,
        mem,
        vcpu,
        fw,
        tracker: PageTracker::new((TEST_MEM_SIZE as u64) / 4096, MemState::Private),
    })
}

/// Launch a running SEV guest with `policy` on `platform`: the [`counter_payload`] counting to
/// `target` (opting in to migration first if `opt_in`) is loaded, encrypted and measured (LAUNCH_START, LAUNCH_UPDATE_DATA, LAUNCH_MEASURE,
/// LAUNCH_FINISH) and the vCPU points at it.
pub fn launch_counter_guest(
    kvm: &Kvm,
    platform: &Arc<SimPlatform>,
    policy: u32,
    target: u16,
    msg: &[u8],
    opt_in: bool,
) -> Result<SimGuest> {
    let mut g = sim_vm(kvm, platform)?;
    let payload = counter_payload(target, msg, opt_in)?;
    let gpa = u64::from(COUNTER_LOAD_ADDR);
    g.mem
        .write_slice(&payload, GuestAddress(gpa))
        .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
    g.fw.launch_start(
        &g.vm,
        &LaunchStart {
            handle: 0,
            policy,
            dh_cert: None,
            session: None,
        },
    )?;
    let slice = g
        .mem
        .get_slice(GuestAddress(gpa), payload.len())
        .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
    g.fw.launch_update_data(&g.vm, gpa, &slice)?;
    g.fw.launch_measure(&g.vm)?;
    g.fw.launch_finish(&g.vm)?;
    set_real_mode_entry(&g.vcpu, COUNTER_LOAD_ADDR)?;
    Ok(g)
}

/// A destination VM on `platform`: SEV initialised (INIT), not launched, memory empty.
pub fn destination_guest(kvm: &Kvm, platform: &Arc<SimPlatform>) -> Result<SimGuest> {
    sim_vm(kvm, platform)
}

/// GPA of the reset-vector page of [`launch_with_backend`] guests.
pub use crate::testing::RESET_PAGE_GPA;

/// A reset-vector page: at offset 0xFF0 (the vCPU's first instruction, CS base 0xFFFF0000, IP
/// 0xFFF0) a far jump to `0000:COUNTER_LOAD_ADDR`, the counter payload.
pub fn reset_vector_jump() -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    let [lo, hi] = COUNTER_LOAD_ADDR.to_le_bytes();
    page[0xFF0..0xFF5].copy_from_slice(&[0xEA, lo, hi, 0x00, 0x00]);
    page
}

/// A source guest launched through cgs-core's [`Lifecycle`] and the SEV backend on the
/// simulator.
#[derive(Debug)]
pub struct BackendGuest {
    /// The lifecycle (ready after launch).
    pub guest: Lifecycle<SevBackend<SimFirmware>>,
    /// The VM.
    pub vm: VmFd,
    /// Its memory: [`TEST_MEM_SIZE`] at 0 (memslot 0) and the reset page (memslot 1).
    pub mem: GuestMemoryMmap,
    /// Its vCPU.
    pub vcpu: VcpuFd,
    /// Shared/private state of every page below 4 GiB (all private).
    pub tracker: PageTracker,
}

/// The memory of [`launch_with_backend`] guests (and of their destinations): 64 KiB at 0 and the
/// reset-vector page.
pub fn backend_guest_memory() -> Result<GuestMemoryMmap> {
    GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), TEST_MEM_SIZE),
        (GuestAddress(RESET_PAGE_GPA), 4096),
    ])
    .map_err(|e| Error::invalid_input("guest memory", e.to_string()))
}

/// Pages tracked for [`backend_guest_memory`] (every page below 4 GiB).
pub const BACKEND_TRACKER_PAGES: u64 = 1 << 20;

/// Launch the counter guest (counting to `target`, printing `msg`, opting in first if `opt_in`)
/// as a `sev-guest` with `policy` through the [`Lifecycle`]: `kvm_init` (INIT2, LAUNCH_START),
/// launch updates of the reset page and the payload page, the vCPU state from the VMSA builder
/// (the reset vector), finalize (LAUNCH_MEASURE, LAUNCH_FINISH).
pub fn launch_with_backend(
    kvm: &Kvm,
    platform: &Arc<SimPlatform>,
    policy: u32,
    target: u16,
    msg: &[u8],
    opt_in: bool,
) -> Result<BackendGuest> {
    let mut cfg = SevGuestConfig::new("sev0", 1);
    cfg.policy = policy;
    cfg.legacy_vm_type = cgs_core::config::OnOffAuto::Off;
    let mut guest = Lifecycle::new(SevBackend::sev(&cfg, SimFirmware::new(platform))?);
    let vm = guest.create_vm(kvm)?;
    let mem = backend_guest_memory()?;
    map_guest_memory(&vm, &mem)?;
    let load = u64::from(COUNTER_LOAD_ADDR);
    mem.write_slice(&counter_payload(target, msg, opt_in)?, GuestAddress(load))
        .and_then(|_| mem.write_slice(&reset_vector_jump(), GuestAddress(RESET_PAGE_GPA)))
        .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
    guest.kvm_init(kvm, &vm)?;
    let vcpu = guest.create_vcpu(&vm, 0)?;
    guest.launch_update_memory(
        &vm,
        &mem,
        GuestAddress(RESET_PAGE_GPA),
        4096,
        PageType::Normal,
    )?;
    guest.launch_update_memory(&vm, &mem, GuestAddress(load), 4096, PageType::Normal)?;
    guest.set_vcpu_state(&vm, 0, &vcpu)?;
    guest.finalize(&vm)?;
    Ok(BackendGuest {
        guest,
        vm,
        mem,
        vcpu,
        tracker: PageTracker::new(BACKEND_TRACKER_PAGES, MemState::Private),
    })
}

/// Run `vcpu` for `n` progress writes of the counter guest; returns the last counter value.
pub fn run_progress(vcpu: &mut VcpuFd, n: usize) -> Result<u16> {
    let mut last = 0;
    for _ in 0..n {
        match vcpu.run().map_err(|e| Error::kvm("KVM_RUN", e))? {
            VcpuExit::IoOut(PROGRESS_PORT, d) if d.len() == 2 => {
                last = u16::from_le_bytes([d[0], d[1]])
            }
            other => {
                return Err(Error::invalid_input(
                    "guest exit",
                    format!("expected a progress write, got {other:?}"),
                ))
            }
        }
    }
    Ok(last)
}

/// Run the counter guest until it halts; returns its progress values and its serial output.
pub fn run_to_end(vcpu: &mut VcpuFd, max_exits: usize) -> Result<(Vec<u16>, Vec<u8>)> {
    let mut progress = Vec::new();
    let serial = cgs_core::testing::run_until_halt(
        vcpu,
        max_exits,
        |v| v.run().map_err(|e| Error::kvm("KVM_RUN", e)),
        |port, d| {
            let took = port == PROGRESS_PORT && d.len() == 2;
            if took {
                progress.push(u16::from_le_bytes([d[0], d[1]]));
            }
            took
        },
    )?;
    Ok((progress, serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_shape() {
        let p = counter_payload(1000, b"done\n", false).unwrap();
        assert_eq!(p.len(), 4096);
        assert_eq!(&p[0x15..0x18], &[0x3d, 0xe8, 0x03]);
        assert_eq!(&p[0x1b..0x1d], &(0x1000u16 + 0x2b).to_le_bytes());
        assert_eq!(&p[0x2b..0x31], b"done\n\0");
        assert!(counter_payload(0, b"x", false).is_err());
        assert!(counter_payload(1, b"a\0", false).is_err());
        let q = counter_payload(1000, b"done\n", true).unwrap();
        assert_eq!(&q[..17], &OPT_IN);
        assert_eq!(&q[17..17 + 0x1b], &p[..0x1b], "same loop, message moved");
        assert_eq!(&q[17 + 0x2b..17 + 0x31], b"done\n\0");
        assert_eq!(resume_offset(true), 0x15 + 17);
    }
}
