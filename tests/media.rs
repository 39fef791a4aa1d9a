//! `coalition hash` and `coalition match --files` end to end: images made at test time, bad
//! files among them, the hash list read back by `match --index`, and submitted to a real hub
//! over mutual TLS then found by `match --files --hub`.

use crate::serve;

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;
use serve::{ServeProcess, coalition, ok, ok_with_stderr};
use sha2::Digest;
use std::path::Path;

fn picture(seed: u64) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    let f: [f64; 6] = std::array::from_fn(|_| rng.gen_range(1.0..12.0));
    RgbImage::from_fn(320, 240, |x, y| {
        let (u, v) = (f64::from(x) / 320.0, f64::from(y) / 240.0);
        let wave = |a: f64, b: f64, p: f64| 128.0 + 120.0 * (a * u + p).sin() * (b * v + p).cos();
        Rgb([
            wave(f[0], f[1], f[4]) as u8,
            wave(f[2], f[3], f[5]) as u8,
            wave(f[1], f[2], f[0]) as u8,
        ])
    })
}

fn save_jpeg(img: &RgbImage, path: &Path, quality: u8) {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .expect("jpeg");
    std::fs::write(path, bytes).expect("write");
}

fn rows(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Three good images (one in a subdirectory), a text file (skipped in a directory), a damaged
/// JPEG whose name holds an escape sequence, and a declared bomb.
fn library(d: &Path) {
    std::fs::create_dir_all(d.join("lib/sub")).expect("dirs");
    picture(1).save(d.join("lib/a.png")).expect("png");
    save_jpeg(&picture(2), &d.join("lib/b.jpg"), 90);
    save_jpeg(&picture(3), &d.join("lib/sub/c.JPEG"), 80);
    std::fs::write(d.join("lib/notes.txt"), "not an image").expect("txt");
    std::fs::write(d.join("lib/bad\x1b[31m.jpg"), b"\xff\xd8\xff\xe0 truncated").expect("bad");
    // A PNG header declaring 30000 x 30000 (900 megapixels) and nothing else.
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    let ihdr_at = png.len() - 4;
    png.extend_from_slice(&30_000u32.to_be_bytes());
    png.extend_from_slice(&30_000u32.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0]);
    let crc = crc32fast::hash(&png[ihdr_at..]);
    png.extend_from_slice(&crc.to_be_bytes());
    // The start of an IDAT chunk, so that a decoder reaches the image data.
    png.extend_from_slice(b"\x00\x00\x00\x04IDAT\x78\x9c\x03\x00");
    let crc = crc32fast::hash(&png[png.len() - 8..]);
    png.extend_from_slice(&crc.to_be_bytes());
    std::fs::write(d.join("lib/sub/bomb.png"), png).expect("bomb");
}

