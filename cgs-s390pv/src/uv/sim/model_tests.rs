//! The differential test of the simulator: command sequences checked against the reference
//! model. The sequence runner is the `s390pv_lifecycle` fuzz body's UV layer
//! ([`crate::fuzzing::lifecycle`]); these are the sequences every `cargo test` runs.

use crate::fuzzing::lifecycle::{run, uv_sequence::op, Flags};

#[test]
fn uv_sequences_follow_the_model() {
    let uv = |o: u8, arg: u8| o + op::COUNT * arg;
    // The full good path, a dump, both resets, a destroy and a re-protect over cleared memory.
    let full = [
        0,
        uv(op::ENABLE, 0),
        uv(op::SSC, 0),
        uv(op::UNPACK, 0),
        uv(op::UNPACK, 1),
        uv(op::UNPACK, 2),
        uv(op::VERIFY, 0),
        uv(op::CPU_LOAD, 0),
        uv(op::DUMP_INIT, 0),
        uv(op::DUMP_CPU, 0),
        uv(op::DUMP_COMPLETE, 0),
        uv(op::RESET, 0),
        uv(op::RESET, 1),
        uv(op::DISABLE, 0),
        uv(op::ENABLE, 0),
        uv(op::SSC, 0),
        uv(op::VERIFY, 0),
    ];
    let got = run(&full);
    assert_eq!((got.verified, got.dumps), (1, 1), "{got:?}");
    // Wrong orders, a foreign header, a repeated page: VERIFY never succeeds.
    let wrong = [
        0,
        uv(op::VERIFY, 0),
        uv(op::UNPACK, 0),
        uv(op::SSC, 0),
        uv(op::ENABLE, 0),
        uv(op::ENABLE, 0),
        uv(op::SSC_FOREIGN, 0),
        uv(op::UNPACK, 0),
        uv(op::SSC, 0),
        uv(op::UNPACK, 0),
        uv(op::UNPACK, 0),
        uv(op::UNPACK, 1),
        uv(op::UNPACK, 2),
        uv(op::VERIFY, 0),
        uv(op::DUMP_INIT, 0),
        uv(op::DISABLE, 0),
        uv(op::DISABLE, 0),
    ];
    let got = run(&wrong);
    assert_eq!(got.verified, 0, "{got:?}");
    assert_eq!(got.refused, 9, "{got:?}");
    // Random sequences on every host and image variant of the UV layer.
    let mut x = 0x0123_4567_89ab_cdefu64;
    for i in 0..40u8 {
        let flags = Flags::new((i % 16) << 1);
        let mut seq = vec![flags.byte()];
        seq.extend((0..24).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        }));
        run(&seq);
    }
}
