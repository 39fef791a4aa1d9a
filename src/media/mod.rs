//! Hashing media a member holds: the PDQ hash and the MD5, SHA-1 and SHA-256 digests of image
//! files (bounded against decompression bombs), the vPDQ hash of video files (decoded by an
//! external ffmpeg, [`video`]), and the URL-MD5 of URLs.
//!
//! Pure apart from reading the files it is given (and running ffmpeg on videos): `coalition
//! hash` and `coalition match --files` are thin drivers that fan the files out over cores and
//! write what this returns.

pub mod pdq;
pub mod url;
pub mod video;

use crate::matching::VpdqHash;
use crate::statement::{HashEntry, HashType, Label};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use thiserror::Error;

pub use pdq::PdqDigest;

/// Largest file read by default (64 MiB): larger files are refused before any byte is decoded.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

/// Most pixels an image may have by default (40 megapixels, e.g. 8000 × 5000): checked from the
/// header before decoding, so a small file that declares a huge image (a decompression bomb)
/// costs nothing. At the limit one image takes about 0.5 GB while it is hashed (8-bit RGB plus
/// two `f32` planes).
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;

/// Most memory the decoder may allocate for one image (`image::Limits::max_alloc`): enough for
/// [`DEFAULT_MAX_PIXELS`] at 16-bit RGBA.
pub const MAX_DECODER_ALLOC: u64 = 512 << 20;

/// File name extensions (lowercase) of the formats decoded; walking a directory picks only
/// these.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "gif", "webp", "bmp"];

/// Bounds on one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Most pixels (width × height) of an image.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// Why a file could not be hashed. The messages name no path: the caller adds it.
#[derive(Debug, Error)]
pub enum MediaError {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    /// Larger than [`Limits::max_bytes`].
    #[error("file is larger than the limit of {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// Not a JPEG, PNG, GIF, WebP or BMP image (by its first bytes).
    #[error("not an image in a supported format (JPEG, PNG, GIF, WebP, BMP)")]
    UnknownFormat,
    /// More pixels than [`Limits::max_pixels`].
    #[error("image is {width}x{height}, more than the limit of {max} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit.
        max: u64,
    },
    /// The decoder failed (a damaged or truncated image, or over its memory limit).
    #[error("cannot decode: {0}")]
    Decode(String),
    /// The ffmpeg program could not be started (a video).
    #[error(
        "cannot run ffmpeg '{program}' ({reason}): install ffmpeg, or name it with --ffmpeg PATH or COALITION_FFMPEG"
    )]
    NoFfmpeg {
        /// The program tried.
        program: String,
        /// Why it did not start.
        reason: String,
    },
    /// ffmpeg could not decode the video, or it was refused while decoding.
    #[error("video: {0}")]
    Video(String),
    /// More sampled frames than a vPDQ hash holds.
    #[error(
        "video: more than {max} sampled frames; sample fewer with a larger --video-seconds-per-frame"
    )]
    TooManyFrames {
        /// The limit.
        max: usize,
    },
}

/// What one file hashed to: an image's hashes, or a video's vPDQ hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hashed {
    /// An image file.
    Image(FileHashes),
    /// A video file (named with one of [`video::VIDEO_EXTENSIONS`]).
    Video(VpdqHash),
}

/// The hashes of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHashes {
    /// MD5 of the file's bytes.
    pub md5: [u8; 16],
    /// SHA-1 of the file's bytes.
    pub sha1: [u8; 20],
    /// SHA-256 of the file's bytes.
    pub sha256: [u8; 32],
    /// The PDQ hash of the decoded image; `None` when not asked for (`with_pdq` false) or
    /// when the image is under 5 pixels on a side (PDQ has no hash for it).
    pub pdq: Option<PdqDigest>,
}

/// The hash types a file yields, in the order they are written.
pub const FILE_HASH_TYPES: [HashType; 4] = [
    HashType::Pdq,
    HashType::Md5,
    HashType::Sha1,
    HashType::Sha256,
];

impl FileHashes {
    /// The hash entries of the `types` asked for (each of [`FILE_HASH_TYPES`]; others are
    /// skipped), in that order, each carrying `labels`. PDQ is left out when the image has
    /// none.
    pub fn entries(&self, types: &[HashType], labels: &[Label]) -> Vec<HashEntry> {
        let entry = |hash_type, value: &[u8], quality| HashEntry {
            hash_type,
            value: value.to_vec(),
            quality,
            labels: labels.to_vec(),
        };
        types
            .iter()
            .filter_map(|&t| match t {
                HashType::Pdq => self.pdq.map(|d| entry(t, &d.hash, Some(d.quality))),
                HashType::Md5 => Some(entry(t, &self.md5, None)),
                HashType::Sha1 => Some(entry(t, &self.sha1, None)),
                HashType::Sha256 => Some(entry(t, &self.sha256, None)),
                HashType::PhotoDna | HashType::UrlMd5 | HashType::Vpdq => None,
            })
            .collect()
    }
}

