//! Host capability probing: what this host's KVM offers confidential guests.
//!
//! [`HostCapabilities::probe`] opens `/dev/kvm`, asks for every capability a confidential-guest
//! backend depends on, creates a throw-away default VM for VM-scope questions (guest_memfd
//! flags, memory attributes, whether `KVM_MEMORY_ENCRYPT_OP` exists), and reads the SEV bits
//! from CPUID and the system-scope SEV device attribute. [`HostCapabilities::check`] then says
//! precisely what a configuration would miss on this host.
//!
//! Probing is read-only and never fails: anything that cannot be asked is reported as absent,
//! with the reason in [`HostCapabilities::kvm_error`] when `/dev/kvm` itself is missing.

use std::path::Path;

use kvm_ioctls::Kvm;
use serde::Serialize;

use crate::config::{CgsConfig, OnOffAuto};
use crate::error::{Error, Result};
use crate::uapi::{self, *};

pub use crate::uapi::KVM_CAP_VM_TYPES;

/// `KVM_X86_DEFAULT_VM`.
pub const KVM_X86_DEFAULT_VM: u64 = 0;
/// `KVM_X86_SW_PROTECTED_VM`.
pub const KVM_X86_SW_PROTECTED_VM: u64 = 1;
/// `KVM_X86_SEV_VM`.
pub const KVM_X86_SEV_VM: u64 = 2;
/// `KVM_X86_SEV_ES_VM`.
pub const KVM_X86_SEV_ES_VM: u64 = 3;
/// `KVM_X86_SNP_VM`.
pub const KVM_X86_SNP_VM: u64 = 4;
/// `KVM_X86_TDX_VM`.
pub const KVM_X86_TDX_VM: u64 = 5;

/// The name of an x86 `KVM_CREATE_VM` machine type.
pub fn vm_type_name(vm_type: u64) -> &'static str {
    match vm_type {
        KVM_X86_DEFAULT_VM => "KVM_X86_DEFAULT_VM",
        KVM_X86_SW_PROTECTED_VM => "KVM_X86_SW_PROTECTED_VM",
        KVM_X86_SEV_VM => "KVM_X86_SEV_VM",
        KVM_X86_SEV_ES_VM => "KVM_X86_SEV_ES_VM",
        KVM_X86_SNP_VM => "KVM_X86_SNP_VM",
        KVM_X86_TDX_VM => "KVM_X86_TDX_VM",
        _ => "unknown",
    }
}

/// What CPUID leaf 0x8000001F (AMD memory encryption) advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SevCpuid {
    /// EAX bit 1: SEV.
    pub sev: bool,
    /// EAX bit 3: SEV-ES.
    pub sev_es: bool,
    /// EAX bit 4: SEV-SNP.
    pub sev_snp: bool,
    /// `EBX[5:0]`: C-bit position.
    pub cbitpos: u32,
    /// `EBX[11:6]`: physical address bits lost to encryption.
    pub reduced_phys_bits: u32,
}

/// SEV support as KVM and the host expose it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SevHost {
    /// `KVM_MEMORY_ENCRYPT_OP` exists on a VM fd (it fails with `ENOTTY` when KVM has no SEV).
    pub encrypt_op: bool,
    /// `/dev/sev` exists.
    pub sev_device: bool,
    /// `KVM_X86_SEV_VMSA_FEATURES` (system-scope attribute), when KVM exposes it.
    pub vmsa_features: Option<u64>,
    /// CPUID 0x8000001F, on AMD CPUs that have the leaf.
    pub cpuid: Option<SevCpuid>,
}

