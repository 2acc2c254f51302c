//! The distance kernels, written once over an instruction set's vector operations ([`Isa`]).
//!
//! Each instruction set (portable, AVX2, AVX-512, NEON) implements [`Isa`] with
//! `#[inline(always)]` methods; [`kernel_table!`] instantiates every kernel inside a
//! `#[target_feature]` function of that set, where the methods inline into straight SIMD code.
//! Sums use four independent accumulators so consecutive fused multiply-adds do not wait on
//! each other.

use half::f16;

use super::DistanceType;

/// Vector operations of one instruction set. Every method is `unsafe`: it may use instructions
/// the CPU must support, and loads read `LANES` (or `D_LANES`) elements from raw pointers.
pub(super) trait Isa {
    /// A register of f32 lanes.
    type V: Copy;
    const LANES: usize;
    /// A register of f64 lanes.
    type D: Copy;
    const D_LANES: usize;

    unsafe fn zero() -> Self::V;
    /// Every lane set to `x`.
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `LANES` half floats widened to f32.
    unsafe fn load_f16(p: *const f16) -> Self::V;
    /// `acc + a * b`.
    unsafe fn fmadd(a: Self::V, b: Self::V, acc: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sum(v: Self::V) -> f32;

    unsafe fn zero_d() -> Self::D;
    unsafe fn load_d(p: *const f64) -> Self::D;
    unsafe fn fmadd_d(a: Self::D, b: Self::D, acc: Self::D) -> Self::D;
    unsafe fn sub_d(a: Self::D, b: Self::D) -> Self::D;
    unsafe fn add_d(a: Self::D, b: Self::D) -> Self::D;
    unsafe fn sum_d(v: Self::D) -> f64;

    /// Differing bits of two byte strings of one length.
    unsafe fn hamming(a: &[u8], b: &[u8]) -> u32;
}

/// Stored vector elements compared against an f32 query.
pub(super) trait Element: Copy {
    unsafe fn load<I: Isa>(p: *const Self) -> I::V;
    fn to_f32(self) -> f32;
}

impl Element for f32 {
    #[inline(always)]
    unsafe fn load<I: Isa>(p: *const Self) -> I::V {
        // SAFETY: the caller guarantees LANES readable values at `p`.
        unsafe { I::load(p) }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Element for f16 {
    #[inline(always)]
    unsafe fn load<I: Isa>(p: *const Self) -> I::V {
        // SAFETY: the caller guarantees LANES readable values at `p`.
        unsafe { I::load_f16(p) }
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// Inner product of `q` and `v` (the shorter length counts).
#[inline(always)]
pub(super) unsafe fn dot<I: Isa, E: Element>(q: &[f32], v: &[E]) -> f32 {
    let n = q.len().min(v.len());
    let (qp, vp) = (q.as_ptr(), v.as_ptr());
    let mut i = 0;
    // SAFETY: every load reads LANES elements at an offset at most n - LANES.
    unsafe {
        let mut acc = [I::zero(); 4];
        while i + 4 * I::LANES <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + k * I::LANES;
                *a = I::fmadd(I::load(qp.add(o)), E::load::<I>(vp.add(o)), *a);
            }
            i += 4 * I::LANES;
        }
        while i + I::LANES <= n {
            acc[0] = I::fmadd(I::load(qp.add(i)), E::load::<I>(vp.add(i)), acc[0]);
            i += I::LANES;
        }
        let mut s = I::sum(I::add(I::add(acc[0], acc[1]), I::add(acc[2], acc[3])));
        while i < n {
            s += q[i] * v[i].to_f32();
            i += 1;
        }
        s
    }
}

/// Squared Euclidean distance.
#[inline(always)]
pub(super) unsafe fn l2<I: Isa, E: Element>(q: &[f32], v: &[E]) -> f32 {
    let n = q.len().min(v.len());
    let (qp, vp) = (q.as_ptr(), v.as_ptr());
    let mut i = 0;
    // SAFETY: as in `dot`.
    unsafe {
        let mut acc = [I::zero(); 4];
        while i + 4 * I::LANES <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + k * I::LANES;
                let d = I::sub(I::load(qp.add(o)), E::load::<I>(vp.add(o)));
                *a = I::fmadd(d, d, *a);
            }
            i += 4 * I::LANES;
        }
        while i + I::LANES <= n {
            let d = I::sub(I::load(qp.add(i)), E::load::<I>(vp.add(i)));
            acc[0] = I::fmadd(d, d, acc[0]);
            i += I::LANES;
        }
        let mut s = I::sum(I::add(I::add(acc[0], acc[1]), I::add(acc[2], acc[3])));
        while i < n {
            let d = q[i] - v[i].to_f32();
            s += d * d;
            i += 1;
        }
        s
    }
}

/// `(q · v, v · v)` in one pass, for cosine.
#[inline(always)]
pub(super) unsafe fn dot_norm<I: Isa, E: Element>(q: &[f32], v: &[E]) -> (f32, f32) {
    let n = q.len().min(v.len());
    let (qp, vp) = (q.as_ptr(), v.as_ptr());
    let mut i = 0;
    // SAFETY: as in `dot`.
    unsafe {
        let mut dots = [I::zero(); 2];
        let mut norms = [I::zero(); 2];
        while i + 2 * I::LANES <= n {
            for k in 0..2 {
                let o = i + k * I::LANES;
                let x = E::load::<I>(vp.add(o));
                dots[k] = I::fmadd(I::load(qp.add(o)), x, dots[k]);
                norms[k] = I::fmadd(x, x, norms[k]);
            }
            i += 2 * I::LANES;
        }
        let mut d = I::sum(I::add(dots[0], dots[1]));
        let mut m = I::sum(I::add(norms[0], norms[1]));
        while i < n {
            let x = v[i].to_f32();
            d += q[i] * x;
            m += x * x;
            i += 1;
        }
        (d, m)
    }
}

/// f64 versions: (q · v, squared distance, v · v) as asked.
#[inline(always)]
pub(super) unsafe fn dot_d<I: Isa>(q: &[f64], v: &[f64]) -> f64 {
    let n = q.len().min(v.len());
    let (qp, vp) = (q.as_ptr(), v.as_ptr());
    let mut i = 0;
    // SAFETY: every load reads D_LANES values at an offset at most n - D_LANES.
    unsafe {
        let mut acc = [I::zero_d(); 4];
        while i + 4 * I::D_LANES <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + k * I::D_LANES;
                *a = I::fmadd_d(I::load_d(qp.add(o)), I::load_d(vp.add(o)), *a);
            }
            i += 4 * I::D_LANES;
        }
        let mut s = I::sum_d(I::add_d(I::add_d(acc[0], acc[1]), I::add_d(acc[2], acc[3])));
        while i < n {
            s += q[i] * v[i];
            i += 1;
        }
        s
    }
}

