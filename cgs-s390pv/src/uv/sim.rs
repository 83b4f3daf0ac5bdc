//! An Ultravisor simulator: KVM's PV command layer and the Ultravisor behind it, in software.
//!
//! [`SimUltravisor`] works on the VMM's real guest memory (a vm-memory [`GuestMemoryMmap`]) and
//! keeps the state a real UV keeps:
//!
//! - the secure configuration's life cycle: none → created (ENABLE) → parameters set
//!   (SET_SEC_PARMS) → unpacking → verified (VERIFY) → destroyed (DISABLE / async cleanup), with
//!   the dump sub-state; commands in the wrong state fail as KVM does (`EINVAL`, with
//!   `UVC_RC_INV_STATE` when the UV refused);
//! - SET_SEC_PARMS opens the SE header for real: it finds the key slot for its simulated host key
//!   (SHA-256 of the key's coordinates), does P-521 ECDH with the customer key, unwraps the
//!   protection key and decrypts the header with AES-256-GCM (AAD = head + key slots); a header
//!   for another host fails with rc `0x0108` rrc `0x0005` like the real UV;
//! - UNPACK checks KVM's bounds and alignment, feeds each page as received, its address and its
//!   tweak into SHA-512 page/address/tweak list digests, decrypts the page in place with
//!   AES-256-XTS (unless PCF bit 35 is set) and makes it secure; VERIFY compares the digests and
//!   the page count with the header (`0x0102` with rrc `0x1A`–`0x1D` on mismatch);
//! - secure pages cannot be read by the host ([`SimUltravisor::host_read`]); destroying the
//!   configuration clears them;
//! - dumping works only when the header's PCF allows it; the dump data are encrypted with a key
//!   derived from the customer communication key (see [`open_dump_blob`]).
//!
//! Simplifications (stated, not hidden): the real return code for a refused DUMP_INIT and for a
//! GCM authentication failure in SET_SEC_PARMS is not in our sources; the simulator answers
//! `UVC_RC_INV_STATE` (0x0003) for the former and `0x010A` rrc 0 for the latter. The formats of
//! the dump blobs are the simulator's own (the real ones are not public). A bad magic is
//! answered like an unknown header version (`0x0104`/`0x0001`). The simulator does not see vCPU
//! registers, so its CPU dump carries the secure CPU's initial PSW from the header.
//!
//! The P-521 results SET_SEC_PARMS derives from the host key (its hash, the exchange key with
//! each customer key) are cached per [`SimConfig`] and its clones, since they cost milliseconds
//! (see `derived.rs`); this changes no answer.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use p521::SecretKey;
use rand_core::OsRng;
use sha2::{Digest, Sha512};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use zeroize::Zeroizing;

use cgs_core::Result;

use derived::Derived;

use super::rc::*;
use super::CpuState;
use super::{
    AsyncPerform, HostSupport, PvCommand, PvInfoDump, PvInfoVm, PvOutcome, PvOutput, Ultravisor,
};
use crate::crypto::{self, PAGE};
use crate::se_header::{
    Pcf, SeHeader, SeHeaderError, SeSecrets, ENCRYPTED_LEN_V1, SCF_CCK_EXTENSION_SECRET,
    SCF_CCK_UPDATE_ALLOWED,
};

const EINVAL: i32 = libc::EINVAL;
const EFAULT: i32 = libc::EFAULT;
const MIB: u64 = 1 << 20;
const TWO_GIB: u64 = 2 << 30;

