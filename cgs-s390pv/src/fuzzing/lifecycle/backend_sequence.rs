//! The backend layer of `s390pv_lifecycle`: [`S390PvGuest`] over the simulator, driven through
//! cgs-core's [`Lifecycle`] and the PV entry points a VMM calls, in any order, each call checked
//! against the [`UvModel`] plus a model of the lifecycle and the backend.
//!
//! # Why one shared VM
//!
//! The hooks take kvm-ioctls' [`VmFd`](kvm_ioctls::VmFd) and [`Lifecycle::create_vcpu`] really creates vCPUs, so
//! this layer needs `/dev/kvm`. The backend over the simulator never issues an ioctl on the VM or
//! its vCPUs, so one VM (opened once) serves every input, as in `pef_lifecycle`: each input's
//! vCPUs get KVM ids no earlier input used (the VM is replaced when they run out) and an input
//! creates at most [`MAX_VCPUS`] of them (each costs up to a millisecond). `start_ipl_cpu` and
//! `dump` take a vCPU of another VM, which the simulator does not look at either.

use std::sync::{Mutex, OnceLock};

use cgs_core::fuzzing::expect_outcome;
use cgs_core::testing::SharedVm;
use kvm_ioctls::VcpuFd;
use vm_memory::{GuestAddress, GuestMemoryBackend};

use cgs_core::config::S390PvGuestConfig;
use cgs_core::{validate_region, Error, Lifecycle, PageType, RunGuard, State};

use super::fixture::{fixture, FOREIGN_HEADER_GPA, MEM_SIZE};
use super::model::{Header, Outcome, UvModel};
use super::{check_uv_state, fault_op, Flags, Reached, MAX_OPS};
use crate::ipl::{IplError, PvIplBlock, DIAG_308_RC_INVAL_FOR_PV};
use crate::uapi;
use crate::{MachineSpec, ResetKind, S390PvGuest, SimUltravisor};

/// At most this many vCPUs reach KVM per input.
pub const MAX_VCPUS: usize = 2;
/// vCPU ids an input chooses from (one more than [`MAX_VCPUS`]).
pub const VCPU_IDS: u64 = 3;
/// The machine's CPUs when [`Flags::too_many_cpus`] is set (a PV guest may have 247).
const TOO_MANY_CPUS: u32 = 300;

/// Operations of the backend layer: `byte % COUNT`; `byte / COUNT` is the argument.
pub mod op {
    /// `Lifecycle::kvm_init`.
    pub const KVM_INIT: u8 = 0;
    /// `Lifecycle::create_vcpu` with id `arg % 3`.
    pub const CREATE_VCPU: u8 = 1;
    /// `Lifecycle::set_vcpu_state` for index `arg % 3`.
    pub const SET_VCPU_STATE: u8 = 2;
    /// `Lifecycle::finalize`.
    pub const FINALIZE: u8 = 3;
    /// `Lifecycle::launch_update_memory`; the next byte `e` chooses the region: gpa
    /// `(e & 15) · 128 KiB`, `(e >> 4 & 3)` pages, page type normal/zero/VMSA/secrets by `e >> 6`.
    pub const LAUNCH_UPDATE: u8 = 4;
    /// diag 308 subcode 8 (`set_pv_iplb`), `arg % 4`: the image's block, one naming the foreign
    /// header, one naming a header outside guest memory, a truncated block.
    pub const SET_PV_IPLB: u8 = 5;
    /// diag 308 subcode 10 (`protect`).
    pub const PROTECT: u8 = 6;
    /// `machine_reset`, `arg % 3`: re-IPL, modified clear, load normal.
    pub const MACHINE_RESET: u8 = 7;
    /// `start_ipl_cpu`.
    pub const START_IPL_CPU: u8 = 8;
    /// `dump` of `arg % 3` vCPUs.
    pub const DUMP: u8 = 9;
    /// `unprotect`.
    pub const UNPROTECT: u8 = 10;
    /// `Lifecycle::reset`.
    pub const RESET: u8 = 11;
    /// Inject a fault; the next byte chooses it (see `fault_op`).
    pub const FAULT: u8 = 12;
    /// Number of operations.
    pub const COUNT: u8 = 13;
}

/// The shared KVM VM (see the module documentation).
type Host = SharedVm;

