//! x86_64 instruction sets: AVX2 with FMA and F16C (8 f32 lanes), and AVX-512 F+BW (16 lanes,
//! masked tails are left to the scalar loop). Chosen at run time by `linalg::kernels`.

use std::arch::x86_64::*;

use half::f16;

use super::kernels::{kernel_table, Isa, Kernels};

pub(super) struct Avx2;

impl Isa for Avx2 {
    type V = __m256;
    const LANES: usize = 8;
    type D = __m256d;
    const D_LANES: usize = 4;

    // SAFETY (every method): only called from functions compiled with avx2, fma and f16c,
    // reached after detecting them; loads read LANES values the caller guarantees.
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self::V {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, acc: Self::V) -> Self::V {
        unsafe { _mm256_fmadd_ps(a, b, acc) }
    }
    #[inline(always)]
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sum(v: Self::V) -> f32 {
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0x55>(s, s));
            _mm_cvtss_f32(s)
        }
    }

    #[inline(always)]
    unsafe fn zero_d() -> Self::D {
        unsafe { _mm256_setzero_pd() }
    }
    #[inline(always)]
    unsafe fn load_d(p: *const f64) -> Self::D {
        unsafe { _mm256_loadu_pd(p) }
    }
    #[inline(always)]
    unsafe fn fmadd_d(a: Self::D, b: Self::D, acc: Self::D) -> Self::D {
        unsafe { _mm256_fmadd_pd(a, b, acc) }
    }
    #[inline(always)]
    unsafe fn sub_d(a: Self::D, b: Self::D) -> Self::D {
        unsafe { _mm256_sub_pd(a, b) }
    }
    #[inline(always)]
    unsafe fn add_d(a: Self::D, b: Self::D) -> Self::D {
        unsafe { _mm256_add_pd(a, b) }
    }
    #[inline(always)]
    unsafe fn sum_d(v: Self::D) -> f64 {
        unsafe {
            let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
            _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
        }
    }

    /// Per byte: popcount by two 4-bit table lookups, summed into u64 lanes by `sad`.
    #[inline(always)]
    unsafe fn hamming(a: &[u8], b: &[u8]) -> u32 {
        let n = a.len().min(b.len());
        let mut i = 0;
        unsafe {
            let table = _mm256_setr_epi8(
                0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3,
                2, 3, 3, 4,
            );
            let low = _mm256_set1_epi8(0x0f);
            let mut acc = _mm256_setzero_si256();
            while i + 32 <= n {
                let x = _mm256_xor_si256(
                    _mm256_loadu_si256(a.as_ptr().add(i).cast()),
                    _mm256_loadu_si256(b.as_ptr().add(i).cast()),
                );
                let lo = _mm256_and_si256(x, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low);
                let counts = _mm256_add_epi8(
                    _mm256_shuffle_epi8(table, lo),
                    _mm256_shuffle_epi8(table, hi),
                );
                acc = _mm256_add_epi64(acc, _mm256_sad_epu8(counts, _mm256_setzero_si256()));
                i += 32;
            }
            let mut lanes = [0u64; 4];
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc);
            let mut bits = lanes.iter().sum::<u64>() as u32;
            while i < n {
                bits += (a[i] ^ b[i]).count_ones();
                i += 1;
            }
            bits
        }
    }
}

pub(super) struct Avx512;

impl Isa for Avx512 {
    type V = __m512;
    const LANES: usize = 16;
    type D = __m512d;
    const D_LANES: usize = 8;

    // SAFETY (every method): only called from functions compiled with avx512f and avx512bw
    // (plus avx2, fma, f16c), reached after detecting them; loads read LANES values the caller
    // guarantees.
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self::V {
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast::<__m256i>())) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, acc: Self::V) -> Self::V {
        unsafe { _mm512_fmadd_ps(a, b, acc) }
    }
    #[inline(always)]
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn sum(v: Self::V) -> f32 {
        unsafe { _mm512_reduce_add_ps(v) }
    }

    #[inline(always)]
    unsafe fn zero_d() -> Self::D {
        unsafe { _mm512_setzero_pd() }
    }
    #[inline(always)]
    unsafe fn load_d(p: *const f64) -> Self::D {
        unsafe { _mm512_loadu_pd(p) }
    }
    #[inline(always)]
    unsafe fn fmadd_d(a: Self::D, b: Self::D, acc: Self::D) -> Self::D {
        unsafe { _mm512_fmadd_pd(a, b, acc) }
    }
    #[inline(always)]
    unsafe fn sub_d(a: Self::D, b: Self::D) -> Self::D {
        unsafe { _mm512_sub_pd(a, b) }
    }
    #[inline(always)]
    unsafe fn add_d(a: Self::D, b: Self::D) -> Self::D {
        unsafe { _mm512_add_pd(a, b) }
    }
    #[inline(always)]
    unsafe fn sum_d(v: Self::D) -> f64 {
        unsafe { _mm512_reduce_add_pd(v) }
    }

    #[inline(always)]
    unsafe fn hamming(a: &[u8], b: &[u8]) -> u32 {
        let n = a.len().min(b.len());
        let mut i = 0;
        unsafe {
            let table = _mm512_broadcast_i32x4(_mm_setr_epi8(
                0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
            ));
            let low = _mm512_set1_epi8(0x0f);
            let mut acc = _mm512_setzero_si512();
            while i + 64 <= n {
                let x = _mm512_xor_si512(
                    _mm512_loadu_si512(a.as_ptr().add(i).cast()),
                    _mm512_loadu_si512(b.as_ptr().add(i).cast()),
                );
                let lo = _mm512_and_si512(x, low);
                let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(x), low);
                let counts = _mm512_add_epi8(
                    _mm512_shuffle_epi8(table, lo),
                    _mm512_shuffle_epi8(table, hi),
                );
                acc = _mm512_add_epi64(acc, _mm512_sad_epu8(counts, _mm512_setzero_si512()));
                i += 64;
            }
            let mut bits = _mm512_reduce_add_epi64(acc) as u32;
            // Rows of binary vectors are often short: the AVX2 loop takes 32-byte remainders.
            bits += Avx2::hamming(&a[i..n], &b[i..n]);
            bits
        }
    }
}

static AVX2: Kernels = kernel_table!(Avx2, "avx2", "avx2,fma,f16c");
static AVX512: Kernels = kernel_table!(Avx512, "avx512", "avx512f,avx512bw,avx2,fma,f16c");

/// The AVX2 table, when this CPU has AVX2, FMA and F16C.
pub(super) fn avx2() -> Option<&'static Kernels> {
    (is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    .then_some(&AVX2)
}

/// The AVX-512 table, when this CPU has AVX-512 F and BW besides the AVX2 set.
pub(super) fn avx512() -> Option<&'static Kernels> {
    (avx2().is_some()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw"))
    .then_some(&AVX512)
}
