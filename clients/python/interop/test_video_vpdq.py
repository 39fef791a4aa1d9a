"""`coalition hash` on video files (vPDQ), against the reference PDQ on the same frames.

The ffmpeg is the static binary of the `imageio-ffmpeg` package (PyPI), so the test needs no
system ffmpeg. Videos are made here from numpy frames piped into that ffmpeg (H.264 in MP4):
one distinct image per second, shifted a little on each frame of that second.

What is checked (docs/PROTOCOL.md §2.3.2, "vPDQ from a video file"):

1. Sampling: frames 0, step, 2 x step... with step = floor(seconds_per_frame x rate), each
   with timestamp number / rate in milliseconds; at 12 fps and at 30000/1001 fps (printed as
   29.97 by ffmpeg, taken as exactly 30000/1001), and with --video-seconds-per-frame 0.5.
2. Each frame's PDQ hash and quality are bit-identical to `pdqhash.compute` on the same
   frame's pixels, decoded here by the same ffmpeg to raw RGB24 with the arguments
   `coalition hash` documents (every frame decoded; the test picks every step-th itself).
3. The video re-encoded at another quality is matched by the hub's vPDQ rule (offline
   `coalition match`, both from a hash list and with --files); an unrelated video is not.
4. A file named .mp4 that is not a video costs one stderr line naming it; the other files are
   still hashed; exit 1.
5. No ffmpeg (--ffmpeg /nonexistent): one clear line per video, images still hashed, exit 1.

    python -m venv /tmp/v && /tmp/v/bin/pip install -r clients/python/requirements-interop-media.txt
    COALITION_BIN=target/debug/coalition /tmp/v/bin/pytest clients/python/interop/test_video_vpdq.py
"""

import json
import math
import os
import pathlib
import subprocess

import numpy as np
import pytest
from PIL import Image

import imageio_ffmpeg  # the requirements file pins both: a missing one fails, never skips
import pdqhash

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(os.environ.get("COALITION_BIN", ROOT / "target" / "debug" / "coalition"))
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H = 160, 120
FRAME_BYTES = 41


def frames_of(seed, seconds, rate):
    """Frames of a synthetic video: one smooth random image per second, shifted per frame."""
    rng = np.random.default_rng(seed)
    count = int(seconds * rate)
    bases = []
    for _ in range(math.ceil(seconds) + 1):
        small = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8))
        bases.append(np.asarray(small.resize((W, H), Image.BICUBIC)))
    for i in range(count):
        second = int(i / rate)
        yield np.roll(bases[second], 2 * (i - int(second * rate)), axis=1)


def encode(path, seed, seconds, rate, crf=18):
    proc = subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", rate, "-i", "-",
         "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p", str(path)],
        stdin=subprocess.PIPE,
    )
    num, _, den = rate.partition("/")
    for frame in frames_of(seed, seconds, int(num) / int(den or 1)):
        proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
    proc.stdin.close()
    assert proc.wait(timeout=120) == 0


def reencode(src, dst, crf):
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
         "-c:v", "libx264", "-crf", str(crf), "-preset", "veryfast", "-pix_fmt", "yuv420p", str(dst)],
        check=True, timeout=120,
    )


def decoded_frames(path):
    """Every frame as `coalition hash` has ffmpeg decode it (no select filter): RGB24 arrays."""
    out = subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-noautorotate", "-i", str(path),
         "-map", "0:v:0", "-fps_mode", "passthrough", "-sws_flags", "area",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True, timeout=120,
    ).stdout
    assert len(out) % (W * H * 3) == 0
    return [np.frombuffer(out[i:i + W * H * 3], dtype=np.uint8).reshape(H, W, 3)
            for i in range(0, len(out), W * H * 3)]


def coalition(*args, env=None):
    assert BIN.exists(), f"{BIN} missing: build it (cargo build) or set COALITION_BIN"
    full_env = {k: v for k, v in os.environ.items() if k not in ("COALITION_FFMPEG", "COALITION_HUB")}
    full_env.update(env or {})
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=600, env=full_env)


