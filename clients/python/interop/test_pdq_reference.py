"""`coalition hash` against the reference implementations, on images made here.

* PDQ: the `pdqhash` package (PyPI, Cython bindings of facebook/ThreatExchange pdq/cpp).
  `pdqhash.compute(rgb)` takes an H x W x 3 uint8 array, computes the luminance
  `R*0.299 + G*0.587 + B*0.114` in float64 and rounds it to float32, then runs the C++
  `pdqHash256FromFloatLuma` on the full-size image (no prior downscaling). `coalition hash`
  does exactly that on the pixels its decoder gives. So:
  - PNG (lossless): Pillow and `coalition hash` decode the same pixels: hash and quality must
    be bit-identical.
  - JPEG: Pillow (libjpeg-turbo) and `coalition hash` (zune-jpeg) use different IDCTs and
    chroma upsampling, so pixels differ by a few levels. For hashes of quality >= 50 (those
    Meta advises acting on, and the default --min-quality of matching) the two must stay
    within JPEG_MAX_DISTANCE bits; for all, the qualities within JPEG_MAX_QUALITY_DELTA.
    Measured on this test's 72 JPEGs: quality >= 50, at most 8 bits apart (most at 0-2);
    quality < 50 (flat gradients, many DCT coefficients near the median) up to 30 bits apart;
    qualities at most 1 apart.
* URL-MD5: `threatexchange` (python-threatexchange) `UrlMD5Signal.hash_from_str`.

Self-contained: the binary is $COALITION_BIN or target/debug/coalition of this repository;
the packages are pinned in clients/python/requirements-interop-media.txt.

    python -m venv /tmp/v && /tmp/v/bin/pip install -r clients/python/requirements-interop-media.txt
    COALITION_BIN=target/debug/coalition /tmp/v/bin/pytest clients/python/interop
"""

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageDraw

import pdqhash  # pinned in requirements-interop-media.txt: missing fails, never skips

ROOT = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(os.environ.get("COALITION_BIN", ROOT / "target" / "debug" / "coalition"))

# The largest distance measured between the two decoders' JPEG hashes of quality >= 50 was 8
# bits (docs/PERFORMANCE.md, "PDQ against the reference"); the bound leaves a margin. Quality:
# measured at most 1 apart.
JPEG_MAX_DISTANCE = 12
JPEG_MAX_QUALITY_DELTA = 2
ACTIONABLE_QUALITY = 50

SIZES = [(64, 64), (100, 37), (257, 129), (512, 512), (640, 360), (1023, 777)]
JPEG_QUALITIES = [95, 75, 50]


def gradient(w, h, rng):
    y, x = np.mgrid[0:h, 0:w]
    a, b = rng.uniform(0.2, 1.0, 2)
    r = (255 * x / max(w - 1, 1) * a) % 256
    g = (255 * y / max(h - 1, 1) * b) % 256
    bl = 128 + 100 * np.sin(x / 17.0 + y / 23.0)
    return np.stack([r, g, bl], axis=-1).astype(np.uint8)