fn host() -> Option<&'static Mutex<Host>> {
    static HOST: OnceLock<Option<Mutex<Host>>> = OnceLock::new();
    HOST.get_or_init(|| {
        SharedVm::open("s390pv_lifecycle fuzz target (backend layer)").map(Mutex::new)
    })
    .as_ref()
}

/// What a call must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Ok,
    InvalidState,
    InvalidInput,
    Unsupported,
    Backend,
    Kvm,
    Firmware,
    /// Any other error class (never right).
    Other,
}

fn class(e: &Error) -> Want {
    match e {
        Error::InvalidState { .. } => Want::InvalidState,
        Error::InvalidInput { .. } => Want::InvalidInput,
        Error::Unsupported { .. } => Want::Unsupported,
        Error::Backend { .. } => Want::Backend,
        Error::Kvm { .. } => Want::Kvm,
        Error::Firmware { .. } => Want::Firmware,
        _ => Want::Other,
    }
}

fn outcome<T>(r: &cgs_core::Result<T>) -> Want {
    r.as_ref().err().map_or(Want::Ok, class)
}

/// The model of the lifecycle and the backend around the [`UvModel`].
#[derive(Debug)]
struct Model {
    uv: UvModel,
    state: State,
    /// What `kvm_init` returns on this host and machine (in state `New`).
    kvm_init: Want,
    /// KVM ids of the created vCPUs and whether their state was set.
    vcpus: Vec<(u64, bool)>,
    /// The accepted PV IPL block (which header it names).
    iplb: Option<Header>,
    protected: bool,
    /// The backend kept the SE header (a successful protect, not yet undone).
    header: bool,
    /// `KVM_PV_INFO_DUMP` succeeded once.
    info_dump: bool,
}

/// One command through the backend's retrying path: `EINTR` is issued again, a UV refusal is
/// `Error::Firmware`, a KVM failure `Error::Kvm`.
fn issue(uv: &mut UvModel, mut cmd: impl FnMut(&mut UvModel) -> Outcome) -> Result<(), Want> {
    loop {
        match cmd(uv) {
            Outcome::Ok => return Ok(()),
            Outcome::Interrupted => continue,
            Outcome::Fail { uv_ran: true } => return Err(Want::Firmware),
            Outcome::Fail { uv_ran: false } => return Err(Want::Kvm),
        }
    }
}

fn result(r: Result<(), Want>) -> Want {
    r.err().unwrap_or(Want::Ok)
}

impl Model {
    /// `protect`: what it returns, the PV command its diag 308 response names (0: none ran)
    /// and the failed command's own error class.
    fn protect(&mut self) -> (Want, u32, Want) {
        if self.protected {
            return (Want::InvalidInput, 0, Want::InvalidInput);
        }
        if self.state == State::New {
            return (Want::Unsupported, 0, Want::Unsupported);
        }
        let Some(header) = self.iplb else {
            return (Want::InvalidInput, 0, Want::InvalidInput);
        };
        if let Err(w) = issue(&mut self.uv, UvModel::enable) {
            return (w, uapi::KVM_PV_ENABLE, w);
        }
        self.protected = true;
        match self.protect_steps(header) {
            Ok(()) => {
                self.header = true;
                (Want::Ok, 0, Want::Ok)
            }
            Err((w, cmd)) => match issue(&mut self.uv, UvModel::disable) {
                Ok(()) => {
                    self.protected = false;
                    (w, cmd, w)
                }
                Err(_) => (Want::Backend, cmd, w),
            },
        }
    }

    fn protect_steps(&mut self, header: Header) -> Result<(), (Want, u32)> {
        let uv = &mut self.uv;
        if uv.dump_support {
            let info = |w| (w, uapi::KVM_PV_INFO);
            issue(uv, |u| u.info(false)).map_err(info)?;
            issue(uv, |u| u.info(true)).map_err(info)?;
            self.info_dump = true;
        }
        issue(uv, |u| u.set_sec_parms(header)).map_err(|w| (w, uapi::KVM_PV_SET_SEC_PARMS))?;
        for i in 0..super::model::COMPONENTS {
            issue(uv, |u| u.unpack(i)).map_err(|w| (w, uapi::KVM_PV_UNPACK))?;
        }
        issue(uv, UvModel::verify).map_err(|w| (w, uapi::KVM_PV_VERIFY))
    }

