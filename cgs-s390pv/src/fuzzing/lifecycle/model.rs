//! A reference model of the simulated KVM + Ultravisor for the `s390pv_lifecycle` target:
//! which command succeeds in which state, whether a refusal came from the UV (rc ≠ 0) or from
//! KVM before any UV call (rc 0), which injected faults are still queued, and which image
//! components are secure. It is written from the documented behaviour (KVM's argument checks,
//! the UV's state checks), independently of the simulator's code, so the two can disagree.

use std::collections::{HashMap, VecDeque};

use crate::uapi;

/// Number of components in the fixture images (kernel, command line, stage 3b).
pub const COMPONENTS: usize = 3;

/// The secure configuration's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// ENABLE done.
    Created,
    /// SET_SEC_PARMS accepted.
    Params,
    /// VERIFY succeeded.
    Verified,
}

/// What one command must return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success.
    Ok,
    /// Failure; `uv_ran`: the UV refused (rc ≠ 0) rather than KVM before any UV call.
    Fail {
        /// Whether the failure carries a UV return code.
        uv_ran: bool,
    },
    /// `EINTR` (an injected interruption): nothing happened, the caller may retry.
    Interrupted,
}

const KVM_REFUSED: Outcome = Outcome::Fail { uv_ran: false };
const UV_REFUSED: Outcome = Outcome::Fail { uv_ran: true };

/// An injected fault as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFault {
    /// `EINTR` before any UV call.
    Eintr,
    /// A failure with UV return code `rc` (0: KVM failed before the UV).
    Fail {
        /// The UV return code.
        rc: u16,
    },
}

/// The SE header handed to SET_SEC_PARMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The image's own header, encrypted for the simulated host.
    Good,
    /// A well-formed header for another host (no key slot matches).
    Foreign,
    /// A prefix of the good header.
    Truncated,
}

/// The model's state.
#[derive(Debug, Clone)]
pub struct UvModel {
    /// The host has `KVM_CAP_S390_PROTECTED` (else every VM command is `EINVAL`).
    pub protected_support: bool,
    /// The host has `KVM_CAP_S390_PROTECTED_DUMP`.
    pub dump_support: bool,
    /// The image's PCF allows dumping.
    pub dump_allowed: bool,
    /// The secure configuration (`None`: none exists).
    pub phase: Option<Phase>,
    /// Components unpacked since SET_SEC_PARMS (or the last VERIFY), with whether their pages
    /// still held the image's ciphertext at the time.
    pub unpacked: Vec<(usize, bool)>,
    /// Components whose memory no longer holds the ciphertext (decrypted by an UNPACK, then
    /// possibly cleared by a destroy).
    pub touched: [bool; COMPONENTS],
    /// Components whose pages are secure in the current configuration.
    pub secure: [bool; COMPONENTS],
    /// A dump is in progress.
    pub dumping: bool,
    /// vCPUs set to LOAD in the current configuration.
    pub loaded: u32,
    /// Commands issued so far (every one reaches the simulator's call log, refused or not).
    pub calls: usize,
    /// Pages per component.
    pages: [usize; COMPONENTS],
    /// Injected faults not yet consumed, per `KVM_PV_*` command.
    faults: HashMap<u32, VecDeque<ModelFault>>,
}

impl UvModel {
    /// A host with no secure configuration; `pages` per component.
    pub fn new(
        protected_support: bool,
        dump_support: bool,
        dump_allowed: bool,
        pages: [usize; COMPONENTS],
    ) -> Self {
        UvModel {
            protected_support,
            dump_support,
            dump_allowed,
            phase: None,
            unpacked: Vec::new(),
            touched: [false; COMPONENTS],
            secure: [false; COMPONENTS],
            dumping: false,
            loaded: 0,
            calls: 0,
            pages,
            faults: HashMap::new(),
        }
    }

    /// Secure pages in the current configuration.
    pub fn secure_pages(&self) -> usize {
        (0..COMPONENTS)
            .filter(|&i| self.secure[i])
            .map(|i| self.pages[i])
            .sum()
    }

    /// Queue a fault for the next call of `cmd`.
    pub fn inject(&mut self, cmd: u32, fault: ModelFault) {
        self.faults.entry(cmd).or_default().push_back(fault);
    }

    /// What every VM command passes first: KVM refuses all of them without the capability;
    /// then an injected fault, if one is queued for `cmd`, replaces the command.
    fn gate(&mut self, cmd: u32) -> Option<Outcome> {
        self.calls += 1;
        if !self.protected_support {
            return Some(KVM_REFUSED);
        }
        match self.faults.get_mut(&cmd).and_then(|q| q.pop_front())? {
            ModelFault::Eintr => Some(Outcome::Interrupted),
            ModelFault::Fail { rc } => Some(Outcome::Fail { uv_ran: rc != 0 }),
        }
    }

