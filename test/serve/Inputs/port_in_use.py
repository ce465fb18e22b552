# SPDX-License-Identifier: Apache-2.0
"""Holds a listening socket on a free loopback port and runs the command
given, with PORT replaced by that port; exits with its status."""
import socket
import subprocess
import sys

held = socket.socket()
held.bind(("127.0.0.1", 0))
held.listen()
port = held.getsockname()[1]
cmd = [str(port) if a == "PORT" else a for a in sys.argv[1:]]
result = subprocess.run(cmd, timeout=60)
print(f"port {port}: exit {result.returncode}")
sys.exit(result.returncode)