/// Configuration of the simulated host and Ultravisor.
#[derive(Clone)]
pub struct SimConfig {
    /// The host key the UV holds (images must have a key slot for its public key).
    pub host_key: SecretKey,
    /// What the host advertises (`KVM_CAP_S390_PROTECTED*`, unpack facility).
    pub support: HostSupport,
    /// Supported SE header versions (MSB-0 bit n ⇒ version (n+1)·0x100).
    pub supported_versions: u64,
    /// Supported plaintext control flags.
    pub supported_pcf: u64,
    /// Supported secret control flags.
    pub supported_scf: u64,
    /// Largest SE header KVM copies in (`KVM_PV_SET_SEC_PARMS`): 8 KiB before Linux 7.x.
    pub max_sec_parms_len: usize,
    /// `KVM_PV_INFO_VM` answer (max CPUs, max guests, installed calls, …).
    pub info_vm: PvInfoVm,
    /// `KVM_PV_INFO_DUMP` answer.
    pub info_dump: PvInfoDump,
    /// What SET_SEC_PARMS derived from `host_key` (shared by clones; see [`derived`]).
    derived: Derived,
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("host_key", &"<redacted>")
            .field("support", &self.support)
            .field("supported_pcf", &format_args!("{:#x}", self.supported_pcf))
            .field("max_sec_parms_len", &self.max_sec_parms_len)
            .finish_non_exhaustive()
    }
}

impl SimConfig {
    /// A fully capable host (dump, async cleanup, unpack facility) with host key `host_key`.
    pub fn new(host_key: SecretKey) -> Self {
        let mut inst = [0u64; 4];
        // QUI, INIT_UV, CREATE/DESTROY_SEC_CONF(+FAST), CPU, SSC, UNPACK, VERIFY, resets,
        // UNSHARE_ALL, DUMP_* (MSB-0 bits 0-5, 11, 13-20, 23-27).
        for bit in [
            0, 1, 2, 3, 4, 5, 11, 13, 14, 15, 16, 17, 18, 19, 20, 23, 24, 25, 26, 27,
        ] {
            inst[0] |= 1u64 << (63 - bit);
        }
        SimConfig {
            host_key,
            support: HostSupport {
                protected: true,
                dump: true,
                async_disable: true,
                unpack_facility: true,
            },
            supported_versions: 1 << 63,
            supported_pcf: (Pcf::ALLOW_DUMPING
                | Pcf::NO_COMPONENT_ENCRYPTION
                | Pcf::DEFAULT
                | Pcf::PCKMO_HMAC
                | Pcf::BACKUP_TARGET_KEYS)
                .bits(),
            supported_scf: SCF_CCK_EXTENSION_SECRET | SCF_CCK_UPDATE_ALLOWED,
            max_sec_parms_len: 2 * 4096,
            info_vm: PvInfoVm {
                inst_calls_list: inst,
                max_cpus: 248,
                max_guests: 16,
                max_guest_addr: 1 << 40,
                feature_indication: 0,
            },
            info_dump: PvInfoDump {
                cpu_buffer_len: 0x1000,
                config_mem_buffer_per_1m: 256,
                config_finalize_len: 0x100,
            },
            derived: Derived::default(),
        }
    }

    /// A fresh random host key pair with the defaults of [`new`](Self::new).
    pub fn random() -> Self {
        SimConfig::new(SecretKey::random(&mut OsRng))
    }
}

/// An injected failure for the next call(s) of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The ioctl is interrupted (`EINTR`) before any UV call.
    Eintr,
    /// The ioctl fails with `errno` and UV `rc`/`rrc`.
    Fail {
        /// The errno.
        errno: i32,
        /// UV return code.
        rc: u16,
        /// UV return reason code.
        rrc: u16,
    },
}

/// One command the simulator executed (for tests and traces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCall {
    /// The command's name (`"KVM_PV_UNPACK"`, `"KVM_PV_DUMP(INIT)"`).
    pub name: &'static str,
    /// The errno, if it failed.
    pub errno: Option<i32>,
    /// UV return code.
    pub rc: u16,
    /// UV return reason code.
    pub rrc: u16,
}

/// Where the secure configuration is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurePhase {
    /// CREATE_SEC_CONF done, no parameters yet.
    Created,
    /// SET_SEC_CONF_PARAMS accepted; UNPACK allowed.
    ParamsSet,
    /// VERIFY succeeded: the guest may run.
    Verified,
}

