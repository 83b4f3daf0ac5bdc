//! The firmware side of SNP guest requests: the attestation report (`MSG_REPORT_REQ`), the
//! AES-GCM guest-message channel (`SNP_GUEST_REQUEST`) and the extended report with its
//! certificate table. KVM forwards these from the guest without the VMM; the simulator exposes
//! them so tests and examples can play the guest.

use cgs_core::{Error, Result};

use super::{fw, Flavour, GuestState, SevStatus, SimFirmware, SIM_FIRMWARE};
use crate::certs::CertTable;
use crate::guest_msg::{
    open_message, peek_header, seal_message, GuestMsgError, MessageHeader, Vmpck, MSG_REPORT_REQ,
    MSG_REPORT_RSP, REPORT_REQ_LEN, REPORT_RSP_HEADER,
};
use crate::report::{ReportBody, SIGNING_KEY_NONE, SIGNING_KEY_VCEK, SIG_ALGO_ECDSA_P384_SHA384};

impl SimFirmware {
    /// The attestation report a running SNP guest receives for `MSG_REPORT_REQ` with
    /// `report_data` at `vmpl` (KVM forwards guest requests to the firmware without the VMM; the
    /// simulator exposes the firmware side so tests and examples can play the guest).
    pub fn snp_guest_report(&self, report_data: [u8; 64], vmpl: u32) -> Result<Vec<u8>> {
        const OP: &str = "SNP_GUEST_REQUEST(MSG_REPORT_REQ)";
        let p = self.platform.lock();
        let g = self.guest_ref(&p, OP)?;
        if g.flavour != Flavour::SevSnp {
            return Err(fw(OP, SevStatus::INVALID_GUEST));
        }
        if g.state != GuestState::Running {
            return Err(fw(OP, SevStatus::INVALID_GUEST_STATE));
        }
        if vmpl > 3 {
            return Err(fw(OP, SevStatus::INVALID_PARAM));
        }
        let c = &p.config;
        let v = c.report_version;
        let body = ReportBody {
            version: v,
            guest_svn: g.snp.guest_svn,
            policy: g.policy,
            family_id: g.snp.family_id,
            image_id: g.snp.image_id,
            vmpl,
            sig_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: c.tcb,
            platform_info: u64::from(c.smt_enabled),
            author_key_en: g.snp.author_key_en,
            mask_chip_key: false,
            signing_key: if g.snp.vcek_disabled {
                SIGNING_KEY_NONE
            } else {
                SIGNING_KEY_VCEK
            },
            report_data,
            measurement: g.snp_ld.ld(),
            host_data: g.snp.host_data,
            id_key_digest: g.snp.id_key_digest,
            author_key_digest: g.snp.author_key_digest,
            report_id: g.report_id,
            report_id_ma: [0xff; 32],
            reported_tcb: c.tcb,
            cpuid_fms: (v >= 3).then_some([0x19, 0x11, 0x01]),
            chip_id: p.chip_id,
            committed_tcb: c.tcb,
            current_version: [c.build.build, c.build.api_minor, c.build.api_major],
            committed_version: [c.build.build, c.build.api_minor, c.build.api_major],
            launch_tcb: c.tcb,
            mit_vectors: (v >= 5).then_some((0, 0)),
        };
        if g.snp.vcek_disabled {
            // No VCEK and no VLEK: the report is returned unsigned.
            Ok(body.to_bytes())
        } else {
            Ok(body.sign(&p.vcek))
        }
    }

    /// `SNP_GUEST_REQUEST` as the firmware handles it: authenticate and decrypt the guest's
    /// message with the VMPCK it names (sequence numbers must advance: a replayed or reordered
    /// message is refused), answer a `MSG_REPORT_REQ` with a `MSG_REPORT_RSP` holding the signed
    /// report, sealed with sequence number + 1. Refusals are `INVALID_PARAM` with the reason in
    /// the status detail.
    pub fn snp_guest_request(&self, request: &[u8]) -> Result<Vec<u8>> {
        const OP: &str = "SNP_GUEST_REQUEST";
        let refuse = |why: String| Error::Firmware {
            op: OP,
            status: cgs_core::FirmwareStatus {
                detail: Some(why),
                ..SevStatus::INVALID_PARAM.to_firmware_status(SIM_FIRMWARE)
            },
        };
        let header = peek_header(request).map_err(|e| refuse(e.to_string()))?;
        let idx = usize::from(header.vmpck);
        if idx > 3 {
            return Err(refuse(format!("VMPCK index {idx}")));
        }
        let (key, want) = {
            let p = self.platform.lock();
            let g = self.guest_ref(&p, OP)?;
            if g.flavour != Flavour::SevSnp || g.state != GuestState::Running {
                return Err(fw(OP, SevStatus::INVALID_GUEST_STATE));
            }
            (Vmpck::new(g.vmpck[idx]), g.msg_seqno[idx])
        };
        let (h, body) = open_message(&key, request).map_err(|e| refuse(e.to_string()))?;
        if h.seqno != want {
            return Err(refuse(
                GuestMsgError::Sequence { got: h.seqno, want }.to_string(),
            ));
        }
        if h.msg_type != MSG_REPORT_REQ || body.len() != REPORT_REQ_LEN {
            return Err(refuse(GuestMsgError::Type(h.msg_type).to_string()));
        }
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(&body[..64]);
        let vmpl = u32::from_le_bytes([body[64], body[65], body[66], body[67]]);
        let report = self.snp_guest_report(report_data, vmpl)?;
        let mut payload = vec![0u8; REPORT_RSP_HEADER + report.len()];
        payload[4..8].copy_from_slice(&(report.len() as u32).to_le_bytes());
        payload[REPORT_RSP_HEADER..].copy_from_slice(&report);
        let response = seal_message(
            &key,
            &MessageHeader {
                seqno: h.seqno + 1,
                msg_type: MSG_REPORT_RSP,
                msg_version: h.msg_version,
                vmpck: header.vmpck,
            },
            &payload,
        )
        .map_err(|e| refuse(e.to_string()))?;
        let mut p = self.platform.lock();
        if let Some(g) = self.handle.and_then(|h| p.guests.get_mut(&h)) {
            g.msg_seqno[idx] = h.seqno + 2;
        }
        Ok(response)
    }

    /// An extended guest request: the report plus the certificate table written into `certs`
    /// (the guest's buffer). Without
    /// [`SevFirmware::snp_enable_req_certs`](crate::firmware::SevFirmware::snp_enable_req_certs)
    /// the table is empty, as KVM makes it. A buffer that is too small gives the pages needed.
    pub fn snp_ext_guest_report(
        &self,
        report_data: [u8; 64],
        vmpl: u32,
        certs: &mut [u8],
    ) -> Result<Vec<u8>> {
        let table = if self.req_certs {
            self.platform.lock().certs.clone()
        } else {
            CertTable::new()
        };
        table.write_to(certs)?;
        self.snp_guest_report(report_data, vmpl)
    }
}