/// Hashes every file on the current rayon pool (each file on one core, decoded and hashed
/// there), results in the order of `files`.
pub fn hash_files(
    files: &[PathBuf],
    with_pdq: bool,
    limits: &Limits,
) -> Vec<Result<FileHashes, MediaError>> {
    use rayon::prelude::*;
    files
        .par_iter()
        .map(|path| hash_file(path, with_pdq, limits))
        .collect()
}

/// Hashes every file on the current rayon pool, results in the order of `files`: a file named
/// with a [`video::VIDEO_EXTENSIONS`] extension as a video (with `video`), any other as an image
/// (see [`hash_file`]).
pub fn hash_inputs(
    files: &[PathBuf],
    with_pdq: bool,
    limits: &Limits,
    video: &video::VideoOptions,
) -> Vec<Result<Hashed, MediaError>> {
    use rayon::prelude::*;
    files
        .par_iter()
        .map(|path| {
            if video::is_video_name(path) {
                video::hash_video(path, video).map(Hashed::Video)
            } else {
                hash_file(path, with_pdq, limits).map(Hashed::Image)
            }
        })
        .collect()
}

/// Reads `path` and hashes it: MD5, SHA-1 and SHA-256 of its bytes always, and with `with_pdq`
/// the PDQ hash of the image (which must then decode; without it the file is never decoded).
pub fn hash_file(path: &Path, with_pdq: bool, limits: &Limits) -> Result<FileHashes, MediaError> {
    let bytes = read_bounded(path, limits.max_bytes)?;
    hash_bytes(&bytes, with_pdq, limits)
}

/// Hashes a file's contents (see [`hash_file`]).
pub fn hash_bytes(bytes: &[u8], with_pdq: bool, limits: &Limits) -> Result<FileHashes, MediaError> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(MediaError::TooLarge {
            max: limits.max_bytes,
        });
    }
    let pdq = if with_pdq {
        let (width, height, rgb) = decode_rgb8(bytes, limits)?;
        let mut luma = pdq::luma_from_rgb8(&rgb);
        drop(rgb);
        pdq::hash_luma(&mut luma, height as usize, width as usize)
    } else {
        None
    };
    Ok(FileHashes {
        md5: Md5::digest(bytes).into(),
        sha1: Sha1::digest(bytes).into(),
        sha256: Sha256::digest(bytes).into(),
        pdq,
    })
}

/// Decodes an image to packed 8-bit RGB (alpha dropped, grey replicated, 16-bit scaled, the
/// first frame of an animation), refusing it from its header when it has more than
/// `limits.max_pixels` pixels. Returns width, height and the pixels.
pub fn decode_rgb8(bytes: &[u8], limits: &Limits) -> Result<(u32, u32, Vec<u8>), MediaError> {
    use image::ImageDecoder;
    let decode = |e: image::ImageError| MediaError::Decode(e.to_string());
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(MediaError::Read)?;
    match reader.format() {
        Some(f) if f.reading_enabled() => {}
        _ => return Err(MediaError::UnknownFormat),
    }
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(MAX_DECODER_ALLOC);
    // No side can be longer than the pixel limit allows (with the other side 1).
    let side = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    decoder_limits.max_image_width = Some(side);
    decoder_limits.max_image_height = Some(side);
    reader.limits(decoder_limits);
    let decoder = reader.into_decoder().map_err(decode)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(MediaError::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    let image = image::DynamicImage::from_decoder(decoder).map_err(decode)?;
    Ok((width, height, image.into_rgb8().into_raw()))
}

/// Reads a whole file, refusing it (before reading) when it is larger than `max_bytes`, and
/// reading at most `max_bytes + 1` in any case (a file that grows while it is read).
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>, MediaError> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max_bytes {
        return Err(MediaError::TooLarge { max: max_bytes });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(MediaError::TooLarge { max: max_bytes });
    }
    Ok(bytes)
}

/// The files to hash for the paths given: a file as it is (whatever its name), a directory
/// walked recursively for files with an [`IMAGE_EXTENSIONS`] or [`video::VIDEO_EXTENSIONS`]
/// extension (any case), in file-name
/// order at each level, symbolic links not followed. A path that cannot be read is an error.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, walkdir::Error> {
    let mut out = Vec::new();
    for path in paths {
        for entry in walkdir::WalkDir::new(path)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry?;
            let named = entry.depth() == 0;
            // A root that is a symbolic link is followed (`follow_root_links`), so a link
            // named on the command line reads as what it points to.
            let wanted = is_image_name(entry.path()) || video::is_video_name(entry.path());
            if entry.file_type().is_file() && (named || wanted) {
                out.push(entry.into_path());
            }
        }
    }
    Ok(out)
}

/// Whether a file name has one of the [`IMAGE_EXTENSIONS`].
fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

#[cfg(test)]
mod tests;
