//! Distance kernels. Portable scalar implementations; runtime-dispatched SIMD paths arrive
//! with the vector-search issue and must match these results.
//!
//! Conventions: smaller is always closer. `l2` is the squared Euclidean distance, `cosine` is
//! 1 − cosine similarity, clamped at 0 (1 when either vector is all zeros), `dot` is the negative inner
//! product, `hamming` counts differing bits of uint8 vectors.

use std::str::FromStr;

use crate::error::{Error, Result};

/// How two vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DistanceType {
    #[default]
    L2,
    Cosine,
    Dot,
    Hamming,
}

impl FromStr for DistanceType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(DistanceType::L2),
            "cosine" => Ok(DistanceType::Cosine),
            "dot" => Ok(DistanceType::Dot),
            "hamming" => Ok(DistanceType::Hamming),
            other => Err(Error::invalid(format!(
                "unknown distance type '{other}'; use 'l2', 'cosine', 'dot' or 'hamming'"
            ))),
        }
    }
}

/// Squared Euclidean distance.
pub fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Inner product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// 1 − cosine similarity, given the query's norm; 1 when either vector is all zeros.
pub fn cosine(a: &[f32], b: &[f32], a_norm: f32) -> f32 {
    let b_norm = dot(b, b).sqrt();
    if a_norm == 0.0 || b_norm == 0.0 {
        return 1.0;
    }
    // Rounding can push identical directions a hair below zero.
    (1.0 - dot(a, b) / (a_norm * b_norm)).max(0.0)
}

/// Number of differing bits.
pub fn hamming(a: &[u8], b: &[u8]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x ^ y).count_ones())
        .sum::<u32>() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(a: &[f32], b: &[f32]) -> (f64, f64) {
        let l2: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum();
        let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
        (l2, dot)
    }

    proptest! {
        #[test]
        fn kernels_match_an_f64_reference(pairs in proptest::collection::vec((-10f32..10.0, -10f32..10.0), 1..100)) {
            let (a, b): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
            let (want_l2, want_dot) = reference(&a, &b);
            prop_assert!((l2(&a, &b) as f64 - want_l2).abs() <= 1e-3 * (1.0 + want_l2));
            prop_assert!((dot(&a, &b) as f64 - want_dot).abs() <= 1e-3 * (1.0 + want_dot.abs()));
            let c = cosine(&a, &b, dot(&a, &a).sqrt());
            prop_assert!((-1e-4..=2.0 + 1e-4).contains(&c));
        }
    }

    #[test]
    fn edge_cases() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0], 0.0), 1.0);
        assert!(cosine(&[1.0, 2.0], &[2.0, 4.0], 5f32.sqrt()).abs() < 1e-6);
        assert_eq!(hamming(&[0b1010, 0xFF], &[0b0110, 0x0F]), 6.0);
        assert_eq!(
            "COSINE".parse::<DistanceType>().unwrap(),
            DistanceType::Cosine
        );
        assert!("manhattan".parse::<DistanceType>().is_err());
    }
}
