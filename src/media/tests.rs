//! Images generated at test time (gradients, seeded noise, shapes; PNG and JPEG at several
//! sizes and qualities) and the properties their hashes must have.

use super::*;
use image::{ImageFormat, Rgb, RgbImage};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Decode the image and compute PDQ too.
const BOTH: bool = true;

fn hamming(a: &PdqDigest, b: &PdqDigest) -> u32 {
    a.hash
        .iter()
        .zip(&b.hash)
        .map(|(x, y)| (x ^ y).count_ones())
        .sum()
}

/// A picture with structure at several scales: a diagonal gradient, two discs and seeded
/// noise.
fn picture(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    let discs: Vec<(f64, f64, f64, [u8; 3])> = (0..2)
        .map(|_| {
            (
                rng.gen_range(0.2..0.8),
                rng.gen_range(0.2..0.8),
                rng.gen_range(0.1..0.3),
                [rng.r#gen(), rng.r#gen(), rng.r#gen()],
            )
        })
        .collect();
    RgbImage::from_fn(width, height, |x, y| {
        let (u, v) = (
            f64::from(x) / f64::from(width),
            f64::from(y) / f64::from(height),
        );
        let mut px = [
            (255.0 * u) as u8,
            (255.0 * v) as u8,
            (128.0 * (u + v)) as u8,
        ];
        for &(cx, cy, r, colour) in &discs {
            if (u - cx).powi(2) + (v - cy).powi(2) < r * r {
                px = colour;
            }
        }
        let noise: i16 = rng.gen_range(-8..=8);
        Rgb(px.map(|c| (i16::from(c) + noise).clamp(0, 255) as u8))
    })
}

fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .expect("encode jpeg");
    out
}

fn pdq_of(bytes: &[u8]) -> PdqDigest {
    hash_bytes(bytes, BOTH, &Limits::default())
        .expect("hashes")
        .pdq
        .expect("has a PDQ hash")
}

#[test]
fn png_hash_is_the_hash_of_its_pixels() {
    let img = picture(300, 200, 1);
    let png = encode(&img, ImageFormat::Png);
    let mut luma = pdq::luma_from_rgb8(img.as_raw());
    let direct = pdq::hash_luma(&mut luma, 200, 300).expect("hashable");
    let h = hash_bytes(&png, BOTH, &Limits::default()).expect("hashes");
    assert_eq!(h.pdq, Some(direct));
    assert_eq!(h.md5, <[u8; 16]>::from(Md5::digest(&png)));
    assert_eq!(h.sha1, <[u8; 20]>::from(Sha1::digest(&png)));
    assert_eq!(h.sha256, <[u8; 32]>::from(Sha256::digest(&png)));
    // BMP holds the same pixels: the same PDQ hash, other digests.
    let bmp = hash_bytes(&encode(&img, ImageFormat::Bmp), BOTH, &Limits::default()).unwrap();
    assert_eq!(bmp.pdq, h.pdq);
    assert_ne!(bmp.sha256, h.sha256);
}

#[test]
fn jpeg_at_any_quality_stays_near_the_original() {
    for (size, seed) in [((512, 512), 2), ((640, 360), 3), ((123, 457), 4)] {
        let img = picture(size.0, size.1, seed);
        let original = pdq_of(&encode(&img, ImageFormat::Png));
        assert!(
            original.quality >= 20,
            "{size:?}: quality {}",
            original.quality
        );
        for q in [95, 75, 50, 30] {
            let d = hamming(&original, &pdq_of(&jpeg(&img, q)));
            assert!(d <= 24, "{size:?} q{q}: distance {d}");
        }
    }
}

#[test]
fn resized_is_near_and_other_pictures_are_far() {
    let img = picture(512, 512, 5);
    let original = pdq_of(&encode(&img, ImageFormat::Png));
    let small = image::imageops::resize(&img, 256, 256, image::imageops::FilterType::Triangle);
    let d = hamming(&original, &pdq_of(&encode(&small, ImageFormat::Png)));
    assert!(d <= 20, "resized: distance {d}");
    for seed in 6..10 {
        let other = pdq_of(&encode(&picture(512, 512, seed), ImageFormat::Png));
        let d = hamming(&original, &other);
        assert!(d >= 70, "seed {seed}: distance {d}");
    }
}

