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

def cpu_per_gib(label):
    """Server CPU seconds per GiB of request body received (median run: its server CPU over its bytes)."""
    r = rows.get(label)
    if not r or r.get("server_cpu_seconds") is None or not r.get("MBps"):
        return None
    gib = r["MBps"] * 1e6 * r["wall_seconds"] / 2**30
    return r["server_cpu_seconds"] / gib if gib else None

def cpu_us_per_req(label):
    """Server CPU microseconds per completed request (HEAD/POST scenarios)."""
    r = rows.get(label)
    if not r or r.get("server_cpu_seconds") is None or not r.get("requests"):
        return None
    return r["server_cpu_seconds"] / r["requests"] * 1e6

def fmt(v, spec="{:.2f}"):
    return "—" if v is None else spec.format(v)

# Side by side: one row per unit of work, one column group per server, from this one run. Ratios are ours over
# the peer's (throughput: > 1 is better for us; CPU and RSS: < 1 is better for us).
sweep = [l for l in rows if l.startswith("nginx-sweep-")]
if sweep:
    print("\n## nginx tuning sweep (worker_processes x client_body_buffer_size)\n")
    print("| setting | single MB/s | 32 concurrent MB/s | server CPU s/GiB (single) | server CPU s/GiB (32) |\n|---|---|---|---|---|")
    for l in sorted({l.rsplit("-single", 1)[0].rsplit("-concurrent-32", 1)[0] for l in sweep}):
        print(f"| {l[len('nginx-sweep-'):]} | {get(l + '-single', 'MBps')} | {get(l + '-concurrent-32', 'MBps')} | "
              f"{fmt(cpu_per_gib(l + '-single'))} | {fmt(cpu_per_gib(l + '-concurrent-32'))} |")

work = [("single upload", "tus-single", "nginx-put-single", "tusd-single", "tus-single-fsync-commit")]
if "tus-single-512MiB" in rows:
    work.append(("single upload 512 MiB", "tus-single-512MiB", "nginx-put-single-512MiB", "tusd-single-512MiB",
                 "tus-single-512MiB-fsync-commit"))
for c in sorted({r["concurrency"] for l, r in rows.items() if l.startswith("tus-concurrent-") and l[len("tus-concurrent-"):].isdigit()}):
    work.append((f"{c} concurrent", f"tus-concurrent-{c}", f"nginx-put-concurrent-{c}", f"tusd-concurrent-{c}",
                 f"tus-concurrent-{c}-fsync-commit"))
if any(l.startswith("tusd-") for l in rows) or any(get(w[1], "server_cpu_seconds") is not None for w in work):
    print("\n## Uploads side by side: throughput, server CPU per GiB received, server peak RSS\n")
    print("Server CPU = utime+stime of the server process alone (nginx: master + workers) from /proc/PID/stat "
          "around the median run; GiB = 2^30 bytes of request body. RSS = VmHWM (peak, includes shared-library "
          "text: about 15 MiB of Swift runtime for tus-server at rest); private = largest RssAnon sampled every 10 ms "
          "(the memory the load itself costs).\n")
    print("| work | tus MB/s | tus commit MB/s | nginx MB/s | tusd MB/s | tus/nginx | tus/tusd | commit/none | "
          "CPU s/GiB tus | tus commit | nginx | tusd | RSS MiB tus | nginx | tusd | private MiB tus | nginx | tusd |")
    print("|---|" + "---|" * 17)
    for name, us, ngx, tusd, commit in work:
        def r(a, b):
            x, y = get(a, "MBps"), get(b, "MBps")
            return None if not x or not y else x / y
        print(f"| {name} | {get(us, 'MBps')} | {get(commit, 'MBps') or '—'} | {get(ngx, 'MBps')} | {get(tusd, 'MBps') or '—'} | "
              f"{fmt(r(us, ngx), '{:.2f}x')} | {fmt(r(us, tusd), '{:.2f}x')} | {fmt(r(commit, us), '{:.2f}x')} | "
              f"{fmt(cpu_per_gib(us))} | {fmt(cpu_per_gib(commit))} | {fmt(cpu_per_gib(ngx))} | {fmt(cpu_per_gib(tusd))} | "
              f"{get(us, 'server_peak_rss_MiB')} | {get(ngx, 'server_peak_rss_MiB')} | {get(tusd, 'server_peak_rss_MiB') or '—'} | "
              f"{get(us, 'server_peak_anon_MiB') or '—'} | {get(ngx, 'server_peak_anon_MiB') or '—'} | {get(tusd, 'server_peak_anon_MiB') or '—'} |")