    /// `KVM_PV_ENABLE`.
    pub fn enable(&mut self) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_ENABLE) {
            return o;
        }
        if self.phase.is_some() {
            return KVM_REFUSED;
        }
        self.phase = Some(Phase::Created);
        self.unpacked.clear();
        self.dumping = false;
        self.loaded = 0;
        Outcome::Ok
    }

    /// `KVM_PV_DISABLE`: the UV clears the secure pages.
    pub fn disable(&mut self) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_DISABLE) {
            return o;
        }
        if self.phase.is_none() {
            return KVM_REFUSED;
        }
        self.phase = None;
        for i in 0..COMPONENTS {
            if self.secure[i] {
                self.touched[i] = true;
            }
        }
        self.secure = [false; COMPONENTS];
        self.unpacked.clear();
        self.dumping = false;
        self.loaded = 0;
        Outcome::Ok
    }

    /// `KVM_PV_SET_SEC_PARMS` with `header`.
    pub fn set_sec_parms(&mut self, header: Header) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_SET_SEC_PARMS) {
            return o;
        }
        if self.phase.is_none() {
            return KVM_REFUSED;
        }
        if self.phase != Some(Phase::Created) || header != Header::Good {
            return UV_REFUSED;
        }
        self.phase = Some(Phase::Params);
        self.unpacked.clear();
        Outcome::Ok
    }

    /// `KVM_PV_UNPACK` of component `i`.
    pub fn unpack(&mut self, i: usize) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_UNPACK) {
            return o;
        }
        if self.phase.is_none() {
            return KVM_REFUSED;
        }
        if self.phase != Some(Phase::Params) {
            return UV_REFUSED;
        }
        self.unpacked.push((i, !self.touched[i]));
        self.touched[i] = true;
        self.secure[i] = true;
        Outcome::Ok
    }

    /// `KVM_PV_UNPACK` with bad arguments: `shape_ok` false for a misaligned, empty or wrapping
    /// range (KVM refuses it first), true for an aligned range outside guest memory (the UV's
    /// state check comes first, then KVM's `EFAULT` on the first page).
    pub fn unpack_bad(&mut self, shape_ok: bool) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_UNPACK) {
            return o;
        }
        if self.phase.is_none() || !shape_ok {
            return KVM_REFUSED;
        }
        if self.phase != Some(Phase::Params) {
            return UV_REFUSED;
        }
        KVM_REFUSED
    }

    /// `KVM_PV_VERIFY`: succeeds when exactly the image's components, in order, were unpacked
    /// from their ciphertext since SET_SEC_PARMS.
    pub fn verify(&mut self) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_VERIFY) {
            return o;
        }
        if self.phase.is_none() {
            return KVM_REFUSED;
        }
        if self.phase != Some(Phase::Params) {
            return UV_REFUSED;
        }
        let ok = self.unpacked == [(0, true), (1, true), (2, true)];
        self.unpacked.clear();
        if !ok {
            return UV_REFUSED;
        }
        self.phase = Some(Phase::Verified);
        Outcome::Ok
    }

    /// `KVM_PV_PREP_RESET` or `KVM_PV_UNSHARE_ALL` (`cmd`): only a verified configuration.
    pub fn reset(&mut self, cmd: u32) -> Outcome {
        if let Some(o) = self.gate(cmd) {
            return o;
        }
        match self.phase {
            None => KVM_REFUSED,
            Some(Phase::Verified) => Outcome::Ok,
            Some(_) => UV_REFUSED,
        }
    }

    /// `KVM_PV_INFO` (VM, or dump sizes when `dump`).
    pub fn info(&mut self, dump: bool) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_INFO) {
            return o;
        }
        if dump && !self.dump_support {
            return KVM_REFUSED;
        }
        Outcome::Ok
    }

    /// `KVM_PV_DUMP` / `DUMP_INIT`.
    pub fn dump_init(&mut self) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_DUMP) {
            return o;
        }
        if !self.dump_support || self.phase.is_none() || self.dumping {
            return KVM_REFUSED;
        }
        if self.phase != Some(Phase::Verified) || !self.dump_allowed {
            return UV_REFUSED;
        }
        self.dumping = true;
        Outcome::Ok
    }

    /// `KVM_PV_DUMP` / `CONFIG_STOR_STATE` (or `COMPLETE` when `complete`), with good buffers.
    pub fn dump_more(&mut self, complete: bool) -> Outcome {
        if let Some(o) = self.gate(uapi::KVM_PV_DUMP) {
            return o;
        }
        if !self.dump_support || self.phase.is_none() || !self.dumping {
            return KVM_REFUSED;
        }
        if complete {
            self.dumping = false;
        }
        Outcome::Ok
    }

    /// `KVM_S390_PV_CPU_COMMAND` / `KVM_PV_DUMP_CPU` with a good buffer (no fault injection on
    /// vCPU commands).
    pub fn dump_cpu(&mut self) -> Outcome {
        self.calls += 1;
        if !self.protected_support || !self.dump_support || self.phase.is_none() || !self.dumping {
            return KVM_REFUSED;
        }
        Outcome::Ok
    }

    /// `KVM_SET_MP_STATE` LOAD: KVM refuses a vCPU of a guest without a configuration
    /// (`ENXIO`), the UV one that is not verified.
    pub fn cpu_load(&mut self) -> Outcome {
        self.calls += 1;
        match self.phase {
            None => KVM_REFUSED,
            Some(Phase::Verified) => {
                self.loaded += 1;
                Outcome::Ok
            }
            Some(_) => UV_REFUSED,
        }
    }

    /// `KVM_SET_MP_STATE` OPERATING: after LOAD in a verified configuration (or on a guest
    /// without one, where it is an ordinary state change).
    pub fn cpu_operating(&mut self) -> Outcome {
        self.calls += 1;
        match self.phase {
            Some(Phase::Verified) if self.loaded > 0 => Outcome::Ok,
            None => Outcome::Ok,
            Some(_) => UV_REFUSED,
        }
    }
}