#[inline(always)]
pub(super) unsafe fn l2_d<I: Isa>(q: &[f64], v: &[f64]) -> f64 {
    let n = q.len().min(v.len());
    let (qp, vp) = (q.as_ptr(), v.as_ptr());
    let mut i = 0;
    // SAFETY: as in `dot_d`.
    unsafe {
        let mut acc = [I::zero_d(); 4];
        while i + 4 * I::D_LANES <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let o = i + k * I::D_LANES;
                let d = I::sub_d(I::load_d(qp.add(o)), I::load_d(vp.add(o)));
                *a = I::fmadd_d(d, d, *a);
            }
            i += 4 * I::D_LANES;
        }
        let mut s = I::sum_d(I::add_d(I::add_d(acc[0], acc[1]), I::add_d(acc[2], acc[3])));
        while i < n {
            let d = q[i] - v[i];
            s += d * d;
            i += 1;
        }
        s
    }
}

/// 1 − cos from an inner product and both norms: 1 when either vector is all zeros, never
/// below 0 (rounding), NaN when an input was NaN.
#[inline(always)]
pub(super) fn cosine_from(dot: f64, q_norm: f64, v_norm: f64) -> f32 {
    if q_norm == 0.0 || v_norm == 0.0 {
        return 1.0;
    }
    let c = 1.0 - dot / (q_norm * v_norm);
    // Not `max`: it would turn NaN into 0, the best possible distance.
    (if c < 0.0 { 0.0 } else { c }) as f32
}

/// Distances from `q` to each `dim`-long row of `data`, into `out` (one per row).
#[inline(always)]
pub(super) unsafe fn distances<I: Isa, E: Element>(
    kind: DistanceType,
    q: &[f32],
    data: &[E],
    out: &mut [f32],
) {
    let dim = q.len().max(1);
    let rows = data.chunks_exact(dim).zip(out.iter_mut());
    // SAFETY: each row and `q` have `dim` elements; the kernels read no further.
    unsafe {
        match kind {
            DistanceType::L2 => rows.for_each(|(v, o)| *o = l2::<I, E>(q, v)),
            DistanceType::Dot => rows.for_each(|(v, o)| *o = -dot::<I, E>(q, v)),
            DistanceType::Cosine => {
                let q_norm = (dot::<I, f32>(q, q) as f64).sqrt();
                rows.for_each(|(v, o)| {
                    let (d, m) = dot_norm::<I, E>(q, v);
                    *o = cosine_from(d as f64, q_norm, (m as f64).sqrt());
                })
            }
            DistanceType::Hamming => out.iter_mut().for_each(|o| *o = f32::NAN),
        }
    }
}