    fn unprotect(&mut self) -> Want {
        if !self.protected {
            return Want::Ok;
        }
        let r = issue(&mut self.uv, UvModel::disable);
        if r.is_ok() {
            self.protected = false;
            self.header = false;
        }
        result(r)
    }

    fn machine_reset(&mut self, kind: ResetKind) -> Want {
        if !self.protected {
            return Want::Ok;
        }
        if kind == ResetKind::ReIpl {
            return self.unprotect();
        }
        let uv = &mut self.uv;
        result(
            issue(uv, |u| u.reset(uapi::KVM_PV_UNSHARE_ALL))
                .and_then(|()| issue(uv, |u| u.reset(uapi::KVM_PV_PREP_RESET))),
        )
    }

    fn start_ipl_cpu(&mut self) -> Want {
        if !self.protected {
            return Want::InvalidInput;
        }
        let uv = &mut self.uv;
        result(issue(uv, UvModel::cpu_load).and_then(|()| issue(uv, UvModel::cpu_operating)))
    }

    fn dump(&mut self, vcpus: usize) -> Want {
        if !self.protected {
            return Want::InvalidInput;
        }
        if !self.info_dump {
            return Want::Unsupported;
        }
        let uv = &mut self.uv;
        if let Err(w) = issue(uv, UvModel::dump_init) {
            return if self.header && !uv.dump_allowed {
                Want::Backend
            } else {
                w
            };
        }
        let rest = (0..vcpus)
            .try_for_each(|_| issue(uv, UvModel::dump_cpu))
            .and_then(|()| issue(uv, |u| u.dump_more(false)))
            .and_then(|()| issue(uv, |u| u.dump_more(true)));
        result(rest)
    }
}

/// Page type chosen by two bits.
fn page_type(bits: u8) -> PageType {
    match bits & 3 {
        0 => PageType::Normal,
        1 => PageType::Zero,
        2 => PageType::Vmsa,
        _ => PageType::Secrets,
    }
}

