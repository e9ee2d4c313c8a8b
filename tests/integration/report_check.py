#!/usr/bin/env python3
"""report_check.py - checks for tests/integration/report.sh (stdlib only).

  report_check.py html REPORT.html [--hostile]
      The page parses (html.parser), its tags balance, it loads nothing from
      elsewhere (no script, link, img, iframe, object, no src/href to a URL),
      it has the variants table with a row for every variant of the paper's
      layout, and at least 2 <svg> elements that hold a <path>. With
      --hostile, the strings planted in the database show up as text, escaped,
      and never as markup.
  report_check.py png SHOT.png
      The screenshot is a real PNG and not blank: decoded with zlib + struct,
      it has more than 10 distinct pixel values and a fair share of pixels
      that are not the page background.
"""
import struct
import sys
import zlib
from html.parser import HTMLParser

VARIANTS = ["teacher", "UM student", "NOISY student", "MM student no-reg", "MM student",
            "MM student sup"]
VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source",
        "track", "wbr"}
SVG_LEAVES = {"path", "rect", "line", "text", "title", "circle", "polyline", "g"}
FORBIDDEN = {"script", "link", "img", "iframe", "object", "embed", "audio", "video", "source",
             "base", "frame"}


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []
        self.errors = []
        self.tags = {}
        self.table_rows = []      # rows of table#variants: lists of cell texts
        self.in_variants = False
        self.row = None
        self.cell = None
        self.svgs = []            # per svg: number of paths
        self.in_svg = False
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        a = dict(attrs)
        if tag in FORBIDDEN:
            self.errors.append("forbidden tag <%s>" % tag)
        for k, v in attrs:
            if k.startswith("on"):
                self.errors.append("event handler attribute %s on <%s>" % (k, tag))
            if k in ("src", "href", "xlink:href") and v and ":" in v:
                self.errors.append("external reference %s=%r on <%s>" % (k, v, tag))
        if tag == "table" and a.get("id") == "variants":
            self.in_variants = True
        if self.in_variants and tag == "tr":
            self.row = []
        if self.in_variants and tag in ("td", "th") and self.row is not None:
            self.cell = []
        if tag == "svg":
            self.in_svg = True
            self.svgs.append(0)
        if self.in_svg and tag == "path":
            self.svgs[-1] += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        # <path .../> inside svg
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("unbalanced </%s> (open: %s)" % (tag, self.stack[-3:]))
            if tag in self.stack:
                while self.stack and self.stack[-1] != tag:
                    self.stack.pop()
        if self.stack:
            self.stack.pop()
        if tag in ("td", "th") and self.cell is not None and self.row is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        if tag == "tr" and self.row is not None and self.in_variants:
            self.table_rows.append(self.row)
            self.row = None
        if tag == "table":
            self.in_variants = False
        if tag == "svg":
            self.in_svg = False

    def handle_data(self, data):
        self.text.append(data)
        if self.cell is not None:
            self.cell.append(data)


