//! The portable instruction set: plain arrays of lanes that the compiler vectorises for the
//! baseline CPU (SSE2 on x86_64, NEON on aarch64). Used where no faster set is detected, and as
//! the reference the SIMD sets are tested against.

use half::f16;

use super::kernels::{kernel_table, Isa, Kernels};

const N: usize = 8;
const M: usize = 4;

pub(super) struct Portable;

impl Isa for Portable {
    type V = [f32; N];
    const LANES: usize = N;
    type D = [f64; M];
    const D_LANES: usize = M;

    #[inline(always)]
    unsafe fn zero() -> Self::V {
        [0.0; N]
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; N]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees N readable values at `p`.
        unsafe { p.cast::<[f32; N]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: the caller guarantees N writable values at `p`.
        unsafe { p.cast::<[f32; N]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self::V {
        // SAFETY: the caller guarantees N readable values at `p`.
        let h = unsafe { p.cast::<[f16; N]>().read_unaligned() };
        h.map(f16::to_f32)
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, acc: Self::V) -> Self::V {
        std::array::from_fn(|i| acc[i] + a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn sum(v: Self::V) -> f32 {
        ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
    }

    #[inline(always)]
    unsafe fn zero_d() -> Self::D {
        [0.0; M]
    }
    #[inline(always)]
    unsafe fn load_d(p: *const f64) -> Self::D {
        // SAFETY: the caller guarantees M readable values at `p`.
        unsafe { p.cast::<[f64; M]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn fmadd_d(a: Self::D, b: Self::D, acc: Self::D) -> Self::D {
        std::array::from_fn(|i| acc[i] + a[i] * b[i])
    }
    #[inline(always)]
    unsafe fn sub_d(a: Self::D, b: Self::D) -> Self::D {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    unsafe fn add_d(a: Self::D, b: Self::D) -> Self::D {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn sum_d(v: Self::D) -> f64 {
        (v[0] + v[2]) + (v[1] + v[3])
    }

    #[inline(always)]
    unsafe fn hamming(a: &[u8], b: &[u8]) -> u32 {
        let words = a.chunks_exact(8).zip(b.chunks_exact(8));
        let mut bits: u32 = words
            .map(|(x, y)| {
                let x = u64::from_le_bytes(x.try_into().unwrap_or_default());
                let y = u64::from_le_bytes(y.try_into().unwrap_or_default());
                (x ^ y).count_ones()
            })
            .sum();
        let tail = a.len() / 8 * 8;
        for (x, y) in a[tail..].iter().zip(&b[tail.min(b.len())..]) {
            bits += (x ^ y).count_ones();
        }
        bits
    }
}

pub(super) static KERNELS: Kernels = kernel_table!(Portable, "portable");
