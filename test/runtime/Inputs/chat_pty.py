#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Drives `compressa-run --chat` under a pseudo-terminal, as a person would.

    chat_pty.py [--compare-json] [--message TEXT]... -- COMMAND ARGS...

Starts COMMAND with a pseudo-terminal as its standard input, output and
error, waits for the "> " prompt, types each message and Enter, waits for the
streamed reply and the statistics line that closes it, and after the last
reply types Ctrl-D at the prompt. Prints the session as the terminal saw it,
escape sequences written as <ESC>[..m, then "exit status: N". Exits 1 (after
printing what it saw) when a step times out or the command fails.

The terminal's output processing is left on, except for the translation of
newlines to CR LF, so the transcript holds the bytes the program wrote.

With --compare-json (chat mode without --think), the command is run again
with --json, the messages on a pipe, and every streamed reply must be the
"text" of that turn's JSON object (control characters in caret notation, as
a terminal shows them) followed by a newline.
"""
import argparse
import json
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time

TIMEOUT_S = 120
STATS = re.compile(rb"prompt: \d+ tokens \| first token: [0-9.]+ s \| "
                   rb"prefill: [0-9.]+ tok/s \| decode: [-0-9.]+ tok/s "
                   rb"\(\d+ tokens?, stopped: [a-z ]+\) \| peak memory: "
                   rb"[0-9.]+ [KMG]?i?B[^\n]*\n")


class Session:
    def __init__(self, argv):
        pid, fd = pty.fork()
        if pid == 0:
            attrs = termios.tcgetattr(0)
            attrs[1] &= ~termios.ONLCR
            termios.tcsetattr(0, termios.TCSANOW, attrs)
            os.environ.pop("NO_COLOR", None)
            os.environ["TERM"] = "xterm"
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.seen = b""
        self.status = None

    def read_some(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([self.fd], [], [], left)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal.
            data = b""
        if not data:
            return False
        self.seen += data
        return True

    def wait_for(self, pattern, start, what):
        """Reads until `pattern` matches after byte `start`; its match."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            match = pattern.search(self.seen, start)
            if match:
                return match
            if not self.read_some(deadline):
                fail(self, "timed out or lost the terminal waiting for " + what)

    def type(self, data):
        os.write(self.fd, data)

    def finish(self):
        deadline = time.monotonic() + TIMEOUT_S
        while self.read_some(deadline):
            pass
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return
            time.sleep(0.05)
        fail(self, "the program did not exit after Ctrl-D")


def show(data):
    text = data.decode("utf-8", errors="backslashreplace")
    return text.replace("\x1b", "<ESC>")


def fail(session, why):
    sys.stdout.write(show(session.seen))
    sys.stdout.write("\nchat_pty: error: " + why + "\n")
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--message", action="append", default=[])
    parser.add_argument("--compare-json", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not args.message:
        parser.error("give --message TEXT and -- COMMAND")

    session = Session(command)
    prompt = re.compile(rb"^> ", re.M)
    at = session.wait_for(prompt, 0, "the first prompt").end()
    replies = []
    for message in args.message:
        session.type(message.encode() + b"\n")
        # The echo of the line, the streamed reply, then the statistics.
        echo = session.wait_for(re.compile(re.escape(message.encode()) +
                                           b"\n"), at, "the echo").end()
        stats = session.wait_for(STATS, echo, "the statistics line")
        replies.append(session.seen[echo:stats.start()])
        at = session.wait_for(prompt, stats.end(), "the next prompt").end()
    session.type(b"\x04")  # Ctrl-D at the start of a line: end of input.
    session.finish()
    sys.stdout.write(show(session.seen))
    sys.stdout.write("\nexit status: %d\n" % session.status)
    if session.status != 0:
        sys.exit(1)
    if args.compare_json:
        compare_json(command, args.message, replies)


def caret(text):
    """`text` as a terminal shows it: control characters but tab and newline
    in caret notation."""
    return "".join("^" + chr(ord(c) ^ 0x40)
                   if (ord(c) < 0x20 and c not in "\t\n") or c == "\x7f"
                   else c for c in text)


def compare_json(command, messages, replies):
    """Each streamed reply must be its turn's --json text and a newline."""
    run = subprocess.run(command + ["--json"],
                         input="".join(m + "\n" for m in messages).encode(),
                         stdout=subprocess.PIPE, timeout=TIMEOUT_S)
    if run.returncode != 0:
        sys.exit("chat_pty: error: the --json run exited with %d" %
                 run.returncode)
    turns = [json.loads(line) for line in run.stdout.decode().splitlines()]
    if len(turns) != len(replies):
        sys.exit("chat_pty: error: %d JSON turns for %d replies" %
                 (len(turns), len(replies)))
    # The reply is dimmed nowhere in chat mode; the statistics line is
    # dimmed, and its escape may close the reply's bytes.
    for index, (turn, reply) in enumerate(zip(turns, replies), 1):
        streamed = reply.removesuffix(b"\x1b[2m")
        expected = caret(turn["text"]).encode() + b"\n"
        if streamed != expected:
            sys.exit("chat_pty: error: reply %d differs from --json:\n"
                     "  streamed: %r\n  json:     %r" %
                     (index, streamed, expected))
    print("streamed replies match --json: %d of %d" %
          (len(turns), len(replies)))


if __name__ == "__main__":
    main()
