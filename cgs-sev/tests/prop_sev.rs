//! Property tests for the SEV transport and the untrusted-input parsers.

use cgs_sev::certs::{CertTable, ARK, ASK, VCEK};
use cgs_sev::cpuid::{CpuidFunction, CpuidPage};
use cgs_sev::session::{
    open_packet, seal_packet, unwrap_session, wrap_session, PacketContext, TransportKeys,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn packets_round_trip_and_detect_tampering(
        tek in any::<[u8; 16]>(),
        tik in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        data in proptest::collection::vec(any::<u8>(), 1..512),
        flip in any::<usize>(),
    ) {
        let keys = TransportKeys::new(tek, tik);
        let (hdr, ct) = seal_packet(&keys, PacketContext::Data, iv, &data, &[]).unwrap();
        let pt = open_packet(&keys, PacketContext::Data, &hdr, &ct, &[]).unwrap();
        prop_assert_eq!(&pt[..], &data[..]);
        let mut bad = ct.clone();
        let i = flip % bad.len();
        bad[i] ^= 1;
        prop_assert!(open_packet(&keys, PacketContext::Data, &hdr, &bad, &[]).is_err());
    }

    #[test]
    fn sessions_unwrap_only_with_the_right_secret_and_policy(
        tek in any::<[u8; 16]>(),
        tik in any::<[u8; 16]>(),
        z in any::<[u8; 48]>(),
        nonce in any::<[u8; 16]>(),
        iv in any::<[u8; 16]>(),
        policy in any::<u32>(),
    ) {
        let keys = TransportKeys::new(tek, tik);
        let blob = wrap_session(&keys, policy, &z, nonce, iv);
        prop_assert_eq!(unwrap_session(&blob, policy, &z).unwrap(), keys);
        prop_assert!(unwrap_session(&blob, policy ^ 1, &z).is_err());
        let mut z2 = z;
        z2[0] ^= 1;
        prop_assert!(unwrap_session(&blob, policy, &z2).is_err());
    }

    #[test]
    fn cert_tables_round_trip(
        a in proptest::collection::vec(any::<u8>(), 0..300),
        b in proptest::collection::vec(any::<u8>(), 0..300),
        c in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut t = CertTable::new();
        t.push(VCEK, a).unwrap();
        t.push(ASK, b).unwrap();
        t.push(ARK, c).unwrap();
        let bytes = t.to_bytes().unwrap();
        prop_assert_eq!(CertTable::parse(&bytes).unwrap(), t);
    }

    #[test]
    fn cpuid_pages_round_trip(entries in proptest::collection::vec(any::<[u32; 6]>(), 0..64)) {
        let page = CpuidPage {
            entries: entries
                .iter()
                .map(|e| CpuidFunction {
                    eax_in: e[0],
                    ecx_in: e[1],
                    xcr0_in: 1,
                    xss_in: 0,
                    eax: e[2],
                    ebx: e[3],
                    ecx: e[4],
                    edx: e[5],
                })
                .collect(),
        };
        let bytes = page.to_bytes().unwrap();
        prop_assert_eq!(CpuidPage::from_bytes(&bytes).unwrap(), page);
    }
}
