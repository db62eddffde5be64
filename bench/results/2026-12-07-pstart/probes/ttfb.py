import sys, re, statistics as st
ev=[]
for line in open(sys.argv[1]):
    p=line.split(None,3)
    if len(p)<3: continue
    tid=int(p[0]); t=float(p[1].rstrip(':')); name=p[2].rstrip(':'); rest=p[3] if len(p)>3 else ''
    ev.append((t,tid,name,rest))
ev.sort()
loops={tid for t,tid,n,r in ev if n=='probe_libuv:uv_fs_open'}
opens=[(t,tid) for t,tid,n,r in ev if n=='probe_libuv:uv_fs_open']
wopen=[]; pending={}
for t,tid,n,r in ev:
    if n=='syscalls:sys_enter_openat' and 'flags: 0x00080002' in r: pending[tid]=t
    elif n=='syscalls:sys_exit_openat' and tid in pending:
        wopen.append((pending.pop(tid),t,int(r.strip().split()[0],16),tid))
wopen.sort()
splices=[(t,tid,int(re.search(r'fd_out: (0x[0-9a-f]+)',r).group(1),16)) for t,tid,n,r in ev if n=='syscalls:sys_enter_splice' and tid not in loops]
writes=[(t,tid,int(re.search(r'fd: (0x[0-9a-f]+)',r).group(1),16)) for t,tid,n,r in ev if n in('syscalls:sys_enter_pwritev','syscalls:sys_enter_pwrite64') and tid not in loops]
q=[];run=[];d=[];tot=[]
import bisect
for (t0,_),(ws,we,fd,wt) in zip(opens,wopen):
    q.append(ws-t0); run.append(we-ws)
    first=None
    for t,tid,f in splices:
        if t>we and f==fd: first=t;break
    for t,tid,f in writes:
        if t>we and f==fd and (first is None or t<first): first=t;break
    if first: d.append(first-we); tot.append(first-t0)
def s(x): x=sorted(x); return 'n=%d p50 %.1f p90 %.1f max %.1f ms mean %.1f'%(len(x),1e3*x[len(x)//2],1e3*x[int(len(x)*.9)],1e3*x[-1],1e3*st.mean(x))
print('open queue wait (uv_fs_open -> worker openat):',s(q))
print('open run (openat syscall):',s(run))
print('open done -> first body byte written (callback, socket->pipe, drain job queue):',s(d))
print('uv_fs_open -> first body byte written:',s(tot))
jobs={}
for t,tid,n,r in ev:
    if n.startswith('probe_libuv:'): jobs[n]=jobs.get(n,0)+1
print('threadpool submissions per upload:',{k.split(':')[1]:round(v/len(opens),2) for k,v in jobs.items()})
# split open-done -> first byte into: -> first socket->pipe splice on the loop, and -> drain
lsp=[(t,tid,int(re.search(r'fd_in: (0x[0-9a-f]+)',r).group(1),16),int(re.search(r'fd_out: (0x[0-9a-f]+)',r).group(1),16),r) for t,tid,n,r in ev if n=='syscalls:sys_enter_splice']
a=[];b=[];early=[];late=[]
T0=opens[0][0]
for (t0,ltid),(ws,we,fd,wt) in zip(opens,wopen):
    first=None
    for t,tid,fi,fo,r in lsp:
        if t>we and fo==fd and tid not in loops: first=(t,fi);break
    if not first: continue
    fill=None
    for t,tid,fi,fo,r in lsp:
        if t>we and tid in loops and fo==first[1]+1: fill=t;break
    if fill and fill<=first[0]:
        a.append(fill-we); b.append(first[0]-fill)
    (early if t0-T0<1.0 else late).append(ws-t0)
print('open done -> first socket->pipe splice on the loop:',s(a))
print('that splice -> drain into the file:',s(b))
print('open queue wait, opens in the first second:',s(early))
print('open queue wait, later opens:',s(late))