def noise(w, h, rng):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def shapes(w, h, rng):
    img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(8):
        x0, x1 = sorted(int(v) for v in rng.integers(0, w, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h, 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            draw.rectangle([x0, y0, x1, y1], fill=fill)
    return np.asarray(img)


def smooth_noise(w, h, rng):
    """Noise blurred by upscaling a small random image: structure PDQ can see."""
    small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    return np.asarray(small.resize((w, h), Image.BICUBIC))


GENERATORS = {"gradient": gradient, "noise": noise, "shapes": shapes, "smooth": smooth_noise}


def reference(path):
    """pdqhash on the pixels Pillow decodes: (hex hash, quality)."""
    rgb = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")), dtype=np.uint8)
    bits, quality = pdqhash.compute(rgb)
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex(), int(quality)


def coalition_hash(*args):
    assert BIN.exists(), f"{BIN} missing: build it (cargo build) or set COALITION_BIN"
    proc = subprocess.run([str(BIN), "hash", *args], capture_output=True, text=True, timeout=600)
    return proc


def hashed(directory):
    proc = coalition_hash("--types", "pdq", "--with-source", str(directory))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    return {pathlib.Path(r["file"]).name: (r["hash"], r["quality"]) for r in rows}


def hamming(a, b):
    return bin(int(a, 16) ^ int(b, 16)).count("1")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(20261203)
    names = []
    for kind, make in GENERATORS.items():
        for w, h in SIZES:
            pixels = make(w, h, rng)
            base = f"{kind}-{w}x{h}"
            Image.fromarray(pixels).save(directory / f"{base}.png")
            names.append(f"{base}.png")
            Image.fromarray(pixels).convert("L").save(directory / f"{base}-grey.png")
            names.append(f"{base}-grey.png")
            for q in JPEG_QUALITIES:
                Image.fromarray(pixels).save(directory / f"{base}-q{q}.jpg", quality=q)
                names.append(f"{base}-q{q}.jpg")
    return directory, names


def test_png_is_bit_identical_to_the_reference(images):
    directory, names = images
    ours = hashed(directory)
    pngs = [n for n in names if n.endswith(".png")]
    assert len(pngs) == 2 * len(GENERATORS) * len(SIZES)
    for name in pngs:
        ref_hash, ref_quality = reference(directory / name)
        assert ours[name] == (ref_hash, ref_quality), name


def test_jpeg_is_near_the_reference(images, capsys):
    directory, names = images
    ours = hashed(directory)
    worst = (0, "")
    worst_quality = 0
    actionable = 0
    for name in (n for n in names if n.endswith(".jpg")):
        ref_hash, ref_quality = reference(directory / name)
        our_hash, our_quality = ours[name]
        distance = hamming(our_hash, ref_hash)
        worst_quality = max(worst_quality, abs(our_quality - ref_quality))
        assert abs(our_quality - ref_quality) <= JPEG_MAX_QUALITY_DELTA, name
        if ref_quality >= ACTIONABLE_QUALITY:
            actionable += 1
            worst = max(worst, (distance, name))
            assert distance <= JPEG_MAX_DISTANCE, (name, distance)
    assert actionable >= 50, "most generated JPEGs have an actionable quality"
    with capsys.disabled():
        print(
            f"\nJPEG, quality >= {ACTIONABLE_QUALITY}: {actionable} images, worst distance "
            f"{worst[0]} ({worst[1]}); worst quality delta {worst_quality}"
        )


def test_cryptographic_digests_are_of_the_file_bytes(images):
    import hashlib

    directory, names = images
    path = directory / names[0]
    proc = coalition_hash("--types", "md5,sha1,sha256", str(path))
    assert proc.returncode == 0, proc.stderr
    got = {r["type"]: r["hash"] for r in map(json.loads, proc.stdout.splitlines())}
    data = path.read_bytes()
    assert got == {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


URLS = [
    "https://developers.facebook.com/docs/threat-exchange/reference/apis/",
    "HtTPs://wWw.faCeBook.cOM",
    "http://example.com/path?",
    "http://example.com/a;b/c;d?q#f",
    "www.facebook.com/redirect?u=https://evil.example/",
    "  https://example.com/lead ing",
    "https://user:pass@Example.COM:8443/p",
    "HTTPS://EXAMPLE.COM/ÄÖÜ/ünïcödé",
    "https://例え.jp/パス",
    "http://[2001:DB8::1]:8080/x",
    "http:example.com",
    "//example.com/protocol-relative",
    "mailto:someone@example.com",
    "tel:+1-555;ext=1",
    "https://EXAMPLE.com/ΣΑΣ",
    "1http://example.com",
]


def test_url_md5_matches_python_threatexchange(tmp_path):
    from threatexchange.signal_type import url_md5

    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(URLS) + "\n", encoding="utf-8")
    proc = coalition_hash("--urls", str(listing), "--with-source")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["url"] for r in rows] == URLS
    for row in rows:
        assert row["type"] == "url_md5"
        assert row["hash"] == url_md5.UrlMD5Signal.hash_from_str(row["url"]), row["url"]
