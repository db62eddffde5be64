import collections,sys
lines=[l.rsplit(' ',1) for l in open(sys.argv[1])]
pat=sys.argv[2]; depth=int(sys.argv[3]) if len(sys.argv)>3 else 3
c=collections.Counter()
for s,n in lines:
    fr=s.split(';')
    idx=[i for i,f in enumerate(fr) if pat in f]
    if not idx: continue
    i=idx[0]
    c[';'.join(fr[i+1:i+1+depth]) or '<self>']+=int(n)
for k,v in c.most_common(25): print(v,k[:300])
