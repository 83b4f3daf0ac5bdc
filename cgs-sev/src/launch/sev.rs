//! The SEV and SEV-ES launch (kernel-abi.md §13, qemu-cgs.md §3.1–3.4):
//!
//! ```text
//!  New ─init─▶ Initialized ─start─▶ Updating ─(ES) update_vmsa─▶ VmsaEncrypted
//!                                     │ update_data                 │
//!                                     └──────── measure ◀───────────┘
//!                                                 ▼
//!                        Measured (inject_secret, attestation_report) ─finish─▶ Finished
//! ```
//!
//! SEV-ES must encrypt the VMSAs before measuring (they are part of the digest); after that no
//! more data can be added.

use cgs_core::{Error, Result};
use kvm_ioctls::VmFd;
use vm_memory::VolatileSlice;

use super::{check, LaunchState, SequenceError};
use crate::firmware::{Flavour, InitParams, LaunchStart, SevFirmware};
use crate::measure::vmsa::VmsaPage;
use crate::policy::SevPolicy;
use crate::session::{LaunchMeasurement, PacketHeader};

/// The guest owner's LAUNCH_START inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartParams {
    /// Handle of a guest to share keys with (0: new keys).
    pub handle: u32,
    /// The guest owner's DH certificate (`dh-cert-file`, decoded).
    pub dh_cert: Option<Vec<u8>>,
    /// The launch session blob (`session-file`, decoded).
    pub session: Option<Vec<u8>>,
}

/// An SEV or SEV-ES launch on firmware `F`.
#[derive(Debug)]
pub struct SevLauncher<F> {
    fw: F,
    flavour: Flavour,
    policy: SevPolicy,
    state: LaunchState,
    handle: Option<u32>,
    measurement: Option<LaunchMeasurement>,
}

impl<F: SevFirmware> SevLauncher<F> {
    /// A launch of a guest with `policy` (SEV-ES when the policy's ES bit is set).
    pub fn new(fw: F, policy: u32) -> Result<Self> {
        let policy = SevPolicy(policy);
        policy.validate()?;
        Ok(SevLauncher {
            fw,
            flavour: if policy.is_es() {
                Flavour::SevEs
            } else {
                Flavour::Sev
            },
            policy,
            state: LaunchState::New,
            handle: None,
            measurement: None,
        })
    }

    /// SEV or SEV-ES.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The guest policy.
    pub fn policy(&self) -> SevPolicy {
        self.policy
    }

    /// The launch state.
    pub fn state(&self) -> LaunchState {
        self.state
    }

    /// The firmware.
    pub fn firmware(&self) -> &F {
        &self.fw
    }

    /// The firmware, mutably (platform-specific calls such as the simulator's test hooks).
    pub fn firmware_mut(&mut self) -> &mut F {
        &mut self.fw
    }

    /// The firmware handle (after [`start`](Self::start)).
    pub fn handle(&self) -> Option<u32> {
        self.handle
    }

    /// The LAUNCH_MEASURE result (after [`measure`](Self::measure)).
    pub fn measurement(&self) -> Option<LaunchMeasurement> {
        self.measurement
    }

    /// INIT (legacy VM type) or INIT2 with `vmsa_features` (SEV-ES; must be 0 for SEV).
    pub fn init(&mut self, vm: &VmFd, legacy: bool, vmsa_features: u64) -> Result<()> {
        check("INIT", self.state, &[LaunchState::New], "first command")?;
        if self.flavour == Flavour::Sev && vmsa_features != 0 {
            return Err(Error::invalid_input(
                "VMSA features",
                "SEV (without ES) has no VMSA; vmsa_features must be 0",
            ));
        }
        if legacy && vmsa_features != 0 {
            return Err(Error::invalid_input(
                "VMSA features",
                "the legacy KVM_SEV_ES_INIT cannot set VMSA features; use INIT2",
            ));
        }
        let params = if legacy {
            InitParams::Legacy(self.flavour)
        } else {
            InitParams::Init2 {
                flavour: self.flavour,
                vmsa_features,
                ghcb_version: 0,
            }
        };
        self.fw.init(vm, &params)?;
        self.state = LaunchState::Initialized;
        Ok(())
    }