struct Params {
    secrets: SeSecrets,
    pcf: Pcf,
    pld: [u8; 64],
    ald: [u8; 64],
    tld: [u8; 64],
    nep: u64,
}

struct Running {
    pld: Sha512,
    ald: Sha512,
    tld: Sha512,
    count: u64,
}

impl Running {
    fn new() -> Self {
        Running {
            pld: Sha512::new(),
            ald: Sha512::new(),
            tld: Sha512::new(),
            count: 0,
        }
    }
}

struct Secure {
    handle: u64,
    phase: SecurePhase,
    params: Option<Params>,
    running: Running,
    pages: BTreeSet<u64>,
    dumping: bool,
    dump_digest: Sha512,
    cpu_dumps: u64,
    loaded_cpus: u32,
}

struct State {
    config: SimConfig,
    mem: GuestMemoryMmap,
    secure: Option<Secure>,
    set_aside: Option<Secure>,
    next_handle: u64,
    faults: HashMap<u32, VecDeque<Fault>>,
    calls: Vec<SimCall>,
}

/// The simulated KVM + Ultravisor. Cloning gives another handle to the same simulator (the
/// backend owns one, tests and the VMM keep another to look at guest memory as the host).
#[derive(Clone)]
pub struct SimUltravisor {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimUltravisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("SimUltravisor")
            .field("phase", &s.secure.as_ref().map(|c| c.phase))
            .field(
                "secure_pages",
                &s.secure.as_ref().map_or(0, |c| c.pages.len()),
            )
            .finish_non_exhaustive()
    }
}

/// A host access to secure storage (program interruption 0x3D on real hardware).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostAccessError {
    /// The page is secure: the host cannot read it.
    #[error("secure-storage access exception (PGM 0x3d) at {0:#x}: the page belongs to the secure guest")]
    SecureStorage(u64),
    /// The range is not guest memory.
    #[error("{0:#x} is not guest memory")]
    NotGuestMemory(u64),
}

fn header_error_code(e: &SeHeaderError) -> (u16, u16) {
    match e {
        SeHeaderError::Truncated { .. } => (UV_RC_SSC_HDR_ACCESS, 0),
        SeHeaderError::BadMagic(_) | SeHeaderError::UnsupportedVersion(_) => {
            (UV_RC_SSC_HDR_VERSION, 0x0001)
        }
        SeHeaderError::SizeMismatch { .. }
        | SeHeaderError::TooLarge(_)
        | SeHeaderError::Reserved(_) => (UV_RC_SSC_HDR_INVALID, 0x0031),
        SeHeaderError::NoKeySlots => (UV_RC_SSC_HDR_INVALID, 0x0040),
        SeHeaderError::EncryptedAreaSize(_) => (UV_RC_SSC_HDR_INVALID, 0x0039),
        SeHeaderError::NoPages => (UV_RC_SSC_HDR_INVALID, 0),
    }
}

impl State {
    fn mem_end(&self) -> u64 {
        self.mem
            .iter()
            .map(|r| r.start_addr().0.saturating_add(r.len()))
            .max()
            .unwrap_or(0)
    }

    fn mem_size(&self) -> u64 {
        self.mem.iter().map(|r| r.len()).sum()
    }

    fn destroy(&mut self, conf: Secure) {
        // "The UV will clear all memory when a secure VM is removed."
        let zero = [0u8; PAGE];
        for pfn in conf.pages {
            let _ = self.mem.write_slice(&zero, GuestAddress(pfn * PAGE as u64));
        }
    }

