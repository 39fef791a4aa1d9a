//! The vPDQ hash of a video file, decoded by an external `ffmpeg` program (never linked):
//! frames sampled like the reference vpdq (facebook/ThreatExchange `vpdq/cpp`), each
//! PDQ-hashed from its RGB pixels by the same function as an image.
//!
//! # How frames are chosen (docs/PROTOCOL.md §2.3.2)
//!
//! - The frame rate is the first video stream's average rate as `ffmpeg -i` prints it (`fps`),
//!   else its `tbr`; a rate printed with decimals that is within rounding of k × 1000/1001 (NTSC:
//!   23.98, 29.97, 59.94) is taken as exactly that.
//! - Step = ⌊seconds_per_frame × rate⌋, at least 1 (the reference's `frameMod`).
//! - Frames are numbered 0, 1, 2… in the order the decoder outputs them; frames whose number
//!   is a multiple of the step are hashed; the timestamp is number / rate, rounded to the
//!   millisecond.
//! - Each frame is converted to packed RGB24 at the stream's coded size (no rotation applied,
//!   no scaling; swscale flags `area`, as the reference; `-s` set to that size, so a stream
//!   whose size changes on the way is rescaled to it) and hashed with [`super::pdq`].
//!
//! Bounds: a frame larger than the pixel limit of images is refused before decoding; more than
//! [`MAX_VPDQ_FRAMES`] sampled frames is refused (with a hint to sample more sparsely); ffmpeg
//! is killed after [`VideoOptions::timeout`] or as soon as the video is refused; one frame is
//! held at a time and at most [`STDERR_KEPT`] bytes of ffmpeg's messages.

use super::MediaError;
use super::pdq;
use crate::matching::PdqHash;
use crate::matching::vpdq::{Frame, MAX_VPDQ_FRAMES, VpdqHash};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// File name extensions (lowercase) hashed as videos.
pub const VIDEO_EXTENSIONS: [&str; 6] = ["mp4", "m4v", "mov", "webm", "mkv", "avi"];

/// The environment variable naming the ffmpeg program when `--ffmpeg` is not given.
pub const FFMPEG_ENV: &str = "COALITION_FFMPEG";

/// Default seconds between sampled frames (the reference's `seconds_per_hash`).
pub const DEFAULT_SECONDS_PER_FRAME: f64 = 1.0;

/// Default time one video may take to decode before ffmpeg is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Time the `ffmpeg -i` probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes of ffmpeg's messages kept (the probe's first ones, the decoder's last ones).
pub const STDERR_KEPT: usize = 256 * 1024;

/// How often the watchdog looks at ffmpeg.
const POLL: Duration = Duration::from_millis(20);

/// How to hash videos.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoOptions {
    /// The ffmpeg program (a path, or a name looked up on `PATH`).
    pub ffmpeg: PathBuf,
    /// Seconds between sampled frames (> 0).
    pub seconds_per_frame: f64,
    /// Most pixels of a frame.
    pub max_pixels: u64,
    /// Longest ffmpeg may decode one video.
    pub timeout: Duration,
}

/// What `ffmpeg -i` says of a file's first video stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probe {
    /// Coded width.
    pub width: u32,
    /// Coded height.
    pub height: u32,
    /// Frames per second.
    pub rate: f64,
}

/// Which decoded frames are hashed, and their timestamps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Every `step`-th decoded frame, from frame 0.
    pub step: u64,
    /// Frames per second.
    pub rate: f64,
}

impl Sampling {
    /// The reference's rule: step = ⌊seconds_per_frame × rate⌋, at least 1.
    pub fn new(rate: f64, seconds_per_frame: f64) -> Self {
        let step = (seconds_per_frame * rate) as u64;
        Sampling {
            step: step.max(1),
            rate,
        }
    }

    /// The number and timestamp (ms) of the `index`-th sampled frame, `None` past `u32`.
    pub fn frame(&self, index: u64) -> Option<(u32, u32)> {
        let number = index.checked_mul(self.step)?;
        let ms = (number as f64 * 1000.0 / self.rate).round();
        Some((u32::try_from(number).ok()?, u32::try_from(ms as u64).ok()?))
    }
}

/// Whether a file name has one of the [`VIDEO_EXTENSIONS`].
pub fn is_video_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// The ffmpeg program: `flag` (`--ffmpeg`), else `$COALITION_FFMPEG`, else `ffmpeg` on `PATH`.
pub fn ffmpeg_program(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(FFMPEG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("ffmpeg"))
}

