//! Four lanes of SHA-512 in AVX2 registers.

use core::arch::x86_64::*;

use super::lanes::Lanes;
use super::rounds::{compress_fn, round, rounds16, schedule16, K};

/// Proof that the CPU runs AVX2: only [`Avx2::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(super) struct Avx2(());

impl Avx2 {
    /// The token, if this CPU has AVX2.
    pub(super) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }
}

// SAFETY: `compress` runs `compress_x4` only through a token, and a token exists only when
// `detect` found AVX2, which `compress_x4` is compiled for.
unsafe impl Lanes<4> for Avx2 {
    unsafe fn compress(&self, state: &mut [[u64; 4]; 8], lanes: &[&[u8]; 4], blocks: usize) {
        // SAFETY: the token proves AVX2; the caller guarantees `blocks` blocks in every lane.
        unsafe { compress_x4(state, lanes, blocks) }
    }
}

#[inline]
#[target_feature(enable = "avx2")]
fn add(a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi64(a, b)
}

#[inline]
#[target_feature(enable = "avx2")]
fn xor3(a: __m256i, b: __m256i, c: __m256i) -> __m256i {
    _mm256_xor_si256(_mm256_xor_si256(a, b), c)
}

/// `(e & f) ^ (!e & g)`.
#[inline]
#[target_feature(enable = "avx2")]
fn ch(e: __m256i, f: __m256i, g: __m256i) -> __m256i {
    _mm256_xor_si256(_mm256_and_si256(e, f), _mm256_andnot_si256(e, g))
}

/// The majority of `a`, `b`, `c`: `(a & b) | (c & (a | b))`.
#[inline]
#[target_feature(enable = "avx2")]
fn maj(a: __m256i, b: __m256i, c: __m256i) -> __m256i {
    _mm256_or_si256(
        _mm256_and_si256(a, b),
        _mm256_and_si256(c, _mm256_or_si256(a, b)),
    )
}

/// Rotate right by `R`, as `(a >> R) | (a << L)` with `L = 64 − R`.
#[inline]
#[target_feature(enable = "avx2")]
fn ror<const R: i32, const L: i32>(a: __m256i) -> __m256i {
    _mm256_or_si256(_mm256_srli_epi64::<R>(a), _mm256_slli_epi64::<L>(a))
}

#[inline]
#[target_feature(enable = "avx2")]
fn shr<const S: i32>(a: __m256i) -> __m256i {
    _mm256_srli_epi64::<S>(a)
}

#[inline]
#[target_feature(enable = "avx2")]
fn splat(k: u64) -> __m256i {
    _mm256_set1_epi64x(k as i64)
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_lanes(words: &[u64; 4]) -> __m256i {
    // SAFETY: `words` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(words.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn store_lanes(words: &mut [u64; 4], v: __m256i) {
    // SAFETY: `words` is 32 writable bytes; the store is unaligned.
    unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), v) }
}

/// Each lane's address relative to lane 0's, for gathers based at lane 0.
#[inline]
#[target_feature(enable = "avx2")]
fn lane_offsets(lanes: &[&[u8]; 4]) -> __m256i {
    let base = lanes[0].as_ptr() as usize;
    let mut off = [0i64; 4];
    for (o, lane) in off.iter_mut().zip(lanes) {
        *o = (lane.as_ptr() as usize).wrapping_sub(base) as i64;
    }
    // SAFETY: `off` is 32 readable bytes.
    unsafe { _mm256_loadu_si256(off.as_ptr().cast()) }
}

/// The sixteen big-endian words of one block of every lane (`p` in lane 0, the others at
/// `offsets` from it).
///
/// # Safety
/// 128 bytes from `p + offsets[i]` are readable for every lane `i`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_words(p: *const u8, offsets: __m256i) -> [__m256i; 16] {
    let bswap = _mm256_set_epi8(
        8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1,
        2, 3, 4, 5, 6, 7,
    );
    let mut w = [_mm256_setzero_si256(); 16];
    for (t, word) in w.iter_mut().enumerate() {
        // SAFETY: word `t` of every lane's block is within the 128 readable bytes.
        let v = unsafe { _mm256_i64gather_epi64::<1>(p.add(t * 8).cast(), offsets) };
        *word = _mm256_shuffle_epi8(v, bswap);
    }
    w
}

compress_fn!(
    #[target_feature(enable = "avx2")]
    compress_x4,
    4
);