    fn set_sec_parms(&self, header: &[u8]) -> std::result::Result<Params, (u16, u16)> {
        let h = SeHeader::parse(header).map_err(|e| header_error_code(&e))?;
        let v_bit = (h.version / 0x100).saturating_sub(1);
        if v_bit >= 64 || self.config.supported_versions & (1u64 << (63 - v_bit)) == 0 {
            return Err((UV_RC_SSC_HDR_VERSION, 0x0001));
        }
        if h.pcf.bits() & !self.config.supported_pcf != 0 {
            return Err((UV_RC_SSC_PCF, 0x0030));
        }
        let phkh = self.config.derived.host_key_hash(&self.config.host_key);
        let slot = h
            .key_slots
            .iter()
            .find(|s| s.phkh == phkh)
            .ok_or((UV_RC_SSC_INVAL_HOSTKEY, 0x0005))?;
        let cust = crypto::public_key_from_coords(&h.cust_pub_key)
            .ok_or((UV_RC_SSC_INVAL_HOSTKEY, 0x000B))?;
        let xkey = self
            .config
            .derived
            .exchange_key(&self.config.host_key, &h.cust_pub_key, &cust);
        let mut prot = Zeroizing::new(slot.wrapped_key);
        if !crypto::gcm_open(&xkey, &[0u8; 12], &[], &mut prot[..], &slot.tag) {
            return Err((UV_RC_SSC_HDR_INVALID, 0));
        }
        let mut plain = Zeroizing::new([0u8; ENCRYPTED_LEN_V1]);
        plain.copy_from_slice(&h.encrypted);
        if !crypto::gcm_open(&prot, &h.iv, &header[..h.aad_len()], &mut plain[..], &h.tag) {
            return Err((UV_RC_SSC_HDR_INVALID, 0));
        }
        let secrets = SeSecrets::parse(&plain).ok_or((UV_RC_SSC_HDR_INVALID, 0x0039))?;
        if secrets.scf & !self.config.supported_scf != 0 {
            return Err((UV_RC_SSC_SCF, 0));
        }
        Ok(Params {
            secrets,
            pcf: h.pcf,
            pld: h.pld,
            ald: h.ald,
            tld: h.tld,
            nep: h.nep,
        })
    }

