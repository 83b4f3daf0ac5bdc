//! The SHA-512 constants and the lane-parallel compression function body, shared by every SIMD
//! tier (FIPS 180-4 §4.2.3, §5.3.4, §6.4.2).
//!
//! [`compress_fn!`] expands to a (`#[target_feature]`) function over the tier's vector type (or
//! `u64` for the scalar tier). The tier module provides, in scope, the lane-wise primitives it calls: `add`, `xor3`, `ch`, `maj`,
//! `ror::<R, L>` (rotate right by `R`, `L = 64 − R`), `shr::<S>`, `splat`, `load_lanes`,
//! `store_lanes`, `lane_offsets` and `load_words`.

/// The SHA-384 initial hash value (FIPS 180-4 §5.3.4).
pub(super) const IV: [u64; 8] = [
    0xcbbb9d5dc1059ed8,
    0x629a292a367cd507,
    0x9159015a3070dd17,
    0x152fecd8f70e5939,
    0x67332667ffc00b31,
    0x8eb44a8768581511,
    0xdb0c2e0d64f98fa7,
    0x47b5481dbefa4fa4,
];

/// The SHA-512 round constants (FIPS 180-4 §4.2.3).
pub(super) const K: [u64; 80] = [
    0x428a2f98d728ae22,
    0x7137449123ef65cd,
    0xb5c0fbcfec4d3b2f,
    0xe9b5dba58189dbbc,
    0x3956c25bf348b538,
    0x59f111f1b605d019,
    0x923f82a4af194f9b,
    0xab1c5ed5da6d8118,
    0xd807aa98a3030242,
    0x12835b0145706fbe,
    0x243185be4ee4b28c,
    0x550c7dc3d5ffb4e2,
    0x72be5d74f27b896f,
    0x80deb1fe3b1696b1,
    0x9bdc06a725c71235,
    0xc19bf174cf692694,
    0xe49b69c19ef14ad2,
    0xefbe4786384f25e3,
    0x0fc19dc68b8cd5b5,
    0x240ca1cc77ac9c65,
    0x2de92c6f592b0275,
    0x4a7484aa6ea6e483,
    0x5cb0a9dcbd41fbd4,
    0x76f988da831153b5,
    0x983e5152ee66dfab,
    0xa831c66d2db43210,
    0xb00327c898fb213f,
    0xbf597fc7beef0ee4,
    0xc6e00bf33da88fc2,
    0xd5a79147930aa725,
    0x06ca6351e003826f,
    0x142929670a0e6e70,
    0x27b70a8546d22ffc,
    0x2e1b21385c26c926,
    0x4d2c6dfc5ac42aed,
    0x53380d139d95b3df,
    0x650a73548baf63de,
    0x766a0abb3c77b2a8,
    0x81c2c92e47edaee6,
    0x92722c851482353b,
    0xa2bfe8a14cf10364,
    0xa81a664bbc423001,
    0xc24b8b70d0f89791,
    0xc76c51a30654be30,
    0xd192e819d6ef5218,
    0xd69906245565a910,
    0xf40e35855771202a,
    0x106aa07032bbd1b8,
    0x19a4c116b8d2d0c8,
    0x1e376c085141ab53,
    0x2748774cdf8eeb99,
    0x34b0bcb5e19b48a8,
    0x391c0cb3c5c95a63,
    0x4ed8aa4ae3418acb,
    0x5b9cca4f7763e373,
    0x682e6ff3d6b2b8a3,
    0x748f82ee5defb2fc,
    0x78a5636f43172f60,
    0x84c87814a1f0ab72,
    0x8cc702081a6439ec,
    0x90befffa23631e28,
    0xa4506cebde82bde9,
    0xbef9a3f7b2c67915,
    0xc67178f2e372532b,
    0xca273eceea26619c,
    0xd186b8c721c0c207,
    0xeada7dd6cde0eb1e,
    0xf57d4f7fee6ed178,
    0x06f067aa72176fba,
    0x0a637dc5a2c898a6,
    0x113f9804bef90dae,
    0x1b710b35131c471b,
    0x28db77f523047d84,
    0x32caab7b40c72493,
    0x3c9ebe0a15c9bebc,
    0x431d67c49c100d4c,
    0x4cc5d4becb3e42b6,
    0x597f299cfc657e2a,
    0x5fcb6fab3ad6faec,
    0x6c44198c4a475817,
];

/// One round: `d += T1`, `h = T1 + T2` (the caller rotates the roles of the eight variables).
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident,
     $w:expr, $k:expr) => {
        let big_s1 = xor3(ror::<14, 50>($e), ror::<18, 46>($e), ror::<41, 23>($e));
        let t1 = add(add(add($h, big_s1), add(ch($e, $f, $g), splat($k))), $w);
        let big_s0 = xor3(ror::<28, 36>($a), ror::<34, 30>($a), ror::<39, 25>($a));
        $d = add($d, t1);
        $h = add(t1, add(big_s0, maj($a, $b, $c)));
    };
}

