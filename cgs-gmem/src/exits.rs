//! Decoding `KVM_EXIT_HYPERCALL` (`KVM_HC_MAP_GPA_RANGE`) and `KVM_EXIT_MEMORY_FAULT` into
//! conversion requests, and handling them on kvm-ioctls' [`VcpuExit`] values.
//!
//! `KVM_HC_MAP_GPA_RANGE`: `args[0]` is the GPA, `args[1]` the number of **4 KiB** pages (also
//! for 2 MiB requests), `args[2]` the attributes: bits 3:0 page size (0 = 4K, 1 = 2M, 2 = 1G),
//! bit 4 encrypted (private), bits 63:5 must be zero. The guest gets `hypercall.ret` = 0 on
//! success, `EINVAL` for a bad request and `EAGAIN` when it may retry; these are the only values
//! KVM accepts back for SNP page-state changes.
//!
//! `KVM_EXIT_MEMORY_FAULT` (KVM_RUN fails with EFAULT; kvm-ioctls returns
//! [`VcpuExit::MemoryFault`]): the guest accessed `[gpa, gpa + size)` as private
//! (`KVM_MEMORY_EXIT_FLAG_PRIVATE`) or shared, so the range is converted to that state. It has
//! no way to report an error to the guest: a failure is fatal for the vCPU.

use cgs_core::{Error, Result};
use kvm_bindings::kvm_enable_cap;
use kvm_ioctls::{HypercallExit, VcpuExit, VmFd};

use crate::attrs::MemoryAttributes;
use crate::binding::Discard;
use crate::convert::{Conversion, ConversionRequest, Converter, Origin, PageSizeHint};
use crate::tracker::MemState;
use crate::uapi::{
    KVM_CAP_EXIT_HYPERCALL, KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED,
    KVM_MAP_GPA_RANGE_PAGE_SZ_1G, KVM_MAP_GPA_RANGE_PAGE_SZ_2M, KVM_MAP_GPA_RANGE_PAGE_SZ_4K,
    KVM_MAP_GPA_RANGE_PAGE_SZ_MASK, KVM_MEMORY_EXIT_FLAG_PRIVATE,
};

