use proptest::prelude::*;

use super::*;

fn available() -> Vec<Tier> {
    let tiers: Vec<Tier> = Tier::ALL.into_iter().filter(|t| t.is_available()).collect();
    println!("tiers on this CPU: {tiers:?}");
    tiers
}

fn reference(msgs: &[&[u8]]) -> Vec<[u8; DIGEST_LEN]> {
    msgs.iter().map(|m| Sha384::digest(m).into()).collect()
}

/// Message `i` of length `len`, distinct per message and position.
fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j.wrapping_mul(31) ^ i.wrapping_mul(0x9E37) ^ (j >> 8)) as u8)
        .collect()
}

#[test]
fn fips_180_4_vectors_in_every_lane() {
    let vectors: [(&[u8], &str); 3] = [
        (
            b"",
            "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da\
             274edebfe76f65fbd51ad2f14898b95b",
        ),
        (
            b"abc",
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7",
        ),
        (
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno\
              ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
            "09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712\
             fcc7c71a557e2db966c3e9fa91746039",
        ),
    ];
    for tier in available() {
        for (msg, want) in vectors {
            for count in [1, 8, 9] {
                let msgs = vec![msg; count];
                let got = sha384_each_with(tier, &msgs).unwrap();
                assert_eq!(got.len(), count);
                for d in got {
                    assert_eq!(
                        crate::measure::hex(&d),
                        want,
                        "{tier:?}, {} bytes",
                        msg.len()
                    );
                }
            }
        }
    }
}

#[test]
fn every_tier_equals_sha2_over_counts_and_lengths() {
    let lengths = [
        0usize, 1, 3, 55, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 1000, 4095, 4096,
    ];
    let counts = [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33];
    for tier in available() {
        for len in lengths {
            let owned: Vec<Vec<u8>> = (0..33).map(|i| message(i, len)).collect();
            for count in counts {
                let msgs: Vec<&[u8]> = owned[..count].iter().map(Vec::as_slice).collect();
                assert_eq!(
                    sha384_each_with(tier, &msgs).unwrap(),
                    reference(&msgs),
                    "{tier:?}: {count} messages of {len} bytes"
                );
            }
        }
    }
}

#[test]
fn lanes_may_overlap_and_be_unaligned() {
    // Pages of one buffer at odd offsets, some lanes reading the same bytes.
    let buf = message(7, 3 * 4096 + 64);
    let msgs: Vec<&[u8]> = [1usize, 3, 3, 4096, 17, 5, 8191, 1, 2, 64]
        .iter()
        .map(|&o| &buf[o..o + 4096])
        .collect();
    for tier in available() {
        assert_eq!(
            sha384_each_with(tier, &msgs).unwrap(),
            reference(&msgs),
            "{tier:?}"
        );
    }
}

#[test]
fn tiers_report_their_lanes_and_the_best_is_available() {
    assert!(Tier::Scalar.is_available());
    assert!(Tier::best().is_available());
    assert_eq!(
        Tier::ALL.map(Tier::lanes),
        [1, 4, 8],
        "scalar, AVX2, AVX-512 lane counts"
    );
    for tier in Tier::ALL {
        assert_eq!(
            sha384_each_with(tier, &[b"x"]).is_some(),
            tier.is_available()
        );
    }
    assert_eq!(sha384_each(&[b"abc"]), reference(&[b"abc"]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random messages, equal lengths (the lane path) or mixed (the per-group fallback).
    #[test]
    fn random_messages_equal_sha2(
        len in 0usize..700,
        count in 0usize..20,
        seed in any::<u64>(),
        mixed in proptest::collection::vec(0usize..300, 0..12),
    ) {
        let mut owned: Vec<Vec<u8>> = (0..count)
            .map(|i| message(i ^ seed as usize, len))
            .collect();
        owned.extend(mixed.iter().enumerate().map(|(i, &l)| message(i + seed as usize, l)));
        let msgs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let want = reference(&msgs);
        for tier in Tier::ALL.into_iter().filter(|t| t.is_available()) {
            prop_assert_eq!(&sha384_each_with(tier, &msgs).unwrap(), &want, "{:?}", tier);
        }
    }
}

#[test]
fn sha384_112_equals_sha2() {
    for seed in 0..64usize {
        let m = message(seed, 112);
        let msg: [u8; 112] = m.as_slice().try_into().unwrap();
        assert_eq!(sha384_112(&msg), reference(&[&m])[0], "seed {seed}");
    }
    assert_eq!(sha384_112(&[0; 112]), reference(&[&[0; 112]])[0]);
    assert_eq!(sha384_112(&[0xFF; 112]), reference(&[&[0xFF; 112]])[0]);
}