/// Everything cgs asks a host before launching a confidential guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostCapabilities {
    /// The architecture this program runs on.
    pub arch: &'static str,
    /// Why `/dev/kvm` could not be used, if it could not.
    pub kvm_error: Option<String>,
    /// `KVM_GET_API_VERSION` (12).
    pub kvm_api_version: i32,
    /// `KVM_CAP_VM_TYPES` bitmap (bit n: `KVM_CREATE_VM` type n). 0 when the capability is absent
    /// (then only type 0 exists).
    pub vm_types: u64,
    /// `KVM_CAP_GUEST_MEMFD`.
    pub guest_memfd: bool,
    /// `KVM_CAP_GUEST_MEMFD_FLAGS` on a default VM (`GUEST_MEMFD_FLAG_*`).
    pub guest_memfd_flags: u64,
    /// `KVM_CAP_MEMORY_ATTRIBUTES` on a default VM (`KVM_MEMORY_ATTRIBUTE_*`).
    pub memory_attributes: u64,
    /// `KVM_CAP_USER_MEMORY2`.
    pub user_memory2: bool,
    /// `KVM_CAP_EXIT_HYPERCALL`: bitmap of hypercalls that can exit to user space.
    pub exit_hypercall: u64,
    /// `KVM_CAP_MEMORY_FAULT_INFO`.
    pub memory_fault_info: bool,
    /// `KVM_CAP_PRE_FAULT_MEMORY`.
    pub pre_fault_memory: bool,
    /// `KVM_CAP_SYS_ATTRIBUTES`.
    pub sys_attributes: bool,
    /// `KVM_CAP_VM_COPY_ENC_CONTEXT_FROM`.
    pub copy_enc_context: bool,
    /// `KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM`.
    pub move_enc_context: bool,
    /// SEV (x86 only).
    pub sev: SevHost,
    /// `KVM_CAP_S390_PROTECTED` (meaningful on s390x only).
    pub s390_protected: bool,
    /// `KVM_CAP_S390_PROTECTED_DUMP` (s390x).
    pub s390_protected_dump: bool,
    /// `KVM_CAP_S390_PROTECTED_ASYNC_DISABLE` (s390x).
    pub s390_protected_async_disable: bool,
    /// `KVM_CAP_PPC_SECURE_GUEST` (meaningful on powerpc64 only).
    pub ppc_secure_guest: bool,
}

/// One thing a configuration needs that the host lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The feature, e.g. `"KVM_X86_SNP_VM"`.
    pub feature: &'static str,
    /// Why it is needed / what was found instead.
    pub why: String,
}

impl HostCapabilities {
    /// Probe this host (never fails; see [`kvm_error`](Self::kvm_error)).
    pub fn probe() -> Self {
        let mut caps = HostCapabilities {
            arch: std::env::consts::ARCH,
            ..Default::default()
        };
        caps.sev.sev_device = Path::new("/dev/sev").exists();
        caps.sev.cpuid = sev_cpuid();
        let kvm = match Kvm::new() {
            Ok(kvm) => kvm,
            Err(e) => {
                caps.kvm_error = Some(format!("cannot open /dev/kvm: {e}"));
                return caps;
            }
        };
        caps.probe_kvm(&kvm);
        caps
    }

    /// Probe through an already open `/dev/kvm`.
    pub fn probe_with(kvm: &Kvm) -> Self {
        let mut caps = HostCapabilities {
            arch: std::env::consts::ARCH,
            ..Default::default()
        };
        caps.sev.sev_device = Path::new("/dev/sev").exists();
        caps.sev.cpuid = sev_cpuid();
        caps.probe_kvm(kvm);
        caps
    }

