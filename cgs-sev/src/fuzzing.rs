//! Fuzz-target bodies for cgs-sev's untrusted inputs (the cargo-fuzz targets in `fuzz/` call
//! these; a stable test runs them over the checked-in corpus). They panic only when an
//! invariant breaks.

use crate::certs::CertTable;
use crate::cpuid::{CpuidPage, PAGE_LEN};
use crate::report::AttestationReport;

mod lifecycle;
pub use lifecycle::{
    encode_op, fuzz_lifecycle, op, seeds_lifecycle, HEADER_LEN, MAX_OPS, MAX_VCPUS, MEM_PAGES,
    OP_LEN, VCPU_IDS,
};

// Live migration (issue 7): the migration stream decoder and the transport packet header.
pub use crate::migration::fuzzing::{fuzz_migration_stream, fuzz_packet_header};

/// The extended-request certificate table: parse; a parsed table must re-encode to bytes that
/// parse to the same table and fit a buffer of exactly their length.
#[allow(clippy::panic)]
pub fn fuzz_cert_table(data: &[u8]) {
    let Ok(table) = CertTable::parse(data) else {
        return;
    };
    let bytes = match table.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("a parsed table does not encode: {e}"),
    };
    match CertTable::parse(&bytes) {
        Ok(again) if again == table => {}
        other => panic!("re-encoded table does not parse back: {other:?}"),
    }
    let mut buf = vec![0u8; bytes.len()];
    if let Err(e) = table.write_to(&mut buf) {
        panic!("table does not fit its own length: {e}");
    }
}

/// The SNP attestation report: parse; the decoded body must re-encode to a report that decodes
/// to the same body; decoding the signature's R and S must not panic on any encoding (the
/// curve arithmetic of `verify` is left out: too slow for the stable corpus run, and it only
/// sees already-decoded scalars).
#[allow(clippy::panic)]
pub fn fuzz_attestation_report(data: &[u8]) {
    let Ok(report) = AttestationReport::parse(data) else {
        return;
    };
    match AttestationReport::parse(&report.body.to_bytes()) {
        Ok(again) if again.body == report.body => {}
        other => panic!("re-encoded report body differs: {other:?}"),
    }
    let _ = report.signature();
}

/// The SNP CPUID page as the firmware hands it back: parse (padded to a page); a parsed page
/// must round-trip.
#[allow(clippy::panic)]
pub fn fuzz_cpuid_page(data: &[u8]) {
    let mut page = vec![0u8; PAGE_LEN];
    let n = data.len().min(PAGE_LEN);
    page[..n].copy_from_slice(&data[..n]);
    let Ok(p) = CpuidPage::from_bytes(&page) else {
        return;
    };
    let bytes = match p.to_bytes() {
        Ok(b) => b,
        Err(e) => panic!("a parsed CPUID page does not encode: {e}"),
    };
    match CpuidPage::from_bytes(&bytes) {
        Ok(again) if again == p => {}
        other => panic!("CPUID page round trip failed: {other:?}"),
    }
    let _ = p.diff(&p);
}

/// SNP guest messages as the firmware receives them (and report responses as the guest does):
/// header checks, authentication and response parsing never panic; anything that opens must
/// re-seal to the same bytes.
#[allow(clippy::panic)]
pub fn fuzz_guest_message(data: &[u8]) {
    use crate::guest_msg::{open_message, peek_header, seal_message, GuestChannel, Vmpck};
    let key = Vmpck::new([0x42; 32]);
    let _ = peek_header(data);
    if let Ok((h, body)) = open_message(&key, data) {
        match seal_message(&key, &h, &body) {
            Ok(again)
                if again[..16] == data[..16]
                    && again[32..40] == data[32..40]
                    && again[AAD_START..] == data[AAD_START..] => {}
            other => panic!("an authenticated message does not re-seal: {other:?}"),
        }
    }
    let mut secrets = [0u8; 4096];
    secrets[0x20..0x40].copy_from_slice(&[0x42; 32]);
    if let Ok(mut ch) = GuestChannel::from_secrets_page(&secrets, 0) {
        let _ = ch.open_report_response(data);
    }
}

/// Start of the authenticated header bytes (the tag, the sequence number used as nonce, and
/// everything from here on are covered; the reserved bytes in between are not).
const AAD_START: usize = 0x30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_accept_arbitrary_bytes() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0usize, 1, 24, 47, 48, 100, 1184, 4096] {
            for _ in 0..50 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                fuzz_cert_table(&data);
                fuzz_attestation_report(&data);
                fuzz_cpuid_page(&data);
                fuzz_guest_message(&data);
            }
        }
        let mut t = CertTable::new();
        t.push(crate::certs::VCEK, vec![1, 2, 3]).unwrap();
        fuzz_cert_table(&t.to_bytes().unwrap());
    }
}
