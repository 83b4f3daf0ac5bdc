//! The `s390pv_lifecycle` fuzz target: the PV life cycle under arbitrary call orders on the
//! Ultravisor simulator, checked step by step against a reference model ([`model::UvModel`]).
//!
//! Two layers, chosen by bit 0 of the first byte:
//!
//! - **UV layer** ([`uv_sequence`]): raw `KVM_S390_PV_COMMAND`s (create the configuration, set
//!   the SE header — the image's, a foreign one, a truncated one —, unpack components or bad
//!   ranges, verify, resets, info, the dump commands, vCPU LOAD/OPERATING, injected faults)
//!   straight to the simulator. No KVM needed.
//! - **Backend layer** ([`backend_sequence`]): `S390PvGuest` over the simulator, through
//!   cgs-core's `Lifecycle` (kvm_init, vCPUs, launch updates, finalize, reset) and the PV entry
//!   points a VMM calls (diag 308 subcode 8 `set_pv_iplb`, subcode 10 `protect`, machine resets,
//!   starting the IPL CPU, dump, unprotect), with injected faults. The hooks take kvm-ioctls'
//!   `VmFd`, so this layer needs `/dev/kvm` (one VM shared by all inputs, as in `pef_lifecycle`;
//!   without KVM it does nothing).
//!
//! After every step both layers check: the call returned what the model says (a refused call a
//! typed error, with the UV's rc when the UV refused and KVM's errno alone when it did not), the
//! simulator's phase, dump state, loaded vCPUs and secure pages equal the model's, host reads of
//! secure pages are refused and of the others allowed, and the simulator saw exactly the
//! commands the model issued (a call refused before reaching the UV issued none). A refused
//! call therefore changed nothing.
//!
//! The rest of the first byte configures the host and the image: bit 1 no dump capability, bit
//! 2 an image that does not allow dumping, bit 3 more CPUs than a PV guest may have, bit 4 no
//! `KVM_CAP_S390_PROTECTED`, bit 5 no unpack facility. Each following byte is an operation (some
//! take the next byte as their argument); at most [`MAX_OPS`] run.

pub mod backend_sequence;
pub mod fixture;
pub mod model;
pub mod uv_sequence;

use crate::ipl::PvComponent;
use crate::uapi;
use crate::uv::rc::UVC_RC_INV_STATE;
use crate::uv::sim::{Fault, SecurePhase, SimConfig, SimUltravisor};

use model::{ModelFault, Phase, UvModel};

/// At most this many operations run per input.
pub const MAX_OPS: usize = 64;

/// The configuration byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Drive the backend (else the raw UV commands).
    pub backend: bool,
    /// The host lacks `KVM_CAP_S390_PROTECTED_DUMP`.
    pub no_dump: bool,
    /// The image's PCF does not allow dumping.
    pub sealed: bool,
    /// The machine has more CPUs than a PV guest may.
    pub too_many_cpus: bool,
    /// The host lacks `KVM_CAP_S390_PROTECTED`.
    pub no_protected: bool,
    /// The CPU model lacks the unpack facility.
    pub no_unpack: bool,
}

impl Flags {
    /// Decode the first input byte.
    pub fn new(byte: u8) -> Self {
        Flags {
            backend: byte & 1 != 0,
            no_dump: byte & 2 != 0,
            sealed: byte & 4 != 0,
            too_many_cpus: byte & 8 != 0,
            no_protected: byte & 16 != 0,
            no_unpack: byte & 32 != 0,
        }
    }

    /// Encode (the inverse of [`new`](Self::new)).
    pub fn byte(self) -> u8 {
        u8::from(self.backend)
            | u8::from(self.no_dump) << 1
            | u8::from(self.sealed) << 2
            | u8::from(self.too_many_cpus) << 3
            | u8::from(self.no_protected) << 4
            | u8::from(self.no_unpack) << 5
    }

    /// The host offers `KVM_CAP_S390_PROTECTED`.
    pub fn protected_support(self) -> bool {
        !self.no_protected
    }

    /// The host offers `KVM_CAP_S390_PROTECTED_DUMP`.
    pub fn dump_support(self) -> bool {
        !self.no_dump
    }