/// f64 rows against an f64 query (distances rounded to f32 at the end).
#[inline(always)]
pub(super) unsafe fn distances_d<I: Isa>(
    kind: DistanceType,
    q: &[f64],
    data: &[f64],
    out: &mut [f32],
) {
    let dim = q.len().max(1);
    let rows = data.chunks_exact(dim).zip(out.iter_mut());
    // SAFETY: each row and `q` have `dim` elements.
    unsafe {
        match kind {
            DistanceType::L2 => rows.for_each(|(v, o)| *o = l2_d::<I>(q, v) as f32),
            DistanceType::Dot => rows.for_each(|(v, o)| *o = -dot_d::<I>(q, v) as f32),
            DistanceType::Cosine => {
                let q_norm = dot_d::<I>(q, q).sqrt();
                rows.for_each(|(v, o)| {
                    *o = cosine_from(dot_d::<I>(q, v), q_norm, dot_d::<I>(v, v).sqrt())
                })
            }
            DistanceType::Hamming => out.iter_mut().for_each(|o| *o = f32::NAN),
        }
    }
}

/// Hamming distances from `q` to each row of `data`.
#[inline(always)]
pub(super) unsafe fn hamming_rows<I: Isa>(q: &[u8], data: &[u8], out: &mut [f32]) {
    let dim = q.len().max(1);
    for (v, o) in data.chunks_exact(dim).zip(out.iter_mut()) {
        // SAFETY: `v` and `q` have the same length.
        *o = unsafe { I::hamming(q, v) } as f32;
    }
}

/// Squared distances from `x` to each of the `out.len()` points stored transposed in `ct`
/// (row `t` holds coordinate `t` of every point): `out[j] = Σ_t (x[t] − ct[t·k + j])²`.
/// Vectorised across points, not coordinates, so short vectors (PQ sub-vectors of 4–16
/// values) run at full width. Coordinates past what `ct` holds are ignored.
#[inline(always)]
pub(super) unsafe fn l2_transposed<I: Isa>(x: &[f32], ct: &[f32], out: &mut [f32]) {
    transposed::<I, true>(x, ct, out)
}

/// Inner products of `x` with each point stored transposed in `ct` (see [`l2_transposed`]).
#[inline(always)]
pub(super) unsafe fn dot_transposed<I: Isa>(x: &[f32], ct: &[f32], out: &mut [f32]) {
    transposed::<I, false>(x, ct, out)
}

#[inline(always)]
unsafe fn transposed<I: Isa, const L2: bool>(x: &[f32], ct: &[f32], out: &mut [f32]) {
    let k = out.len();
    if k == 0 {
        return;
    }
    let dims = x.len().min(ct.len() / k);
    let (cp, op) = (ct.as_ptr(), out.as_mut_ptr());
    let step = |acc: I::V, c: I::V, xt: I::V| -> I::V {
        // SAFETY: register arithmetic only.
        unsafe {
            if L2 {
                let d = I::sub(c, xt);
                I::fmadd(d, d, acc)
            } else {
                I::fmadd(c, xt, acc)
            }
        }
    };
    let mut j = 0;
    // SAFETY: loads read LANES values of row t at columns below k (t < dims, so inside `ct`);
    // stores write LANES values of `out` below k.
    unsafe {
        while j + 4 * I::LANES <= k {
            let mut acc = [I::zero(); 4];
            for (t, &xt) in x.iter().take(dims).enumerate() {
                let xv = I::splat(xt);
                for (b, a) in acc.iter_mut().enumerate() {
                    *a = step(*a, I::load(cp.add(t * k + j + b * I::LANES)), xv);
                }
            }
            for (b, a) in acc.iter().enumerate() {
                I::store(op.add(j + b * I::LANES), *a);
            }
            j += 4 * I::LANES;
        }
        while j + I::LANES <= k {
            let mut acc = I::zero();
            for (t, &xt) in x.iter().take(dims).enumerate() {
                acc = step(acc, I::load(cp.add(t * k + j)), I::splat(xt));
            }
            I::store(op.add(j), acc);
            j += I::LANES;
        }
    }
    for (jj, o) in out.iter_mut().enumerate().skip(j) {
        let mut s = 0f32;
        for (t, &xt) in x.iter().take(dims).enumerate() {
            let c = ct[t * k + jj];
            s += if L2 { (xt - c) * (xt - c) } else { xt * c };
        }
        *o = s;
    }
}