/// Hashes one video: probe, then decode the sampled frames and hash each.
pub fn hash_video(path: &Path, options: &VideoOptions) -> Result<VpdqHash, MediaError> {
    let probe = probe(path, options)?;
    let pixels = u64::from(probe.width) * u64::from(probe.height);
    if pixels > options.max_pixels {
        return Err(MediaError::TooManyPixels {
            width: probe.width,
            height: probe.height,
            max: options.max_pixels,
        });
    }
    let (w, h) = (probe.width as usize, probe.height as usize);
    if w < pdq::MIN_HASHABLE_SIDE || h < pdq::MIN_HASHABLE_SIDE {
        return Err(MediaError::Video(format!(
            "frames are {w}x{h}, under {} pixels on a side (no PDQ hash)",
            pdq::MIN_HASHABLE_SIDE
        )));
    }
    let sampling = Sampling::new(probe.rate, options.seconds_per_frame);
    let args = decode_args(path, sampling.step, probe.width, probe.height);
    let mut child = spawn(&options.ffmpeg, &args)?;
    // `spawn` pipes both: each is there once, taken here.
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let messages = std::thread::spawn(move || keep(stderr, STDERR_KEPT, End::Tail));
    let watchdog = Watchdog::start(child, options.timeout);

    let mut reader = FrameReader::new(stdout, w * h * 3, MAX_VPDQ_FRAMES);
    let mut frames = Vec::new();
    let outcome = loop {
        let rgb = match reader.next_frame() {
            Ok(Some(rgb)) => rgb,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let Some((number, timestamp_ms)) = sampling.frame(frames.len() as u64) else {
            break Err(MediaError::Video(
                "frame number or timestamp past 2^32".into(),
            ));
        };
        let mut luma = pdq::luma_from_rgb8(rgb);
        let digest = pdq::hash_luma(&mut luma, h, w).expect("sides checked above");
        frames.push(Frame {
            number,
            timestamp_ms,
            quality: digest.quality,
            hash: PdqHash(digest.hash),
        });
    };
    if outcome.is_err() {
        watchdog.kill();
    }
    drop(reader);
    let (status, timed_out) = watchdog.finish()?;
    let messages = messages.join().unwrap_or_default();
    outcome?;
    if timed_out {
        return Err(MediaError::Video(format!(
            "ffmpeg took longer than {} s and was stopped",
            options.timeout.as_secs()
        )));
    }
    if !status.success() {
        return Err(MediaError::Video(format!(
            "ffmpeg failed ({status}): {}",
            last_line(&messages)
        )));
    }
    if frames.is_empty() {
        return Err(MediaError::Video("ffmpeg decoded no frame".into()));
    }
    VpdqHash::new(frames).map_err(|e| MediaError::Video(e.to_string()))
}

/// The arguments that decode the sampled frames of `path` to raw RGB24 on standard output,
/// each `width` × `height` (the probed size: a no-op for frames of that size, a rescale for a
/// stream whose size changes on the way, so the frames read always have the size expected).
pub fn decode_args(path: &Path, step: u64, width: u32, height: u32) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-noautorotate",
        "-i",
    ]
    .map(Into::into)
    .into();
    args.push(path.as_os_str().to_owned());
    for a in [
        "-map".to_string(),
        "0:v:0".into(),
        "-vf".into(),
        format!("select=not(mod(n\\,{step}))"),
        "-fps_mode".into(),
        "passthrough".into(),
        "-sws_flags".into(),
        "area".into(),
        "-s".into(),
        format!("{width}x{height}"),
        "-f".into(),
        "rawvideo".into(),
        "-pix_fmt".into(),
        "rgb24".into(),
        "-".into(),
    ] {
        args.push(a.into());
    }
    args
}

/// Runs `ffmpeg -i FILE` and reads its first video stream's size and rate.
pub fn probe(path: &Path, options: &VideoOptions) -> Result<Probe, MediaError> {
    let mut args: Vec<std::ffi::OsString> = ["-hide_banner", "-nostdin", "-noautorotate", "-i"]
        .map(Into::into)
        .into();
    args.push(path.as_os_str().to_owned());
    let mut child = spawn(&options.ffmpeg, &args)?;
    // `spawn` pipes it; taken once, here.
    let stderr = child.stderr.take().expect("stderr is piped");
    let watchdog = Watchdog::start(child, PROBE_TIMEOUT);
    let text = keep(stderr, STDERR_KEPT, End::Head);
    let (_, timed_out) = watchdog.finish()?;
    if timed_out {
        return Err(MediaError::Video(format!(
            "ffmpeg -i took longer than {} s and was stopped",
            PROBE_TIMEOUT.as_secs()
        )));
    }
    // `ffmpeg -i` alone always exits 1 (no output named): the text decides.
    parse_probe(&text)
}