/// Run the backend layer over `ops` (after the flags byte). Without `/dev/kvm` it does nothing.
#[allow(clippy::panic)]
pub fn run(flags: Flags, ops: &[u8]) -> Reached {
    let mut reached = Reached::default();
    let Some(host) = host() else {
        return reached;
    };
    let mut host = match host.lock() {
        Ok(h) => h,
        // A panic in an earlier input poisoned the lock; the Host itself is still whole.
        Err(poisoned) => poisoned.into_inner(),
    };
    let f = fixture();
    let image = if flags.sealed { &f.sealed } else { &f.dumpable };
    let Some(mem) = f.memory(image) else {
        return reached;
    };
    let id_base = host.fresh_ids(VCPU_IDS);
    let host: &mut Host = &mut host;
    let sim = SimUltravisor::new(mem.clone(), flags.sim_config(&f.config));
    let max_cpus = if flags.too_many_cpus {
        TOO_MANY_CPUS
    } else {
        MAX_VCPUS as u32
    };
    let backend = match S390PvGuest::new(
        S390PvGuestConfig::new("pv0"),
        sim.clone(),
        MachineSpec::new(max_cpus, MEM_SIZE as u64),
    ) {
        Ok(b) => b,
        Err(e) => panic!("backend: {e}"),
    };
    let mut guest = Lifecycle::new(backend);
    let early_guard: RunGuard = guest.run_guard();
    let mut vcpus: Vec<VcpuFd> = Vec::new();

    // The blocks diag 308 subcode 8 may receive.
    let good = image.ipib.clone();
    let foreign = PvIplBlock {
        pv_header_addr: FOREIGN_HEADER_GPA,
        pv_header_size: f.foreign_header.len() as u64,
        ..good.clone()
    };
    let outside = PvIplBlock {
        pv_header_addr: MEM_SIZE as u64,
        ..good.clone()
    };
    let good_bytes = good.encode();
    let truncated = &good_bytes[..good_bytes.len() - 1];

    let kvm_init = if flags.no_protected || flags.no_unpack {
        Want::Unsupported
    } else if flags.too_many_cpus {
        Want::InvalidInput
    } else {
        Want::Ok
    };
    let mut m = Model {
        uv: UvModel::new(
            flags.protected_support(),
            flags.dump_support(),
            !flags.sealed,
            f.pages(),
        ),
        state: State::New,
        kvm_init,
        vcpus: Vec::new(),
        iplb: None,
        protected: false,
        header: false,
        info_dump: false,
    };
    let comps = &image.ipib.components;

    let mut bytes = ops.iter().copied();
    let mut step = 0;
    while let Some(byte) = bytes.next() {
        if step == MAX_OPS {
            break;
        }
        step += 1;
        let arg = byte / op::COUNT;
        let (name, got, want, err): (&str, Want, Want, Option<Error>) = match byte % op::COUNT {
            op::KVM_INIT => {
                let r = guest.kvm_init(&host.kvm, &host.vm);
                let want = if m.state != State::New {
                    Want::InvalidState
                } else {
                    m.kvm_init
                };
                if want == Want::Ok {
                    m.state = State::Launching;
                }
                ("kvm_init", outcome(&r), want, r.err())
            }
            op::CREATE_VCPU => {
                let id = id_base + u64::from(arg) % VCPU_IDS;
                let dup = m.vcpus.iter().any(|v| v.0 == id);
                if m.state == State::Launching && !dup && m.vcpus.len() >= MAX_VCPUS {
                    // Would reach KVM once more than an input may (see the module docs).
                    continue;
                }
                let r = guest.create_vcpu(&host.vm, id).map(|v| vcpus.push(v));
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else if dup {
                    Want::InvalidInput
                } else {
                    m.vcpus.push((id, false));
                    Want::Ok
                };
                ("create_vcpu", outcome(&r), want, r.err())
            }
            op::SET_VCPU_STATE => {
                let index = usize::from(arg) % (MAX_VCPUS + 1);
                let vcpu = vcpus.get(index).unwrap_or(&host.stray);
                let r = guest.set_vcpu_state(&host.vm, index, vcpu);
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else {
                    match m.vcpus.get_mut(index) {
                        Some(v) if !v.1 => {
                            v.1 = true;
                            Want::Ok
                        }
                        _ => Want::InvalidInput,
                    }
                };
                ("set_vcpu_state", outcome(&r), want, r.err())
            }
            op::FINALIZE => {
                let r = guest.finalize(&host.vm);
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else if m.vcpus.is_empty() || m.vcpus.iter().any(|v| !v.1) {
                    Want::InvalidInput
                } else {
                    m.state = State::Ready;
                    Want::Ok
                };
                ("finalize", outcome(&r), want, r.err())
            }
            op::LAUNCH_UPDATE => {
                let Some(e) = bytes.next() else {
                    break;
                };
                let gpa = u64::from(e & 0x0f) * 0x2_0000;
                let len = usize::from(e >> 4 & 3) * 0x1000;
                let pt = page_type(e >> 6);
                let r = guest.launch_update_memory(&host.vm, &mem, GuestAddress(gpa), len, pt);
                let want = if m.state != State::Launching {
                    Want::InvalidState
                } else if pt == PageType::Normal
                    && validate_region(gpa, len as u64, pt).is_ok()
                    && mem.check_range(GuestAddress(gpa), len)
                {
                    Want::Ok
                } else {
                    Want::InvalidInput
                };
                ("launch_update_memory", outcome(&r), want, r.err())
            }
            op::SET_PV_IPLB => {
                let (block, accepted) = match arg % 4 {
                    0 => (good_bytes.clone(), Some(Header::Good)),
                    1 => (foreign.encode(), Some(Header::Foreign)),
                    2 => (outside.encode(), None),
                    _ => (truncated.to_vec(), None),
                };
                let r = guest.backend_mut().set_pv_iplb(&block, &mem);
                if arg % 4 == 2 && !matches!(r, Err(IplError::HeaderNotInMemory { .. })) {
                    panic!("step {step}: set_pv_iplb of a block outside memory: {r:?}");
                }
                let want = match accepted {
                    Some(h) => {
                        m.iplb = Some(h);
                        Want::Ok
                    }
                    None => Want::InvalidInput,
                };
                let got = if r.is_ok() {
                    Want::Ok
                } else {
                    Want::InvalidInput
                };
                ("set_pv_iplb", got, want, None)
            }
            op::PROTECT => {
                let r = guest.backend_mut().protect(&host.vm, &mem);
                let (want, pv_cmd, failed) = m.protect();
                if want == Want::Ok {
                    reached.verified += 1;
                }
                if let Err(e) = &r {
                    let resp = e.response;
                    let consistent = resp.pv_cmd == pv_cmd as u16
                        && (pv_cmd == 0
                            || (resp.diag_rc == DIAG_308_RC_INVAL_FOR_PV
                                && (resp.rc != 0) == (failed == Want::Firmware)));
                    if !consistent {
                        panic!("step {step}: protect: diag 308 response {resp:?}, the model wants PV command {pv_cmd} failing with {failed:?}");
                    }
                }
                let r = r.map_err(Error::from);
                ("protect", outcome(&r), want, r.err())
            }
            op::MACHINE_RESET => {
                let kind = [
                    ResetKind::ReIpl,
                    ResetKind::ModifiedClear,
                    ResetKind::LoadNormal,
                ][usize::from(arg) % 3];
                let r = guest.backend_mut().machine_reset(&host.vm, kind);
                ("machine_reset", outcome(&r), m.machine_reset(kind), r.err())
            }
            op::START_IPL_CPU => {
                let r = guest.backend_mut().start_ipl_cpu(&host.stray);
                ("start_ipl_cpu", outcome(&r), m.start_ipl_cpu(), r.err())
            }
            op::DUMP => {
                let n = usize::from(arg) % 3;
                let stray = vec![&host.stray; n];
                let r = guest.backend_mut().dump(&host.vm, &stray);
                let want = m.dump(n);
                if let Ok(d) = &r {
                    reached.dumps += 1;
                    let info = f.config.info_dump;
                    let sizes = d.cpus.len() == n
                        && d.cpus.iter().all(|c| c.len() as u64 == info.cpu_buffer_len)
                        && d.storage_state.len() as u64 == info.config_mem_buffer_per_1m
                        && d.completion.len() as u64 == info.config_finalize_len;
                    // The storage state has one byte per page of the first MiB: 1 if secure.
                    let secure: usize = d.storage_state.iter().map(|&b| usize::from(b)).sum();
                    let comps_secure = comps.iter().enumerate().all(|(i, c)| {
                        let page = (c.addr / 4096) as usize;
                        d.storage_state.get(page) == Some(&u8::from(m.uv.secure[i]))
                    });
                    if !sizes || secure != m.uv.secure_pages() || !comps_secure {
                        panic!("step {step}: dump output disagrees with the model {m:?}");
                    }
                }
                ("dump", outcome(&r), want, r.err())
            }
            op::UNPROTECT => {
                let r = guest.backend_mut().unprotect(&host.vm);
                ("unprotect", outcome(&r), m.unprotect(), r.err())
            }
            op::RESET => {
                let r = guest.reset(&host.vm);
                let want = if m.state != State::Ready {
                    Want::InvalidState
                } else {
                    m.unprotect()
                };
                ("reset", outcome(&r), want, r.err())
            }
            _ => {
                let Some(n) = bytes.next() else {
                    break;
                };
                let (cmd, fault, model_fault) = fault_op(n);
                sim.inject(cmd, fault);
                m.uv.inject(cmd, model_fault);
                ("inject", Want::Ok, Want::Ok, None)
            }
        };
        expect_outcome(step, name, got, want, err.as_ref());
        if want != Want::Ok {
            reached.refused += 1;
        }
        check_uv_state(step, name, &sim, &m.uv, comps);
        let backend = guest.backend();
        let ready = m.state == State::Ready;
        let iplb = match m.iplb {
            None => None,
            Some(Header::Good) => Some(&good),
            Some(_) => Some(&foreign),
        };
        let facts = [
            ("lifecycle state", guest.state() == m.state),
            ("ensure_ready", guest.ensure_ready().is_ok() == ready),
            (
                "early run guard",
                early_guard.ensure_ready().is_ok() == ready,
            ),
            ("protected", backend.is_protected() == m.protected),
            ("configuration exists", sim.phase().is_some() == m.protected),
            (
                "migration blocker",
                guest.migration_blocker().is_some() == m.protected,
            ),
            (
                "RAM discard disabled",
                guest.device_requirements().disable_ram_discard == m.protected,
            ),
            ("PV IPL block", backend.pv_iplb() == iplb),
            ("dump sizes", backend.info_dump().is_some() == m.info_dump),
            ("vCPUs", guest.vcpu_count() == m.vcpus.len()),
        ];
        if let Some((what, _)) = facts.iter().find(|(_, ok)| !ok) {
            panic!("step {step} ({name}): {what} disagrees with the model {m:?}");
        }
    }
    reached
}