def vpdq_frames(hex_value):
    """(number, timestamp_ms, quality, pdq_hex) of each 41-byte frame of a vpdq value."""
    raw = bytes.fromhex(hex_value)
    assert len(raw) % FRAME_BYTES == 0
    return [
        (int.from_bytes(raw[i:i + 4], "big"), int.from_bytes(raw[i + 4:i + 8], "big"),
         raw[i + 8], raw[i + 9:i + 41].hex())
        for i in range(0, len(raw), FRAME_BYTES)
    ]


def hash_video(path, *extra):
    proc = coalition("hash", "--ffmpeg", FFMPEG, *extra, str(path))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["type"] == "vpdq", rows
    return rows[0]


def reference(rgb):
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb, dtype=np.uint8))
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), int(quality)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    encode(d / "a.mp4", seed=1, seconds=6, rate="12")
    encode(d / "ntsc.mov", seed=2, seconds=7, rate="30000/1001")
    encode(d / "other.mp4", seed=3, seconds=6, rate="12")
    reencode(d / "a.mp4", d / "a-crf34.mkv", crf=34)
    return d


# (file, rate, extra args, step)
SAMPLINGS = [
    ("a.mp4", 12.0, [], 12),
    ("a.mp4", 12.0, ["--video-seconds-per-frame", "0.5"], 6),
    ("ntsc.mov", 30000 / 1001, [], 29),
]


@pytest.mark.parametrize("name,rate,extra,step", SAMPLINGS)
def test_frames_follow_the_sampling_and_equal_the_reference(videos, name, rate, extra, step):
    path = videos / name
    row = hash_video(path, *extra)
    frames = vpdq_frames(row["hash"])
    decoded = decoded_frames(path)
    picked = list(range(0, len(decoded), step))
    assert [f[0] for f in frames] == picked
    assert [f[1] for f in frames] == [round(n * 1000 / rate) for n in picked]
    for (number, _, quality, pdq), rgb in zip(frames, (decoded[n] for n in picked)):
        assert (pdq, quality) == reference(rgb), f"{name} frame {number}"


def test_ffmpeg_from_the_environment(videos):
    proc = coalition("hash", str(videos / "a.mp4"), env={"COALITION_FFMPEG": FFMPEG})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hash"] == hash_video(videos / "a.mp4")["hash"]


def test_reencoded_video_matches_and_unrelated_does_not(videos, tmp_path):
    index = tmp_path / "index.jsonl"
    proc = coalition("hash", "--ffmpeg", FFMPEG, "--label", "video", "--out", str(index),
                     str(videos / "a.mp4"))
    assert proc.returncode == 0, proc.stderr

    def matches(query):
        queries = tmp_path / "query.jsonl"
        queries.write_text(json.dumps(hash_video(query)) + "\n")
        out = coalition("match", "--index", str(index), "--queries", str(queries))
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    found = matches(videos / "a-crf34.mkv")
    assert len(found) == 1 and found[0]["query_type"] == "vpdq", found
    assert found[0]["vpdq"]["compared_percent"] >= 80, found
    assert matches(videos / "other.mp4") == []
    assert matches(videos / "ntsc.mov") == []

    # `match --files` hashes the video itself, the same way.
    out = coalition("match", "--index", str(index), "--ffmpeg", FFMPEG,
                    "--files", str(videos / "a-crf34.mkv"), str(videos / "other.mp4"))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [pathlib.Path(m["query_file"]).name for m in lines] == ["a-crf34.mkv"], lines


def test_a_file_that_is_not_a_video_costs_one_line(videos, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video\n")
    proc = coalition("hash", "--ffmpeg", FFMPEG, str(bad), str(videos / "a.mp4"))
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["type"] for r in rows] == ["vpdq"]
    named = [line for line in proc.stderr.splitlines() if str(bad) in line]
    assert len(named) == 1 and "not a video" in named[0], proc.stderr


def test_no_ffmpeg_is_one_clear_line(videos, tmp_path):
    image = tmp_path / "still.png"
    Image.fromarray(decoded_frames(videos / "a.mp4")[0]).save(image)
    proc = coalition("hash", "--ffmpeg", "/nonexistent", str(videos / "a.mp4"), str(image))
    assert proc.returncode == 1
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(r["type"] for r in rows) == ["md5", "pdq", "sha1", "sha256"]
    named = [line for line in proc.stderr.splitlines() if "a.mp4" in line]
    assert len(named) == 1, proc.stderr
    assert "/nonexistent" in named[0] and "--ffmpeg" in named[0], named