    /// The simulated host for these flags.
    pub fn sim_config(self, base: &SimConfig) -> SimConfig {
        let mut c = base.clone();
        c.support.dump = !self.no_dump;
        c.support.protected = !self.no_protected;
        c.support.unpack_facility = !self.no_unpack;
        c
    }
}

/// Commands a fault can be injected into.
const FAULT_CMDS: [u32; 9] = [
    uapi::KVM_PV_ENABLE,
    uapi::KVM_PV_DISABLE,
    uapi::KVM_PV_SET_SEC_PARMS,
    uapi::KVM_PV_UNPACK,
    uapi::KVM_PV_VERIFY,
    uapi::KVM_PV_PREP_RESET,
    uapi::KVM_PV_UNSHARE_ALL,
    uapi::KVM_PV_INFO,
    uapi::KVM_PV_DUMP,
];

/// The fault an argument byte chooses: command `n % 9`; `n / 9 % 3`: `EINTR`, a KVM failure
/// (`EINVAL`, rc 0), a UV refusal (`EINVAL`, rc `UVC_RC_INV_STATE`).
pub fn fault_op(n: u8) -> (u32, Fault, ModelFault) {
    let cmd = FAULT_CMDS[usize::from(n) % FAULT_CMDS.len()];
    let (fault, model) = match n / 9 % 3 {
        0 => (Fault::Eintr, ModelFault::Eintr),
        1 => (
            Fault::Fail {
                errno: libc::EINVAL,
                rc: 0,
                rrc: 0,
            },
            ModelFault::Fail { rc: 0 },
        ),
        _ => (
            Fault::Fail {
                errno: libc::EINVAL,
                rc: UVC_RC_INV_STATE,
                rrc: 0x11,
            },
            ModelFault::Fail {
                rc: UVC_RC_INV_STATE,
            },
        ),
    };
    (cmd, fault, model)
}

/// What a run reached (for the unit tests: the seeds must really get there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reached {
    /// Configurations that reached VERIFY (UV layer) or successful protects (backend layer).
    pub verified: usize,
    /// Dumps completed.
    pub dumps: usize,
    /// Calls refused, as the model said they must be.
    pub refused: usize,
}

/// Check the simulator against the model after a step.
#[allow(clippy::panic)]
fn check_uv_state(
    step: usize,
    name: &str,
    sim: &SimUltravisor,
    m: &UvModel,
    comps: &[PvComponent],
) {
    let phase = sim.phase().map(|p| match p {
        SecurePhase::Created => Phase::Created,
        SecurePhase::ParamsSet => Phase::Params,
        SecurePhase::Verified => Phase::Verified,
    });
    let facts = [
        ("phase", phase == m.phase),
        ("dumping", sim.dumping() == m.dumping),
        ("loaded vCPUs", sim.loaded_cpus() == m.loaded),
        ("secure pages", sim.secure_pages() == m.secure_pages()),
        ("set-aside configuration", !sim.has_set_aside()),
        ("commands issued", sim.calls().len() == m.calls),
    ];
    if let Some((what, _)) = facts.iter().find(|(_, ok)| !ok) {
        panic!(
            "step {step} ({name}): the simulator's {what} disagrees with the model {m:?}: {sim:?}"
        );
    }
    for (i, c) in comps.iter().enumerate() {
        let mut byte = [0u8; 1];
        let refused = sim.host_read(c.addr, &mut byte).is_err();
        if refused != m.secure[i] {
            panic!(
                "step {step} ({name}): component {i} host read refused = {refused}, model secure = {}",
                m.secure[i]
            );
        }
    }
}

/// The `s390pv_lifecycle` body: PV life cycles under arbitrary call orders on the simulated
/// Ultravisor, checked against a model after every step (see the module documentation for the
/// input format). Panics only when the simulator or the backend disagrees with the model.
pub fn fuzz_lifecycle(data: &[u8]) {
    run(data);
}

/// [`fuzz_lifecycle`], returning what the run reached.
pub fn run(data: &[u8]) -> Reached {
    let Some((&flags, ops)) = data.split_first() else {
        return Reached::default();
    };
    let flags = Flags::new(flags);
    if flags.backend {
        backend_sequence::run(flags, ops)
    } else {
        uv_sequence::run(flags, ops)
    }
}