    fn probe_kvm(&mut self, kvm: &Kvm) {
        let cap = |c: u32| kvm.check_extension_raw(c.into()).max(0) as u64;
        self.kvm_api_version = kvm.get_api_version();
        self.vm_types = cap(KVM_CAP_VM_TYPES);
        self.guest_memfd = cap(KVM_CAP_GUEST_MEMFD) != 0;
        self.user_memory2 = cap(KVM_CAP_USER_MEMORY2) != 0;
        self.exit_hypercall = cap(KVM_CAP_EXIT_HYPERCALL);
        self.memory_fault_info = cap(KVM_CAP_MEMORY_FAULT_INFO) != 0;
        self.pre_fault_memory = cap(KVM_CAP_PRE_FAULT_MEMORY) != 0;
        self.sys_attributes = cap(KVM_CAP_SYS_ATTRIBUTES) != 0;
        self.copy_enc_context = cap(KVM_CAP_VM_COPY_ENC_CONTEXT_FROM) != 0;
        self.move_enc_context = cap(KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM) != 0;
        if cfg!(target_arch = "s390x") {
            self.s390_protected = cap(KVM_CAP_S390_PROTECTED) != 0;
            self.s390_protected_dump = cap(KVM_CAP_S390_PROTECTED_DUMP) != 0;
            self.s390_protected_async_disable = cap(KVM_CAP_S390_PROTECTED_ASYNC_DISABLE) != 0;
        }
        if cfg!(target_arch = "powerpc64") {
            self.ppc_secure_guest = cap(KVM_CAP_PPC_SECURE_GUEST) != 0;
        }
        if cfg!(target_arch = "x86_64") && self.sys_attributes {
            self.sev.vmsa_features =
                uapi::get_device_attr_u64(kvm, KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES).ok();
        }
        // VM-scope questions, on a throw-away default VM.
        if let Ok(vm) = kvm.create_vm() {
            let vm_cap = |c: u32| vm.check_extension_raw(c.into()).max(0) as u64;
            self.guest_memfd_flags = vm_cap(KVM_CAP_GUEST_MEMFD_FLAGS);
            self.memory_attributes = vm_cap(KVM_CAP_MEMORY_ATTRIBUTES);
            if cfg!(target_arch = "x86_64") {
                // SAFETY: a NULL argument is the documented probe (QEMU's sev_enabled check):
                // KVM returns ENOTTY before touching memory when it has no memory-encryption
                // support, and otherwise rejects the NULL pointer with EFAULT without writing.
                let r = unsafe { vm.encrypt_op(std::ptr::null_mut::<u8>()) };
                self.sev.encrypt_op = !matches!(r, Err(e) if e.errno() == libc::ENOTTY);
            }
        }
    }

    /// Whether `KVM_CREATE_VM` accepts machine type `vm_type`.
    pub fn supports_vm_type(&self, vm_type: u64) -> bool {
        if vm_type == 0 {
            return self.kvm_error.is_none();
        }
        vm_type < 64 && self.vm_types & (1 << vm_type) != 0
    }

