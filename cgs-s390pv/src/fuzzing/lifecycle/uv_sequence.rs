//! The UV layer of `s390pv_lifecycle`: raw PV commands, in any order and with bad arguments,
//! issued to the simulator directly (what a VMM could send through `KVM_S390_PV_COMMAND`),
//! each checked against the [`UvModel`].

use super::fixture::{fixture, MEM_SIZE};
use super::model::{Header, Outcome, UvModel};
use super::{check_uv_state, fault_op, Flags, Reached, MAX_OPS};
use crate::uv::sim::SimUltravisor;
use crate::uv::{CpuState, PvCommand, PvOutcome};

/// Operations of the UV layer: `byte % COUNT`; `byte / COUNT` is the argument.
pub mod op {
    /// `KVM_PV_ENABLE`.
    pub const ENABLE: u8 = 0;
    /// `KVM_PV_DISABLE`.
    pub const DISABLE: u8 = 1;
    /// `KVM_PV_SET_SEC_PARMS` with the image's header.
    pub const SSC: u8 = 2;
    /// `KVM_PV_SET_SEC_PARMS` with a header for another host.
    pub const SSC_FOREIGN: u8 = 3;
    /// `KVM_PV_SET_SEC_PARMS` with a prefix of the header (`arg`/15 of it).
    pub const SSC_TRUNCATED: u8 = 4;
    /// `KVM_PV_UNPACK` of component `arg % 3`.
    pub const UNPACK: u8 = 5;
    /// `KVM_PV_UNPACK` with bad arguments (`arg % 5`: misaligned, empty, partial page,
    /// wrapping, outside memory).
    pub const UNPACK_BAD: u8 = 6;
    /// `KVM_PV_VERIFY`.
    pub const VERIFY: u8 = 7;
    /// `KVM_PV_PREP_RESET` (even `arg`) or `KVM_PV_UNSHARE_ALL`.
    pub const RESET: u8 = 8;
    /// `KVM_PV_INFO` (VM for even `arg`, dump sizes otherwise).
    pub const INFO: u8 = 9;
    /// `KVM_PV_DUMP_INIT`.
    pub const DUMP_INIT: u8 = 10;
    /// `KVM_PV_DUMP_CPU`.
    pub const DUMP_CPU: u8 = 11;
    /// `KVM_PV_DUMP_CONFIG_STOR_STATE` of the first MiB.
    pub const DUMP_STOR: u8 = 12;
    /// `KVM_PV_DUMP_COMPLETE`.
    pub const DUMP_COMPLETE: u8 = 13;
    /// `KVM_SET_MP_STATE` LOAD.
    pub const CPU_LOAD: u8 = 14;
    /// `KVM_SET_MP_STATE` OPERATING.
    pub const CPU_OPERATING: u8 = 15;
    /// Inject a fault; the next byte chooses it (see `fault_op`).
    pub const FAULT: u8 = 16;
    /// Number of operations.
    pub const COUNT: u8 = 17;
}

/// Bad UNPACK arguments: (address, size, whether the shape is valid).
fn bad_unpack(variant: u8, first: u64) -> (u64, u64, bool) {
    match variant % 5 {
        0 => (first + 1, 4096, false),
        1 => (first, 0, false),
        2 => (first, 100, false),
        3 => (!0xfff, 0x2000, false),
        _ => (MEM_SIZE as u64, 0x1000, true),
    }
}