/// Reads the first video stream's line of `ffmpeg -i` output, e.g.
/// `Stream #0:0(und): Video: h264 (avc1 / 0x31637661), yuv420p, 320x240 [SAR 1:1 DAR 4:3],
/// 25 fps, 25 tbr, 12800 tbn`.
pub fn parse_probe(text: &str) -> Result<Probe, MediaError> {
    let Some(line) = text
        .lines()
        .find(|l| l.trim_start().starts_with("Stream #") && l.contains(": Video: "))
    else {
        return Err(MediaError::Video(format!(
            "not a video ffmpeg can read: {}",
            last_line(text)
        )));
    };
    let segments: Vec<&str> = line.split(", ").map(str::trim).collect();
    let size = segments.iter().find_map(|s| {
        let word = s.split_whitespace().next()?;
        let (w, h) = word.split_once('x')?;
        let side = |v: &str| {
            (!v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse::<u32>().ok())
                .flatten()
        };
        Some((side(w)?, side(h)?))
    });
    let Some((width, height)) = size else {
        return Err(MediaError::Video(format!(
            "ffmpeg names no frame size: {}",
            line.trim()
        )));
    };
    let rate_of = |unit: &str| {
        segments.iter().find_map(|s| {
            let number = s.strip_suffix(unit)?.trim_end();
            let (number, scale) = match number.strip_suffix('k') {
                Some(n) => (n, 1000.0),
                None => (number, 1.0),
            };
            let v: f64 = number.parse().ok()?;
            (v.is_finite() && v > 0.0).then(|| exact_rate(number, v * scale))
        })
    };
    let Some(rate) = rate_of(" fps").or_else(|| rate_of(" tbr")) else {
        return Err(MediaError::Video(format!(
            "ffmpeg names no frame rate: {}",
            line.trim()
        )));
    };
    Ok(Probe {
        width,
        height,
        rate,
    })
}

/// A rate printed with two decimals that is k × 1000/1001 to that precision (23.98, 29.97,
/// 59.94) is taken as exactly that; any other as printed.
fn exact_rate(printed: &str, value: f64) -> f64 {
    if !printed.contains('.') {
        return value;
    }
    let k = (value * 1.001).round();
    let ntsc = k * 1000.0 / 1001.0;
    if k >= 1.0 && (ntsc - value).abs() < 0.006 {
        ntsc
    } else {
        value
    }
}

/// Reads fixed-size frames from a pipe, at most `max_frames` of them.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    read: usize,
    max_frames: usize,
}

impl<R: Read> FrameReader<R> {
    /// Frames of `frame_bytes` bytes.
    pub fn new(inner: R, frame_bytes: usize, max_frames: usize) -> Self {
        FrameReader {
            inner,
            buf: vec![0; frame_bytes],
            read: 0,
            max_frames,
        }
    }

    /// The next whole frame; `None` at the end between frames. A frame cut short, or one more
    /// than `max_frames`, is an error.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, MediaError> {
        let mut filled = 0;
        // Each pass fills some bytes or ends: at most `frame_bytes` passes.
        while filled < self.buf.len() {
            match self.inner.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(MediaError::Read(e)),
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        if filled < self.buf.len() {
            return Err(MediaError::Video(format!(
                "ffmpeg's output ended inside a frame ({filled} of {} bytes)",
                self.buf.len()
            )));
        }
        if self.read == self.max_frames {
            return Err(MediaError::TooManyFrames {
                max: self.max_frames,
            });
        }
        self.read += 1;
        Ok(Some(&self.buf))
    }
}

/// Starts ffmpeg with standard output and error piped, standard input closed.
fn spawn(program: &Path, args: &[std::ffi::OsString]) -> Result<Child, MediaError> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| MediaError::NoFfmpeg {
            program: program.display().to_string(),
            reason: e.to_string(),
        })
}

/// A thread that waits for a child, killing it at a timeout or when told to.
struct Watchdog {
    kill: mpsc::Sender<()>,
    handle: std::thread::JoinHandle<Result<(ExitStatus, bool), MediaError>>,
}

