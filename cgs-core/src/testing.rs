//! Small, real guests and KVM-availability helpers for tests and examples.
//!
//! cgs's own tests and examples use these to run the whole lifecycle on any KVM host: a
//! real-mode payload that prints a message on a serial port and halts, helpers to map vm-memory
//! guest memory into a VM and to start a vCPU in real mode, and a run loop that collects what the
//! guest wrote. VMM authors can use them to smoke-test a backend.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};

use crate::backend::ConfidentialBackend;
use crate::error::{Error, Result};
use crate::lifecycle::Lifecycle;

/// Environment variable that turns a missing `/dev/kvm` from a SKIP into a failure (set by CI on
/// hosts that have KVM).
pub const REQUIRE_KVM_ENV: &str = "CGS_REQUIRE_KVM";

/// The legacy COM1 data port the payload writes to.
pub const SERIAL_PORT: u16 = 0x3f8;

/// Open `/dev/kvm` for test `name`, or print a clear SKIP line and return `None` when this host
/// has no usable KVM. With `CGS_REQUIRE_KVM=1` a missing KVM panics instead, so CI on a KVM host
/// can never pass by skipping.
#[allow(clippy::panic)]
pub fn kvm_or_skip(name: &str) -> Option<Kvm> {
    match Kvm::new() {
        Ok(kvm) => Some(kvm),
        Err(e) => {
            if std::env::var(REQUIRE_KVM_ENV).is_ok_and(|v| v == "1") {
                panic!("{name}: /dev/kvm is required ({REQUIRE_KVM_ENV}=1) but unusable: {e}");
            }
            eprintln!("SKIP {name}: /dev/kvm not available ({e})");
            None
        }
    }
}

/// One KVM VM shared by every input of a stateful fuzz target (creating a VM per input would
/// dominate the run), with a vCPU of another VM for calls that need a `VcpuFd` before the input
/// created one. KVM never frees a vCPU id, so each input takes ids no earlier input used
/// ([`fresh_ids`](Self::fresh_ids)) and the VM is replaced when they run out.
pub struct SharedVm {
    /// The KVM handle.
    pub kvm: Kvm,
    /// The VM the inputs use.
    pub vm: VmFd,
    /// A vCPU of another VM.
    pub stray: VcpuFd,
    /// First vCPU id no input has used on `vm`.
    next_id: u64,
    /// vCPU ids `vm` accepts.
    id_limit: u64,
}

impl SharedVm {
    /// Opens KVM and creates the VMs, or `None` (after [`kvm_or_skip`]'s SKIP line) without
    /// KVM. `name` names the target in that line. Panics if KVM refuses to create a VM or vCPU:
    /// a fuzz harness cannot go on without them.
    #[allow(clippy::panic)]
    pub fn open(name: &str) -> Option<SharedVm> {
        let kvm = kvm_or_skip(name)?;
        let stray = kvm
            .create_vm()
            .and_then(|vm| vm.create_vcpu(0))
            .unwrap_or_else(|e| panic!("{name}: stray vCPU: {e}"));
        let vm = kvm
            .create_vm()
            .unwrap_or_else(|e| panic!("{name}: KVM_CREATE_VM: {e}"));
        let id_limit = kvm.get_max_vcpus().min(kvm.get_max_vcpu_id()) as u64;
        Some(SharedVm {
            kvm,
            vm,
            stray,
            next_id: 0,
            id_limit,
        })
    }

    /// The first of `count` vCPU ids no earlier input used, replacing the VM when they run out.
    /// Panics if KVM refuses to create the replacement VM.
    #[allow(clippy::panic)]
    pub fn fresh_ids(&mut self, count: u64) -> u64 {
        if self.next_id + count > self.id_limit {
            self.vm = self
                .kvm
                .create_vm()
                .unwrap_or_else(|e| panic!("KVM_CREATE_VM: {e}"));
            self.next_id = 0;
        }
        let base = self.next_id;
        self.next_id += count;
        base
    }
}