#[test]
fn hash_writes_a_hash_list_and_reports_each_bad_file_on_one_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    library(d);
    let out = coalition(
        d,
        &[
            "hash",
            "lib",
            "--label",
            "A1",
            "--label",
            "tag-x",
            "--with-source",
            "--out",
            "h.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert!(
        lines[0].starts_with(r"lib/bad\u{1b}[31m.jpg: cannot decode"),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with("lib/sub/bomb.png: image is 30000x30000, more than the limit"),
        "{stderr}"
    );
    assert_eq!(lines[2], "3 of 5 inputs hashed (12 hashes)");
    assert_eq!(
        lines[3],
        "error: 2 of 5 inputs could not be hashed (see above)"
    );
    assert!(
        !stderr
            .chars()
            .any(|c| c != '\n' && coalition_hub::text::is_unsafe(c))
    );

    let hashes = rows(&std::fs::read_to_string(d.join("h.jsonl")).expect("out"));
    let files: Vec<&str> = hashes.iter().map(|r| r["file"].as_str().unwrap()).collect();
    assert_eq!(files.len(), 12);
    assert_eq!(files[0], "lib/a.png");
    assert_eq!(files[4], "lib/b.jpg");
    assert_eq!(files[8], "lib/sub/c.JPEG");
    let types: Vec<&str> = hashes[..4]
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["pdq", "md5", "sha1", "sha256"]);
    assert!(
        hashes[0]["quality"].as_u64().is_some_and(|q| q >= 50),
        "{}",
        hashes[0]
    );
    assert_eq!(hashes[1]["labels"], serde_json::json!(["A1", "tag-x"]));
    let png = std::fs::read(d.join("lib/a.png")).expect("png");
    assert_eq!(hashes[3]["hash"], hex::encode(sha2::Sha256::digest(&png)));

    // CSV, PDQ only, one file named directly (any name): the same PDQ hash.
    let csv = ok(
        d,
        &["hash", "lib/a.png", "--types", "pdq", "--format", "csv"],
    );
    let pdq = hashes[0]["hash"].as_str().unwrap();
    let quality = hashes[0]["quality"].as_u64().unwrap();
    assert_eq!(
        csv,
        format!("type,hash,labels,quality\npdq,{pdq},,{quality}\n")
    );

    // Usage mistakes: one error line, exit 1.
    for (args, expected) in [
        (
            &["hash", "lib", "--types", "photodna"][..],
            "--types: photodna is not computed from files",
        ),
        (
            &["hash", "lib", "--label", "Bad Label"][..],
            "--label: 'Bad Label' is neither",
        ),
        (&["hash"][..], "nothing to hash"),
        (&["hash", "missing-dir"][..], "listing the files to hash"),
        (
            &["hash", "--url", "http://[::1/x"][..],
            "could not be hashed",
        ),
    ] {
        let out = coalition(d, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.lines().last().is_some_and(|l| l.contains(expected)),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn url_md5_rows_from_arguments_and_a_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    std::fs::write(
        d.join("urls.txt"),
        "https://www.facebook.com\n\nwww.facebook.com/\n",
    )
    .expect("urls");
    let out = ok(
        d,
        &[
            "hash",
            "--url",
            "HtTPs://wWw.faCeBook.cOM",
            "--urls",
            "urls.txt",
            "--label",
            "b2",
        ],
    );
    let r = rows(&out);
    assert_eq!(r.len(), 3);
    for row in &r[..2] {
        assert_eq!(row["type"], "url_md5");
        // python-threatexchange's UrlMD5Signal.hash_from_str of both spellings.
        assert_eq!(row["hash"], "660328a7f9004d462085aa67a82065db");
        assert_eq!(row["labels"], serde_json::json!(["B2"]));
    }
    assert_ne!(
        r[2]["hash"], r[0]["hash"],
        "a trailing slash is another URL"
    );
}

#[test]

fn match_files_offline_and_at_the_hub_names_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    library(d);
    let _ = coalition(
        d,
        &["hash", "lib", "--label", "A1", "--out", "shared.jsonl"],
    );
    // The incoming files: a.png with a few pixels painted over (PDQ near, digests differ; a
    // JPEG re-encoding of these smooth synthetic pictures moves their PDQ hashes by far more
    // than 31 bits, with the reference implementation too), a byte copy of a.png (every
    // hash), an unrelated picture, and a damaged file.
    std::fs::create_dir_all(d.join("incoming")).expect("dir");
    let mut edited = picture(1);
    for x in 0..10 {
        edited.put_pixel(x, 0, image::Rgb([0, 0, 0]));
    }
    edited
        .save(d.join("incoming/1-reencoded.png"))
        .expect("png");
    std::fs::copy(d.join("lib/a.png"), d.join("incoming/2-copy.png")).expect("copy");
    save_jpeg(&picture(40), &d.join("incoming/3-other.jpg"), 90);
    std::fs::write(d.join("incoming/4-broken.png"), b"\x89PNG\r\n\x1a\n").expect("broken");

    let check = |out: &std::process::Output, online: bool| {
        assert_eq!(
            out.status.code(),
            Some(1),
            "the broken file fails the run: {out:?}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("incoming/4-broken.png: cannot decode"),
            "{stderr}"
        );
        assert!(stderr.contains("2 of 4 files matched"), "{stderr}");
        assert!(
            stderr
                .trim_end()
                .ends_with("error: 1 of 4 files could not be hashed (see above)")
        );
        let m = rows(&String::from_utf8_lossy(&out.stdout));
        let of =
            |file: &str| -> Vec<&Value> { m.iter().filter(|r| r["query_file"] == file).collect() };
        let reencoded = of("incoming/1-reencoded.png");
        assert_eq!(reencoded.len(), 1, "{m:?}");
        assert_eq!(reencoded[0]["query_type"], "pdq");
        assert_eq!(reencoded[0]["query_line"], 1);
        assert!(reencoded[0]["distance"].as_u64().unwrap() <= 31);
        let copy = of("incoming/2-copy.png");
        let mut types: Vec<&str> = copy
            .iter()
            .map(|r| r["query_type"].as_str().unwrap())
            .collect();
        types.sort();
        assert_eq!(types, ["md5", "pdq", "sha1", "sha256"], "{m:?}");
        assert!(
            copy.iter()
                .all(|r| r["labels"] == serde_json::json!(["A1"]))
        );
        assert!(of("incoming/3-other.jpg").is_empty());
        assert_eq!(m.len(), 5);
        if online {
            assert!(
                copy.iter()
                    .all(|r| r["source"]["issuer"] == "acme" && r["state"] == "active")
            );
        }
    };
    let offline = coalition(
        d,
        &["match", "--files", "incoming", "--index", "shared.jsonl"],
    );
    check(&offline, false);

    // The same hash list shared through a real hub, matched there by another member.
    ok(d, &["pki", "init"]);
    ok(d, &["init", "--data", "data", "--name", "media.test"]);
    let (_hub, addr) = ServeProcess::start(d, &[]);
    for m in ["acme", "globex"] {
        ok(
            d,
            &[
                "admin", "member", "admit", "--hub", &addr, "--as", "admin", "--id", m, "--name",
                m, "--reason", "test",
            ],
        );
    }
    let (out, _) = ok_with_stderr(
        d,
        &[
            "submit",
            "--hub",
            &addr,
            "--as",
            "acme",
            "--hashes",
            "shared.jsonl",
        ],
    );
    assert!(out.contains("(12 hashes)"), "{out}");
    let online = coalition(
        d,
        &[
            "match", "--files", "incoming", "--hub", &addr, "--as", "globex",
        ],
    );
    check(&online, true);

    // CSV names the file in a last column.
    let out = coalition(
        d,
        &[
            "match",
            "--files",
            "incoming/2-copy.png",
            "--index",
            "shared.jsonl",
            "--format",
            "csv",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.lines()
            .next()
            .is_some_and(|h| h.ends_with(",query_file")),
        "{csv}"
    );
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.ends_with(",incoming/2-copy.png")),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 5, "{csv}");
}

