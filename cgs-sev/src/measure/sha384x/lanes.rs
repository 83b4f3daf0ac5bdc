//! The multi-buffer driver: groups equal-length messages into `N` lanes, runs their whole blocks
//! through a SIMD tier, then their padded final blocks (FIPS 180-4 §5.1.2), and reads the
//! digests out. Generic over the tier; the compression itself is the tier's.

use super::rounds::IV;
use super::{scalar, DIGEST_LEN};

const BLOCK: usize = 128;

/// A SIMD implementation of the SHA-512 compression function over `N` independent lanes.
///
/// # Safety
/// Implementors are tokens that exist only on CPUs that run their `compress`.
pub(super) unsafe trait Lanes<const N: usize> {
    /// Runs the compression function over the first `blocks` 128-byte blocks of each lane;
    /// `state[j][i]` is word `j` of lane `i`'s hash state.
    ///
    /// # Safety
    /// Every lane holds at least `blocks * 128` bytes.
    unsafe fn compress(&self, state: &mut [[u64; N]; 8], lanes: &[&[u8]; N], blocks: usize);
}

/// Runs `lanes.compress` over as many whole blocks as every lane holds.
fn compress_whole<const N: usize>(
    tier: &impl Lanes<N>,
    state: &mut [[u64; N]; 8],
    lanes: &[&[u8]; N],
) {
    let blocks = lanes.iter().map(|l| l.len() / BLOCK).min().unwrap_or(0);
    if blocks > 0 {
        // SAFETY: every lane holds at least `blocks` whole blocks (the minimum over the lanes).
        unsafe { tier.compress(state, lanes, blocks) }
    }
}

/// SHA-384 of `N` messages of the same length.
fn hash_group<const N: usize>(tier: &impl Lanes<N>, msgs: &[&[u8]; N]) -> [[u8; DIGEST_LEN]; N] {
    let len = msgs[0].len();
    let mut state = [[0u64; N]; 8];
    for (word, iv) in state.iter_mut().zip(IV) {
        *word = [iv; N];
    }
    let whole = len - len % BLOCK;
    let mut heads = [&[][..]; N];
    for (h, m) in heads.iter_mut().zip(msgs) {
        *h = &m[..whole];
    }
    compress_whole(tier, &mut state, &heads);

    // The final block(s): the rest of the message, 0x80, zeros, the 128-bit bit length.
    let rest = len - whole;
    let padded = if rest < BLOCK - 16 { BLOCK } else { 2 * BLOCK };
    let bits = (len as u128) * 8;
    let mut tails = [[0u8; 2 * BLOCK]; N];
    for (t, m) in tails.iter_mut().zip(msgs) {
        t[..rest].copy_from_slice(&m[whole..]);
        t[rest] = 0x80;
        t[padded - 16..padded].copy_from_slice(&bits.to_be_bytes());
    }
    let mut tail_lanes = [&[][..]; N];
    for (l, t) in tail_lanes.iter_mut().zip(&tails) {
        *l = &t[..padded];
    }
    compress_whole(tier, &mut state, &tail_lanes);

    let mut out = [[0u8; DIGEST_LEN]; N];
    for (lane, digest) in out.iter_mut().enumerate() {
        for (chunk, word) in digest.chunks_exact_mut(8).zip(&state) {
            chunk.copy_from_slice(&word[lane].to_be_bytes());
        }
    }
    out
}

/// SHA-384 of each of `msgs`, appended to `out` in order. Each group of `N` consecutive messages
/// of one length runs in the lanes (a short last group fills its spare lanes with copies of its
/// last message and drops their digests); a group of mixed lengths is hashed one by one.
pub(super) fn hash_all<const N: usize>(
    tier: &impl Lanes<N>,
    msgs: &[&[u8]],
    out: &mut Vec<[u8; DIGEST_LEN]>,
) {
    for group in msgs.chunks(N) {
        let Some(last) = group.last() else { continue };
        if group.iter().any(|m| m.len() != last.len()) {
            out.extend(group.iter().map(|m| scalar(m)));
            continue;
        }
        let mut lanes = [*last; N];
        lanes[..group.len()].copy_from_slice(group);
        out.extend_from_slice(&hash_group(tier, &lanes)[..group.len()]);
    }
}
