//! The PDQ perceptual hash of a decoded image, computed as Meta's reference does, bit for bit.
//!
//! A port of facebook/ThreatExchange `pdq/cpp`: `hashing/pdqhashing.cpp`
//! (`pdqHash256FromFloatLuma`, `pdqImageDomainQualityMetric`, `dct64To16`,
//! `pdqBuffer16x16ToBits`), `downscaling/downscaling.cpp` (`jaroszFilterFloat`, `box1DFloat`,
//! `decimateFloat`, `computeJaroszFilterWindowSize`) and `hashing/torben.cpp` (Torben's median).
//! Every floating-point operation is done in the same type and the same order as there, so the
//! same luminance gives the same 256 bits and the same quality.
//!
//! Luminance: the reference bindings `pdqhash` (PyPI, a wrapper of that C++ code) and the
//! reference Python port compute `0.299 R + 0.587 G + 0.114 B` in double precision and round it
//! to `f32`; the C++ command-line hasher computes it in `f32`. [`luma_from_rgb8`] follows the
//! former (the interop test compares against it). The image is hashed at its full size, with no
//! prior downscaling, as the reference does.

/// Images smaller than this on either side have no PDQ hash (the reference's
/// `MIN_HASHABLE_DIM`).
pub const MIN_HASHABLE_SIDE: usize = 5;

/// Passes of the Jarosz tent filter (the reference's `PDQ_NUM_JAROSZ_XY_PASSES`).
const JAROSZ_PASSES: usize = 2;

/// Side of the blurred, decimated image the DCT reads.
const BLOCK: usize = 64;

/// Side of the DCT corner kept: 16 × 16 = 256 bits.
const DCT_SIDE: usize = 16;

/// A PDQ hash with its quality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PdqDigest {
    /// The 256 bits in the byte order of the usual 64-hex-digit form (`Hash256::format`: word
    /// 15 first, each word big-endian).
    pub hash: [u8; 32],
    /// 0..=100: how much gradient the image has; Meta advises not to act on hashes below 50.
    pub quality: u8,
}

/// Luminance of packed 8-bit RGB pixels (`rgb.len()` a multiple of 3), as `pdqhash.compute`
/// computes it: `(R·0.299 + G·0.587) + B·0.114` in `f64`, rounded to `f32`.
pub fn luma_from_rgb8(rgb: &[u8]) -> Vec<f32> {
    rgb.chunks_exact(3)
        .map(|p| {
            (f64::from(p[0]) * 0.299 + f64::from(p[1]) * 0.587 + f64::from(p[2]) * 0.114) as f32
        })
        .collect()
}

/// The PDQ hash of a `rows × cols` luminance image in row-major order; `None` when a side is
/// under [`MIN_HASHABLE_SIDE`] (the reference then gives an all-zero hash of quality 0) or
/// `luma` is not `rows × cols` long. `luma` is used as scratch space (the blur runs in place).
pub fn hash_luma(luma: &mut [f32], rows: usize, cols: usize) -> Option<PdqDigest> {
    if rows < MIN_HASHABLE_SIDE
        || cols < MIN_HASHABLE_SIDE
        || luma.len() != rows.checked_mul(cols)?
    {
        return None;
    }
    let mut block = [[0f32; BLOCK]; BLOCK];
    if rows == BLOCK && cols == BLOCK {
        // The reference skips the blur when the input is already 64 × 64.
        for (row, src) in block.iter_mut().zip(luma.chunks_exact(BLOCK)) {
            row.copy_from_slice(src);
        }
    } else {
        let along_rows = jarosz_window(cols, BLOCK);
        let along_cols = jarosz_window(rows, BLOCK);
        let mut scratch = vec![0f32; luma.len()];
        for _ in 0..JAROSZ_PASSES {
            box_along_rows(luma, &mut scratch, cols, along_rows);
            box_along_cols(&scratch, luma, cols, along_cols);
        }
        decimate(luma, rows, cols, &mut block);
    }
    let quality = quality(&block);
    let dct = dct64_to_16(&block);
    Some(PdqDigest {
        hash: bits(&dct),
        quality,
    })
}

