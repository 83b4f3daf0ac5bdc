//! SHA-384 of one 112-byte message (an SNP PAGE_INFO) in plain 64-bit arithmetic.
//!
//! 112 bytes leave no room for the length in their block, so the second (last) block is all
//! padding: the same for every PAGE_INFO. Its message schedule, with the round constants added,
//! is computed at compile time, which saves that block's schedule on the sequential part of the
//! SNP launch digest.

use super::rounds::{compress_fn, round, rounds16, schedule16, IV, K};
use super::DIGEST_LEN;

/// The message length this module hashes.
pub const MESSAGE_LEN: usize = 112;

const fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

const fn xor3(a: u64, b: u64, c: u64) -> u64 {
    a ^ b ^ c
}

/// `(e & f) ^ (!e & g)`.
const fn ch(e: u64, f: u64, g: u64) -> u64 {
    g ^ (e & (f ^ g))
}

/// The majority of `a`, `b`, `c`.
const fn maj(a: u64, b: u64, c: u64) -> u64 {
    (a & b) | (c & (a | b))
}

/// Rotate right by `R` (`L = 64 − R` is for tiers without a rotate instruction).
const fn ror<const R: u32, const L: u32>(a: u64) -> u64 {
    a.rotate_right(R)
}

const fn shr<const S: u32>(a: u64) -> u64 {
    a >> S
}

const fn splat(k: u64) -> u64 {
    k
}

fn load_lanes(words: &[u64; 1]) -> u64 {
    words[0]
}

fn store_lanes(words: &mut [u64; 1], v: u64) {
    words[0] = v;
}

fn lane_offsets(_lanes: &[&[u8]; 1]) {}

/// The sixteen big-endian words of the block at `p`.
///
/// # Safety
/// 128 bytes from `p` are readable.
unsafe fn load_words(p: *const u8, _offsets: ()) -> [u64; 16] {
    // SAFETY: the caller guarantees 128 readable bytes; the read is unaligned.
    let block = unsafe { p.cast::<[u8; 128]>().read_unaligned() };
    let mut w = [0u64; 16];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        *word = u64::from_be_bytes(b);
    }
    w
}

compress_fn!(compress_x1, 1);

/// `W[t] + K[t]` of the final block, sixteen rounds per row.
const FINAL_WK: [[u64; 16]; 5] = {
    let mut w = [0u64; 16];
    w[15] = MESSAGE_LEN as u64 * 8;
    let mut out = [[0u64; 16]; 5];
    let mut r = 0;
    while r < 5 {
        if r > 0 {
            schedule16!(w);
        }
        let mut j = 0;
        while j < 16 {
            out[r][j] = w[j].wrapping_add(K[16 * r + j]);
            j += 1;
        }
        r += 1;
    }
    out
};

/// The constants already in [`FINAL_WK`].
const NO_K: [u64; 16] = [0; 16];

/// SHA-384 of a 112-byte message.
pub fn sha384_112(msg: &[u8; MESSAGE_LEN]) -> [u8; DIGEST_LEN] {
    let mut block = [0u8; 128];
    block[..MESSAGE_LEN].copy_from_slice(msg);
    block[MESSAGE_LEN] = 0x80;
    let mut state = IV.map(|w| [w]);
    // SAFETY: `block` is one whole block; the scalar tier needs no CPU feature.
    unsafe { compress_x1(&mut state, &[&block[..]], 1) };

    let s = state.map(|[w]| w);
    let mut v = s;
    for wk in &FINAL_WK {
        rounds16!(v, wk, NO_K, 0);
    }
    let mut out = [0u8; DIGEST_LEN];
    for ((chunk, x), y) in out.chunks_exact_mut(8).zip(s).zip(v) {
        chunk.copy_from_slice(&x.wrapping_add(y).to_be_bytes());
    }
    out
}
