//! Least-squares similarity between two landmark shapes (dlib's
//! `find_tform_between_shapes`, Umeyama 1991), linear part only.

/// The 2×2 linear part `c·R` (scale times proper rotation) of the similarity transform
/// that best maps `from` onto `to` in the least-squares sense. Shapes are flat
/// `[x0, y0, x1, y1, …]` of equal length.
///
/// dlib obtains `c·R` from an SVD of the 2×2 cross-covariance; in 2-D the same optimum
/// has the closed form `[[a, -b], [b, a]] / σ²_from` with `a = Σ(to·from)`,
/// `b = Σ(to × from)` over centred points (including dlib's reflection handling, which
/// always yields a proper rotation). The result agrees with dlib's to rounding error,
/// far below the `f32` precision it is cast to before use.
///
/// Returns `[m00, m01, m10, m11]`. With one point, or when `from` has zero spread, dlib
/// falls back to the identity rotation; so do we.
pub fn similarity_linear(from: &[f32], to: &[f32]) -> [f64; 4] {
    let n = from.len() / 2;
    if n <= 1 || to.len() != from.len() {
        return [1.0, 0.0, 0.0, 1.0];
    }
    let (mut mfx, mut mfy, mut mtx, mut mty) = (0f64, 0f64, 0f64, 0f64);
    for (f, t) in from.chunks_exact(2).zip(to.chunks_exact(2)) {
        mfx += f[0] as f64;
        mfy += f[1] as f64;
        mtx += t[0] as f64;
        mty += t[1] as f64;
    }
    let nf = n as f64;
    mfx /= nf;
    mfy /= nf;
    mtx /= nf;
    mty /= nf;
    let (mut sigma_from, mut a, mut b) = (0f64, 0f64, 0f64);
    for (f, t) in from.chunks_exact(2).zip(to.chunks_exact(2)) {
        let (fx, fy) = (f[0] as f64 - mfx, f[1] as f64 - mfy);
        let (tx, ty) = (t[0] as f64 - mtx, t[1] as f64 - mty);
        sigma_from += fx * fx + fy * fy;
        a += tx * fx + ty * fy;
        b += ty * fx - tx * fy;
    }
    if sigma_from == 0.0 {
        return [1.0, 0.0, 0.0, 1.0];
    }
    // The 1/n factors of the covariance and of σ² cancel.
    [
        a / sigma_from,
        -b / sigma_from,
        b / sigma_from,
        a / sigma_from,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_exact_similarity() {
        let from = [0.0f32, 0.0, 1.0, 0.0, 0.0, 2.0, -1.0, 0.5];
        let (s, th) = (1.7f64, 0.4f64);
        let (c, si) = (s * th.cos(), s * th.sin());
        let to: Vec<f32> = from
            .chunks_exact(2)
            .flat_map(|p| {
                let (x, y) = (p[0] as f64, p[1] as f64);
                [(c * x - si * y + 3.0) as f32, (si * x + c * y - 2.0) as f32]
            })
            .collect();
        let m = similarity_linear(&from, &to);
        for (got, want) in m.iter().zip([c, -si, si, c]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn mirrored_target_still_gives_rotation() {
        // A reflection cannot be represented; dlib (and we) return a proper rotation.
        let from = [0.0f32, 0.0, 1.0, 0.0, 0.0, 1.0];
        let to = [0.0f32, 0.0, -1.0, 0.0, 0.0, 1.0];
        let m = similarity_linear(&from, &to);
        let det = m[0] * m[3] - m[1] * m[2];
        assert!(det >= 0.0);
        assert_eq!(
            similarity_linear(&[1.0, 1.0], &[5.0, 5.0]),
            [1.0, 0.0, 0.0, 1.0]
        );
    }
}
