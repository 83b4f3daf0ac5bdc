//! Eight lanes of SHA-512 in AVX-512 registers (AVX512F rotates and ternary logic, AVX512BW
//! byte shuffles for the big-endian loads).

use core::arch::x86_64::*;

use super::lanes::Lanes;
use super::rounds::{compress_fn, round, rounds16, schedule16, K};

/// Proof that the CPU runs AVX512F and AVX512BW: only [`Avx512::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(super) struct Avx512(());

impl Avx512 {
    /// The token, if this CPU has the features.
    pub(super) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"))
            .then_some(Avx512(()))
    }
}

// SAFETY: `compress` runs `compress_x8` only through a token, and a token exists only when
// `detect` found the features `compress_x8` is compiled for.
unsafe impl Lanes<8> for Avx512 {
    unsafe fn compress(&self, state: &mut [[u64; 8]; 8], lanes: &[&[u8]; 8], blocks: usize) {
        // SAFETY: the token proves the CPU features; the caller guarantees `blocks` blocks in
        // every lane.
        unsafe { compress_x8(state, lanes, blocks) }
    }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn add(a: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi64(a, b)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn xor3(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    _mm512_ternarylogic_epi64::<0x96>(a, b, c)
}

/// `(e & f) ^ (!e & g)`.
#[inline]
#[target_feature(enable = "avx512f")]
fn ch(e: __m512i, f: __m512i, g: __m512i) -> __m512i {
    _mm512_ternarylogic_epi64::<0xCA>(e, f, g)
}

/// The majority of `a`, `b`, `c`.
#[inline]
#[target_feature(enable = "avx512f")]
fn maj(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    _mm512_ternarylogic_epi64::<0xE8>(a, b, c)
}

/// Rotate right by `R` (`L = 64 − R` is for tiers without a rotate instruction).
#[inline]
#[target_feature(enable = "avx512f")]
fn ror<const R: i32, const L: i32>(a: __m512i) -> __m512i {
    _mm512_ror_epi64::<R>(a)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn shr<const S: u32>(a: __m512i) -> __m512i {
    _mm512_srli_epi64::<S>(a)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(k: u64) -> __m512i {
    _mm512_set1_epi64(k as i64)
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load_lanes(words: &[u64; 8]) -> __m512i {
    // SAFETY: `words` is 64 readable bytes; the load is unaligned.
    unsafe { _mm512_loadu_si512(words.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx512f")]
fn store_lanes(words: &mut [u64; 8], v: __m512i) {
    // SAFETY: `words` is 64 writable bytes; the store is unaligned.
    unsafe { _mm512_storeu_si512(words.as_mut_ptr().cast(), v) }
}

/// Each lane's address relative to lane 0's, for gathers based at lane 0.
#[inline]
#[target_feature(enable = "avx512f")]
fn lane_offsets(lanes: &[&[u8]; 8]) -> __m512i {
    let base = lanes[0].as_ptr() as usize;
    let mut off = [0i64; 8];
    for (o, lane) in off.iter_mut().zip(lanes) {
        *o = (lane.as_ptr() as usize).wrapping_sub(base) as i64;
    }
    // SAFETY: `off` is 64 readable bytes.
    unsafe { _mm512_loadu_si512(off.as_ptr().cast()) }
}

/// The sixteen big-endian words of one block of every lane (`p` in lane 0, the others at
/// `offsets` from it).
///
/// # Safety
/// 128 bytes from `p + offsets[i]` are readable for every lane `i`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn load_words(p: *const u8, offsets: __m512i) -> [__m512i; 16] {
    let bswap = _mm512_broadcast_i32x4(_mm_set_epi8(
        8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
    ));
    let mut w = [_mm512_setzero_si512(); 16];
    for (t, word) in w.iter_mut().enumerate() {
        // SAFETY: word `t` of every lane's block is within the 128 readable bytes.
        let v = unsafe { _mm512_i64gather_epi64::<1>(offsets, p.add(t * 8).cast()) };
        *word = _mm512_shuffle_epi8(v, bswap);
    }
    w
}

compress_fn!(
    #[target_feature(enable = "avx512f,avx512bw")]
    compress_x8,
    8
);