/// `computeJaroszFilterWindowSize`: half the block size of the output, rounded up.
fn jarosz_window(old: usize, new: usize) -> usize {
    old.div_ceil(2 * new)
}

/// `boxAlongRowsFloat`: a running box filter of `window` along each row.
fn box_along_rows(input: &[f32], output: &mut [f32], cols: usize, window: usize) {
    for (src, dst) in input.chunks_exact(cols).zip(output.chunks_exact_mut(cols)) {
        box_1d(src, dst, window);
    }
}

/// `box1DFloat` on one contiguous vector: four phases (fill, grow, slide, shrink) whose sums,
/// divisions and order are the reference's.
fn box_1d(input: &[f32], output: &mut [f32], window: usize) {
    let n = input.len();
    let (p1, p2, p3, p4) = phases(n, window);
    let (mut li, mut ri, mut oi) = (0, 0, 0);
    let mut sum = 0f32;
    let mut size = 0i32;
    for _ in 0..p1 {
        sum += input[ri];
        size += 1;
        ri += 1;
    }
    for _ in 0..p2 {
        sum += input[ri];
        size += 1;
        output[oi] = sum / size as f32;
        ri += 1;
        oi += 1;
    }
    for _ in 0..p3 {
        sum += input[ri];
        sum -= input[li];
        output[oi] = sum / size as f32;
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..p4 {
        sum -= input[li];
        size -= 1;
        output[oi] = sum / size as f32;
        li += 1;
        oi += 1;
    }
}

/// `boxAlongColsFloat`: the same filter down each column. Every column gets exactly the
/// operations of `box1DFloat` in the same order; the columns are simply advanced together, a
/// row at a time, so memory is read in order.
fn box_along_cols(input: &[f32], output: &mut [f32], cols: usize, window: usize) {
    let rows = input.len() / cols;
    let (p1, p2, p3, p4) = phases(rows, window);
    let row = |i: usize| &input[i * cols..(i + 1) * cols];
    let mut sums = vec![0f32; cols];
    let (mut li, mut ri, mut oi) = (0, 0, 0);
    let mut size = 0i32;
    for _ in 0..p1 {
        sums.iter_mut().zip(row(ri)).for_each(|(s, v)| *s += v);
        size += 1;
        ri += 1;
    }
    let mut write = |oi: usize, sums: &[f32], size: i32| {
        let out = &mut output[oi * cols..(oi + 1) * cols];
        out.iter_mut()
            .zip(sums)
            .for_each(|(o, s)| *o = s / size as f32);
    };
    for _ in 0..p2 {
        sums.iter_mut().zip(row(ri)).for_each(|(s, v)| *s += v);
        size += 1;
        write(oi, &sums, size);
        ri += 1;
        oi += 1;
    }
    for _ in 0..p3 {
        sums.iter_mut().zip(row(ri)).for_each(|(s, v)| *s += v);
        sums.iter_mut().zip(row(li)).for_each(|(s, v)| *s -= v);
        write(oi, &sums, size);
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..p4 {
        sums.iter_mut().zip(row(li)).for_each(|(s, v)| *s -= v);
        size -= 1;
        write(oi, &sums, size);
        li += 1;
        oi += 1;
    }
}

/// The reference's phase counts for a vector of `n` and a window (a window is never wider
/// than the vector here: `jarosz_window(n, 64) <= n` for `n >= 1`; the reference's loops
/// run zero times on a negative count, and so do these).
fn phases(n: usize, window: usize) -> (usize, usize, usize, usize) {
    let half = (window + 2) / 2;
    (
        half - 1,
        window + 1 - half,
        n.saturating_sub(window),
        half - 1,
    )
}

/// `decimateFloat` to 64 × 64: the pixel under each output cell's centre, the index computed
/// in `f64` as there.
fn decimate(input: &[f32], rows: usize, cols: usize, out: &mut [[f32; BLOCK]; BLOCK]) {
    let at = |o: usize, n: usize| (((o as f64 + 0.5) * n as f64) / BLOCK as f64) as usize;
    for (oi, out_row) in out.iter_mut().enumerate() {
        let ii = at(oi, rows);
        for (oj, cell) in out_row.iter_mut().enumerate() {
            *cell = input[ii * cols + at(oj, cols)];
        }
    }
}

/// `pdqImageDomainQualityMetric`: the sum of quantised vertical and horizontal gradients of
/// the 64 × 64 image, scaled and capped at 100.
fn quality(block: &[[f32; BLOCK]; BLOCK]) -> u8 {
    let step = |u: f32, v: f32| (((u - v) * 100.0) / 255.0) as i32;
    let mut sum: i32 = 0;
    for rows in block.windows(2) {
        for (&u, &v) in rows[0].iter().zip(&rows[1]) {
            sum += step(u, v).abs();
        }
    }
    for row in block {
        for pair in row.windows(2) {
            sum += step(pair[0], pair[1]).abs();
        }
    }
    (sum / 90).min(100) as u8
}

/// The reference's DCT matrix: rows 1..=16 of the 64-point DCT-II basis,
/// `(float)sqrt(2/64) * cos(pi/2/64 * (i+1) * (2j+1))`, the product in `f64`, stored as `f32`.
fn dct_matrix() -> &'static [[f32; BLOCK]; DCT_SIDE] {
    static MATRIX: std::sync::OnceLock<[[f32; BLOCK]; DCT_SIDE]> = std::sync::OnceLock::new();
    MATRIX.get_or_init(|| {
        let scale = (2.0f64 / BLOCK as f64).sqrt() as f32;
        let mut m = [[0f32; BLOCK]; DCT_SIDE];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                let angle = (std::f64::consts::PI / 2.0 / BLOCK as f64)
                    * (i + 1) as f64
                    * (2 * j + 1) as f64;
                *cell = (f64::from(scale) * angle.cos()) as f32;
            }
        }
        m
    })
}