/// A 16-bit real-mode payload, loaded at `load_addr` (below 64 KiB), that writes `msg` byte by
/// byte to [`SERIAL_PORT`] and halts. Padded with zeroes to a multiple of 4 KiB.
///
/// `load_addr + 15 + msg.len()` must fit in 16 bits (the payload addresses its message with
/// DS = 0).
pub fn serial_payload(load_addr: u16, msg: &[u8]) -> Result<Vec<u8>> {
    const CODE_LEN: u16 = 15;
    let end = u32::from(load_addr) + u32::from(CODE_LEN) + msg.len() as u32;
    if end > 0xffff || msg.contains(&0) {
        return Err(Error::invalid_input(
            "payload",
            "message must fit below 64 KiB and contain no NUL",
        ));
    }
    let [lo, hi] = (load_addr + CODE_LEN).to_le_bytes();
    let [plo, phi] = SERIAL_PORT.to_le_bytes();
    let mut code = vec![
        0xbe, lo, hi, // mov si, msg
        0xba, plo, phi,  // mov dx, SERIAL_PORT
        0xac, // next: lodsb
        0x84, 0xc0, // test al, al
        0x74, 0x03, // jz done
        0xee, // out dx, al
        0xeb, 0xf8, // jmp next
        0xf4, // done: hlt
    ];
    debug_assert_eq!(code.len(), usize::from(CODE_LEN));
    code.extend_from_slice(msg);
    code.push(0);
    code.resize(code.len().div_ceil(4096) * 4096, 0);
    Ok(code)
}

/// Register every region of `mem` as a KVM memslot (slots 0, 1, …).
pub fn map_guest_memory(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<()> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|e| Error::invalid_input("guest memory", e.to_string()))?;
        let desc = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mmap of `memory_size` bytes owned by `mem`, which the
        // caller keeps alive as long as the VM runs; the slot does not overlap another one.
        unsafe { vm.set_user_memory_region(desc) }
            .map_err(|e| Error::kvm("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    Ok(())
}

/// Put a vCPU in 16-bit real mode with CS = DS = 0 and IP = `entry`.
pub fn set_real_mode_entry(vcpu: &VcpuFd, entry: u16) -> Result<()> {
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| Error::kvm("KVM_GET_SREGS", e))?;
    for seg in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.ss] {
        seg.base = 0;
        seg.selector = 0;
    }
    vcpu.set_sregs(&sregs)
        .map_err(|e| Error::kvm("KVM_SET_SREGS", e))?;
    let mut regs = vcpu.get_regs().map_err(|e| Error::kvm("KVM_GET_REGS", e))?;
    regs.rip = u64::from(entry);
    regs.rflags = 2;
    vcpu.set_regs(&regs)
        .map_err(|e| Error::kvm("KVM_SET_REGS", e))?;
    Ok(())
}

/// Run `vcpu` through `guest`'s ready guard until it halts, collecting the bytes it writes to
/// [`SERIAL_PORT`]. Gives up after `max_exits` exits.
pub fn run_to_halt<B: ConfidentialBackend>(
    guest: &Lifecycle<B>,
    vcpu: &mut VcpuFd,
    max_exits: usize,
) -> Result<Vec<u8>> {
    run_until_halt(vcpu, max_exits, |v| guest.run(v), |_, _| false)
}

/// Run `vcpu` with `run` (e.g. `VcpuFd::run` or a [`Lifecycle::run`]) until it halts,
/// collecting the bytes it writes to [`SERIAL_PORT`]. Other port writes go to `port_out`, which
/// returns whether it took them; any other exit is an error. Gives up after `max_exits` exits.
pub fn run_until_halt<R, P>(
    vcpu: &mut VcpuFd,
    max_exits: usize,
    mut run: R,
    mut port_out: P,
) -> Result<Vec<u8>>
where
    R: FnMut(&mut VcpuFd) -> Result<VcpuExit<'_>>,
    P: FnMut(u16, &[u8]) -> bool,
{
    let mut out = Vec::new();
    for _ in 0..max_exits {
        match run(vcpu)? {
            VcpuExit::IoOut(SERIAL_PORT, data) => out.extend_from_slice(data),
            VcpuExit::IoOut(port, data) if port_out(port, data) => {}
            VcpuExit::Hlt => return Ok(out),
            other => {
                return Err(Error::invalid_input(
                    "guest exit",
                    format!("unexpected exit {other:?}"),
                ))
            }
        }
    }
    Err(Error::invalid_input(
        "guest",
        format!("did not halt within {max_exits} exits"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_shape() {
        let p = serial_payload(0x1000, b"hi").unwrap();
        assert_eq!(p.len(), 4096);
        assert_eq!(&p[..3], &[0xbe, 0x0f, 0x10]);
        assert_eq!(&p[15..18], b"hi\0");
        assert!(serial_payload(0xfff0, b"too long").is_err());
        assert!(serial_payload(0x1000, b"a\0b").is_err());
    }
}
