//! `coalition hash`: the hash list of image files (PDQ, MD5, SHA-1, SHA-256), video files
//! (vPDQ, decoded by an external ffmpeg) and URLs (URL-MD5), in the formats `coalition submit`
//! and `coalition match` read.
//!
//! A file that cannot be hashed costs one line on stderr naming it and the reason; every other
//! file is still hashed and written, and the command exits 1 at the end.

use crate::formats::Format;
use crate::media::{self, FILE_HASH_TYPES, FileHashes, Hashed, Limits, MediaError};
use crate::statement::{HashEntry, HashType, Label, MAX_LABELS};
use crate::text::escape_control;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Most URLs read from one `--urls` file.
pub const MAX_URLS: usize = 1_000_000;

#[derive(Debug, Args)]
pub struct HashArgs {
    /// Image files (JPEG, PNG, GIF, WebP, BMP), video files (named *.mp4, *.m4v, *.mov, *.webm,
    /// *.mkv or *.avi, any case: one vpdq row each, decoded by ffmpeg), or directories walked
    /// recursively for files with those names, in name order.
    #[arg(value_name = "FILE|DIR")]
    paths: Vec<PathBuf>,
    /// A URL to hash as url_md5 (repeatable).
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// A video's vPDQ file in the reference tools' text format (`vpdq-hash-video`, the `vpdq`
    /// package: `frame_number,quality,pdq_hex,timestamp_seconds` per line), written as one
    /// vpdq row (repeatable).
    #[arg(long = "vpdq", value_name = "FILE")]
    vpdq_files: Vec<PathBuf>,
    /// A file of URLs to hash as url_md5, one per line (blank lines skipped).
    #[arg(long = "urls", value_name = "FILE")]
    url_file: Option<PathBuf>,
    /// Hash types to write for each file, comma-separated, in this order: pdq, md5, sha1,
    /// sha256. The image is decoded only for pdq.
    #[arg(long, value_delimiter = ',', default_value = "pdq,md5,sha1,sha256")]
    types: Vec<String>,
    /// Label to attach to every hash: A1, A2, B1, B2 or a tag (repeatable, at most 16).
    #[arg(long = "label", value_name = "LABEL")]
    labels: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// JSON Lines only: add `"file"` (the path) or `"url"` to each row, for people; submit and
    /// match ignore it. Off by default: a hash list shared onward names no local path.
    #[arg(long)]
    with_source: bool,
    /// Largest file hashed, in bytes; larger files are refused unread.
    #[arg(long, default_value_t = media::DEFAULT_MAX_BYTES)]
    max_bytes: u64,
    /// Most pixels (width x height) of an image, checked from its header before decoding
    /// (decompression bombs).
    #[arg(long, default_value_t = media::DEFAULT_MAX_PIXELS)]
    max_pixels: u64,
    #[command(flatten)]
    video: VideoArgs,
}

/// How video files are decoded and sampled (`coalition hash`, `coalition match --files`).
#[derive(Debug, Args)]
pub struct VideoArgs {
    /// The ffmpeg program that decodes video files (else $COALITION_FFMPEG, else `ffmpeg` on
    /// PATH). Only run for files named as videos.
    #[arg(long, value_name = "PATH")]
    ffmpeg: Option<PathBuf>,
    /// Seconds between the sampled frames of a video (the reference vpdq's seconds_per_hash):
    /// every ⌊seconds × frame rate⌋-th decoded frame, from the first, is hashed.
    #[arg(long, value_name = "SECONDS", default_value_t = media::video::DEFAULT_SECONDS_PER_FRAME)]
    video_seconds_per_frame: f64,
}

impl VideoArgs {
    /// The options for [`media::video::hash_video`], frames bounded by `max_pixels`.
    pub(crate) fn options(&self, max_pixels: u64) -> Result<media::video::VideoOptions> {
        let seconds = self.video_seconds_per_frame;
        if !(seconds.is_finite() && seconds > 0.0) {
            bail!("--video-seconds-per-frame: must be a number of seconds above 0, got {seconds}");
        }
        Ok(media::video::VideoOptions {
            ffmpeg: media::video::ffmpeg_program(self.ffmpeg.as_deref()),
            seconds_per_frame: seconds,
            max_pixels,
            timeout: media::video::DEFAULT_TIMEOUT,
        })
    }
}

/// One row of the hash list (the JSON Lines form; CSV writes the same columns but the
/// source).
#[derive(Debug, Serialize)]
struct HashRow<'a> {
    #[serde(rename = "type")]
    hash_type: &'static str,
    hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<u8>,
    labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