/// `dct64To16`: `B = D A Dᵀ`, only the 16 × 16 corner, sums in `f32` in the reference's order.
fn dct64_to_16(a: &[[f32; BLOCK]; BLOCK]) -> [[f32; DCT_SIDE]; DCT_SIDE] {
    let d = dct_matrix();
    let mut t = [[0f32; BLOCK]; DCT_SIDE];
    for (i, t_row) in t.iter_mut().enumerate() {
        for (j, cell) in t_row.iter_mut().enumerate() {
            let mut sum = 0f32;
            for (&dk, a_row) in d[i].iter().zip(a) {
                sum += dk * a_row[j];
            }
            *cell = sum;
        }
    }
    let mut b = [[0f32; DCT_SIDE]; DCT_SIDE];
    for (i, b_row) in b.iter_mut().enumerate() {
        for (j, cell) in b_row.iter_mut().enumerate() {
            let mut sum = 0f32;
            for (&tk, &dk) in t[i].iter().zip(&d[j]) {
                sum += tk * dk;
            }
            *cell = sum;
        }
    }
    b
}

/// `pdqBuffer16x16ToBits`: bit `16 i + j` is set when coefficient `(i, j)` is above the
/// median. Bit `k` is bit `k % 16` of the reference's 16-bit word `k / 16`, and the hex form
/// prints word 15 first.
fn bits(dct: &[[f32; DCT_SIDE]; DCT_SIDE]) -> [u8; 32] {
    let flat: Vec<f32> = dct.iter().flatten().copied().collect();
    let median = torben(&flat);
    let mut hash = [0u8; 32];
    for (k, &v) in flat.iter().enumerate() {
        if v > median {
            let (word, bit) = (k / 16, k % 16);
            let byte = (15 - word) * 2 + usize::from(bit < 8);
            hash[byte] |= 1 << (bit % 8);
        }
    }
    hash
}

