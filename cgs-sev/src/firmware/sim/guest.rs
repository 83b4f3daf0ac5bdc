//! One guest context of the simulated secure processor: its firmware state, keys, launch digest
//! and the memory encryption engine that decides what the host sees of its private pages.

use std::collections::BTreeSet;
use std::fmt;

use aes::cipher::{KeyIvInit, StreamCipher};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::firmware::Flavour;
use crate::measure::gctx::Gctx;
use crate::session::{LaunchMeasurement, TransportKeys};

/// Firmware guest states (`SEV_GUEST_STATE_*` for SEV/SEV-ES, SNP guest states for SNP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuestState {
    /// SEV: launch updates allowed (LUPDATE, 1).
    LaunchUpdate,
    /// SEV: measured, secrets may be injected (LSECRET, 2).
    LaunchSecret,
    /// SNP: launch started, pages may be added (SNP LAUNCH, 1).
    SnpLaunch,
    /// Running (SEV RUNNING 3, SNP RUNNING 2).
    Running,
    /// SEV: SEND_START done, pages being sent (SUPDATE, 4; migration, issue 7).
    SendUpdate,
    /// SEV: RECEIVE_START done, pages being received (RUPDATE, 5; migration).
    ReceiveUpdate,
    /// SEV: SEND_FINISH done, the guest was sent and cannot run (SENT, 6; migration).
    Sent,
}

impl GuestState {
    /// The firmware's numeric state (as GUEST_STATUS reports it).
    pub fn code(self) -> u32 {
        match self {
            GuestState::LaunchUpdate => 1,
            GuestState::LaunchSecret => 2,
            GuestState::SnpLaunch => 1,
            GuestState::Running => 3,
            GuestState::SendUpdate => 4,
            GuestState::ReceiveUpdate => 5,
            GuestState::Sent => 6,
        }
    }
}

/// SNP-specific launch results kept for attestation reports.
#[derive(Debug, Clone)]
pub struct SnpLaunchInfo {
    /// Family id from the ID block.
    pub family_id: [u8; 16],
    /// Image id from the ID block.
    pub image_id: [u8; 16],
    /// Guest SVN from the ID block.
    pub guest_svn: u32,
    /// SHA-384 of the ID key (zero without an ID block).
    pub id_key_digest: [u8; 48],
    /// SHA-384 of the author key (zero without one).
    pub author_key_digest: [u8; 48],
    /// Whether the author key was used.
    pub author_key_en: bool,
    /// Host data.
    pub host_data: [u8; 32],
    /// VCEK disabled for reports.
    pub vcek_disabled: bool,
}

impl Default for SnpLaunchInfo {
    fn default() -> Self {
        SnpLaunchInfo {
            family_id: [0; 16],
            image_id: [0; 16],
            guest_svn: 0,
            id_key_digest: [0; 48],
            author_key_digest: [0; 48],
            author_key_en: false,
            host_data: [0; 32],
            vcek_disabled: false,
        }
    }
}

/// A guest context.
pub struct Guest {
    /// The flavour it was initialised as.
    pub flavour: Flavour,
    /// Its address-space id (1-based).
    pub asid: u32,
    /// Firmware state.
    pub state: GuestState,
    /// SEV policy (u32) or SNP policy (u64).
    pub policy: u64,
    /// Transport keys (SEV/SEV-ES).
    pub keys: Option<TransportKeys>,
    /// The memory encryption key.
    pub vek: Zeroizing<[u8; 16]>,
    /// SEV launch digest in progress.
    pub sev_digest: Sha256,
    /// SEV: the finished digest (after LAUNCH_MEASURE).
    pub sev_ld: Option<[u8; 32]>,
    /// SEV: the LAUNCH_MEASURE result.
    pub measurement: Option<LaunchMeasurement>,
    /// SEV-ES: whether LAUNCH_UPDATE_VMSA ran.
    pub vmsa_done: bool,
    /// SNP: the launch digest so far.
    pub snp_ld: Gctx,
    /// SNP: results of SNP_LAUNCH_FINISH.
    pub snp: SnpLaunchInfo,
    /// Guest frames whose host view is ciphertext.
    pub private: BTreeSet<u64>,
    /// SNP: 32-byte report id.
    pub report_id: [u8; 32],
    /// SNP: VM platform communication keys written into the secrets page.
    pub vmpck: Zeroizing<[[u8; 32]; 4]>,
    /// SNP: the next guest-message sequence number expected per VMPCK.
    pub msg_seqno: [u64; 4],
    /// Live migration state (issue 7).
    pub(crate) migration: super::migration::MigrationState,
}

impl fmt::Debug for Guest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guest")
            .field("flavour", &self.flavour)
            .field("asid", &self.asid)
            .field("state", &self.state)
            .field("policy", &format_args!("{:#x}", self.policy))
            .field("keys", &self.keys)
            .field("vek", &"<redacted>")
            .field("private_pages", &self.private.len())
            .finish()
    }
}

impl Guest {
    /// The keystream position for `gpa` (the simulated memory controller tweaks by address, so
    /// equal plaintext at different addresses, or in different guests, encrypts differently).
    fn iv(gpa: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&gpa.to_le_bytes());
        iv
    }

    /// What a host read of the guest's memory at `gpa` returns, given what the guest sees there
    /// (`plain`): ciphertext under the guest's key for private pages, the bytes themselves for
    /// shared pages. On this machine KVM cannot encrypt, so the VMM's mapping holds the guest's
    /// view; this is what SEV hardware would show the host instead.
    pub fn host_view(&self, gpa: u64, plain: &[u8]) -> Vec<u8> {
        let mut out = plain.to_vec();
        let mut off = 0usize;
        while off < out.len() {
            let addr = gpa + off as u64;
            let page_end = ((addr / 4096) + 1) * 4096;
            let n = ((page_end - addr) as usize).min(out.len() - off);
            if self.private.contains(&(addr / 4096)) {
                let mut c = ctr::Ctr128BE::<aes::Aes128>::new(
                    (&*self.vek).into(),
                    (&Self::iv(addr & !0xFFF)).into(),
                );
                // Advance to the byte within the page.
                let mut skip = vec![0u8; (addr & 0xFFF) as usize];
                c.apply_keystream(&mut skip);
                c.apply_keystream(&mut out[off..off + n]);
            }
            off += n;
        }
        out
    }

    /// Mark `[gpa, gpa + len)` private.
    pub fn mark_private(&mut self, gpa: u64, len: u64) {
        let first = gpa / 4096;
        let last = (gpa + len).div_ceil(4096);
        self.private.extend(first..last);
    }
}