/// A stand-in for ffmpeg (a shell script): `-i FILE` alone prints a 64x48, 10 fps stream line;
/// with `-f rawvideo` it checks the sampling filter it was given and writes `frames.rgb` (or
/// fails). The real ffmpeg is exercised by clients/python/interop/test_video_vpdq.py.
fn fake_ffmpeg(d: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = d.join("fake-ffmpeg");
    let frames = d.join("frames.rgb");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n\
             *'select=not(mod(n\\,10))'*rawvideo*) cat '{}' ;;\n\
             *rawvideo*) echo 'wrong filter' >&2; exit 1 ;;\n\
             *) echo '  Stream #0:0: Video: h264, yuv420p, 64x48 [SAR 1:1 DAR 4:3], 10 fps, 10 tbr' >&2; exit 1 ;;\n\
             esac\n",
            frames.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script.display().to_string()
}

#[test]
fn videos_are_sampled_frames_hashed_as_images_are() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    let ffmpeg = fake_ffmpeg(d);
    std::fs::create_dir_all(d.join("lib")).expect("dir");
    std::fs::write(d.join("lib/clip.MP4"), b"decoded by the fake").expect("clip");
    // Three sampled frames, each also saved as a PNG (lossless: the same pixels).
    let mut raw = Vec::new();
    for seed in 0..3u64 {
        let frame = image::imageops::resize(
            &picture(10 + seed),
            64,
            48,
            image::imageops::FilterType::Triangle,
        );
        frame.save(d.join(format!("f{seed}.png"))).expect("png");
        raw.extend_from_slice(frame.as_raw());
    }
    std::fs::write(d.join("frames.rgb"), &raw).expect("frames");
    let images = rows(&ok(
        d,
        &["hash", "--types", "pdq", "f0.png", "f1.png", "f2.png"],
    ));
    let video = rows(&ok(
        d,
        &["hash", "--ffmpeg", &ffmpeg, "lib", "--label", "A1"],
    ));
    assert_eq!(video.len(), 1, "{video:?}");
    assert_eq!(video[0]["type"], "vpdq");
    assert_eq!(video[0]["labels"], serde_json::json!(["A1"]));
    let value = hex::decode(video[0]["hash"].as_str().unwrap()).expect("hex");
    let frames = coalition_hub::matching::VpdqHash::from_bytes(&value).expect("vpdq");
    for (i, (frame, image)) in frames.frames().iter().zip(&images).enumerate() {
        // Frames 0, 10, 20 at 10 fps and one frame a second: 0, 1, 2 s.
        assert_eq!(frame.number, 10 * i as u32);
        assert_eq!(frame.timestamp_ms, 1000 * i as u32);
        assert_eq!(frame.hash.to_string(), image["hash"].as_str().unwrap());
        assert_eq!(u64::from(frame.quality), image["quality"].as_u64().unwrap());
    }
    assert_eq!(frames.frames().len(), 3);

    // A frame cut short is one line naming the file; so is a video without ffmpeg; the image
    // beside them is still hashed, and the exit code is 1.
    std::fs::write(d.join("frames.rgb"), &raw[..raw.len() - 1]).expect("frames");
    picture(1).save(d.join("lib/a.png")).expect("png");
    let out = coalition(d, &["hash", "--ffmpeg", &ffmpeg, "lib"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("lib/clip.MP4: video: ffmpeg's output ended inside a frame"),
        "{stderr}"
    );
    assert_eq!(rows(&String::from_utf8_lossy(&out.stdout)).len(), 4);
    let out = coalition(d, &["hash", "--ffmpeg", "/nonexistent/ffmpeg", "lib"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("lib/clip.MP4: cannot run ffmpeg '/nonexistent/ffmpeg'")
            && first.ends_with("name it with --ffmpeg PATH or COALITION_FFMPEG"),
        "{stderr}"
    );
    assert_eq!(rows(&String::from_utf8_lossy(&out.stdout)).len(), 4);
    // The sampling interval must be a positive number of seconds.
    let out = coalition(d, &["hash", "--video-seconds-per-frame", "0", "lib"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--video-seconds-per-frame"));
}