    /// The VM types KVM accepts, by name.
    pub fn vm_type_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.kvm_error.is_none() {
            names.push(vm_type_name(0));
        }
        names.extend(
            (1..64)
                .filter(|t| self.vm_types & (1u64 << t) != 0)
                .map(vm_type_name),
        );
        names
    }

    /// Everything `config` needs that this host lacks (empty: the host can run it).
    pub fn check(&self, config: &CgsConfig) -> Vec<Missing> {
        let mut missing = Vec::new();
        let mut need = |ok: bool, feature: &'static str, why: String| {
            if !ok {
                missing.push(Missing { feature, why });
            }
        };
        if let Some(e) = &self.kvm_error {
            need(false, "/dev/kvm", e.clone());
            return missing;
        }
        let x86 = self.arch == "x86_64";
        match config {
            CgsConfig::SevGuest(_) | CgsConfig::SevSnpGuest(_) => {
                need(
                    x86,
                    "x86_64",
                    format!("SEV needs an x86_64 host, this is {}", self.arch),
                );
                need(
                    self.sev.encrypt_op,
                    "KVM_MEMORY_ENCRYPT_OP",
                    "KVM has no memory-encryption support (ENOTTY): SEV is not enabled in KVM"
                        .into(),
                );
                let dev = match config {
                    CgsConfig::SevGuest(c) => &c.common.sev_device,
                    CgsConfig::SevSnpGuest(c) => &c.common.sev_device,
                    _ => unreachable_device(),
                };
                need(
                    Path::new(dev).exists(),
                    "sev-device",
                    format!("{dev} does not exist (is the ccp driver loaded with SEV enabled?)"),
                );
                let cpuid = self.sev.cpuid.unwrap_or_default();
                let common = match config {
                    CgsConfig::SevGuest(c) => &c.common,
                    CgsConfig::SevSnpGuest(c) => &c.common,
                    _ => return missing,
                };
                if let Some(c) = common.cbitpos {
                    need(
                        self.sev.cpuid.is_some() && cpuid.cbitpos == c,
                        "cbitpos",
                        format!(
                            "cbitpos check failed, host '{}' requested '{c}'",
                            cpuid.cbitpos
                        ),
                    );
                }
                match config {
                    CgsConfig::SevGuest(c) => {
                        need(
                            cpuid.sev,
                            "CPUID SEV",
                            "CPUID 0x8000001F EAX[1] is clear".into(),
                        );
                        if c.is_es() {
                            need(
                                cpuid.sev_es,
                                "CPUID SEV-ES",
                                "policy asks for SEV-ES; CPUID 0x8000001F EAX[3] is clear".into(),
                            );
                        }
                        if c.legacy_vm_type == OnOffAuto::Off {
                            let t = if c.is_es() {
                                KVM_X86_SEV_ES_VM
                            } else {
                                KVM_X86_SEV_VM
                            };
                            need(
                                self.supports_vm_type(t),
                                if c.is_es() {
                                    "KVM_X86_SEV_ES_VM"
                                } else {
                                    "KVM_X86_SEV_VM"
                                },
                                format!(
                                    "legacy-vm-type=off needs it; KVM_CAP_VM_TYPES = {:#x}",
                                    self.vm_types
                                ),
                            );
                        }
                    }
                    CgsConfig::SevSnpGuest(_) => {
                        need(
                            cpuid.sev_snp,
                            "CPUID SEV-SNP",
                            "CPUID 0x8000001F EAX[4] is clear".into(),
                        );
                        need(
                            self.supports_vm_type(KVM_X86_SNP_VM),
                            "KVM_X86_SNP_VM",
                            format!("KVM_CAP_VM_TYPES = {:#x}", self.vm_types),
                        );
                        need(
                            self.guest_memfd,
                            "KVM_CAP_GUEST_MEMFD",
                            "SEV-SNP private memory lives in guest_memfd".into(),
                        );
                        need(
                            self.user_memory2,
                            "KVM_CAP_USER_MEMORY2",
                            "binding guest_memfd to memslots needs KVM_SET_USER_MEMORY_REGION2"
                                .into(),
                        );
                    }
                    _ => {}
                }
            }
            CgsConfig::S390PvGuest(_) => {
                need(
                    self.arch == "s390x",
                    "s390x",
                    format!(
                        "Protected Virtualization needs an s390x host, this is {}",
                        self.arch
                    ),
                );
                need(
                    self.s390_protected,
                    "KVM_CAP_S390_PROTECTED",
                    "KVM lacks protected virtualization support".into(),
                );
            }
            CgsConfig::PefGuest(_) => {
                need(
                    self.arch == "powerpc64",
                    "powerpc64",
                    format!("PEF needs a POWER host, this is {}", self.arch),
                );
                need(
                    self.ppc_secure_guest,
                    "KVM_CAP_PPC_SECURE_GUEST",
                    "KVM implementation does not support Secure VMs (is an ultravisor running?)"
                        .into(),
                );
            }
        }
        missing
    }

    /// [`check`](Self::check) as a `Result`: `Error::Unsupported` listing everything missing.
    pub fn ensure(&self, config: &CgsConfig) -> Result<()> {
        let missing = self.check(config);
        if missing.is_empty() {
            return Ok(());
        }
        let why = missing
            .iter()
            .map(|m| format!("{}: {}", m.feature, m.why))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::unsupported(
            format!("{} on this host", config.object_type()),
            why,
        ))
    }
}

fn unreachable_device() -> &'static String {
    static EMPTY: String = String::new();
    &EMPTY
}

