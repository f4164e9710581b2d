#!/usr/bin/env python3
"""Regenerates the bad-file sample set: one or more files for every rejection code, plus the
duplicates ingest must recognise, and expected.tsv with what each must get.

    pip install pillow
    python3 samplesets/bad/make_bad.py

Files land in samplesets/bad/upload/mixed/ so that `cvops upload samplesets/bad/upload --dataset D`
sends them as label `mixed` (the nested one deliberately breaks the key layout).
expected.tsv columns: path (under upload/), what `cvops validate` says (a reason code or `valid`),
what ingest records (a reason code, `accepted`, `near_duplicate` or `duplicate`).
"""
import io, pathlib, shutil, struct, zipfile, zlib

from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE / "upload" / "mixed"
DIGIT = HERE.parent / "digits" / "train" / "0" / "0000.png"


def photo(w=96, h=64):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 255) // w, (y * 255) // h, (x ^ y) & 0xFF) for y in range(h) for x in range(w)])
    return im


def encoded(im, fmt, **kw):
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb(side=30_000):
    """A valid 1-bit grey PNG of zeros: about 110 KB on disk, 900 megapixels decoded."""
    row = b"\0" * (1 + side // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def corrupt_png():
    """A whole PNG whose compressed pixel data is garbage (chunk CRCs made consistent)."""
    w, h = 64, 64
    raw = b"".join(b"\0" + bytes((x * 4) & 0xFF for x in range(w)) for _ in range(h))
    idat = bytearray(zlib.compress(raw))
    for i in range(2, len(idat) - 4):
        idat[i] = (i * 151) & 0xFF
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", bytes(idat)) + png_chunk(b"IEND", b"")


def main():
    shutil.rmtree(HERE / "upload", ignore_errors=True)
    OUT.mkdir(parents=True)
    files = {}  # name -> (bytes, validate, ingest)

    def add(name, data, validate, ingest=None):
        files[name] = (data, validate, ingest or validate)

    p = photo()
    add("empty.jpg", b"", "empty")
    add("notes.txt", b"label,file\ncat,a.jpg\n", "not_an_image")
    add("error-page.jpg", b"<!DOCTYPE html><html><body><h1>403 Forbidden</h1></body></html>\n", "not_an_image")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("images/a.png", encoded(p, "PNG"))
    add("images.zip", zbuf.getvalue(), "not_an_image")
    add("iphone.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64, "unsupported_format")
    add("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>\n', "unsupported_format")
    add("favicon.ico", encoded(p.resize((32, 32)), "ICO"), "unsupported_format")
    for fmt, ext in [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif")]:
        whole = encoded(p, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        add(f"cut-short.{ext}", whole[: len(whole) // 2], "truncated")
    add("damaged.png", corrupt_png(), "corrupt")
    add("bad-marker.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x12\x34" * 40, "corrupt")
    add("pixel.png", encoded(Image.new("L", (1, 1)), "PNG"), "too_small")
    add("sliver.png", encoded(Image.new("L", (8, 200)), "PNG"), "too_small")
    add("bomb.png", bomb(), "too_large")
    add("nested/deeper/valid.png", encoded(p, "PNG"), "valid", "bad_key")
    digit = DIGIT.read_bytes()
    add("copy-of-0000.png", digit, "valid", "duplicate")
    near = Image.open(io.BytesIO(digit)).copy()
    near.putpixel((0, 0), 7)
    add("near-copy-of-0000.png", encoded(near, "PNG"), "valid", "near_duplicate")
    add("photo.webp", encoded(p, "WEBP", lossless=True), "valid", "accepted")

    rows = ["path\tvalidate\tingest"]
    for name, (data, validate, ingest) in sorted(files.items()):
        path = OUT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(f"mixed/{name}\t{validate}\t{ingest}")
    (HERE / "expected.tsv").write_text("\n".join(rows) + "\n")
    print(f"wrote {len(files)} files to {OUT}")


if __name__ == "__main__":
    main()