/// Rows of `x` handled together by [`l2_matrix`]: each centroid load serves this many rows.
const ROW_BLOCK: usize = 4;
/// Bytes of centroids kept hot while a block of rows passes over them (about L2-sized).
const CENTROID_BLOCK_BYTES: usize = 256 * 1024;

/// Squared distances between every row of `x` and every centroid of `c` (both `dim` wide),
/// as ‖x‖² + ‖c‖² − 2·x·c: `out[i * centroids + j]`. The inner products are computed four rows
/// at a time against centroid blocks that stay in cache.
#[inline(always)]
pub(super) unsafe fn l2_matrix<I: Isa>(
    x: &[f32],
    x_norms: &[f32],
    c: &[f32],
    c_norms: &[f32],
    dim: usize,
    out: &mut [f32],
) {
    let rows = x_norms.len();
    let centroids = c_norms.len();
    let block = (CENTROID_BLOCK_BYTES / (dim.max(1) * 4)).clamp(1, centroids.max(1));
    for c_start in (0..centroids).step_by(block) {
        let c_end = (c_start + block).min(centroids);
        let mut r = 0;
        while r < rows {
            let take = ROW_BLOCK.min(rows - r);
            for j in c_start..c_end {
                let cj = &c[j * dim..(j + 1) * dim];
                // SAFETY: every row slice and `cj` have `dim` elements.
                let dots = unsafe { dot_rows::<I>(&x[r * dim..(r + take) * dim], dim, cj) };
                for (k, d) in dots.iter().take(take).enumerate() {
                    let v = x_norms[r + k] + c_norms[j] - 2.0 * d;
                    out[(r + k) * centroids + j] = if v < 0.0 { 0.0 } else { v };
                }
            }
            r += take;
        }
    }
}

/// Inner products of up to four `dim`-long rows (packed in `rows`) with `c`.
#[inline(always)]
unsafe fn dot_rows<I: Isa>(rows: &[f32], dim: usize, c: &[f32]) -> [f32; ROW_BLOCK] {
    let count = rows.len() / dim.max(1);
    let mut out = [0f32; ROW_BLOCK];
    if count < ROW_BLOCK {
        for (k, o) in out.iter_mut().take(count).enumerate() {
            // SAFETY: row k and `c` have `dim` elements.
            *o = unsafe { dot::<I, f32>(&rows[k * dim..(k + 1) * dim], c) };
        }
        return out;
    }
    let (rp, cp) = (rows.as_ptr(), c.as_ptr());
    let mut i = 0;
    // SAFETY: loads stay below `dim` in each of the four rows and in `c`.
    unsafe {
        let mut acc = [I::zero(); ROW_BLOCK];
        while i + I::LANES <= dim {
            let cv = I::load(cp.add(i));
            for (k, a) in acc.iter_mut().enumerate() {
                *a = I::fmadd(I::load(rp.add(k * dim + i)), cv, *a);
            }
            i += I::LANES;
        }
        for (k, o) in out.iter_mut().enumerate() {
            let mut s = I::sum(acc[k]);
            for t in i..dim {
                s += rows[k * dim + t] * c[t];
            }
            *o = s;
        }
    }
    out
}

/// `l2_matrix(x, x_norms, centroids, centroid_norms, dim, out)`.
pub(super) type L2MatrixFn = fn(&[f32], &[f32], &[f32], &[f32], usize, &mut [f32]);

/// Every kernel of one instruction set, as safe function pointers.
pub struct Kernels {
    /// `portable`, `avx2`, `avx512` or `neon`.
    pub isa: &'static str,
    pub(super) dot: fn(&[f32], &[f32]) -> f32,
    pub(super) l2: fn(&[f32], &[f32]) -> f32,
    pub(super) dot_norm: fn(&[f32], &[f32]) -> (f32, f32),
    pub(super) hamming: fn(&[u8], &[u8]) -> u32,
    pub(super) distances_f32: fn(DistanceType, &[f32], &[f32], &mut [f32]),
    pub(super) distances_f16: fn(DistanceType, &[f32], &[f16], &mut [f32]),
    pub(super) distances_f64: fn(DistanceType, &[f64], &[f64], &mut [f32]),
    pub(super) hamming_rows: fn(&[u8], &[u8], &mut [f32]),
    pub(super) l2_matrix: L2MatrixFn,
    pub(super) l2_transposed: fn(&[f32], &[f32], &mut [f32]),
    pub(super) dot_transposed: fn(&[f32], &[f32], &mut [f32]),
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).finish()
    }
}