    fn unpack(&mut self, addr: u64, size: u64, tweak: u64) -> PvOutcome {
        let Some(conf) = self.secure.as_ref() else {
            return PvOutcome::err(EINVAL, 0, 0);
        };
        if addr % PAGE as u64 != 0 || size == 0 || size % PAGE as u64 != 0 {
            return PvOutcome::err(EINVAL, 0, 0);
        }
        if addr.checked_add(size).is_none() {
            return PvOutcome::err(EINVAL, 0, 0);
        }
        if conf.phase != SecurePhase::ParamsSet {
            return PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0);
        }
        let mut rc = 0;
        let mut offset = 0u64;
        while offset < size {
            let gaddr = addr + offset;
            let mut page = Zeroizing::new([0u8; PAGE]);
            if !self.mem.check_range(GuestAddress(gaddr), PAGE)
                || self
                    .mem
                    .read_slice(&mut page[..], GuestAddress(gaddr))
                    .is_err()
            {
                // KVM: a guest frame without memory → -EFAULT.
                return PvOutcome::err(EFAULT, rc, 0);
            }
            let t = crypto::page_tweak(tweak, offset);
            let Some(conf) = self.secure.as_mut() else {
                return PvOutcome::err(EINVAL, 0, 0);
            };
            let Some(params) = conf.params.as_ref() else {
                return PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0);
            };
            conf.running.pld.update(&page[..]);
            conf.running.ald.update(gaddr.to_be_bytes());
            conf.running.tld.update(t);
            conf.running.count += 1;
            if !params.pcf.contains(Pcf::NO_COMPONENT_ENCRYPTION) {
                crypto::xts_decrypt_page(&params.secrets.xts_key, t, &mut page[..]);
            }
            conf.pages.insert(gaddr / PAGE as u64);
            if self
                .mem
                .write_slice(&page[..], GuestAddress(gaddr))
                .is_err()
            {
                return PvOutcome::err(EFAULT, rc, 0);
            }
            rc = UVC_RC_EXECUTED;
            offset += PAGE as u64;
        }
        PvOutcome::ok(rc, 0, PvOutput::None)
    }

    fn verify(&mut self) -> PvOutcome {
        let Some(conf) = self.secure.as_mut() else {
            return PvOutcome::err(EINVAL, 0, 0);
        };
        let Some(params) = conf
            .params
            .as_ref()
            .filter(|_| conf.phase == SecurePhase::ParamsSet)
        else {
            return PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0);
        };
        let running = std::mem::replace(&mut conf.running, Running::new());
        let ald: [u8; 64] = running.ald.finalize().into();
        let pld: [u8; 64] = running.pld.finalize().into();
        let tld: [u8; 64] = running.tld.finalize().into();
        let rrc = if ald != params.ald {
            Some(RRC_ALD_MISMATCH)
        } else if pld != params.pld {
            Some(RRC_PLD_MISMATCH)
        } else if tld != params.tld {
            Some(RRC_TLD_MISMATCH)
        } else if running.count != params.nep {
            Some(RRC_NEP_MISMATCH)
        } else {
            None
        };
        match rrc {
            Some(rrc) => PvOutcome::err(EINVAL, UV_RC_VERIFY_MISMATCH, rrc),
            None => {
                conf.phase = SecurePhase::Verified;
                PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
            }
        }
    }

    fn execute(&mut self, cmd: PvCommand<'_>) -> PvOutcome {
        let id = cmd.id();
        if !self.config.support.protected {
            return PvOutcome::err(EINVAL, 0, 0);
        }
        if let Some(fault) = self.faults.get_mut(&id).and_then(|q| q.pop_front()) {
            return match fault {
                Fault::Eintr => PvOutcome::err(libc::EINTR, 0, 0),
                Fault::Fail { errno, rc, rrc } => PvOutcome::err(errno, rc, rrc),
            };
        }
        match cmd {
            PvCommand::Enable => {
                if self.secure.is_some() {
                    return PvOutcome::err(EINVAL, 0, 0);
                }
                self.next_handle += 1;
                self.secure = Some(Secure {
                    handle: self.next_handle,
                    phase: SecurePhase::Created,
                    params: None,
                    running: Running::new(),
                    pages: BTreeSet::new(),
                    dumping: false,
                    dump_digest: Sha512::new(),
                    cpu_dumps: 0,
                    loaded_cpus: 0,
                });
                PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
            }
            PvCommand::Disable => match self.secure.take() {
                None => PvOutcome::err(EINVAL, 0, 0),
                Some(conf) => {
                    self.destroy(conf);
                    PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
                }
            },
            PvCommand::SetSecParms { header } => {
                let Some(conf) = self.secure.as_ref() else {
                    return PvOutcome::err(EINVAL, 0, 0);
                };
                if header.len() > self.config.max_sec_parms_len {
                    return PvOutcome::err(EINVAL, 0, 0);
                }
                if conf.phase != SecurePhase::Created {
                    return PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0);
                }
                match self.set_sec_parms(header) {
                    Err((rc, rrc)) => PvOutcome::err(EINVAL, rc, rrc),
                    Ok(params) => {
                        if let Some(conf) = self.secure.as_mut() {
                            conf.params = Some(params);
                            conf.phase = SecurePhase::ParamsSet;
                            conf.running = Running::new();
                        }
                        PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
                    }
                }
            }
            PvCommand::Unpack { addr, size, tweak } => self.unpack(addr, size, tweak),
            PvCommand::Verify => self.verify(),
            PvCommand::PrepReset | PvCommand::UnshareAll => match self.secure.as_ref() {
                None => PvOutcome::err(EINVAL, 0, 0),
                Some(c) if c.phase != SecurePhase::Verified => {
                    PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0)
                }
                Some(_) => PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None),
            },
            PvCommand::InfoVm => PvOutcome::ok(0, 0, PvOutput::InfoVm(self.config.info_vm)),
            PvCommand::InfoDump => {
                if self.config.support.dump {
                    PvOutcome::ok(0, 0, PvOutput::InfoDump(self.config.info_dump))
                } else {
                    PvOutcome::err(EINVAL, 0, 0)
                }
            }
            PvCommand::DumpInit
            | PvCommand::DumpStorState { .. }
            | PvCommand::DumpComplete { .. } => {
                if !self.config.support.dump {
                    return PvOutcome::err(EINVAL, 0, 0);
                }
                self.dump(cmd)
            }
            PvCommand::AsyncCleanupPrepare => {
                if !self.config.support.async_disable
                    || self.set_aside.is_some()
                    || self.mem_size() <= TWO_GIB
                {
                    return PvOutcome::err(EINVAL, 0, 0);
                }
                match self.secure.take() {
                    None => PvOutcome::err(EINVAL, 0, 0),
                    Some(conf) => {
                        self.set_aside = Some(conf);
                        PvOutcome::ok(UVC_RC_EXECUTED, 42, PvOutput::None)
                    }
                }
            }
            PvCommand::AsyncCleanupPerform => {
                if !self.config.support.async_disable {
                    return PvOutcome::err(EINVAL, 0, 0);
                }
                match self.set_aside.take() {
                    None => PvOutcome::err(EINVAL, 0, 0),
                    Some(conf) => {
                        self.destroy(conf);
                        PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
                    }
                }
            }
        }
    }

    fn record(&mut self, name: &'static str, o: PvOutcome) -> PvOutcome {
        self.calls.push(SimCall {
            name,
            errno: o.errno,
            rc: o.rc,
            rrc: o.rrc,
        });
        o
    }
}

