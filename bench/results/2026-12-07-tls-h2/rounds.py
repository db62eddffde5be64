import json, sys, statistics
rows=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]
labels=list(dict.fromkeys(r["label"] for r in rows))
n=len([r for r in rows if r["label"]==labels[0]])
by={l:[r for r in rows if r["label"]==l] for l in labels}
print("| round | " + " | ".join(f"{p} MB/s tus/nginx/before" for p in ["h1-single","h2-single","h2-c32"]) + " | h2/h1 single (tus) | CPU s/GiB h2-single tus/before/nginx | CPU h1-single tus |")
print("|---|---|---|---|---|---|---|")
for i in range(n):
    cells=[]
    for p in ["h1-single","h2-single","h2-c32"]:
        t,g,b=by["tus-"+p][i]["MBps"],by["nginx-"+p][i]["MBps"],by["before-"+p][i]["MBps"]
        cells.append(f"{t:.0f}/{g:.0f}/{b:.0f}")
    r=by["tus-h2-single"][i]["MBps"]/by["tus-h1-single"][i]["MBps"]
    c=[by[x][i]["cpu_s_per_GiB"] for x in ["tus-h2-single","before-h2-single","nginx-h2-single"]]
    print(f"| {i+1} | " + " | ".join(cells) + f" | {r:.2f} | {c[0]:.2f}/{c[1]:.2f}/{c[2]:.2f} | {by['tus-h1-single'][i]['cpu_s_per_GiB']:.2f} |")
