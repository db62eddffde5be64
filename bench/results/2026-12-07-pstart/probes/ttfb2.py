import sys, re
ev=[]
for line in open(sys.argv[1]):
    p=line.split(None,3)
    if len(p)<3: continue
    ev.append((float(p[1].rstrip(':')),int(p[0]),p[2].rstrip(':'),p[3] if len(p)>3 else ''))
ev.sort()
def s(x):
    x=sorted(x); return 'n=%d p50 %.1f p90 %.1f max %.1f ms mean %.1f'%(len(x),1e3*x[len(x)//2],1e3*x[int(len(x)*.9)],1e3*x[-1],1e3*sum(x)/len(x))
loops={tid for t,tid,n,r in ev if n=='probe_libuv:uv_fs_open'}
# worker open exits per fd (latest before callback)
exits={}; pend={}
A=[];B=[];C=[];D=[]
state={}  # fd -> dict
for t,tid,n,r in ev:
    if n=='syscalls:sys_enter_openat' and 'flags: 0x00080002' in r: pend[tid]=t
    elif n=='syscalls:sys_exit_openat' and tid in pend:
        pend.pop(tid); exits[int(r.split()[0],16)]=t
    elif n=='probe_tus:fs_cb' and 'fstype=1 ' in r:
        fd=int(re.search(r'res=(-?\d+)',r).group(1))
        if fd in exits: A.append(t-exits.pop(fd)); state[fd]={'cb':t}
    elif n=='probe_tus:splicer_init':
        fd=int(re.search(r'fd=(-?\d+)',r).group(1))
        if fd in state and 'init' not in state[fd]: state[fd]['init']=t; B.append(t-state[fd]['cb'])
    elif n=='syscalls:sys_enter_splice' and tid not in loops:
        fo=int(re.search(r'fd_out: (0x[0-9a-f]+)',r).group(1),16)
        st=state.get(fo)
        if st and 'init' in st and 'first' not in st: st['first']=t; C.append(t-st['init']); D.append(t-st['cb'])
print('worker open done -> open callback on the loop:',s(A))
print('open callback -> SocketFileSplicer.init (the PATCH handler until the splice starts):',s(B))
print('splicer init -> first pipe->file splice on a worker:',s(C))
print('open callback -> first body byte written:',s(D))
