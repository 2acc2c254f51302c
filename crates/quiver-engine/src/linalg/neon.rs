//! aarch64 NEON (4 f32 lanes), part of every arm64 CPU's baseline. Half floats are widened
//! lane by lane (stable Rust has no f16 vector type yet).

use std::arch::aarch64::*;

use half::f16;

use super::kernels::{kernel_table, Isa, Kernels};

pub(super) struct Neon;

impl Isa for Neon {
    type V = float32x4_t;
    const LANES: usize = 4;
    type D = float64x2_t;
    const D_LANES: usize = 2;

    // SAFETY (every method): NEON is always present on aarch64; loads read LANES values the
    // caller guarantees.
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        unsafe { vdupq_n_f32(0.0) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        unsafe { vdupq_n_f32(x) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        unsafe { vst1q_f32(p, v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self::V {
        unsafe {
            let h = p.cast::<[f16; 4]>().read_unaligned();
            let widened = h.map(f16::to_f32);
            vld1q_f32(widened.as_ptr())
        }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self::V, b: Self::V, acc: Self::V) -> Self::V {
        unsafe { vfmaq_f32(acc, a, b) }
    }
    #[inline(always)]
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V {
        unsafe { vsubq_f32(a, b) }
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        unsafe { vaddq_f32(a, b) }
    }
    #[inline(always)]
    unsafe fn sum(v: Self::V) -> f32 {
        unsafe { vaddvq_f32(v) }
    }

    #[inline(always)]
    unsafe fn zero_d() -> Self::D {
        unsafe { vdupq_n_f64(0.0) }
    }
    #[inline(always)]
    unsafe fn load_d(p: *const f64) -> Self::D {
        unsafe { vld1q_f64(p) }
    }
    #[inline(always)]
    unsafe fn fmadd_d(a: Self::D, b: Self::D, acc: Self::D) -> Self::D {
        unsafe { vfmaq_f64(acc, a, b) }
    }
    #[inline(always)]
    unsafe fn sub_d(a: Self::D, b: Self::D) -> Self::D {
        unsafe { vsubq_f64(a, b) }
    }
    #[inline(always)]
    unsafe fn add_d(a: Self::D, b: Self::D) -> Self::D {
        unsafe { vaddq_f64(a, b) }
    }
    #[inline(always)]
    unsafe fn sum_d(v: Self::D) -> f64 {
        unsafe { vaddvq_f64(v) }
    }

    #[inline(always)]
    unsafe fn hamming(a: &[u8], b: &[u8]) -> u32 {
        let n = a.len().min(b.len());
        let mut i = 0;
        let mut bits = 0u32;
        unsafe {
            while i + 16 <= n {
                let x = veorq_u8(vld1q_u8(a.as_ptr().add(i)), vld1q_u8(b.as_ptr().add(i)));
                bits += u32::from(vaddlvq_u8(vcntq_u8(x)));
                i += 16;
            }
        }
        while i < n {
            bits += (a[i] ^ b[i]).count_ones();
            i += 1;
        }
        bits
    }
}

pub(super) static KERNELS: Kernels = kernel_table!(Neon, "neon", "neon");
