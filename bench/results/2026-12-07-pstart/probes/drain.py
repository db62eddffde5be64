import sys, re
ev=[]
for line in open(sys.argv[1]):
    p=line.split(None,3)
    if len(p)<3: continue
    ev.append((float(p[1].rstrip(':')),int(p[0]),p[2].rstrip(':'),p[3] if len(p)>3 else ''))
ev.sort()
loops={tid for t,tid,n,r in ev if n=='probe_libuv:uv_fs_open'}
last_fill={}  # pipe write fd -> time of first loop splice since last drain
waits=[]; busy={}; enter={}
t_first=None; t_last=None
for t,tid,n,r in ev:
    if n=='syscalls:sys_enter_splice':
        fi=int(re.search(r'fd_in: (0x[0-9a-f]+)',r).group(1),16); fo=int(re.search(r'fd_out: (0x[0-9a-f]+)',r).group(1),16)
        if tid in loops:
            last_fill.setdefault(fo,t)
        else:
            enter[tid]=t
            t0=last_fill.pop(fi+1,None)
            if t0 is not None: waits.append(t-t0)
            if t_first is None: t_first=t
    elif n=='syscalls:sys_exit_splice' and tid in enter:
        busy[tid]=busy.get(tid,0)+t-enter.pop(tid); t_last=t
w=sorted(waits)
print('pipe filled on loop -> drain splice on worker: n=%d p50 %.1f p90 %.1f max %.1f ms'%(len(w),1e3*w[len(w)//2],1e3*w[int(len(w)*.9)],1e3*w[-1]))
span=t_last-t_first
print('drain span %.2f s; worker time inside pipe->file splice: %s s (sum %.2f = %.0f%% of 4 threads)'%(span,{k:round(v,2) for k,v in busy.items()},sum(busy.values()),100*sum(busy.values())/(4*span)))
