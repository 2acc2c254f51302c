//! 8-bit scalar quantization: each dimension's range (from a training sample) split into 255
//! steps, so a vector becomes one byte per dimension, a quarter of its f32 size, and distances
//! are computed from the bytes directly.

use crate::linalg::sq::sq_kernels;
use crate::linalg::DistanceType;

/// A trained scalar quantizer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarQuantizer {
    /// Per dimension: the value of code 0, and the step between codes.
    pub min: Vec<f32>,
    pub scale: Vec<f32>,
}

impl ScalarQuantizer {
    /// Trains on `dim`-wide rows (finite values).
    pub fn train(sample: &[f32], dim: usize) -> Self {
        let mut min = vec![f32::INFINITY; dim];
        let mut max = vec![f32::NEG_INFINITY; dim];
        for row in sample.chunks_exact(dim.max(1)) {
            for i in 0..dim {
                min[i] = min[i].min(row[i]);
                max[i] = max[i].max(row[i]);
            }
        }
        let scale = min
            .iter_mut()
            .zip(&max)
            .map(|(lo, &hi)| {
                if !lo.is_finite() || !hi.is_finite() {
                    *lo = 0.0;
                    return 1.0;
                }
                let step = (hi - *lo) / 255.0;
                // A constant dimension still needs a non-zero step to decode.
                if step > 0.0 {
                    step
                } else {
                    1.0
                }
            })
            .collect();
        ScalarQuantizer { min, scale }
    }

    pub fn dim(&self) -> usize {
        self.min.len()
    }

    /// Codes `v` into `out` (values outside the trained range take the nearest end).
    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        for (((o, &x), &lo), &s) in out.iter_mut().zip(v).zip(&self.min).zip(&self.scale) {
            *o = ((x - lo) / s).round().clamp(0.0, 255.0) as u8;
        }
    }

    /// `v`'s code decoded, as the offset from `min` (the form [`SqQuery`] holds).
    fn offsets_of(&self, codes: &[u8], out: &mut Vec<f32>) {
        out.clear();
        out.extend(
            codes
                .iter()
                .zip(&self.scale)
                .map(|(&c, &s)| f32::from(c) * s),
        );
    }

    /// A query (in the training space) prepared for distances to codes.
    pub fn query(&self, q: &[f32], distance: DistanceType) -> SqQuery {
        match distance {
            DistanceType::Dot => SqQuery::Dot {
                weights: q.iter().zip(&self.scale).map(|(x, s)| x * s).collect(),
                base: q.iter().zip(&self.min).map(|(x, m)| x * m).sum(),
            },
            _ => SqQuery::L2 {
                offsets: q.iter().zip(&self.min).map(|(x, m)| x - m).collect(),
            },
        }
    }

    /// The query a stored code makes (graph construction compares codes with codes).
    pub fn query_of_code(&self, codes: &[u8], distance: DistanceType) -> SqQuery {
        let mut offsets = Vec::with_capacity(codes.len());
        self.offsets_of(codes, &mut offsets);
        match distance {
            DistanceType::Dot => {
                let decoded: Vec<f32> = offsets.iter().zip(&self.min).map(|(o, m)| o + m).collect();
                self.query(&decoded, distance)
            }
            _ => SqQuery::L2 { offsets },
        }
    }

    /// Distance from a prepared query to a code (squared l2, or the negative inner product).
    #[inline]
    pub fn distance(&self, query: &SqQuery, codes: &[u8]) -> f32 {
        let k = sq_kernels();
        match query {
            SqQuery::L2 { offsets } => (k.l2)(offsets, &self.scale, codes),
            SqQuery::Dot { weights, base } => -(base + (k.dot)(weights, codes)),
        }
    }
}

/// A query prepared for [`ScalarQuantizer::distance`].
#[derive(Debug, Clone)]
pub enum SqQuery {
    /// `q − min` per dimension.
    L2 { offsets: Vec<f32> },
    /// `q · scale` per dimension, and `q · min`.
    Dot { weights: Vec<f32>, base: f32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_from_codes_approximate_the_vectors() {
        let rows: Vec<f32> = (0..400)
            .map(|i| ((i * 37) % 101) as f32 / 10.0 - 5.0)
            .collect();
        let sq = ScalarQuantizer::train(&rows, 4);
        let mut code = [0u8; 4];
        for row in rows.chunks_exact(4).take(20) {
            sq.encode(row, &mut code);
            let q = [0.5f32, -1.0, 2.0, 0.0];
            let exact: f32 = q.iter().zip(row).map(|(a, b)| (a - b) * (a - b)).sum();
            let approx = sq.distance(&sq.query(&q, DistanceType::L2), &code);
            // Each value is off by at most half a step (10 / 255 / 2).
            let bound: f32 = q
                .iter()
                .zip(row)
                .map(|(a, b)| (a - b).abs() * 0.04 + 0.001)
                .sum();
            assert!((exact - approx).abs() <= bound, "{exact} vs {approx}");
            let dot: f32 = -q.iter().zip(row).map(|(a, b)| a * b).sum::<f32>();
            let approx = sq.distance(&sq.query(&q, DistanceType::Dot), &code);
            let bound: f32 = q.iter().map(|a| a.abs() * 0.02 + 0.001).sum();
            assert!((dot - approx).abs() <= bound, "{dot} vs {approx}");
            let own = sq.distance(&sq.query_of_code(&code, DistanceType::L2), &code);
            assert!(own.abs() < 1e-6);
        }
        // A constant dimension and out-of-range values still code.
        let flat = ScalarQuantizer::train(&[1.0, 1.0, 1.0, 1.0], 2);
        let mut c = [0u8; 2];
        flat.encode(&[1.0, 300.0], &mut c);
        assert_eq!(c, [0, 255]);
    }
}