/// Ask KVM to forward `KVM_HC_MAP_GPA_RANGE` to userspace (`KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL,
/// 1 << 12)`), keeping any hypercall bits in `also` enabled too. `Unsupported` when KVM does not
/// offer it.
pub fn enable_map_gpa_range_exit(vm: &VmFd, also: u64) -> Result<()> {
    let offered = vm.check_extension_raw(libc::c_ulong::from(KVM_CAP_EXIT_HYPERCALL));
    let offered = u64::try_from(offered).unwrap_or(0);
    let want = (1u64 << KVM_HC_MAP_GPA_RANGE) | also;
    if offered & want != want {
        return Err(Error::unsupported(
            format!("KVM_CAP_EXIT_HYPERCALL mask {want:#x}"),
            format!("KVM offers {offered:#x}"),
        ));
    }
    let cap = kvm_enable_cap {
        cap: KVM_CAP_EXIT_HYPERCALL,
        args: [want, 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .map_err(|e| Error::kvm("KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)", e))
}

fn bad(why: String) -> Error {
    Error::invalid_input("KVM_HC_MAP_GPA_RANGE", why)
}

/// Decode a `KVM_HC_MAP_GPA_RANGE` hypercall's arguments (guest controlled).
pub fn decode_map_gpa_range(args: &[u64; 6]) -> Result<ConversionRequest> {
    let (gpa, npages, attrs) = (args[0], args[1], args[2]);
    if attrs & !(KVM_MAP_GPA_RANGE_ENCRYPTED | KVM_MAP_GPA_RANGE_PAGE_SZ_MASK) != 0 {
        return Err(bad(format!("reserved attribute bits set in {attrs:#x}")));
    }
    let page_size = match attrs & KVM_MAP_GPA_RANGE_PAGE_SZ_MASK {
        KVM_MAP_GPA_RANGE_PAGE_SZ_4K => PageSizeHint::Size4K,
        KVM_MAP_GPA_RANGE_PAGE_SZ_2M => PageSizeHint::Size2M,
        KVM_MAP_GPA_RANGE_PAGE_SZ_1G => PageSizeHint::Size1G,
        other => return Err(bad(format!("unknown page size {other}"))),
    };
    if npages == 0 {
        return Err(bad("zero pages".into()));
    }
    if gpa % 4096 != 0 {
        return Err(bad(format!("GPA {gpa:#x} is not 4 KiB aligned")));
    }
    let size = npages
        .checked_mul(4096)
        .filter(|s| gpa.checked_add(*s).is_some())
        .ok_or_else(|| bad(format!("{npages:#x} pages at {gpa:#x} wrap around")))?;
    let to = if attrs & KVM_MAP_GPA_RANGE_ENCRYPTED != 0 {
        MemState::Private
    } else {
        MemState::Shared
    };
    Ok(ConversionRequest {
        gpa,
        size,
        to,
        page_size,
        origin: Origin::Hypercall,
    })
}

/// Decode a `KVM_EXIT_MEMORY_FAULT` (flags other than `KVM_MEMORY_EXIT_FLAG_PRIVATE` are
/// refused, as QEMU does).
pub fn decode_memory_fault(flags: u64, gpa: u64, size: u64) -> Result<ConversionRequest> {
    if flags & !KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
        return Err(Error::invalid_input(
            "KVM_EXIT_MEMORY_FAULT",
            format!("unknown flags {flags:#x}"),
        ));
    }
    let to = if flags & KVM_MEMORY_EXIT_FLAG_PRIVATE != 0 {
        MemState::Private
    } else {
        MemState::Shared
    };
    Ok(ConversionRequest {
        gpa,
        size,
        to,
        page_size: PageSizeHint::Size4K,
        origin: Origin::MemoryFault,
    })
}

/// What [`handle_exit`] did.
#[derive(Debug)]
pub enum ExitOutcome {
    /// Not a conversion exit: the VMM handles it.
    NotConversion,
    /// The range was converted (or already was in the requested state); for hypercalls `ret`
    /// is 0. Re-enter the vCPU.
    Converted(Conversion),
    /// The guest's request was refused; `ret` (EINVAL or EAGAIN) was written to the hypercall
    /// and the vCPU may re-enter.
    Refused {
        /// The value written to `hypercall.ret`.
        ret: u64,
        /// Why.
        error: Error,
    },
    /// A memory fault that could not be resolved: the vCPU cannot make progress.
    Fatal(Error),
}

/// Handle a `KVM_HC_MAP_GPA_RANGE` exit, writing `exit.ret`.
pub fn handle_hypercall<A: MemoryAttributes, D: Discard>(
    conv: &mut Converter<A, D>,
    exit: &mut HypercallExit<'_>,
) -> ExitOutcome {
    if exit.nr != KVM_HC_MAP_GPA_RANGE {
        return ExitOutcome::NotConversion;
    }
    let req = match decode_map_gpa_range(&exit.args) {
        Ok(r) => r,
        Err(error) => {
            *exit.ret = libc::EINVAL as u64;
            return ExitOutcome::Refused {
                ret: *exit.ret,
                error,
            };
        }
    };
    match conv.convert(req) {
        Ok(c) => {
            *exit.ret = 0;
            ExitOutcome::Converted(c)
        }
        Err(e) => {
            *exit.ret = e.guest_errno();
            ExitOutcome::Refused {
                ret: *exit.ret,
                error: e.into(),
            }
        }
    }
}

/// Handle a `KVM_EXIT_MEMORY_FAULT`.
pub fn handle_memory_fault<A: MemoryAttributes, D: Discard>(
    conv: &mut Converter<A, D>,
    flags: u64,
    gpa: u64,
    size: u64,
) -> ExitOutcome {
    match decode_memory_fault(flags, gpa, size).map(|req| conv.convert(req)) {
        Ok(Ok(c)) => ExitOutcome::Converted(c),
        Ok(Err(e)) => ExitOutcome::Fatal(e.into()),
        Err(e) => ExitOutcome::Fatal(e),
    }
}

/// Handle a vCPU exit if it is a conversion request (`KVM_EXIT_HYPERCALL` with
/// `KVM_HC_MAP_GPA_RANGE`, or `KVM_EXIT_MEMORY_FAULT`).
pub fn handle_exit<A: MemoryAttributes, D: Discard>(
    conv: &mut Converter<A, D>,
    exit: &mut VcpuExit<'_>,
) -> ExitOutcome {
    match exit {
        VcpuExit::Hypercall(h) => handle_hypercall(conv, h),
        VcpuExit::MemoryFault { flags, gpa, size } => {
            handle_memory_fault(conv, *flags, *gpa, *size)
        }
        _ => ExitOutcome::NotConversion,
    }
}
