"""Per-round ratios of MB/s and server CPU: python3 ratios.py NEW BASE results.jsonl... (labels NAME-c256/-c1024)."""
import json, statistics as st, sys
new, base = sys.argv[1], sys.argv[2]
for path in sys.argv[3:]:
    rows = [json.loads(l) for l in open(path)]
    rows = [r for r in rows if 'warmup' not in r['label']]
    print('##', path)
    for sc in ['c256', 'c1024']:
        per = {who: [r for r in rows if r['label'] == f'{who}-{sc}'] for who in [base, new, 'tusd']}
        for a, b in [(new, 'tusd'), (base, 'tusd'), (new, base)]:
            rat = [x['MBps'] / y['MBps'] for x, y in zip(per[a], per[b])]
            cpu = [x['server_cpu_seconds'] / y['server_cpu_seconds'] for x, y in zip(per[a], per[b])]
            print(f'{sc} {a}/{b} MB/s per round:', ' '.join('%.2f' % v for v in rat),
                  '| min/median/max %.2f / %.2f / %.2f' % (min(rat), st.median(rat), max(rat)),
                  '| server CPU ratio median %.2f' % st.median(cpu))
        for who in [base, new, 'tusd']:
            print(f'{sc} {who}: MB/s median %.0f, server CPU s median %.2f, p50 ms median %.0f' % (
                st.median([r['MBps'] for r in per[who]]), st.median([r['server_cpu_seconds'] for r in per[who]]),
                st.median([r['p50_ms'] for r in per[who]])))