impl Watchdog {
    /// Starts watching `child`.
    fn start(child: Child, timeout: Duration) -> Self {
        let (kill, rx) = mpsc::channel::<()>();
        let handle = std::thread::spawn(move || watch(child, timeout, &rx));
        Watchdog { kill, handle }
    }

    /// Kills the child now (nothing happens if it has already exited).
    fn kill(&self) {
        // The receiver is gone only if the watchdog has already returned: nothing to kill.
        let _ = self.kill.send(());
    }

    /// Waits for the child: its exit status, and whether it was killed for the timeout.
    fn finish(self) -> Result<(ExitStatus, bool), MediaError> {
        self.handle
            .join()
            .map_err(|_| MediaError::Video("the ffmpeg watchdog panicked".into()))?
    }
}

/// The watchdog's loop: the exit status, and whether `child` was killed for the timeout.
fn watch(
    mut child: Child,
    timeout: Duration,
    rx: &mpsc::Receiver<()>,
) -> Result<(ExitStatus, bool), MediaError> {
    let deadline = Instant::now() + timeout;
    let mut told = false;
    // Bounded by the deadline: each pass waits at most POLL.
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, false));
        }
        let now = Instant::now();
        if told || now >= deadline {
            // Killing a child that has just exited is harmless.
            let _ = child.kill();
            return Ok((child.wait()?, !told));
        }
        match rx.recv_timeout(POLL.min(deadline - now)) {
            Ok(()) => told = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
    }
}

/// Which end of a pipe [`keep`] keeps.
#[derive(Clone, Copy, PartialEq)]
enum End {
    Head,
    Tail,
}