#[cfg(target_arch = "x86_64")]
fn sev_cpuid() -> Option<SevCpuid> {
    use std::arch::x86_64::__cpuid;
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86_64 CPU and has no side effects.
    let (vendor, max_ext) = unsafe {
        let v = __cpuid(0);
        let e = __cpuid(0x8000_0000);
        ((v.ebx, v.edx, v.ecx), e.eax)
    };
    // "AuthenticAMD" (also reported by Hygon as "HygonGenuine", which has the same leaf).
    let amd = vendor == (0x6874_7541, 0x6974_6e65, 0x444d_4163)
        || vendor == (0x6f67_7948, 0x6e65_476e, 0x656e_6975);
    if !amd || max_ext < 0x8000_001F {
        return None;
    }
    #[allow(unused_unsafe)]
    // SAFETY: as above; the leaf exists (max_ext checked).
    let r = unsafe { __cpuid(0x8000_001F) };
    Some(SevCpuid {
        sev: r.eax & (1 << 1) != 0,
        sev_es: r.eax & (1 << 3) != 0,
        sev_snp: r.eax & (1 << 4) != 0,
        cbitpos: r.ebx & 0x3f,
        reduced_phys_bits: (r.ebx >> 6) & 0x3f,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn sev_cpuid() -> Option<SevCpuid> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostCapabilities {
        HostCapabilities {
            arch: "x86_64",
            kvm_api_version: 12,
            vm_types: 0b1,
            guest_memfd: true,
            guest_memfd_flags: 3,
            user_memory2: true,
            ..Default::default()
        }
    }

    #[test]
    fn vm_types() {
        let h = host();
        assert!(h.supports_vm_type(0));
        assert!(!h.supports_vm_type(KVM_X86_SNP_VM));
        assert!(!h.supports_vm_type(200));
        assert_eq!(h.vm_type_names(), vec!["KVM_X86_DEFAULT_VM"]);
        let mut h2 = host();
        h2.vm_types = 0b10011;
        assert_eq!(
            h2.vm_type_names(),
            vec![
                "KVM_X86_DEFAULT_VM",
                "KVM_X86_SW_PROTECTED_VM",
                "KVM_X86_SNP_VM"
            ]
        );
    }

    #[test]
    fn check_names_what_is_missing() {
        let h = host();
        let snp: CgsConfig =
            "sev-snp-guest,id=s,cbitpos=51,reduced-phys-bits=1,sev-device=/nonexistent"
                .parse()
                .unwrap();
        let features: Vec<_> = h.check(&snp).iter().map(|m| m.feature).collect();
        assert_eq!(
            features,
            vec![
                "KVM_MEMORY_ENCRYPT_OP",
                "sev-device",
                "cbitpos",
                "CPUID SEV-SNP",
                "KVM_X86_SNP_VM"
            ]
        );
        let err = h.ensure(&snp).unwrap_err().to_string();
        assert!(
            err.contains("KVM_X86_SNP_VM") && err.contains("/nonexistent"),
            "{err}"
        );

        let mut sev_host = host();
        sev_host.sev = SevHost {
            encrypt_op: true,
            sev_device: true,
            vmsa_features: Some(1),
            cpuid: Some(SevCpuid {
                sev: true,
                sev_es: true,
                sev_snp: true,
                cbitpos: 51,
                reduced_phys_bits: 1,
            }),
        };
        sev_host.vm_types = 0b11101;
        let ok: CgsConfig = "sev-snp-guest,id=s,cbitpos=51,reduced-phys-bits=1,sev-device=/"
            .parse()
            .unwrap();
        assert_eq!(sev_host.check(&ok), vec![]);
        let wrong_cbit: CgsConfig = "sev-guest,id=s,cbitpos=47,reduced-phys-bits=1,sev-device=/,legacy-vm-type=off,policy=5"
            .parse()
            .unwrap();
        let m = sev_host.check(&wrong_cbit);
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].why, "cbitpos check failed, host '51' requested '47'");

        let pef: CgsConfig = "pef-guest,id=p".parse().unwrap();
        let m = h.check(&pef);
        assert_eq!(m[0].feature, "powerpc64");
        assert!(m[1].why.contains("is an ultravisor running?"));
        let pv: CgsConfig = "s390-pv-guest,id=p".parse().unwrap();
        assert_eq!(h.check(&pv)[1].feature, "KVM_CAP_S390_PROTECTED");

        let no_kvm = HostCapabilities {
            kvm_error: Some("cannot open /dev/kvm: No such file".into()),
            ..host()
        };
        assert_eq!(no_kvm.check(&pv)[0].feature, "/dev/kvm");
    }
}