def check_html(path, hostile):
    raw = open(path, "rb").read()
    src = raw.decode("utf-8")
    p = Page()
    p.feed(src)
    p.close()
    errs = list(p.errors)
    if p.stack:
        errs.append("unclosed tags at the end: %s" % p.stack)
    if not src.startswith("<!DOCTYPE html>"):
        errs.append("no <!DOCTYPE html>")
    if p.tags.get("style", 0) < 1:
        errs.append("no inline <style>")
    if "@import" in src or "url(" in src:
        errs.append("CSS loads something (@import or url())")
    rows = p.table_rows
    if not rows:
        errs.append("no table#variants")
    else:
        header = " ".join(rows[0]).lower()
        for want in ("test accuracy", "gain over teacher", "pseudo-label", "rectification"):
            if want not in header:
                errs.append("variants header lacks %r: %r" % (want, rows[0]))
        firsts = [r[0] for r in rows[1:] if r]
        for v in VARIANTS:
            if not any(f == v or f.startswith(v + " ") and not f.startswith(v + " no-reg")
                       and not f.startswith(v + " sup") for f in firsts):
                errs.append("no row for %r in the variants table (rows: %r)" % (v, firsts))
        for r in rows[1:]:
            if r and r[0].startswith(("UM", "NOISY", "MM")) and "±" not in r[2]:
                errs.append("no mean ± std in row %r" % r)
    with_paths = [n for n in p.svgs if n > 0]
    if len(with_paths) < 2:
        errs.append("want at least 2 <svg> with paths, got %d (paths per svg: %r)" % (len(with_paths), p.svgs))
    if hostile:
        text = "".join(p.text)
        for planted in ('<script>alert("name")</script>', "<b>boom</b> & 'co'", "<img src=x onerror=alert(1)>"):
            if planted not in text:
                errs.append("planted string %r not shown as text" % planted)
        if "<script>" in src or "<b>boom" in src or "<img src" in src:
            errs.append("a planted string went into the page unescaped")
    if errs:
        for e in errs:
            print("report_check:", e, file=sys.stderr)
        return 1
    print("html ok: %d bytes, %d variant rows, %d svg (paths: %s)" % (len(raw), len(rows) - 1, len(p.svgs),
                                                                     ", ".join(map(str, p.svgs))))
    return 0


def png_pixels(path):
    """Decode an 8-bit non-interlaced grey/RGB/RGBA PNG: (width, height, channels, rows)."""
    d = open(path, "rb").read()
    if d[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, hdr = 8, [], None
    while pos < len(d):
        n, typ = struct.unpack(">I4s", d[pos:pos + 8])
        body = d[pos + 8:pos + 8 + n]
        if zlib.crc32(typ + body) & 0xffffffff != struct.unpack(">I", d[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError("bad CRC in %r" % typ)
        if typ == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat.append(body)
        elif typ == b"IEND":
            break
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    ch = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or ch is None or interlace:
        raise ValueError("unsupported PNG: depth %d colour type %d interlace %d" % (depth, ctype, interlace))
    raw = zlib.decompress(b"".join(idat))
    stride = w * ch
    if len(raw) != h * (stride + 1):
        raise ValueError("IDAT size %d, want %d" % (len(raw), h * (stride + 1)))
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(ch, stride):
                line[i] = (line[i] + line[i - ch]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - ch] if i >= ch else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pr) & 255
        elif f != 0:
            raise ValueError("bad filter %d on row %d" % (f, y))
        rows.append(bytes(line))
        prev = line
    return w, h, ch, rows


def check_png(path):
    size = len(open(path, "rb").read())
    try:
        w, h, ch, rows = png_pixels(path)
    except (ValueError, zlib.error, struct.error, TypeError) as e:
        print("report_check: %s: %s" % (path, e), file=sys.stderr)
        return 1
    counts = {}
    for r in rows:
        for i in range(0, len(r), ch):
            px = r[i:i + ch]
            counts[px] = counts.get(px, 0) + 1
    total = w * h
    bg, nbg = max(counts.items(), key=lambda kv: kv[1])
    share = 1 - nbg / total
    print("png: %dx%d, %d channels, %d bytes, %d distinct pixel values, %.1f%% not background %s"
          % (w, h, ch, size, len(counts), 100 * share, bg.hex()))
    if len(counts) <= 10:
        print("report_check: the screenshot looks blank (%d distinct pixel values)" % len(counts), file=sys.stderr)
        return 1
    if share < 0.02:
        print("report_check: the screenshot is almost all background (%.2f%%)" % (100 * share), file=sys.stderr)
        return 1
    return 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "html":
        return check_html(sys.argv[2], "--hostile" in sys.argv[3:])
    if len(sys.argv) == 3 and sys.argv[1] == "png":
        return check_png(sys.argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
