#!/usr/bin/env python3
"""Flame graph (SVG) and a plain-text breakdown from `perf script` output, with no third-party tools.

    perf script -i perf.data | swift demangle --simplified | bench/flamegraph.py --title T --svg out.svg --text out.txt

Kernel frames are blue, user-space frames warm colours.

Stacks are folded root-first (`a;b;c count`, the format Brendan Gregg's FlameGraph tools read, also written
with --folded), then laid out as a trie: each frame is as wide as the samples under it. The text file answers
the questions the profile is taken for: kernel vs user time, which shared objects, the heaviest leaf functions.
"""
import argparse
import collections
import html
import re
import sys

KERNEL_FRAMES = set()
FRAME = re.compile(r"^\s*[0-9a-f]+\s+(?P<sym>.+?)\s+\((?P<dso>[^()]*)\)\s*$")


def folded_stacks(lines):
    """Yields (frames root-first, dso of the leaf) per sample."""
    frames, leaf_dso, in_sample = [], None, False
    for line in lines:
        if not line.strip():
            if frames:
                yield list(reversed(frames)), leaf_dso
            frames, leaf_dso, in_sample = [], None, False
            continue
        if not line.startswith((" ", "\t")):
            in_sample = True
            frames = []
            continue
        m = FRAME.match(line)
        if not m or not in_sample:
            continue
        sym = re.sub(r"\+0x[0-9a-f]+$", "", m["sym"])
        dso = m["dso"].rsplit("/", 1)[-1]
        if leaf_dso is None:
            leaf_dso = dso
        # Without frame pointers (libuv, libc) the unwinder walks into garbage: stop at the first frame of no
        # known object, and fold runs of one unnamed frame.
        if dso in ("[unknown]", "") or len(frames) >= 48:
            in_sample = False
            continue
        if sym == "[unknown]":
            sym = f"[{dso}]"
        if "kernel" in dso:
            KERNEL_FRAMES.add(sym)
        if not frames or frames[-1] != sym:
            frames.append(sym)
    if frames:
        yield list(reversed(frames)), leaf_dso


def shorten(name, limit=160):
    return name if len(name) <= limit else name[: limit - 3] + "..."


def render_svg(counts, title, width=1400, row=16):
    root = {"n": 0, "kids": {}}
    for stack, n in counts.items():
        node = root
        node["n"] += n
        for frame in stack:
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += n
    total = root["n"] or 1
    rects, depth_max = [], 0

    def walk(node, name, x, depth):
        nonlocal depth_max
        w = node["n"] / total * (width - 20)
        if w < 0.3:
            return
        depth_max = max(depth_max, depth)
        rects.append((x, depth, w, name, node["n"]))
        cx = x
        for kid_name, kid in sorted(node["kids"].items()):
            walk(kid, kid_name, cx, depth + 1)
            cx += kid["n"] / total * (width - 20)

    walk(root, "all", 10, 0)
    height = (depth_max + 1) * row + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">',
           f'<rect width="100%" height="100%" fill="#fdfdf6"/>',
           f'<text x="10" y="20" font-size="14">{html.escape(title)} ({total} samples)</text>']
    for x, depth, w, name, n in rects:
        y = height - 10 - (depth + 1) * row
        kernel = name in KERNEL_FRAMES
        hue = 200 if kernel else (20 + hash(name) % 40)
        fill = f"hsl({hue},70%,{60 + hash(name) % 20}%)"
        label = html.escape(shorten(name))
        pct = 100.0 * n / total
        out.append(f'<g><title>{label} ({n} samples, {pct:.1f}%)</title>'
                   f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="{fill}" rx="2"/>')
        if w > 40:
            chars = int(w / 6.6)
            out.append(f'<text x="{x + 3:.1f}" y="{y + 11}">{html.escape(shorten(name, max(chars, 4)))}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", default="profile")
    ap.add_argument("--svg")
    ap.add_argument("--text")
    ap.add_argument("--folded")
    args = ap.parse_args()
    counts = collections.Counter()
    by_dso = collections.Counter()
    leaves = collections.Counter()
    kernel = 0
    for stack, dso in folded_stacks(sys.stdin):
        counts[tuple(stack)] += 1
        by_dso[dso or "?"] += 1
        leaves[stack[-1]] += 1
        if dso and "kernel" in dso:
            kernel += 1
    total = sum(counts.values()) or 1
    if args.folded:
        with open(args.folded, "w") as f:
            for stack, n in counts.most_common():
                f.write(";".join(s.replace(";", ":") for s in stack) + f" {n}\n")
    if args.svg:
        with open(args.svg, "w") as f:
            f.write(render_svg(counts, args.title))
    lines = [f"# {args.title}", "", f"samples: {total}; kernel (leaf in the kernel): {100.0 * kernel / total:.1f}%", "",
             "## by shared object (leaf frame)", ""]
    lines += [f"{100.0 * n / total:6.2f}%  {d}" for d, n in by_dso.most_common(12)]
    lines += ["", "## heaviest leaf functions", ""]
    lines += [f"{100.0 * n / total:6.2f}%  {shorten(s, 140)}" for s, n in leaves.most_common(30)]
    text = "\n".join(lines) + "\n"
    if args.text:
        with open(args.text, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