/// Torben Mogensen's median (N. Devillard's implementation, public domain), as `torben.cpp`:
/// for an even count it returns the upper of the two middle values' neighbourhood exactly as
/// the reference does. `m` is never empty here (256 values).
fn torben(m: &[f32]) -> f32 {
    let n = m.len();
    let half = n.div_ceil(2);
    let (mut min, mut max) = (m[0], m[0]);
    for &v in &m[1..] {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    loop {
        let guess = (min + max) / 2.0;
        let (mut less, mut greater, mut equal) = (0, 0, 0);
        let (mut max_lt, mut min_gt) = (min, max);
        for &v in m {
            if v < guess {
                less += 1;
                if v > max_lt {
                    max_lt = v;
                }
            } else if v > guess {
                greater += 1;
                if v < min_gt {
                    min_gt = v;
                }
            } else {
                equal += 1;
            }
        }
        if less <= half && greater <= half {
            return if less >= half {
                max_lt
            } else if less + equal >= half {
                guess
            } else {
                min_gt
            };
        } else if less > greater {
            max = max_lt;
        } else {
            min = min_gt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hamming(a: &[u8; 32], b: &[u8; 32]) -> u32 {
        a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
    }

    /// A smooth pattern with structure at several scales.
    fn pattern(rows: usize, cols: usize, phase: f64) -> Vec<f32> {
        let mut v = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                let (y, x) = (i as f64 / rows as f64, j as f64 / cols as f64);
                let s = (6.0 * x + phase).sin() * (4.0 * y).cos() + (x - y) * 0.8;
                v.push((127.5 + 100.0 * s.clamp(-1.2, 1.2) / 1.2) as f32);
            }
        }
        v
    }

    /// Known answers of the reference: `pdqhash.compute` (PyPI 0.2.8, facebook/ThreatExchange
    /// pdq/cpp) on the RGB image with pixel `(x, y)` =
    /// `((7x + 13y) % 256, (x y) % 256, (x + 2y + x² div 5) % 256)`.
    #[test]
    fn agrees_with_the_reference_bindings() {
        let cases = [
            (
                97,
                61,
                "3c6374e770c7c6b2ed07099f1f8f183e7c1ef835a2e0014a0bf02bc8ffe0b9c0",
            ),
            (
                64,
                64,
                "9999331b6373ced18c0718e37087e1cf83870fad3d18f816c0b803f29ff8fd90",
            ),
            (
                300,
                200,
                "7ff47fd47ef47ff44a947bf56ef46a547af17ed44a106a945af5400000104a10",
            ),
        ];
        for (w, h, expected) in cases {
            let mut rgb = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    rgb.push(((x * 7 + y * 13) % 256) as u8);
                    rgb.push(((x * y) % 256) as u8);
                    rgb.push(((x + 2 * y + x * x / 5) % 256) as u8);
                }
            }
            let d = hash_luma(&mut luma_from_rgb8(&rgb), h, w).expect("hashable");
            assert_eq!(hex::encode(d.hash), expected, "{w}x{h}");
            assert_eq!(d.quality, 100, "{w}x{h}");
        }
    }

    #[test]
    fn window_sizes_are_the_references() {
        // computeJaroszFilterWindowSize(old, 64) = ceil(old / 128).
        for (old, w) in [
            (1, 1),
            (5, 1),
            (128, 1),
            (129, 2),
            (512, 4),
            (1024, 8),
            (1025, 9),
        ] {
            assert_eq!(jarosz_window(old, 64), w, "{old}");
        }
    }

    #[test]
    fn box_filter_matches_the_reference_worked_examples() {
        // The worked examples in downscaling.cpp: inputs 0..16, windows 7 and 8.
        let input: Vec<f32> = (0..16).map(|i| i as f32).collect();
        let mut out = vec![0f32; 16];
        box_1d(&input, &mut out, 7);
        let sums7 = [
            6, 10, 15, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 75, 65, 54,
        ];
        let sizes7 = [4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 5, 4];
        for i in 0..16 {
            assert_eq!(out[i], sums7[i] as f32 / sizes7[i] as f32, "w7 {i}");
        }
        box_1d(&input, &mut out, 8);
        let sums8 = [
            10, 15, 21, 28, 36, 44, 52, 60, 68, 76, 84, 92, 84, 75, 65, 54,
        ];
        let sizes8 = [5, 6, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 7, 6, 5, 4];
        for i in 0..16 {
            assert_eq!(out[i], sums8[i] as f32 / sizes8[i] as f32, "w8 {i}");
        }
    }

    #[test]
    fn column_filter_is_the_row_filter_transposed() {
        let (rows, cols) = (37, 23);
        let m = pattern(rows, cols, 0.3);
        let mut by_cols = vec![0f32; m.len()];
        box_along_cols(&m, &mut by_cols, cols, 3);
        for j in 0..cols {
            let column: Vec<f32> = (0..rows).map(|i| m[i * cols + j]).collect();
            let mut expected = vec![0f32; rows];
            box_1d(&column, &mut expected, 3);
            for i in 0..rows {
                assert_eq!(by_cols[i * cols + j].to_bits(), expected[i].to_bits());
            }
        }
    }

    #[test]
    fn torben_is_a_median() {
        let check = |v: &[f32], expected: f32| assert_eq!(torben(v), expected, "{v:?}");
        check(&[3.0, 1.0, 2.0], 2.0);
        check(&[5.0], 5.0);
        check(&[1.0, 1.0, 1.0, 1.0], 1.0);
        // Even count: the lower middle value (n+1)/2-th smallest.
        check(&[4.0, 1.0, 3.0, 2.0], 2.0);
        let v: Vec<f32> = (0..256).map(|i| ((i * 97) % 256) as f32).collect();
        check(&v, 127.0);
    }

    #[test]
    fn half_the_bits_are_set_and_flat_images_have_no_quality() {
        let mut m = pattern(300, 200, 0.0);
        let d = hash_luma(&mut m, 300, 200).expect("hashable");
        let ones: u32 = d.hash.iter().map(|b| b.count_ones()).sum();
        assert!((120..=128).contains(&ones), "{ones} bits set");
        assert!(d.quality >= 50, "quality {}", d.quality);
        let mut flat = vec![128f32; 100 * 100];
        assert_eq!(hash_luma(&mut flat, 100, 100).map(|d| d.quality), Some(0));
    }

    #[test]
    fn too_small_or_inconsistent_has_no_hash() {
        assert_eq!(hash_luma(&mut [0f32; 16], 4, 4), None);
        assert_eq!(hash_luma(&mut [0f32; 20], 4, 5), None);
        assert_eq!(hash_luma(&mut [0f32; 24], 5, 5), None);
    }

    #[test]
    fn similar_images_are_near_and_different_ones_far() {
        let base = hash_luma(&mut pattern(256, 256, 0.0), 256, 256)
            .unwrap()
            .hash;
        let rescaled = hash_luma(&mut pattern(400, 400, 0.0), 400, 400)
            .unwrap()
            .hash;
        let other = hash_luma(&mut pattern(256, 256, 2.5), 256, 256)
            .unwrap()
            .hash;
        assert!(
            hamming(&base, &rescaled) <= 16,
            "{}",
            hamming(&base, &rescaled)
        );
        assert!(hamming(&base, &other) >= 64, "{}", hamming(&base, &other));
        // A negative flips every coefficient except the DC term, which is not hashed.
        let mut neg: Vec<f32> = pattern(256, 256, 0.0).iter().map(|v| 255.0 - v).collect();
        let neg = hash_luma(&mut neg, 256, 256).unwrap().hash;
        assert!(hamming(&base, &neg) >= 240, "{}", hamming(&base, &neg));
    }

    #[test]
    fn a_64_by_64_input_skips_the_blur() {
        let m = pattern(64, 64, 1.0);
        let mut block = [[0f32; BLOCK]; BLOCK];
        for i in 0..64 {
            block[i].copy_from_slice(&m[i * 64..(i + 1) * 64]);
        }
        let mut input = m.clone();
        let d = hash_luma(&mut input, 64, 64).unwrap();
        assert_eq!(d.hash, bits(&dct64_to_16(&block)));
        assert_eq!(input, m, "no blur ran in place");
    }

    #[test]
    fn luma_is_computed_in_double_then_rounded() {
        assert_eq!(luma_from_rgb8(&[255, 255, 255]), vec![255.0]);
        assert_eq!(luma_from_rgb8(&[0, 0, 0, 7, 7, 7]).len(), 2);
        let expected = (1.0f64 * 0.299 + 2.0 * 0.587 + 3.0 * 0.114) as f32;
        assert_eq!(luma_from_rgb8(&[1, 2, 3])[0].to_bits(), expected.to_bits());
    }
}
