//! Property tests of the ESM blob format.

use cgs_pef::esm::{EsmError, ESM_ALIGN, ESM_MAX_REGIONS};
use cgs_pef::{EsmBlob, EsmRegion, UvKey};
use proptest::prelude::*;

fn contents(gpa: u64, buf: &mut [u8]) -> Result<(), ()> {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (gpa >> 12) as u8 ^ i as u8;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sealed_blobs_round_trip_and_verify(
        spans in prop::collection::vec((0u64..4, 1u64..4), 1..8),
        key in any::<[u8; 32]>(),
    ) {
        let mut gpa = 0u64;
        let regions: Vec<EsmRegion> = spans
            .iter()
            .map(|(gap, len)| {
                let r = EsmRegion { gpa: gpa + gap * ESM_ALIGN, len: len * ESM_ALIGN };
                gpa = r.end();
                r
            })
            .collect();
        let key = UvKey::from_bytes(key);
        let blob = EsmBlob::seal(&key, &regions, contents).unwrap();
        let bytes = blob.to_bytes();
        prop_assert_eq!(bytes.len(), EsmBlob::encoded_len(regions.len()));
        let parsed = EsmBlob::parse(&bytes).unwrap();
        prop_assert_eq!(parsed.regions(), &regions[..]);
        prop_assert_eq!(parsed.verify(&key, contents).unwrap(), Ok(()));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_parsed_blobs_re_encode(data in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(blob) = EsmBlob::parse(&data) {
            prop_assert_eq!(blob.to_bytes(), data);
        }
    }

    #[test]
    fn too_many_regions_are_refused(extra in 1usize..4) {
        let regions: Vec<EsmRegion> = (0..(ESM_MAX_REGIONS + extra) as u64)
            .map(|i| EsmRegion { gpa: i * ESM_ALIGN, len: ESM_ALIGN })
            .collect();
        let key = UvKey::from_bytes([0; 32]);
        prop_assert!(matches!(
            EsmBlob::seal(&key, &regions, contents),
            Err(cgs_pef::esm::SealError::Esm(EsmError::RegionCount(_)))
        ));
    }
}
