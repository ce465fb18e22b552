import re,sys,collections
def kernels(path):
    s=open(path).read()
    ents=re.split(r'\n(?=\.visible \.entry)',s)[1:]
    out={}
    for e in ents:
        name=re.match(r'\.visible \.entry (\w+)',e).group(1)
        lines=[l.strip() for l in e.split('\n')[1:] if l.strip() and not l.strip().startswith('//')]
        norm=[re.sub(r'%[a-z]+\d+','%R',re.sub(r'\$L__BB\d+_\d+','L',re.sub(r'compressa_kernel_\d+','K',l))) for l in lines]
        out[name]=norm
    return out
a=kernels(sys.argv[1]); b=kernels(sys.argv[2])
ma={};
for n,v in a.items(): ma.setdefault(tuple(sorted(v)),[]).append(n)
same=0; order=0; unmatched=[]
for n,v in b.items():
    key=tuple(sorted(v))
    if key in ma and ma[key]:
        o=ma[key].pop()
        same+=1
        if a[o]!=v: order+=1
    else: unmatched.append(n)
print(f"{len(b)} kernels: {same} with the same instruction multiset (registers renamed), {order} of them in another order; unmatched: {unmatched}")