pub fn run(args: HashArgs) -> Result<()> {
    if args.paths.is_empty()
        && args.urls.is_empty()
        && args.url_file.is_none()
        && args.vpdq_files.is_empty()
    {
        bail!(
            "nothing to hash: give image or video files or directories, --url URL, --urls FILE or --vpdq FILE"
        );
    }
    let types = parse_types(&args.types)?;
    let labels = parse_labels(&args.labels)?;
    let limits = Limits {
        max_bytes: args.max_bytes,
        max_pixels: args.max_pixels,
    };
    let mut urls = args.urls.clone();
    if let Some(file) = &args.url_file {
        urls.extend(read_urls(file)?);
    }
    let video = args.video.options(args.max_pixels)?;
    let raw_labels: Vec<String> = labels.iter().map(ToString::to_string).collect();
    let files = media::collect_files(&args.paths).context("listing the files to hash")?;
    let results = media::hash_inputs(&files, types.contains(&HashType::Pdq), &limits, &video);

    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = RowWriter::new(sink, args.format)?;
    let mut failed = 0usize;
    let mut written = 0usize;
    for (path, result) in files.iter().zip(&results) {
        let shown = path.display().to_string();
        let file = args.with_source.then_some(shown.as_str());
        match result {
            Ok(Hashed::Image(hashes)) => {
                for entry in hashes.entries(&types, &labels) {
                    writer.write(&entry, file, None)?;
                    written += 1;
                }
                note_missing_pdq(path, hashes, &types);
            }
            Ok(Hashed::Video(video)) => {
                let entry = crate::formats::vpdq_entry(video, &raw_labels)
                    .map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
                writer.write(&entry, file, None)?;
                written += 1;
            }
            Err(e) => {
                failed += 1;
                report(path, e);
            }
        }
    }
    for url in &urls {
        match media::url::url_md5(url) {
            Ok(value) => {
                let entry = HashEntry {
                    hash_type: HashType::UrlMd5,
                    value: value.to_vec(),
                    quality: None,
                    labels: labels.clone(),
                };
                writer.write(&entry, None, args.with_source.then_some(url.as_str()))?;
                written += 1;
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}", escape_control(&format!("url '{url}': {e}")));
            }
        }
    }
    for file in &args.vpdq_files {
        match crate::formats::read_vpdq(file, &raw_labels) {
            Ok(entry) => {
                let shown = file.display().to_string();
                writer.write(&entry, args.with_source.then_some(shown.as_str()), None)?;
                written += 1;
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}", escape_control(&e.to_string()));
            }
        }
    }
    writer.finish()?;
    let inputs = files.len() + urls.len() + args.vpdq_files.len();
    eprintln!(
        "{} of {inputs} inputs hashed ({written} hashes)",
        inputs - failed
    );
    if failed > 0 {
        bail!("{failed} of {inputs} inputs could not be hashed (see above)");
    }
    Ok(())
}

/// The hash types asked for files: each of pdq, md5, sha1, sha256 at most once.
pub(crate) fn parse_types(raw: &[String]) -> Result<Vec<HashType>> {
    let mut types = Vec::new();
    for t in raw {
        let t: HashType = t.parse().map_err(|e| anyhow::anyhow!("--types: {e}"))?;
        if !FILE_HASH_TYPES.contains(&t) {
            bail!(
                "--types: {t} is not computed from files (pdq, md5, sha1, sha256; url_md5 is for --url)"
            );
        }
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if types.is_empty() {
        bail!("--types: name at least one of pdq, md5, sha1, sha256");
    }
    Ok(types)
}

fn parse_labels(raw: &[String]) -> Result<Vec<Label>> {
    if raw.len() > MAX_LABELS {
        bail!("--label: at most {MAX_LABELS} labels, got {}", raw.len());
    }
    let mut labels: Vec<Label> = Vec::new();
    for l in raw {
        let label = Label::parse(l).map_err(|e| anyhow::anyhow!("--label: {e}"))?;
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    Ok(labels)
}

/// URLs from a file, one per line; blank lines skipped, each line's surrounding whitespace
/// kept out (the normalisation strips leading whitespace anyway).
fn read_urls(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut urls = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let url = line.trim_end_matches(['\r', '\n']);
        if url.trim().is_empty() {
            continue;
        }
        if urls.len() == MAX_URLS {
            bail!("{}: more than {MAX_URLS} URLs", path.display());
        }
        urls.push(url.to_owned());
    }
    Ok(urls)
}

/// The one stderr line for a file that could not be hashed.
pub(crate) fn report(path: &Path, e: &MediaError) {
    eprintln!("{}", escape_control(&format!("{}: {e}", path.display())));
}

/// A note for an image too small for PDQ (its digests are still written).
pub(crate) fn note_missing_pdq(path: &Path, hashes: &FileHashes, types: &[HashType]) {
    if hashes.pdq.is_none() && types.contains(&HashType::Pdq) {
        eprintln!(
            "{}",
            escape_control(&format!(
                "{}: note: under {} pixels on a side, no PDQ hash",
                path.display(),
                media::pdq::MIN_HASHABLE_SIDE
            ))
        );
    }
}

/// Writes hash-list rows as JSON Lines or CSV (`type,hash,labels,quality`, the columns
/// `formats::read_rows` reads back).
struct RowWriter<W: Write> {
    format: Format,
    out: std::io::BufWriter<W>,
}

impl<W: Write> RowWriter<W> {
    fn new(sink: W, format: Format) -> Result<Self> {
        let mut out = std::io::BufWriter::new(sink);
        if format == Format::Csv {
            writeln!(out, "type,hash,labels,quality")?;
        }
        Ok(RowWriter { format, out })
    }

    fn write(&mut self, entry: &HashEntry, file: Option<&str>, url: Option<&str>) -> Result<()> {
        let labels: Vec<String> = entry.labels.iter().map(ToString::to_string).collect();
        match self.format {
            Format::Jsonl => {
                let row = HashRow {
                    hash_type: entry.hash_type.name(),
                    hash: hex::encode(&entry.value),
                    quality: entry.quality,
                    labels,
                    file,
                    url,
                };
                serde_json::to_writer(&mut self.out, &row)?;
                writeln!(self.out)?;
            }
            Format::Csv => {
                // Labels are validated tags ([a-z0-9_.:-]) or categories: no comma or quote.
                let quality = entry.quality.map(|q| q.to_string()).unwrap_or_default();
                writeln!(
                    self.out,
                    "{},{},{},{quality}",
                    entry.hash_type.name(),
                    hex::encode(&entry.value),
                    labels.join(";")
                )?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
