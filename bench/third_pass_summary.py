"""summary.md, raw.jsonl and ratios.png for bench/run-third-pass (issue 19's targets, one run).

Every ratio is taken within one round (round r of a part ran every server of that row once), so a row's
min / median / max is over rounds; "met" is judged on the median. A label's samples are in round order in its
part's JSON lines; a sample with errors leaves its round out of that row (the row says so).

usage: third_pass_summary.py OUT ROUNDS SLOW_ROUNDS
"""
import json
import os
import statistics
import sys
from collections import defaultdict

out, rounds, slow_rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
PARTS = {"uploads": "results.jsonl", "postlog": "results.jsonl", "checksum": "results.jsonl", "tls": "raw.jsonl",
         "memory": "results.jsonl"}


def load(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path) if line.strip()]


samples = {part: defaultdict(list) for part in list(PARTS) + ["limits"]}
with open(os.path.join(out, "raw.jsonl"), "w") as raw:
    files = [(part, os.path.join(out, part, name)) for part, name in PARTS.items()]
    for part, path in files + [("limits", os.path.join(out, "limits.jsonl"))]:
        for row in load(path):
            raw.write(json.dumps({"part": part, **row}) + "\n")
            if not row["label"].endswith("-warmup"):
                samples[part][row["label"]].append(row)


def good(row):
    return row.get("errors", 0) == 0


def mbps(row):
    return row["MBps"]


def us_per_post(row):
    cpu = row.get("server_cpu_seconds")
    return cpu / row["requests"] * 1e6 if cpu is not None and row.get("requests") else None


def peak_anon(row):
    return row.get("server_peak_anon_MiB")


def paired(part, labels, value, combine):
    """Per-round ratios: combine(values of labels in round i), for rounds where every label has a good sample."""
    series = [samples[part].get(label, []) for label in labels]
    ratios, dropped = [], 0
    for i in range(min((len(s) for s in series), default=0)):
        rows = [s[i] for s in series]
        values = [value(r) for r in rows]
        if not all(good(r) for r in rows) or any(v is None or v == 0 for v in values):
            dropped += 1
            continue
        ratios.append(combine(*values))
    missing = max((len(s) for s in series), default=0) - min((len(s) for s in series), default=0)
    return ratios, dropped + missing, [label for label, s in zip(labels, series) if not s]


TABLE = []  # (group, target, goal text, direction, goal, ratios, note)


def target(group, text, goal, part, labels, value=mbps, combine=lambda a, b: a / b, note=""):
    direction, number = goal[:2], float(goal[2:].strip().rstrip("x"))
    ratios, dropped, absent = paired(part, labels, value, combine)
    notes = [note] if note else []
    if absent:
        notes.append("not measured: " + ", ".join(absent))
    if dropped:
        notes.append(f"{dropped} round(s) left out (errors or missing sample)")
    TABLE.append((group, text, goal, direction, number, ratios, "; ".join(notes)))


SIZES = (("single", "1 x 512 MiB"), ("c32", "32 x 32 MiB"), ("c256", "256 x 8 MiB"), ("c1024", "1024 x 2 MiB"))
ngx = next((label.split("-")[1] for label in samples["uploads"] if label.startswith("nginx-w")), "w1")
for scenario, title in SIZES:
    target("uploads", f"{title} vs tuned nginx (tus-bench)", ">= 1.0x", "uploads",
           [f"tus-{scenario}", f"nginx-{ngx}-{scenario}"])
    target("uploads", f"{title} vs tusd (tus-bench)", ">= 1.5x", "uploads", [f"tus-{scenario}", f"tusd-{scenario}"])
target("uploads", "32 x 32 MiB vs tuned nginx (Python client)", ">= 1.0x", "uploads",
       ["tus-c32-py", f"nginx-{ngx}-c32-py"], note="requests, POST+PATCH vs PUT")
target("uploads", "32 x 32 MiB vs tusd (Python client)", ">= 1.5x", "uploads", ["tus-c32-py", "tusd-c32-py"])
for proto, name in (("h1", "HTTP/1.1"), ("h2", "h2")):
    for scenario, title in (("single", "1 x 512 MiB"), ("c32", "32 x 32 MiB")):
        target("tls", f"TLS {name} {title} vs nginx TLS PUT", ">= 0.9x", "tls",
               [f"tus-{proto}-{scenario}", f"nginx-{proto}-{scenario}"],
               note="h2: h2load POST with the body vs PUT" if proto == "h2" else "tus-bench")
for scenario, title, checked in (("single", "1 x 512 MiB", "single"), ("c32", "32 x 32 MiB", "concurrent-32")):
    for alg in ("sha1", "sha256"):
        target("checksum", f"{alg} {title}: checked / min(unchecked, openssl speed)", ">= 0.8x", "checksum",
               [f"tus-{checked}-{alg}", f"tus-{checked}", f"openssl-speed-{alg}"],
               combine=lambda c, u, o: c / min(u, o))
for scenario, title in (("single", "1 x 512 MiB"), ("c32", "32 x 32 MiB")):
    target("durable", f"{title} --fsync commit / dd conv=fdatasync (same total)", ">= 0.9x", "uploads",
           [f"tus-{scenario}-fsync-commit", f"dd-fdatasync-{scenario}"])
    target("durable", f"{title} --fsync commit / --fsync none", ">= 0.85x", "uploads",
           [f"tus-{scenario}-fsync-commit", f"tus-{scenario}"])
for fs in ("tmpfs", "ext4"):
    target("creation", f"POST server CPU per request vs tusd, {fs}, --fsync none", "<= 0.33x", "uploads",
           [f"tus-post-{fs}-fsync-none", f"tusd-post-{fs}"], value=us_per_post)