/// Sixteen rounds over the state `v` with the words `w[0..16]` and the constants
/// `k[base..base + 16]` (after eight rounds the roles are back in place).
macro_rules! rounds16 {
    ($v:ident, $w:ident, $k:ident, $base:expr) => {
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = $v;
        rounds16!(@8 a, b, c, d, e, f, g, h, $w, $k, $base, 0);
        rounds16!(@8 a, b, c, d, e, f, g, h, $w, $k, $base, 8);
        $v = [a, b, c, d, e, f, g, h];
    };
    (@8 $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident,
     $w:ident, $k:ident, $base:expr, $i:expr) => {
        round!($a, $b, $c, $d, $e, $f, $g, $h, $w[$i], $k[$base + $i]);
        round!($h, $a, $b, $c, $d, $e, $f, $g, $w[$i + 1], $k[$base + $i + 1]);
        round!($g, $h, $a, $b, $c, $d, $e, $f, $w[$i + 2], $k[$base + $i + 2]);
        round!($f, $g, $h, $a, $b, $c, $d, $e, $w[$i + 3], $k[$base + $i + 3]);
        round!($e, $f, $g, $h, $a, $b, $c, $d, $w[$i + 4], $k[$base + $i + 4]);
        round!($d, $e, $f, $g, $h, $a, $b, $c, $w[$i + 5], $k[$base + $i + 5]);
        round!($c, $d, $e, $f, $g, $h, $a, $b, $w[$i + 6], $k[$base + $i + 6]);
        round!($b, $c, $d, $e, $f, $g, $h, $a, $w[$i + 7], $k[$base + $i + 7]);
    };
}

/// The next sixteen message-schedule words, in place: `w[j]` becomes `W[t + 16]` for `W[t] = w[j]`
/// (σ0 of `W[t − 15]`, `W[t − 7]`, σ1 of `W[t − 2]`, the last two already updated for `j ≥ 7`
/// and `j ≥ 2`). Unrolled with literal indices, so that `w` stays in registers; no loop, so that
/// it also runs in `const` evaluation (the scalar tier's precomputed final block).
macro_rules! schedule16 {
    ($w:ident) => {
        schedule16!(@ $w, 0);
        schedule16!(@ $w, 1);
        schedule16!(@ $w, 2);
        schedule16!(@ $w, 3);
        schedule16!(@ $w, 4);
        schedule16!(@ $w, 5);
        schedule16!(@ $w, 6);
        schedule16!(@ $w, 7);
        schedule16!(@ $w, 8);
        schedule16!(@ $w, 9);
        schedule16!(@ $w, 10);
        schedule16!(@ $w, 11);
        schedule16!(@ $w, 12);
        schedule16!(@ $w, 13);
        schedule16!(@ $w, 14);
        schedule16!(@ $w, 15);
    };
    (@ $w:ident, $j:expr) => {
        let w15 = $w[($j + 1) & 15];
        let w2 = $w[($j + 14) & 15];
        let s0 = xor3(ror::<1, 63>(w15), ror::<8, 56>(w15), shr::<7>(w15));
        let s1 = xor3(ror::<19, 45>(w2), ror::<61, 3>(w2), shr::<6>(w2));
        $w[$j] = add(add($w[$j], s0), add($w[($j + 9) & 15], s1));
    };
}

/// Defines `unsafe fn $name(state: &mut [[u64; N]; 8], lanes: &[&[u8]; N], blocks: usize)`:
/// runs the SHA-512 compression function over the first `blocks` 128-byte blocks of each lane.
/// `state[j][i]` is word `j` of lane `i`'s hash state.
///
/// Safety contract of the generated function: the CPU has the features its attributes enable,
/// and every lane holds at least `blocks * 128` bytes.
macro_rules! compress_fn {
    ($(#[$attr:meta])* $name:ident, $n:literal) => {
        $(#[$attr])*
        unsafe fn $name(state: &mut [[u64; $n]; 8], lanes: &[&[u8]; $n], blocks: usize) {
            let mut s = [
                load_lanes(&state[0]),
                load_lanes(&state[1]),
                load_lanes(&state[2]),
                load_lanes(&state[3]),
                load_lanes(&state[4]),
                load_lanes(&state[5]),
                load_lanes(&state[6]),
                load_lanes(&state[7]),
            ];
            let offsets = lane_offsets(lanes);
            for block in 0..blocks {
                // SAFETY: the caller guarantees `blocks * 128` bytes in every lane, so this block
                // of lane 0 and (through `offsets`) of every other lane is in bounds.
                let mut w = unsafe { load_words(lanes[0].as_ptr().add(block * 128), offsets) };
                let mut v = s;
                rounds16!(v, w, K, 0);
                schedule16!(w);
                rounds16!(v, w, K, 16);
                schedule16!(w);
                rounds16!(v, w, K, 32);
                schedule16!(w);
                rounds16!(v, w, K, 48);
                schedule16!(w);
                rounds16!(v, w, K, 64);
                for (x, y) in s.iter_mut().zip(v) {
                    *x = add(*x, y);
                }
            }
            for (word, x) in state.iter_mut().zip(s) {
                store_lanes(word, x);
            }
        }
    };
}

pub(super) use {compress_fn, round, rounds16, schedule16};