impl SimUltravisor {
    /// A simulator over the VMM's guest memory `mem` (a clone sharing the same mappings).
    pub fn new(mem: GuestMemoryMmap, config: SimConfig) -> Self {
        SimUltravisor {
            state: Arc::new(Mutex::new(State {
                config,
                mem,
                secure: None,
                set_aside: None,
                next_handle: 0,
                faults: HashMap::new(),
                calls: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Execute one VM command, as KVM + UV would (no VM fd needed).
    pub fn execute(&self, cmd: PvCommand<'_>) -> PvOutcome {
        let name = cmd.name();
        let mut s = self.lock();
        let o = s.execute(cmd);
        s.record(name, o)
    }

    /// Execute `KVM_PV_DUMP_CPU` (the vCPU is not needed by the model).
    pub fn execute_dump_cpu(&self, buf: &mut [u8]) -> PvOutcome {
        let mut s = self.lock();
        let o = if !s.config.support.protected || !s.config.support.dump {
            PvOutcome::err(EINVAL, 0, 0)
        } else {
            s.dump_cpu(buf)
        };
        s.record("KVM_PV_DUMP(CPU)", o)
    }

    /// Execute `KVM_SET_MP_STATE` on a vCPU: LOAD needs a protected, verified configuration
    /// (a non-protected vCPU gets `ENXIO`, as from KVM; before VERIFY the UV refuses with
    /// `UVC_RC_INV_STATE`, an inferred code); OPERATING follows LOAD.
    pub fn execute_set_cpu_state(&self, state: CpuState) -> PvOutcome {
        let mut s = self.lock();
        let (name, o) = match state {
            CpuState::Load => (
                "KVM_SET_MP_STATE(LOAD)",
                match s.secure.as_mut() {
                    None => PvOutcome::err(libc::ENXIO, 0, 0),
                    Some(c) if c.phase != SecurePhase::Verified => {
                        PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0)
                    }
                    Some(c) => {
                        c.loaded_cpus += 1;
                        PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
                    }
                },
            ),
            CpuState::Operating => (
                "KVM_SET_MP_STATE(OPERATING)",
                match s.secure.as_ref() {
                    Some(c) if c.phase != SecurePhase::Verified || c.loaded_cpus == 0 => {
                        PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0)
                    }
                    _ => PvOutcome::ok(0, 0, PvOutput::None),
                },
            ),
        };
        s.record(name, o)
    }

    /// How many vCPUs were loaded (`KVM_MP_STATE_LOAD`) in the current configuration.
    pub fn loaded_cpus(&self) -> u32 {
        self.lock().secure.as_ref().map_or(0, |c| c.loaded_cpus)
    }

    /// Make the next call(s) of KVM command `cmd` (`uapi::KVM_PV_*`) fail with `fault`, once per
    /// queued fault.
    pub fn inject(&self, cmd: u32, fault: Fault) {
        self.lock().faults.entry(cmd).or_default().push_back(fault);
    }

    /// Every command executed so far.
    pub fn calls(&self) -> Vec<SimCall> {
        self.lock().calls.clone()
    }

    /// The secure configuration's phase (`None`: not protected).
    pub fn phase(&self) -> Option<SecurePhase> {
        self.lock().secure.as_ref().map(|c| c.phase)
    }

    /// The current configuration handle.
    pub fn handle(&self) -> Option<u64> {
        self.lock().secure.as_ref().map(|c| c.handle)
    }

    /// Whether a configuration is set aside, waiting for `ASYNC_CLEANUP_PERFORM`.
    pub fn has_set_aside(&self) -> bool {
        self.lock().set_aside.is_some()
    }

    /// Whether a dump is in progress.
    pub fn dumping(&self) -> bool {
        self.lock().secure.as_ref().is_some_and(|c| c.dumping)
    }

    /// Number of secure pages (current and set-aside configurations).
    pub fn secure_pages(&self) -> usize {
        let s = self.lock();
        s.secure.as_ref().map_or(0, |c| c.pages.len())
            + s.set_aside.as_ref().map_or(0, |c| c.pages.len())
    }

    /// The public key of the simulated host key (what an image must be encrypted for).
    pub fn host_public_key(&self) -> p521::PublicKey {
        self.lock().config.host_key.public_key()
    }

    /// Read guest memory as the host. Secure pages are refused.
    pub fn host_read(&self, gpa: u64, buf: &mut [u8]) -> std::result::Result<(), HostAccessError> {
        let s = self.lock();
        let end = gpa
            .checked_add(buf.len() as u64)
            .ok_or(HostAccessError::NotGuestMemory(gpa))?;
        let first = gpa / PAGE as u64;
        let last = end.saturating_sub(1) / PAGE as u64;
        for conf in [s.secure.as_ref(), s.set_aside.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(p) = conf.pages.range(first..=last).next() {
                return Err(HostAccessError::SecureStorage((*p * PAGE as u64).max(gpa)));
            }
        }
        s.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(|_| HostAccessError::NotGuestMemory(gpa))
    }
}

impl Ultravisor for SimUltravisor {
    fn firmware_name(&self) -> &'static str {
        "s390 UV (simulated)"
    }

    fn host_support(&self, _kvm: &Kvm, _vm: &VmFd) -> Result<HostSupport> {
        Ok(self.lock().config.support)
    }

    fn vm_command(&mut self, _vm: &VmFd, cmd: PvCommand<'_>) -> Result<PvOutcome> {
        Ok(self.execute(cmd))
    }

    fn dump_cpu(&mut self, _vcpu: &VcpuFd, buf: &mut [u8]) -> Result<PvOutcome> {
        Ok(self.execute_dump_cpu(buf))
    }

    fn set_cpu_state(&mut self, _vcpu: &VcpuFd, state: CpuState) -> Result<PvOutcome> {
        Ok(self.execute_set_cpu_state(state))
    }

    fn async_perform(&self, _vm: &VmFd) -> Result<AsyncPerform> {
        let sim = self.clone();
        Ok(Box::new(move || {
            Ok(sim.execute(PvCommand::AsyncCleanupPerform))
        }))
    }
}

mod derived;
mod dump;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;

pub use dump::open_dump_blob;