/// Seed inputs for `s390pv_lifecycle`, with what each must reach: full legal life cycles on
/// both layers (protect, start, dump, resets, unprotect, a second protect over cleared memory),
/// illegal orders, injected faults, and hosts or images lacking what PV or dumping needs.
pub fn seeds_lifecycle() -> Vec<(Vec<u8>, Reached)> {
    use backend_sequence::op as b;
    use uv_sequence::op as u;
    let uv = |o: u8, arg: u8| o + u::COUNT * arg;
    let be = |o: u8, arg: u8| o + b::COUNT * arg;
    let seed = |flags: Flags, ops: &[u8]| {
        let mut v = vec![flags.byte()];
        v.extend_from_slice(ops);
        v
    };
    let none = Flags::new(0);
    let backend = Flags {
        backend: true,
        ..none
    };
    let reached = |verified, dumps, refused| Reached {
        verified,
        dumps,
        refused,
    };
    let uv_full = [
        uv(u::ENABLE, 0),
        uv(u::INFO, 0),
        uv(u::INFO, 1),
        uv(u::SSC, 0),
        uv(u::UNPACK, 0),
        uv(u::UNPACK, 1),
        uv(u::UNPACK, 2),
        uv(u::VERIFY, 0),
        uv(u::CPU_LOAD, 0),
        uv(u::CPU_OPERATING, 0),
        uv(u::DUMP_INIT, 0),
        uv(u::DUMP_CPU, 0),
        uv(u::DUMP_STOR, 0),
        uv(u::DUMP_COMPLETE, 0),
        uv(u::RESET, 0),
        uv(u::RESET, 1),
        uv(u::DISABLE, 0),
        // Again over the memory the first configuration decrypted and the UV cleared.
        uv(u::ENABLE, 0),
        uv(u::SSC, 0),
        uv(u::UNPACK, 0),
        uv(u::UNPACK, 1),
        uv(u::UNPACK, 2),
        uv(u::VERIFY, 0),
    ];
    let uv_illegal = [
        uv(u::VERIFY, 0),
        uv(u::UNPACK, 0),
        uv(u::SSC, 0),
        uv(u::DISABLE, 0),
        uv(u::CPU_LOAD, 0),
        uv(u::CPU_OPERATING, 0),
        uv(u::DUMP_INIT, 0),
        uv(u::ENABLE, 0),
        uv(u::ENABLE, 0),
        uv(u::CPU_LOAD, 0),
        uv(u::UNPACK, 0),
        uv(u::VERIFY, 0),
        uv(u::SSC_FOREIGN, 0),
        uv(u::SSC_TRUNCATED, 0),
        uv(u::SSC_TRUNCATED, 14),
        uv(u::SSC, 0),
        uv(u::SSC, 0),
        uv(u::UNPACK_BAD, 0),
        uv(u::UNPACK_BAD, 1),
        uv(u::UNPACK_BAD, 2),
        uv(u::UNPACK_BAD, 3),
        uv(u::UNPACK_BAD, 4),
        uv(u::UNPACK, 0),
        uv(u::UNPACK, 0),
        uv(u::UNPACK, 1),
        uv(u::UNPACK, 2),
        uv(u::VERIFY, 0),
        uv(u::DUMP_INIT, 0),
        uv(u::DUMP_COMPLETE, 0),
        uv(u::RESET, 0),
        uv(u::DISABLE, 0),
        uv(u::DISABLE, 0),
    ];
    let uv_faults = [
        uv(u::FAULT, 0),
        0, // EINTR on ENABLE
        uv(u::ENABLE, 0),
        uv(u::ENABLE, 0),
        uv(u::FAULT, 0),
        9 + 2, // KVM failure on SET_SEC_PARMS
        uv(u::SSC, 0),
        uv(u::FAULT, 0),
        18 + 2, // UV refusal of SET_SEC_PARMS
        uv(u::SSC, 0),
        uv(u::SSC, 0),
        uv(u::FAULT, 0),
        3, // EINTR on UNPACK: the component is not unpacked
        uv(u::UNPACK, 0),
        uv(u::UNPACK, 0),
        uv(u::UNPACK, 1),
        uv(u::UNPACK, 2),
        uv(u::FAULT, 0),
        18 + 4, // VERIFY refused by the UV: still in the parameters phase
        uv(u::VERIFY, 0),
        uv(u::VERIFY, 0),
        uv(u::FAULT, 0),
        9 + 1, // DISABLE fails: the configuration stays
        uv(u::DISABLE, 0),
        uv(u::DISABLE, 0),
    ];
    let uv_dump_refused = [
        uv(u::ENABLE, 0),
        uv(u::SSC, 0),
        uv(u::UNPACK, 0),
        uv(u::UNPACK, 1),
        uv(u::UNPACK, 2),
        uv(u::VERIFY, 0),
        uv(u::INFO, 1),
        uv(u::DUMP_INIT, 0),
        uv(u::DUMP_CPU, 0),
        uv(u::DUMP_STOR, 0),
        uv(u::DUMP_COMPLETE, 0),
    ];
    let be_full = [
        be(b::KVM_INIT, 0),
        be(b::CREATE_VCPU, 0),
        be(b::SET_VCPU_STATE, 0),
        be(b::LAUNCH_UPDATE, 0),
        0x11, // normal pages at 0x2_0000, one page
        be(b::FINALIZE, 0),
        be(b::SET_PV_IPLB, 0),
        be(b::PROTECT, 0),
        be(b::START_IPL_CPU, 0),
        be(b::DUMP, 1),
        be(b::MACHINE_RESET, 1),
        be(b::MACHINE_RESET, 2),
        be(b::DUMP, 2),
        be(b::MACHINE_RESET, 0),
        // The UV cleared the decrypted components: VERIFY fails, the guest is unprotected again.
        be(b::PROTECT, 0),
        be(b::RESET, 0),
        be(b::UNPROTECT, 0),
    ];
    let be_illegal = [
        be(b::PROTECT, 0),
        be(b::DUMP, 0),
        be(b::START_IPL_CPU, 0),
        be(b::FINALIZE, 0),
        be(b::RESET, 0),
        be(b::CREATE_VCPU, 0),
        be(b::SET_VCPU_STATE, 0),
        be(b::LAUNCH_UPDATE, 0),
        0x10,
        be(b::KVM_INIT, 0),
        be(b::KVM_INIT, 0),
        be(b::FINALIZE, 0),
        be(b::PROTECT, 0),
        be(b::SET_PV_IPLB, 2),
        be(b::SET_PV_IPLB, 3),
        be(b::PROTECT, 0),
        be(b::LAUNCH_UPDATE, 0),
        0x01, // zero length
        be(b::LAUNCH_UPDATE, 0),
        0x1f, // beyond memory
        be(b::LAUNCH_UPDATE, 0),
        0x91, // VMSA
        be(b::LAUNCH_UPDATE, 0),
        0xd1, // secrets page
        be(b::CREATE_VCPU, 1),
        be(b::CREATE_VCPU, 1),
        be(b::SET_VCPU_STATE, 1),
        be(b::SET_VCPU_STATE, 0),
        be(b::FINALIZE, 0),
        be(b::SET_PV_IPLB, 1),
        be(b::PROTECT, 0),
        be(b::SET_PV_IPLB, 0),
        be(b::PROTECT, 0),
        be(b::PROTECT, 0),
        be(b::SET_VCPU_STATE, 0),
        be(b::FINALIZE, 0),
        be(b::UNPROTECT, 0),
        be(b::UNPROTECT, 0),
    ];
    let be_faults = [
        be(b::KVM_INIT, 0),
        be(b::SET_PV_IPLB, 0),
        be(b::FAULT, 0),
        0, // EINTR on ENABLE: retried
        be(b::FAULT, 0),
        18 + 4, // VERIFY refused: protect fails, DISABLE cleans up
        be(b::PROTECT, 0),
        be(b::FAULT, 0),
        18 + 2, // SET_SEC_PARMS refused ...
        be(b::FAULT, 0),
        9 + 1, // ... and DISABLE fails: the guest stays protected, unverified
        be(b::PROTECT, 0),
        be(b::START_IPL_CPU, 0),
        be(b::MACHINE_RESET, 1),
        be(b::DUMP, 0),
        be(b::PROTECT, 0),
        be(b::UNPROTECT, 0),
        be(b::UNPROTECT, 0),
    ];
    let be_dump_faults = [
        be(b::KVM_INIT, 0),
        be(b::SET_PV_IPLB, 0),
        be(b::FAULT, 0),
        7, // EINTR on INFO: retried
        be(b::PROTECT, 0),
        be(b::FAULT, 0),
        8, // EINTR on DUMP: retried
        be(b::DUMP, 1),
        be(b::FAULT, 0),
        18 + 6, // UNSHARE_ALL refused: the reset fails
        be(b::MACHINE_RESET, 1),
        be(b::DUMP, 0),
        be(b::FAULT, 0),
        18 + 8, // the UV refuses DUMP_INIT: the dump fails before it opened ...
        be(b::DUMP, 0),
        be(b::DUMP, 0), // ... so the next one works
        be(b::FAULT, 0),
        18 + 1, // DISABLE refused by the UV
        be(b::MACHINE_RESET, 0),
        be(b::MACHINE_RESET, 0),
    ];
    let be_protect = [
        be(b::KVM_INIT, 0),
        be(b::SET_PV_IPLB, 0),
        be(b::PROTECT, 0),
        be(b::DUMP, 1),
        be(b::START_IPL_CPU, 0),
    ];
    vec![
        (seed(none, &uv_full), reached(1, 1, 1)),
        (seed(none, &uv_illegal), reached(0, 0, 24)),
        (seed(none, &uv_faults), reached(1, 0, 6)),
        (
            seed(
                Flags {
                    sealed: true,
                    ..none
                },
                &uv_dump_refused,
            ),
            reached(1, 0, 4),
        ),
        (
            seed(
                Flags {
                    no_dump: true,
                    ..none
                },
                &uv_dump_refused,
            ),
            reached(1, 0, 5),
        ),
        (
            seed(
                Flags {
                    no_protected: true,
                    ..none
                },
                &uv_full,
            ),
            reached(0, 0, 22),
        ),
        (seed(backend, &be_full), reached(1, 2, 1)),
        (seed(backend, &be_illegal), reached(1, 0, 24)),
        (seed(backend, &be_faults), reached(0, 0, 6)),
        (seed(backend, &be_dump_faults), reached(1, 3, 3)),
        (
            seed(
                Flags {
                    sealed: true,
                    ..backend
                },
                &be_protect,
            ),
            reached(1, 0, 1),
        ),
        (
            seed(
                Flags {
                    no_dump: true,
                    ..backend
                },
                &be_protect,
            ),
            reached(1, 0, 1),
        ),
        (
            seed(
                Flags {
                    too_many_cpus: true,
                    ..backend
                },
                &be_protect,
            ),
            reached(0, 0, 4),
        ),
        (
            seed(
                Flags {
                    no_unpack: true,
                    ..backend
                },
                &be_protect,
            ),
            reached(0, 0, 4),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        for b in 0..64u8 {
            assert_eq!(Flags::new(b).byte(), b);
        }
    }

    #[test]
    fn seeds_reach_what_they_claim_and_match_the_corpus() {
        // CGS_WRITE_CORPUS=1 regenerates fuzz/corpus/s390pv_lifecycle from this encoder.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/s390pv_lifecycle");
        let write = std::env::var("CGS_WRITE_CORPUS").is_ok_and(|v| v == "1");
        let kvm = cgs_core::testing::kvm_or_skip("s390pv_lifecycle backend seeds").is_some();
        for (i, (seed, want)) in seeds_lifecycle().iter().enumerate() {
            let path = dir.join(format!("seed-{i}"));
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            assert_eq!(&std::fs::read(&path).unwrap(), seed, "{}", path.display());
            let got = run(seed);
            if Flags::new(seed[0]).backend && !kvm {
                continue;
            }
            assert_eq!(got, *want, "seed {i}");
        }
    }
}
