//! The simulator's dump: DUMP_INIT gating, storage state, CPU states and completion data,
//! encrypted with a key derived from the customer communication key.

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use super::{SecurePhase, State, EINVAL, MIB};
use crate::crypto::{self, PAGE};
use crate::se_header::Pcf;
use crate::uv::rc::{UVC_RC_EXECUTED, UVC_RC_INV_STATE};
use crate::uv::{PvCommand, PvOutcome, PvOutput};

fn dump_key(cck: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(b"cgs-s390pv simulator dump key");
    h.update(cck);
    Zeroizing::new(h.finalize().into())
}

fn seal_dump_blob(cck: &[u8; 32], aad: &[u8], plain: &[u8], out: &mut [u8]) {
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let mut body = plain.to_vec();
    let tag = crypto::gcm_seal(&dump_key(cck), &iv, aad, &mut body);
    out.fill(0);
    let n = (12 + body.len() + 16).min(out.len());
    let mut blob = Vec::with_capacity(12 + body.len() + 16);
    blob.extend_from_slice(&iv);
    blob.extend_from_slice(&body);
    blob.extend_from_slice(&tag);
    out[..n].copy_from_slice(&blob[..n]);
}

/// Decrypt a simulator dump blob (CPU dump: `aad = b"cpu"`, 24-byte plaintext; completion data:
/// `aad = b"complete"`, 64-byte plaintext) with the customer communication key — what the guest
/// owner does with a real dump. `None` when the key or the data are wrong.
pub fn open_dump_blob(
    cck: &[u8; 32],
    aad: &[u8],
    blob: &[u8],
    plain_len: usize,
) -> Option<Vec<u8>> {
    let body_end = plain_len.checked_add(12)?;
    let iv: [u8; 12] = blob.get(..12)?.try_into().ok()?;
    let mut body = blob.get(12..body_end)?.to_vec();
    let tag: [u8; 16] = blob
        .get(body_end..body_end.checked_add(16)?)?
        .try_into()
        .ok()?;
    crypto::gcm_open(&dump_key(cck), &iv, aad, &mut body, &tag).then_some(body)
}

impl State {
    pub(super) fn dump(&mut self, cmd: PvCommand<'_>) -> PvOutcome {
        let info = self.config.info_dump;
        let mem_end = self.mem_end();
        let Some(conf) = self.secure.as_mut() else {
            return PvOutcome::err(EINVAL, 0, 0);
        };
        match cmd {
            PvCommand::DumpInit => {
                if conf.dumping {
                    return PvOutcome::err(EINVAL, 0, 0);
                }
                let allowed = conf
                    .params
                    .as_ref()
                    .is_some_and(|p| p.pcf.contains(Pcf::ALLOW_DUMPING));
                if conf.phase != SecurePhase::Verified || !allowed {
                    return PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0);
                }
                conf.dumping = true;
                conf.dump_digest = Sha512::new();
                conf.cpu_dumps = 0;
                PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
            }
            PvCommand::DumpStorState { gaddr, buf } => {
                let per = info.config_mem_buffer_per_1m as usize;
                if !conf.dumping
                    || gaddr % MIB != 0
                    || buf.is_empty()
                    || per == 0
                    || buf.len() % per != 0
                {
                    return PvOutcome::err(EINVAL, 0, 0);
                }
                let mut g = gaddr;
                for chunk in buf.chunks_mut(per) {
                    if g >= mem_end {
                        return PvOutcome::err(EINVAL, 0, 0);
                    }
                    chunk.fill(0);
                    let pages_per_mib = (MIB / PAGE as u64) as usize;
                    for (i, b) in chunk.iter_mut().enumerate().take(pages_per_mib) {
                        *b = u8::from(conf.pages.contains(&(g / PAGE as u64 + i as u64)));
                    }
                    conf.dump_digest.update(&*chunk);
                    g += MIB;
                }
                PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::NextGaddr(g))
            }
            PvCommand::DumpComplete { buf } => {
                if !conf.dumping || (buf.len() as u64) < info.config_finalize_len {
                    return PvOutcome::err(EINVAL, 0, 0);
                }
                let Some(params) = conf.params.as_ref() else {
                    return PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0);
                };
                let digest = std::mem::replace(&mut conf.dump_digest, Sha512::new()).finalize();
                let n = info.config_finalize_len as usize;
                seal_dump_blob(&params.secrets.cck, b"complete", &digest, &mut buf[..n]);
                conf.dumping = false;
                PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
            }
            _ => PvOutcome::err(libc::ENOTTY, 0, 0),
        }
    }

    pub(super) fn dump_cpu(&mut self, buf: &mut [u8]) -> PvOutcome {
        let len = self.config.info_dump.cpu_buffer_len;
        let Some(conf) = self.secure.as_mut() else {
            return PvOutcome::err(EINVAL, 0, 0);
        };
        if !conf.dumping || buf.len() as u64 != len {
            return PvOutcome::err(EINVAL, 0, 0);
        }
        let Some(params) = conf.params.as_ref() else {
            return PvOutcome::err(EINVAL, UVC_RC_INV_STATE, 0);
        };
        let mut plain = Vec::with_capacity(24);
        plain.extend_from_slice(&conf.cpu_dumps.to_be_bytes());
        plain.extend_from_slice(&params.secrets.psw_mask.to_be_bytes());
        plain.extend_from_slice(&params.secrets.psw_addr.to_be_bytes());
        seal_dump_blob(&params.secrets.cck, b"cpu", &plain, buf);
        conf.dump_digest.update(&*buf);
        conf.cpu_dumps += 1;
        PvOutcome::ok(UVC_RC_EXECUTED, 0, PvOutput::None)
    }
}