/// The first or the last `max` bytes (about) of a pipe, read to its end (the rest dropped, so
/// the writer never blocks).
fn keep(mut pipe: impl Read, max: usize, end: End) -> String {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) if end == End::Head => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > max {
                    kept.drain(..kept.len() - max);
                }
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The last non-blank line of ffmpeg's messages, or a placeholder.
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no message)")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_table() {
        // (rate, seconds per frame, step, timestamps of sampled frames 0..3 in ms)
        let cases: &[(f64, f64, u64, [u32; 3])] = &[
            (25.0, 1.0, 25, [0, 1000, 2000]),
            (30_000.0 / 1001.0, 1.0, 29, [0, 968, 1935]),
            (10.0, 0.5, 5, [0, 500, 1000]),
            (0.5, 1.0, 1, [0, 2000, 4000]),
            (24.0, 2.5, 60, [0, 2500, 5000]),
            (100.0, 0.29, 28, [0, 280, 560]),
        ];
        for &(rate, seconds, step, stamps) in cases {
            let s = Sampling::new(rate, seconds);
            assert_eq!(s.step, step, "{rate} fps, {seconds} s");
            for (i, ms) in stamps.iter().enumerate() {
                let (number, got) = s.frame(i as u64).expect("in range");
                assert_eq!((number, got), (i as u32 * step as u32, *ms), "{rate} {i}");
            }
        }
        assert_eq!(Sampling::new(25.0, 1.0).frame(u64::from(u32::MAX)), None);
    }

    #[test]
    fn probe_lines() {
        let ok = |text: &str, want: (u32, u32, f64)| {
            let p = parse_probe(text).expect(text);
            assert_eq!((p.width, p.height), (want.0, want.1), "{text}");
            assert!((p.rate - want.2).abs() < 1e-9, "{text}: {}", p.rate);
        };
        ok(
            "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709, progressive), 320x240 [SAR 1:1 DAR 4:3], 12 kb/s, 25 fps, 25 tbr, 12800 tbn (default)",
            (320, 240, 25.0),
        );
        ok(
            "Input #0\n  Stream #0:1: Audio: aac, 44100 Hz\n  Stream #0:0: Video: vp9, yuv420p, 64x48, 29.97 fps, 29.97 tbr, 1k tbn",
            (64, 48, 30_000.0 / 1001.0),
        );
        ok(
            "  Stream #0:0: Video: h264, yuv420p, 1920x1080, 23.98 fps, 23.98 tbr",
            (1920, 1080, 24_000.0 / 1001.0),
        );
        ok(
            "  Stream #0:0: Video: mjpeg, yuvj420p, 100x100, 12.5 tbr, 90k tbn",
            (100, 100, 12.5),
        );
        ok(
            "  Stream #0:0: Video: rawvideo, rgb24, 8x8, 1k fps",
            (8, 8, 1000.0),
        );
        let bad = |text: &str, want: &str| {
            let e = parse_probe(text).expect_err(text).to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        };
        bad(
            "x.mp4: Invalid data found when processing input\n",
            "not a video ffmpeg can read: x.mp4: Invalid data",
        );
        bad("", "(no message)");
        bad(
            "  Stream #0:0: Video: h264 (avc1 / 0x31637661), 25 fps",
            "no frame size",
        );
        bad(
            "  Stream #0:0: Video: h264, 64x48, 9000 tbn",
            "no frame rate",
        );
    }

    #[test]
    fn frame_reader_bounds() {
        let data: Vec<u8> = (0..12).collect();
        let mut r = FrameReader::new(&data[..], 4, 3);
        assert_eq!(r.next_frame().unwrap(), Some(&[0, 1, 2, 3][..]));
        assert_eq!(r.next_frame().unwrap(), Some(&[4, 5, 6, 7][..]));
        assert_eq!(r.next_frame().unwrap(), Some(&[8, 9, 10, 11][..]));
        assert_eq!(r.next_frame().unwrap(), None);
        // One frame too many.
        let mut r = FrameReader::new(&data[..], 4, 2);
        r.next_frame().unwrap();
        r.next_frame().unwrap();
        assert!(matches!(
            r.next_frame(),
            Err(MediaError::TooManyFrames { max: 2 })
        ));
        // Cut short.
        let mut r = FrameReader::new(&data[..10], 4, 9);
        r.next_frame().unwrap();
        r.next_frame().unwrap();
        let e = r.next_frame().unwrap_err().to_string();
        assert!(e.contains("2 of 4 bytes"), "{e}");
        // Empty.
        assert_eq!(FrameReader::new(&[][..], 4, 9).next_frame().unwrap(), None);
    }

    #[test]
    fn video_names_and_programs() {
        for (name, video) in [
            ("a.mp4", true),
            ("b.MOV", true),
            ("c.WebM", true),
            ("d.mkv", true),
            ("e.avi", true),
            ("f.m4v", true),
            ("g.png", false),
            ("mp4", false),
        ] {
            assert_eq!(is_video_name(Path::new(name)), video, "{name}");
        }
        assert_eq!(
            ffmpeg_program(Some(Path::new("/opt/ff"))),
            PathBuf::from("/opt/ff")
        );
    }

    #[test]
    fn the_watchdog_kills_at_the_timeout_or_when_told() {
        let sleeper = || Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let started = Instant::now();
        let watchdog = Watchdog::start(sleeper(), Duration::from_millis(100));
        let (status, timed_out) = watchdog.finish().expect("waits");
        assert!(timed_out && !status.success());
        let watchdog = Watchdog::start(sleeper(), Duration::from_secs(60));
        watchdog.kill();
        let (status, timed_out) = watchdog.finish().expect("waits");
        assert!(!timed_out && !status.success());
        assert!(started.elapsed() < Duration::from_secs(10));
        // A child that ends by itself is waited for, not killed.
        let quick = Command::new("true").spawn().expect("true runs");
        let watchdog = Watchdog::start(quick, Duration::from_secs(60));
        assert_eq!(watchdog.finish().expect("waits"), (status_ok(), false));
    }

    fn status_ok() -> ExitStatus {
        Command::new("true").status().expect("true runs")
    }

    #[test]
    fn messages_kept_are_bounded() {
        let text = "a".repeat(100) + "\nlast line\n";
        assert_eq!(keep(text.as_bytes(), 5, End::Head), "aaaaa");
        assert_eq!(keep(text.as_bytes(), 11, End::Tail), "\nlast line\n");
        assert_eq!(
            last_line(&keep(text.as_bytes(), 11, End::Tail)),
            "last line"
        );
    }

    #[test]
    fn missing_ffmpeg_is_one_clear_error() {
        let options = VideoOptions {
            ffmpeg: PathBuf::from("/nonexistent/ffmpeg"),
            seconds_per_frame: 1.0,
            max_pixels: 1000,
            timeout: Duration::from_secs(1),
        };
        let e = hash_video(Path::new("x.mp4"), &options)
            .expect_err("no ffmpeg")
            .to_string();
        assert!(
            e.contains("/nonexistent/ffmpeg") && e.contains("--ffmpeg"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