/// Run the UV layer over `ops` (after the flags byte).
#[allow(clippy::panic)]
pub fn run(flags: Flags, ops: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let f = fixture();
    let image = if flags.sealed { &f.sealed } else { &f.dumpable };
    let Some(mem) = f.memory(image) else {
        return reached;
    };
    let sim = SimUltravisor::new(mem, flags.sim_config(&f.config));
    let comps = &image.ipib.components;
    let mut m = UvModel::new(
        flags.protected_support(),
        flags.dump_support(),
        !flags.sealed,
        f.pages(),
    );
    let mut bytes = ops.iter().copied();
    let mut step = 0;
    while let Some(b) = bytes.next() {
        if step == MAX_OPS {
            break;
        }
        step += 1;
        let arg = b / op::COUNT;
        let (name, got, want): (&str, PvOutcome, Outcome) = match b % op::COUNT {
            op::ENABLE => ("enable", sim.execute(PvCommand::Enable), m.enable()),
            op::DISABLE => ("disable", sim.execute(PvCommand::Disable), m.disable()),
            op::SSC => (
                "ssc",
                sim.execute(PvCommand::SetSecParms {
                    header: &image.header,
                }),
                m.set_sec_parms(Header::Good),
            ),
            op::SSC_FOREIGN => (
                "ssc foreign",
                sim.execute(PvCommand::SetSecParms {
                    header: &f.foreign_header,
                }),
                m.set_sec_parms(Header::Foreign),
            ),
            op::SSC_TRUNCATED => {
                let len = image.header.len() * usize::from(arg) / 15;
                (
                    "ssc truncated",
                    sim.execute(PvCommand::SetSecParms {
                        header: &image.header[..len],
                    }),
                    m.set_sec_parms(Header::Truncated),
                )
            }
            op::UNPACK => {
                let i = usize::from(arg) % comps.len();
                let c = comps[i];
                let cmd = PvCommand::Unpack {
                    addr: c.addr,
                    size: c.unpack_size(),
                    tweak: c.tweak_pref,
                };
                ("unpack", sim.execute(cmd), m.unpack(i))
            }
            op::UNPACK_BAD => {
                let (addr, size, shape_ok) = bad_unpack(arg, comps[0].addr);
                let cmd = PvCommand::Unpack {
                    addr,
                    size,
                    tweak: comps[0].tweak_pref,
                };
                ("bad unpack", sim.execute(cmd), m.unpack_bad(shape_ok))
            }
            op::VERIFY => ("verify", sim.execute(PvCommand::Verify), m.verify()),
            op::RESET => {
                let (cmd, id) = if arg % 2 == 0 {
                    (PvCommand::PrepReset, crate::uapi::KVM_PV_PREP_RESET)
                } else {
                    (PvCommand::UnshareAll, crate::uapi::KVM_PV_UNSHARE_ALL)
                };
                ("reset", sim.execute(cmd), m.reset(id))
            }
            op::INFO => {
                let dump = arg % 2 == 1;
                let cmd = if dump {
                    PvCommand::InfoDump
                } else {
                    PvCommand::InfoVm
                };
                ("info", sim.execute(cmd), m.info(dump))
            }
            op::DUMP_INIT => ("dump init", sim.execute(PvCommand::DumpInit), m.dump_init()),
            op::DUMP_CPU => {
                let mut buf = vec![0u8; f.config.info_dump.cpu_buffer_len as usize];
                ("dump cpu", sim.execute_dump_cpu(&mut buf), m.dump_cpu())
            }
            op::DUMP_STOR => {
                let mut buf = vec![0u8; f.config.info_dump.config_mem_buffer_per_1m as usize];
                let cmd = PvCommand::DumpStorState {
                    gaddr: 0,
                    buf: &mut buf,
                };
                ("dump storage", sim.execute(cmd), m.dump_more(false))
            }
            op::DUMP_COMPLETE => {
                let mut buf = vec![0u8; f.config.info_dump.config_finalize_len as usize];
                let cmd = PvCommand::DumpComplete { buf: &mut buf };
                ("dump complete", sim.execute(cmd), m.dump_more(true))
            }
            op::CPU_LOAD => (
                "cpu load",
                sim.execute_set_cpu_state(CpuState::Load),
                m.cpu_load(),
            ),
            op::CPU_OPERATING => (
                "cpu operating",
                sim.execute_set_cpu_state(CpuState::Operating),
                m.cpu_operating(),
            ),
            _ => {
                let Some(n) = bytes.next() else {
                    break;
                };
                let (cmd, fault, model_fault) = fault_op(n);
                sim.inject(cmd, fault);
                m.inject(cmd, model_fault);
                check_uv_state(step, "inject", &sim, &m, comps);
                continue;
            }
        };
        let agrees = match want {
            Outcome::Ok => got.is_ok(),
            Outcome::Fail { uv_ran } => !got.is_ok() && (got.rc != 0) == uv_ran,
            Outcome::Interrupted => got.errno == Some(libc::EINTR) && got.rc == 0,
        };
        if !agrees {
            panic!("step {step} ({name}): simulator {got:?}, the model wants {want:?}");
        }
        match (name, want) {
            (_, Outcome::Fail { .. } | Outcome::Interrupted) => reached.refused += 1,
            ("verify", Outcome::Ok) => reached.verified += 1,
            ("dump complete", Outcome::Ok) => reached.dumps += 1,
            _ => {}
        }
        check_uv_state(step, name, &sim, &m, comps);
    }
    reached
}
