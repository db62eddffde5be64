#!/usr/bin/env python3
"""Reads <results dir>/results.jsonl (tus-bench --json-out), prints summary.md (table, ratios, targets) and
writes PNG plots when matplotlib is importable. Usage: summarize.py RESULTS_DIR"""
import json, os, sys

out = sys.argv[1]
rows = {}
for line in open(os.path.join(out, "results.jsonl")):
    if line.strip():
        r = json.loads(line)
        rows[r["label"]] = r

def get(label, key):
    r = rows.get(label)
    return None if r is None else r.get(key)

def ratio(a, b, key="MBps"):
    x, y = get(a, key), get(b, key)
    return None if not x or not y else x / y

print("# Benchmark summary\n")
print(open(os.path.join(out, "machine.md")).read())
print("## All runs (median run of each set)\n")
print("| label | scenario | conc | MB/s | req/s | p50 ms | p99 ms | max ms | errors | client CPU/loop | server CPU s | server peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows.values():
    print(f"| {r['label']} | {r['scenario']} | {r['concurrency']} | {r['MBps']} | {r['requests_per_second']} | {r['p50_ms']} | "
          f"{r['p99_ms']} | {r['max_ms']} | {r['errors']} | {r['client_cpu_per_loop']}{' SATURATED' if r['client_saturated'] else ''} | "
          f"{r['server_cpu_seconds']} | {r['server_peak_rss_MiB']} |")

targets = []
def target(name, value, goal, fmt="{:.2f}x"):
    met = None if value is None else value >= goal
    targets.append((name, "n/a" if value is None else fmt.format(value), f">= {goal}", {True: "met", False: "MISSED", None: "not measured"}[met]))

target("single upload vs nginx PUT", ratio("tus-single", "nginx-put-single"), 1.0)
for c in (32, 256):
    target(f"{c} concurrent uploads vs nginx PUT", ratio(f"tus-concurrent-{c}", f"nginx-put-concurrent-{c}"), 1.0)
target("HEAD req/s vs nginx static HEAD", ratio("tus-head", "nginx-head-static", "requests_per_second"), 1.0)
target("sha1-checksummed vs unchecked (single)", ratio("tus-single-sha1", "tus-single"), 0.8)
target("TLS upload vs nginx TLS PUT", ratio("tus-tls-single", "nginx-tls-put-single"), 0.9)
rss = get("tus-single", "server_peak_rss_MiB")
targets.append(("server peak RSS in single (MiB)", str(rss), "<= 32", "n/a" if rss is None else ("met" if rss <= 32 else "MISSED")))
idle = get("tus-idle", "server_rss_per_connection_KiB")
targets.append(("RSS per idle connection (KiB)", str(idle), "<= 10", "n/a" if idle is None else ("met" if idle <= 10 else "MISSED")))
create = get("tus-create", "requests_per_second")
targets.append(("creation req/s", str(create), "reported", "reported" if create else "not measured"))

print("\n## Targets (ratios within this run)\n")
print("| target | value | goal | status |\n|---|---|---|---|")
for t in targets:
    print("| " + " | ".join(t) + " |")
sat = [r["label"] for r in rows.values() if r["client_saturated"]]
if sat:
    print(f"\nClient saturated (CPU/wall > 0.9 per loop) in: {', '.join(sat)} — those numbers are a floor for the server.")

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("\n(matplotlib not installed: no plots; `.venv/bin/pip install -r bench/requirements.txt`)")
    sys.exit(0)

def series(prefix):
    pts = sorted((r["concurrency"], r) for l, r in rows.items() if l.startswith(prefix) and l[len(prefix):].isdigit())
    return [p[0] for p in pts], [p[1] for p in pts]

fig, ax = plt.subplots(figsize=(7, 4.5))
for prefix, name in (("tus-concurrent-", "tus-server"), ("nginx-put-concurrent-", "nginx PUT")):
    xs, rs = series(prefix)
    if xs:
        ax.plot(xs, [r["MBps"] for r in rs], marker="o", label=name)
ax.set_xscale("log", base=2); ax.set_xlabel("concurrent uploads"); ax.set_ylabel("MB/s (10^6 B/s)")
ax.set_title("Upload throughput vs concurrency"); ax.legend(); ax.grid(alpha=0.3)
fig.tight_layout(); fig.savefig(os.path.join(out, "throughput_vs_concurrency.png"), dpi=110)

fig, ax = plt.subplots(figsize=(7, 4.5))
for prefix, name in (("tus-concurrent-", "tus-server"), ("nginx-put-concurrent-", "nginx PUT")):
    xs, rs = series(prefix)
    for key, style in (("p50_ms", "-"), ("p99_ms", "--"), ("max_ms", ":")):
        if xs:
            ax.plot(xs, [r[key] for r in rs], style, marker="o", label=f"{name} {key[:-3]}")
ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("concurrent uploads")
ax.set_ylabel("upload latency (ms)"); ax.set_title("Upload latency percentiles"); ax.legend(fontsize=8); ax.grid(alpha=0.3)
fig.tight_layout(); fig.savefig(os.path.join(out, "latency_percentiles.png"), dpi=110)
print("\nPlots: ![throughput](throughput_vs_concurrency.png) ![latency](latency_percentiles.png)")