/// A [`Kernels`] table for instruction set `$isa`, every kernel compiled with `$features`
/// (none for the portable set). The safe wrappers are sound only where the CPU has those
/// features: a table is handed out only after detecting them (see `linalg::kernels_for`).
macro_rules! kernel_table {
    ($isa:ty, $name:literal $(, $features:literal)?) => {{
        use half::f16;
        use $crate::linalg::kernels as k;
        use $crate::linalg::DistanceType;

        $(#[target_feature(enable = $features)])?
        unsafe fn dot_tf(a: &[f32], b: &[f32]) -> f32 {
            unsafe { k::dot::<$isa, f32>(a, b) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn l2_tf(a: &[f32], b: &[f32]) -> f32 {
            unsafe { k::l2::<$isa, f32>(a, b) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn dot_norm_tf(a: &[f32], b: &[f32]) -> (f32, f32) {
            unsafe { k::dot_norm::<$isa, f32>(a, b) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn hamming_tf(a: &[u8], b: &[u8]) -> u32 {
            unsafe { <$isa as k::Isa>::hamming(a, b) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn distances_f32_tf(t: DistanceType, q: &[f32], d: &[f32], o: &mut [f32]) {
            unsafe { k::distances::<$isa, f32>(t, q, d, o) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn distances_f16_tf(t: DistanceType, q: &[f32], d: &[f16], o: &mut [f32]) {
            unsafe { k::distances::<$isa, f16>(t, q, d, o) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn distances_f64_tf(t: DistanceType, q: &[f64], d: &[f64], o: &mut [f32]) {
            unsafe { k::distances_d::<$isa>(t, q, d, o) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn hamming_rows_tf(q: &[u8], d: &[u8], o: &mut [f32]) {
            unsafe { k::hamming_rows::<$isa>(q, d, o) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn l2_matrix_tf(
            x: &[f32],
            xn: &[f32],
            c: &[f32],
            cn: &[f32],
            dim: usize,
            o: &mut [f32],
        ) {
            unsafe { k::l2_matrix::<$isa>(x, xn, c, cn, dim, o) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn l2_transposed_tf(x: &[f32], ct: &[f32], o: &mut [f32]) {
            unsafe { k::l2_transposed::<$isa>(x, ct, o) }
        }
        $(#[target_feature(enable = $features)])?
        unsafe fn dot_transposed_tf(x: &[f32], ct: &[f32], o: &mut [f32]) {
            unsafe { k::dot_transposed::<$isa>(x, ct, o) }
        }

        // SAFETY (every wrapper below): this table is only reachable after the CPU was found
        // to support the features the functions above were compiled for.
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            unsafe { dot_tf(a, b) }
        }
        fn l2(a: &[f32], b: &[f32]) -> f32 {
            unsafe { l2_tf(a, b) }
        }
        fn dot_norm(a: &[f32], b: &[f32]) -> (f32, f32) {
            unsafe { dot_norm_tf(a, b) }
        }
        fn hamming(a: &[u8], b: &[u8]) -> u32 {
            unsafe { hamming_tf(a, b) }
        }
        fn distances_f32(t: DistanceType, q: &[f32], d: &[f32], o: &mut [f32]) {
            unsafe { distances_f32_tf(t, q, d, o) }
        }
        fn distances_f16(t: DistanceType, q: &[f32], d: &[f16], o: &mut [f32]) {
            unsafe { distances_f16_tf(t, q, d, o) }
        }
        fn distances_f64(t: DistanceType, q: &[f64], d: &[f64], o: &mut [f32]) {
            unsafe { distances_f64_tf(t, q, d, o) }
        }
        fn hamming_rows(q: &[u8], d: &[u8], o: &mut [f32]) {
            unsafe { hamming_rows_tf(q, d, o) }
        }
        fn l2_matrix(x: &[f32], xn: &[f32], c: &[f32], cn: &[f32], dim: usize, o: &mut [f32]) {
            unsafe { l2_matrix_tf(x, xn, c, cn, dim, o) }
        }
        fn l2_transposed(x: &[f32], ct: &[f32], o: &mut [f32]) {
            unsafe { l2_transposed_tf(x, ct, o) }
        }
        fn dot_transposed(x: &[f32], ct: &[f32], o: &mut [f32]) {
            unsafe { dot_transposed_tf(x, ct, o) }
        }
        k::Kernels {
            isa: $name,
            dot,
            l2,
            dot_norm,
            hamming,
            distances_f32,
            distances_f16,
            distances_f64,
            hamming_rows,
            l2_matrix,
            l2_transposed,
            dot_transposed,
        }
    }};
}
pub(super) use kernel_table;