    /// LAUNCH_START with the guest owner's DH certificate and session.
    pub fn start(&mut self, vm: &VmFd, p: &StartParams) -> Result<u32> {
        check(
            "LAUNCH_START",
            self.state,
            &[LaunchState::Initialized],
            "after INIT, once",
        )?;
        let handle = self.fw.launch_start(
            vm,
            &LaunchStart {
                handle: p.handle,
                policy: self.policy.0,
                dh_cert: p.dh_cert.as_deref(),
                session: p.session.as_deref(),
            },
        )?;
        self.handle = Some(handle);
        self.state = LaunchState::Updating;
        Ok(handle)
    }

    /// LAUNCH_UPDATE_DATA of the VMM's mapping `data` of guest memory at `gpa`.
    pub fn update_data(&mut self, vm: &VmFd, gpa: u64, data: &VolatileSlice<'_>) -> Result<()> {
        check(
            "LAUNCH_UPDATE_DATA",
            self.state,
            &[LaunchState::Updating],
            "after LAUNCH_START and before LAUNCH_UPDATE_VMSA / LAUNCH_MEASURE",
        )?;
        self.fw.launch_update_data(vm, gpa, data)
    }

    /// LAUNCH_UPDATE_VMSA (SEV-ES): `vmsas` are the pages the backend programmed the vCPUs from.
    pub fn update_vmsa(&mut self, vm: &VmFd, vmsas: &[VmsaPage]) -> Result<()> {
        if self.flavour != Flavour::SevEs {
            return Err(SequenceError {
                op: "LAUNCH_UPDATE_VMSA",
                expected: "an SEV-ES guest (policy bit ES)",
                actual: self.state,
            }
            .into());
        }
        check(
            "LAUNCH_UPDATE_VMSA",
            self.state,
            &[LaunchState::Updating],
            "after LAUNCH_START, once, before LAUNCH_MEASURE",
        )?;
        self.fw.launch_update_vmsa(vm, vmsas)?;
        self.state = LaunchState::VmsaEncrypted;
        Ok(())
    }

    /// LAUNCH_MEASURE.
    pub fn measure(&mut self, vm: &VmFd) -> Result<LaunchMeasurement> {
        let allowed: &[LaunchState] = if self.flavour == Flavour::SevEs {
            &[LaunchState::VmsaEncrypted]
        } else {
            &[LaunchState::Updating]
        };
        check(
            "LAUNCH_MEASURE",
            self.state,
            allowed,
            "after the launch updates (SEV-ES: after LAUNCH_UPDATE_VMSA), once",
        )?;
        let m = self.fw.launch_measure(vm)?;
        self.measurement = Some(m);
        self.state = LaunchState::Measured;
        Ok(m)
    }

    /// LAUNCH_SECRET into the VMM's mapping `target` of guest memory at `gpa`.
    pub fn inject_secret(
        &mut self,
        vm: &VmFd,
        gpa: u64,
        header: &PacketHeader,
        ciphertext: &[u8],
        target: &VolatileSlice<'_>,
    ) -> Result<()> {
        check(
            "LAUNCH_SECRET",
            self.state,
            &[LaunchState::Measured],
            "after LAUNCH_MEASURE and before LAUNCH_FINISH",
        )?;
        self.fw.launch_secret(vm, gpa, header, ciphertext, target)
    }

    /// GET_ATTESTATION_REPORT (legacy SEV report) with the guest owner's nonce.
    pub fn attestation_report(&mut self, vm: &VmFd, mnonce: [u8; 16]) -> Result<Vec<u8>> {
        check(
            "GET_ATTESTATION_REPORT",
            self.state,
            &[LaunchState::Measured, LaunchState::Finished],
            "after LAUNCH_MEASURE",
        )?;
        self.fw.attestation_report(vm, mnonce)
    }

    /// LAUNCH_FINISH.
    pub fn finish(&mut self, vm: &VmFd) -> Result<()> {
        check(
            "LAUNCH_FINISH",
            self.state,
            &[LaunchState::Measured],
            "after LAUNCH_MEASURE, once",
        )?;
        self.fw.launch_finish(vm)?;
        self.state = LaunchState::Finished;
        Ok(())
    }
}