for fs in ("tmpfs", "ext4"):
    target("creation", f"POST CPU per request, {fs}, --fsync commit / tusd's (no fsync)", "<= 1.0x", "uploads",
           [f"tus-post-{fs}-fsync-commit", f"tusd-post-{fs}"], value=us_per_post,
           note="goal is tusd's cost plus the fsyncs; the fsyncs' own CPU is not separated, so judged against 1.0x")
for fs in ("tmpfs", "ext4"):
    target("creation", f"POST server CPU per request vs tusd, {fs}, --fsync none, --records log", "<= 0.33x",
           "postlog", [f"tus-post-{fs}-fsync-none", f"tusd-post-{fs}"], value=us_per_post)
for c in (1, 32, 256):
    target("memory", f"peak RssAnon vs tusd, {c} upload{'s' if c > 1 else ''} (fresh server)", "<= 1.0x", "memory",
           [f"tus-memory-{c}", f"tusd-memory-{c}"], value=peak_anon)


def mmm(values, digits=2):
    if not values:
        return "-"
    return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f} / {max(values):.{digits}f}"


def met(direction, goal, ratios):
    if not ratios:
        return None
    m = statistics.median(ratios)
    return m >= goal if direction == ">=" else m <= goal


machine = open(os.path.join(out, "machine.md")).read()
lines = ["# Issue 19, third pass: every target row from one run", ""]
lines += [machine.replace("# Machine and settings\n", "").strip(), ""]
if "scale: small" in machine:
    lines += ["**Scale small: a check of the harness.** Row names give the full sizes; this run's were far smaller",
              "(machine.md), so none of these numbers is evidence.", ""]
lines += ["Ratios are ours / the peer's within one round; min / median / max over the rounds; met or missed on the",
          f"median. Rounds: {rounds} for checksum, TLS and memory, {slow_rounds} for the uploads part"
          + (" (cut to fit the run in 25 minutes)." if slow_rounds < rounds else "."),
          "Check load average before/after above: on a box shared with builds, read the ratios, not the MB/s.", ""]
lines += ["| target | goal | ratio min / median / max | result | rounds | notes |", "|---|---|---|---|---|---|"]
for group, text, goal, direction, number, ratios, note in TABLE:
    verdict = met(direction, number, ratios)
    result = "not measured" if verdict is None else ("met" if verdict else "**missed**")
    lines.append(f"| {text} | {goal} | {mmm(ratios)} | {result} | {len(ratios)} | {note} |")

lines += ["", "## Limits measured in this run (MB/s; one sample before the first part and after each part)", "",
          "| limit | min / median / max | samples |", "|---|---|---|"]
for label, text in (("openssl-speed-sha1", "openssl speed -evp sha1, one core, 256 KiB blocks"),
                    ("openssl-speed-sha256", "openssl speed -evp sha256"),
                    ("openssl-speed-md5", "openssl speed -evp md5"),
                    ("openssl-speed-aes-128-gcm", "openssl speed -evp aes-128-gcm"),
                    ("dd-fdatasync", "dd bs=1M conv=fdatasync (data disk)"),
                    ("dd-direct", "dd bs=1M oflag=direct (data disk)")):
    values = [r["MBps"] for r in samples["limits"].get(label, [])]
    lines.append(f"| {text} | {mmm(values, 0)} | {len(values)} |")

lines += ["", "## Medians behind the ratios (MB/s, or us of server CPU per POST, or MiB of RssAnon)", "",
          "| part | label | median | samples |", "|---|---|---|---|"]
for part in PARTS:
    for label, rows in samples[part].items():
        value = {"memory": peak_anon}.get(part, mbps)
        if "-post-" in label:
            value = us_per_post
        values = [value(r) for r in rows if good(r) and value(r) is not None]
        errors = sum(r.get("errors", 0) for r in rows)
        median = f"{statistics.median(values):.1f}" if values else "-"
        lines.append(f"| {part} | {label} | {median} | {len(rows)}{f', {errors} errors' if errors else ''} |")
lines += ["", "Each part's own summary.md (uploads/, checksum/, tls/, memory/) has per-round values, server CPU per",
          "GiB and the commands; raw.jsonl has every sample with its part; ratios.png plots the table.", ""]
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib missing: no ratios.png (pip install -r bench/requirements.txt)", file=sys.stderr)
    sys.exit(0)
rows = [(text, goal, direction, number, ratios) for _, text, goal, direction, number, ratios, _ in TABLE if ratios]
# Plotted as margin over the goal (ratio / goal, inverted for "<=" goals) so that right of 1 is met for every row.
fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.5))
for y, (text, goal, direction, number, ratios) in enumerate(reversed(rows)):
    scaled = [(r / number) if direction == ">=" else (number / r) for r in ratios]
    mid = statistics.median(scaled)
    ax.errorbar(mid, y, xerr=[[mid - min(scaled)], [max(scaled) - mid]], fmt="o",
                color="tab:green" if mid >= 1 else "tab:red", capsize=3)
ax.axvline(1.0, color="gray", linestyle="--")
ax.set_yticks(range(len(rows)))
ax.set_yticklabels([f"{text} ({goal})" for text, goal, *_ in reversed(rows)], fontsize=7)
ax.set_xscale("log")
ax.set_xlabel("ratio / goal (inverted for <= goals): right of 1 = met; median, min-max over rounds")
ax.set_title("Issue 19 targets, one run of bench/run-third-pass")
fig.tight_layout()
fig.savefig(os.path.join(out, "ratios.png"), dpi=110)