#[test]
fn flat_images_have_low_quality_and_tiny_ones_no_pdq() {
    let flat = RgbImage::from_pixel(200, 200, Rgb([90, 90, 90]));
    assert_eq!(pdq_of(&encode(&flat, ImageFormat::Png)).quality, 0);
    let tiny = encode(
        &RgbImage::from_pixel(4, 9, Rgb([1, 2, 3])),
        ImageFormat::Png,
    );
    let h = hash_bytes(&tiny, BOTH, &Limits::default()).expect("digests still computed");
    assert_eq!(h.pdq, None);
}

#[test]
fn grey_and_alpha_hash_like_their_rgb() {
    let img = picture(100, 80, 11);
    let grey = image::DynamicImage::ImageRgb8(img.clone()).into_luma8();
    let grey_as_rgb = image::DynamicImage::ImageLuma8(grey.clone()).into_rgb8();
    let mut out = std::io::Cursor::new(Vec::new());
    grey.write_to(&mut out, ImageFormat::Png).unwrap();
    assert_eq!(
        pdq_of(out.get_ref()),
        pdq_of(&encode(&grey_as_rgb, ImageFormat::Png))
    );
    let rgba = image::DynamicImage::ImageRgb8(img.clone()).into_rgba8();
    let mut out = std::io::Cursor::new(Vec::new());
    rgba.write_to(&mut out, ImageFormat::Png).unwrap();
    assert_eq!(
        pdq_of(out.get_ref()),
        pdq_of(&encode(&img, ImageFormat::Png))
    );
}

#[test]
fn gif_and_webp_decode() {
    let img = picture(64, 48, 12);
    for format in [ImageFormat::Gif, ImageFormat::WebP] {
        let h = hash_bytes(&encode(&img, format), BOTH, &Limits::default());
        assert!(h.is_ok_and(|h| h.pdq.is_some()), "{format:?}");
    }
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let limits = Limits::default();
    let check = |bytes: &[u8], expected: &str| {
        let e = hash_bytes(bytes, BOTH, &limits)
            .expect_err("refused")
            .to_string();
        assert!(e.contains(expected), "{e}");
    };
    check(b"just some text", "not an image in a supported format");
    check(b"", "not an image");
    let png = encode(&picture(50, 50, 13), ImageFormat::Png);
    check(&png[..png.len() / 2], "cannot decode");
    let mut corrupt = jpeg(&picture(50, 50, 13), 80);
    corrupt.truncate(40);
    check(&corrupt, "cannot decode");
    // Digests alone need no decoding: text hashes fine.
    assert!(hash_bytes(b"just some text", false, &limits).is_ok());
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    // A 20000 x 20000 image is never decoded: a header that declares it is refused. Built by
    // hand (IHDR and the start of an IDAT, valid CRCs) so the test costs nothing.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    // The start of an IDAT chunk, so that the decoder reaches the image data.
    let idat = b"IDAT\x78\x9c\x03\x00";
    png.extend_from_slice(&4u32.to_be_bytes());
    png.extend_from_slice(idat);
    png.extend_from_slice(&crc32fast::hash(idat).to_be_bytes());
    let e = hash_bytes(&png, BOTH, &Limits::default()).expect_err("bomb");
    assert!(
        matches!(
            e,
            MediaError::TooManyPixels {
                width: 20_000,
                height: 20_000,
                ..
            }
        ),
        "{e}"
    );
    let small = Limits {
        max_pixels: 100,
        ..Limits::default()
    };
    let e = hash_bytes(&encode(&picture(11, 10, 1), ImageFormat::Png), BOTH, &small);
    assert!(matches!(e, Err(MediaError::TooManyPixels { .. })));
    let tight = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        hash_bytes(&[0; 11], BOTH, &tight),
        Err(MediaError::TooLarge { max: 10 })
    ));
}

#[test]
fn directories_are_walked_in_order_for_images_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("b/c")).unwrap();
    for name in [
        "z.PNG",
        "a.jpg",
        "notes.txt",
        "b/c/x.webp",
        "b/y.gif",
        "b/README",
    ] {
        std::fs::write(root.join(name), b"x").unwrap();
    }
    let explicit = root.join("notes.txt");
    let files = collect_files(&[root.to_path_buf(), explicit.clone()]).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["a.jpg", "b/c/x.webp", "b/y.gif", "z.PNG", "notes.txt"]
    );
    assert!(collect_files(&[root.join("missing")]).is_err());
    assert!(matches!(
        read_bounded(&root.join("a.jpg"), 0),
        Err(MediaError::TooLarge { max: 0 })
    ));
}
