#!/usr/bin/env python3
# Runs one compressa-run per node on this host over loopback:
#   run_nodes.py M COMMON... --node0 NODE0...
# starts nodes 1..M-1 as `COMMON --nnodes M --node-rank K --master-port P`
# (P a free port), then node 0 as `COMMON NODE0 --nnodes M --node-rank 0
# --master-port P` with its stdout and stderr passed through. Exits with node
# 0's status if it failed, else with the first failing node's; a node's
# standard error is printed when it failed.
import socket
import subprocess
import sys


def main(argv):
    nodes = int(argv[1])
    split = argv.index("--node0")
    common, node0 = argv[2:split], argv[split + 1:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    def flags(k):
        return ["--nnodes", str(nodes), "--node-rank", str(k), "--master-port", str(port)]
    others = [subprocess.Popen(common + flags(k), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
              for k in range(1, nodes)]
    first = subprocess.run(common + node0 + flags(0), timeout=300)
    rc = first.returncode
    for k, p in enumerate(others, start=1):
        try:
            _, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            err += f"\nnode {k} did not finish\n"
        if p.returncode != 0:
            sys.stderr.write(f"node {k} exited with {p.returncode}:\n{err}")
            rc = rc or p.returncode or 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