if rows.get("tus-head") or rows.get("tusd-head"):
    print("\n## Requests side by side: rate and server CPU per request\n")
    print("HEAD: `tus-bench head -c 32` (one upload created per connection before the clock, then HEADs of it; "
          "nginx: HEAD of a 100-byte static file). POST: `tus-bench create -c 32` (creation, no body).\n")
    print("| request | tus req/s | nginx req/s | tusd req/s | CPU µs/req tus | nginx | tusd | tus CPU/tusd CPU | RSS MiB tus | tusd |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, us, ngx, tusd in (("HEAD", "tus-head", "nginx-head-static", "tusd-head"), ("POST", "tus-create", None, "tusd-create")):
        a, b = cpu_us_per_req(us), cpu_us_per_req(tusd)
        print(f"| {name} | {get(us, 'requests_per_second')} | {get(ngx, 'requests_per_second') if ngx else '—'} | "
              f"{get(tusd, 'requests_per_second') or '—'} | {fmt(a, '{:.1f}')} | {fmt(cpu_us_per_req(ngx) if ngx else None, '{:.1f}')} | "
              f"{fmt(b, '{:.1f}')} | {fmt(None if not a or not b else a / b, '{:.2f}x')} | {get(us, 'server_peak_rss_MiB')} | "
              f"{get(tusd, 'server_peak_rss_MiB') or '—'} |")

targets = []
def target(name, value, goal, fmt="{:.2f}x"):
    met = None if value is None else value >= goal
    targets.append((name, "n/a" if value is None else fmt.format(value), f">= {goal}", {True: "met", False: "MISSED", None: "not measured"}[met]))

target("single upload vs nginx PUT", ratio("tus-single", "nginx-put-single"), 1.0)
for c in (32, 256):
    target(f"{c} concurrent uploads vs nginx PUT", ratio(f"tus-concurrent-{c}", f"nginx-put-concurrent-{c}"), 1.0)
target("HEAD req/s vs nginx static HEAD", ratio("tus-head", "nginx-head-static", "requests_per_second"), 1.0)
# Issue 19: checked >= 0.8 x the lower of the unchecked upload and the digest's single-core openssl speed.
speed = {}
if os.path.exists(os.path.join(out, "openssl-speed.jsonl")):
    for line in open(os.path.join(out, "openssl-speed.jsonl")):
        if line.strip():
            r = json.loads(line)
            speed[r["algorithm"]] = r["MBps"]
for alg in ("sha1", "sha256"):
    for scenario in ("single", "concurrent-32"):
        checked, plain = get(f"tus-{scenario}-{alg}", "MBps"), get(f"tus-{scenario}", "MBps")
        limits = [v for v in (plain, speed.get(alg)) if v]
        value = checked / min(limits) if checked and limits else None
        target(f"{alg}-checksummed {scenario} vs min(unchecked, openssl speed {speed.get(alg, '?')} MB/s)", value, 0.8)
target("TLS upload vs nginx TLS PUT", ratio("tus-tls-single", "nginx-tls-put-single"), 0.9)
rss = get("tus-single", "server_peak_rss_MiB")
targets.append(("server peak RSS in single (MiB)", str(rss), "<= 32", "n/a" if rss is None else ("met" if rss <= 32 else "MISSED")))
idle = get("tus-idle", "server_rss_per_connection_KiB")
targets.append(("RSS per idle connection (KiB)", str(idle), "<= 10", "n/a" if idle is None else ("met" if idle <= 10 else "MISSED")))
create = get("tus-create", "requests_per_second")
targets.append(("creation req/s", str(create), "reported", "reported" if create else "not measured"))

# Issue 13 targets against tuned nginx and tusd (only where the peer was measured in this run).
def target_max(name, value, goal, fmt="{:.2f}x"):
    met = None if value is None else value <= goal
    targets.append((name, "n/a" if value is None else fmt.format(value), f"<= {goal}", {True: "met", False: "MISSED", None: "not measured"}[met]))
for name, us, tusd, commit in [(w[0], w[1], w[3], w[4]) for w in work]:
    if rows.get(tusd):
        target(f"{name}: tus vs tusd", ratio(us, tusd), 1.5)
    if rows.get(commit):
        target(f"{name}: --fsync commit vs --fsync none", ratio(commit, us), 0.85)
for name, us, tusd in (("HEAD", "tus-head", "tusd-head"), ("POST", "tus-create", "tusd-create")):
    if rows.get(tusd):
        a, b = cpu_us_per_req(us), cpu_us_per_req(tusd)
        target_max(f"{name}: server CPU per request, tus / tusd", None if not a or not b else a / b, 0.33)
for name, us, tusd in [(w[0], w[1], w[3]) for w in work] + [("HEAD+POST process", "tus-create", "tusd-create")]:
    if rows.get(tusd):
        a, b = get(us, "server_peak_rss_MiB"), get(tusd, "server_peak_rss_MiB")
        target_max(f"{name}: server peak RSS, tus / tusd", None if not a or not b else a / b, 1.0)
        a, b = get(us, "server_peak_anon_MiB"), get(tusd, "server_peak_anon_MiB")
        if a and b:
            target_max(f"{name}: server peak private memory (RssAnon), tus / tusd", a / b, 1.0)

print("\n## Targets (ratios within this run)\n")
print("| target | value | goal | status |\n|---|---|---|---|")
baselines_mode = any(l.startswith("tusd-") for l in rows) and "tus-idle" not in rows
for t in targets:
    if baselines_mode and t[3] in ("not measured", "n/a"):
        continue
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
for prefix, name in (("tus-concurrent-", "tus-server"), ("nginx-put-concurrent-", "nginx PUT"), ("tusd-concurrent-", "tusd")):
    xs, rs = series(prefix)
    if xs:
        ax.plot(xs, [r["MBps"] for r in rs], marker="o", label=name)
ax.set_xscale("log", base=2); ax.set_xlabel("concurrent uploads"); ax.set_ylabel("MB/s (10^6 B/s)")
ax.set_title("Upload throughput vs concurrency"); ax.legend(); ax.grid(alpha=0.3)
fig.tight_layout(); fig.savefig(os.path.join(out, "throughput_vs_concurrency.png"), dpi=110)

fig, ax = plt.subplots(figsize=(7, 4.5))
for prefix, name in (("tus-concurrent-", "tus-server"), ("nginx-put-concurrent-", "nginx PUT"), ("tusd-concurrent-", "tusd")):
    xs, rs = series(prefix)
    for key, style in (("p50_ms", "-"), ("p99_ms", "--"), ("max_ms", ":")):
        if xs:
            ax.plot(xs, [r[key] for r in rs], style, marker="o", label=f"{name} {key[:-3]}")
ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("concurrent uploads")
ax.set_ylabel("upload latency (ms)"); ax.set_title("Upload latency percentiles"); ax.legend(fontsize=8); ax.grid(alpha=0.3)
fig.tight_layout(); fig.savefig(os.path.join(out, "latency_percentiles.png"), dpi=110)
print("\nPlots: ![throughput](throughput_vs_concurrency.png) ![latency](latency_percentiles.png)")
