# SPDX-License-Identifier: Apache-2.0
"""compressa-serve against the `openai` Python client, one scenario a run.

    serve_check.py SCENARIO --serve BIN --artifact ART --weights DIR
                   --tokenizer FILE [-- extra compressa-serve flags]

Starts the server with --port 0, checks that its stdout is exactly one line
`listening on http://127.0.0.1:PORT`, runs SCENARIO against it, stops it with
SIGTERM and checks that it exits with status 0. Each check prints a line
"ok: ..." (FileCheck'ed by the .test files); the first failed one prints
"FAIL: ..." and exits 1.
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import openai
from openai import OpenAI


def fail(message):
    print(f"FAIL: {message}", flush=True)
    raise SystemExit(1)


def check(condition, message):
    if not condition:
        fail(message)


def ok(message):
    print(f"ok: {message}", flush=True)


class Server:
    def __init__(self, args, extra, env=None):
        cmd = [args.serve, args.artifact, "--weights", args.weights,
               "--tokenizer", args.tokenizer, "--port", "0"] + extra
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **(env or {})))
        line = self._first_line(60)
        match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)\n", line)
        if not match:
            self.proc.kill()
            fail(f"first stdout line {line!r}; stderr: {self.proc.stderr.read()}")
        self.port = int(match.group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        self.client = OpenAI(base_url=self.base + "/v1", api_key="unused",
                             max_retries=0, timeout=120)

    def _first_line(self, seconds):
        result = []
        reader = threading.Thread(
            target=lambda: result.append(self.proc.stdout.readline()))
        reader.daemon = True
        reader.start()
        reader.join(seconds)
        if not result:
            self.proc.kill()
            fail(f"no line on stdout within {seconds} s")
        return result[0]

    def raw(self, method, path, body=None, headers=None):
        """(status, parsed JSON or text) of one plain HTTP request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data

    def health(self):
        status, body = self.raw("GET", "/health")
        check(status == 200, f"/health answered {status}")
        return body

    def metrics(self):
        status, text = self.raw("GET", "/metrics")
        check(status == 200 and isinstance(text, str), "/metrics")
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def open_post(self, path, body):
        """Sends a POST with a JSON body on a socket of its own and returns
        the socket, unread (close() is the client going away)."""
        data = json.dumps(body).encode()
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        return sock

    def wait_for(self, condition, what, seconds=30):
        """The first /health answer that meets `condition`."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            h = self.health()
            if condition(h):
                return h
            time.sleep(0.02)
        fail(f"{what}: not within {seconds} s: {self.health()}")

    def wait_idle(self, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline:
            h = self.health()
            if h["active"] == 0 and h["queued"] == 0:
                return h
            time.sleep(0.05)
        fail(f"the server is not idle after {seconds} s: {self.health()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            fail("the server did not stop within 30 s of SIGTERM")
        check(self.proc.returncode == 0,
              f"the server exited with {self.proc.returncode}: {err}")
        check(out == "", f"more on stdout than the listening line: {out!r}")


def expect_error(status, body, want_status, want_code=None, want_param=None,
                 what=""):
    check(status == want_status,
          f"{what}: HTTP {status}, expected {want_status}: {body}")
    check(isinstance(body, dict) and isinstance(body.get("error"), dict),
          f"{what}: no error object: {body!r}")
    error = body["error"]
    check(set(error) == {"message", "type", "param", "code"},
          f"{what}: error fields {sorted(error)}")
    check(isinstance(error["message"], str) and error["message"],
          f"{what}: empty message")
    if want_code is not None:
        check(error["code"] == want_code,
              f"{what}: code {error['code']!r}, expected {want_code!r}")
    if want_param is not None:
        check(error["param"] == want_param,
              f"{what}: param {error['param']!r}, expected {want_param!r}")
    return error


def chat(server, content, **kwargs):
    return server.client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kwargs)


def stream_chat(server, content, **kwargs):
    """(text, reasoning, finish_reason, usage, tool_calls) of a stream."""
    stream = server.client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}],
        stream=True, **kwargs)
    text, reasoning, finish, usage, calls = "", "", None, None, []
    for chunk in stream:
        check(finish is None, "a chunk after the one with finish_reason")
        check(len(chunk.choices) == 1, f"{len(chunk.choices)} choices")
        delta = chunk.choices[0].delta
        text += delta.content or ""
        reasoning += getattr(delta, "reasoning_content", None) or ""
        for call in delta.tool_calls or []:
            calls.append(call)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
            usage = chunk.usage
    check(finish is not None, "the stream ended without finish_reason")
    check(usage is not None, "no usage in the last chunk")
    return text, reasoning, finish, usage, calls


def stream_completion(server, prompt, **kwargs):
    stream = server.client.completions.create(model=MODEL, prompt=prompt,
                                              stream=True, **kwargs)
    text, finish, usage = "", None, None
    for chunk in stream:
        check(finish is None, "a chunk after the one with finish_reason")
        text += chunk.choices[0].text
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
            usage = chunk.usage
    check(finish is not None and usage is not None,
          "the stream ended without finish_reason and usage")
    return text, finish, usage


MODEL = None

#===----------------------------------------------------------------------===#
# Scenarios
#===----------------------------------------------------------------------===#


def scenario_basic(server, args):
    models = server.client.models.list()
    check(len(models.data) == 1, f"{len(models.data)} models")
    ok(f"models: {models.data[0].id}")
    h = server.health()
    check(h["status"] == "ok" and h["slots"] == 4 and h["active"] == 0,
          f"health {h}")
    ok(f"health: {h['slots']} slots")

    # Chat, greedy: a complete response, twice the same.
    a = chat(server, "Hello!", max_tokens=12, temperature=0)
    b = chat(server, "Hello!", max_tokens=12, temperature=0)
    check(a.object == "chat.completion" and a.id.startswith("chatcmpl-"),
          f"object {a.object} id {a.id}")
    choice = a.choices[0]
    check(choice.message.role == "assistant", "role")
    check(choice.finish_reason in ("stop", "length"), choice.finish_reason)
    check(a.usage.prompt_tokens > 0 and
          a.usage.total_tokens == a.usage.prompt_tokens +
          a.usage.completion_tokens, f"usage {a.usage}")
    check(a.usage.completion_tokens <= 12, "more tokens than max_tokens")
    check(choice.message.content == b.choices[0].message.content,
          "greedy chat differs between two runs")
    ok(f"chat: {a.usage.completion_tokens} tokens, {choice.finish_reason}")

    # Streaming gives the same text and usage.
    text, _, finish, usage, _ = stream_chat(server, "Hello!", max_tokens=12,
                                            temperature=0)
    check(text == choice.message.content,
          f"stream {text!r} != {choice.message.content!r}")
    check(finish == choice.finish_reason and
          usage.completion_tokens == a.usage.completion_tokens,
          "stream finish/usage differ")
    ok("chat stream: same text, finish_reason and usage")

    # Completions: a string, the same as ids, and streaming.
    c = server.client.completions.create(model=MODEL, prompt="Once upon a",
                                         max_tokens=10, temperature=0)
    check(c.object == "text_completion" and c.id.startswith("cmpl-"),
          c.object)
    check(c.choices[0].finish_reason in ("stop", "length"), "finish")
    text, finish, usage = stream_completion(server, "Once upon a",
                                            max_tokens=10, temperature=0)
    check(text == c.choices[0].text, f"{text!r} != {c.choices[0].text!r}")
    check(usage.prompt_tokens == c.usage.prompt_tokens, "usage")
    ok(f"completion: {c.usage.prompt_tokens} prompt tokens, stream equal")

    # Sampling: the same seed gives the same text; stop strings cut it.
    s1 = chat(server, "Tell me", max_tokens=16, temperature=0.9, top_p=0.95,
              seed=7, extra_body={"top_k": 40})
    s2 = chat(server, "Tell me", max_tokens=16, temperature=0.9, top_p=0.95,
              seed=7, extra_body={"top_k": 40})
    check(s1.choices[0].message.content == s2.choices[0].message.content,
          "the same seed gave different texts")
    ok("seeded sampling is reproducible")
    # Without a seed each request draws a random one: the same sampled
    # request three times gives more than one text.
    texts = {chat(server, "Tell me", max_tokens=16, temperature=1.0)
             .choices[0].message.content for _ in range(3)}
    check(len(texts) > 1,
          f"three unseeded sampled replies are all {texts.pop()!r}")
    ok(f"unseeded sampling draws a random seed ({len(texts)} different "
       f"texts of 3)")
    full = c.choices[0].text
    if len(full) >= 4:
        stop = full[2:4]
        cut = server.client.completions.create(
            model=MODEL, prompt="Once upon a", max_tokens=10, temperature=0,
            stop=[stop, "\x00never"])
        want = full[:full.index(stop)]
        check(cut.choices[0].text == want,
              f"stop {stop!r}: {cut.choices[0].text!r}, expected {want!r}")
        check(cut.choices[0].finish_reason == "stop", "stop reason")
        text, finish, _ = stream_completion(server, "Once upon a",
                                            max_tokens=10, temperature=0,
                                            stop=stop)
        check(text == want and finish == "stop", f"streamed stop {text!r}")
        ok("stop strings end the reply before them (also streaming)")
    else:
        fail(f"greedy completion too short for the stop check: {full!r}")

    # Prefix reuse: a prompt that extends a finished request's tokens.
    ids = list(range(1, 40))
    first = server.client.completions.create(model=MODEL, prompt=ids,
                                             max_tokens=1, temperature=0)
    check(first.usage.prompt_tokens == len(ids), "prompt ids counted")
    longer = ids + [50, 60, 70]
    reused = server.client.completions.create(model=MODEL, prompt=longer,
                                              max_tokens=8, temperature=0)
    cached = reused.usage.prompt_tokens_details.cached_tokens
    check(cached == len(ids), f"cached_tokens {cached}, expected {len(ids)}")
    # Again from scratch: the slot now holds more than this prompt.
    fresh = server.client.completions.create(model=MODEL, prompt=longer,
                                             max_tokens=8, temperature=0)
    check(fresh.usage.prompt_tokens_details.cached_tokens == 0,
          "second run reused a longer state")
    check(fresh.choices[0].text == reused.choices[0].text,
          "reused-prefix reply differs from a fresh prefill")
    m = server.metrics()
    check(m["compressa_prompt_tokens_cached_total"] >= len(ids),
          "cached tokens metric")
    ok(f"prefix reuse: {cached} cached prompt tokens, same greedy reply")

    # The next chat turn: the conversation so far continues the slot.
    turn1 = chat(server, "Hi there", max_tokens=6, temperature=0)
    turn2 = server.client.chat.completions.create(
        model=MODEL, max_tokens=6, temperature=0, messages=[
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": turn1.choices[0].message.content},
            {"role": "user", "content": "And then?"}])
    check(turn2.usage.prompt_tokens > turn1.usage.prompt_tokens, "turn 2")
    ok("second chat turn answered "
       f"({turn2.usage.prompt_tokens_details.cached_tokens} cached tokens)")

    m = server.metrics()
    for name in ("compressa_time_to_first_token_seconds_count",
                 "compressa_inter_token_latency_seconds_count",
                 "compressa_batch_occupancy_count",
                 "compressa_generation_tokens_total"):
        check(m.get(name, 0) > 0, f"metric {name} is {m.get(name)}")
    check(m['compressa_http_requests_total{path="/v1/completions",code="200"}']
          >= 5, "http counter")
    ok("metrics: requests, tokens, TTFT, inter-token latency, occupancy")


def scenario_smoke(server, args):
    # One chat and one streamed completion, complete and well formed.
    r = chat(server, "Hello!", max_tokens=6, temperature=0)
    check(r.choices[0].finish_reason in ("stop", "length") and
          r.usage.completion_tokens <= 6, f"{r}")
    text, finish, usage = stream_completion(server, "Once", max_tokens=6)
    check(finish in ("stop", "length") and usage.completion_tokens <= 6,
          "stream")
    ok("smoke: chat and streamed completion")


def scenario_defaults(server, args):
    # generation_config.json says do_sample false: no temperature means
    # greedy, so two unseeded requests agree, and with the greedy request.
    a = chat(server, "Hello!")
    b = chat(server, "Hello!")
    g = chat(server, "Hello!", temperature=0)
    check(a.choices[0].message.content == b.choices[0].message.content ==
          g.choices[0].message.content,
          "generation_config.json do_sample=false was not applied")
    # max_new_tokens 5 is the default max_tokens.
    check(a.usage.completion_tokens <= 5 and
          (a.choices[0].finish_reason == "length") ==
          (a.usage.completion_tokens == 5), f"usage {a.usage}")
    ok("generation_config.json: do_sample and max_new_tokens are defaults")


def scenario_errors(server, args):
    post = lambda path, body, **kw: server.raw(
        "POST", path, body=body, headers={"Content-Type": "application/json"},
        **kw)
    chat_path = "/v1/chat/completions"
    good = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 2}

    status, body = post(chat_path, '{"messages": [')
    expect_error(status, body, 400, "invalid_json", what="malformed JSON")
    ok("malformed JSON: 400 invalid_json")
    status, body = post(chat_path, '[1, 2]')
    expect_error(status, body, 400, "invalid_type", what="array body")
    for field, value in (("max_tokens", "ten"), ("temperature", "hot"),
                         ("ignore_eos", 1),
                         ("stream", "yes"), ("stop", 5), ("seed", 1.5),
                         ("top_p", [1]), ("model", 3)):
        status, body = post(chat_path, json.dumps(dict(good, **{field: value})))
        expect_error(status, body, 400, "invalid_type", field,
                     what=f"{field}={value!r}")
    for field, value in (("max_tokens", 0), ("temperature", -1),
                         ("top_p", 1.5), ("n", 2)):
        status, body = post(chat_path, json.dumps(dict(good, **{field: value})))
        expect_error(status, body, 400, "invalid_value", field,
                     what=f"{field}={value!r}")
    status, body = post(chat_path, json.dumps(dict(good, messages="Hi")))
    expect_error(status, body, 400, want_param="messages", what="messages")
    status, body = post("/v1/completions", json.dumps({"prompt": [1, "a"]}))
    expect_error(status, body, 400, "invalid_type", "prompt[1]", what="ids")
    status, body = post("/v1/completions", json.dumps({"prompt": [1, 10**9]}))
    expect_error(status, body, 400, what="id outside the vocabulary")
    ok("wrong types and values: 400 naming the field")

    try:
        server.client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}])
        fail("unknown model accepted")
    except openai.NotFoundError as e:
        check(e.status_code == 404 and e.body["code"] == "model_not_found",
              f"unknown model: {e.body}")
    ok("unknown model: 404 model_not_found")

    status, body = post(chat_path, json.dumps(
        dict(good, messages=[{"role": "user", "content": "x" * (9 << 20)}])))
    expect_error(status, body, 413, "request_too_large", what="large body")
    ok("body over the limit: 413")

    # The artifact's context is 64 tokens.
    try:
        server.client.completions.create(model=MODEL, prompt=list(range(70)),
                                         max_tokens=2)
        fail("a prompt longer than the context was accepted")
    except openai.BadRequestError as e:
        check(e.body["code"] == "context_length_exceeded", f"{e.body}")
    try:
        chat(server, "word " * 100, max_tokens=2)
        fail("a chat longer than the context was accepted")
    except openai.BadRequestError as e:
        check(e.body["code"] == "context_length_exceeded", f"{e.body}")
    ok("prompt longer than the context: 400 context_length_exceeded")

    status, body = server.raw("GET", "/v1/nothing")
    expect_error(status, body, 404, "not_found", what="unknown path")
    ok("unknown path: 404")

    # Generation stops at the end of the context.
    r = server.client.completions.create(model=MODEL, prompt=list(range(60)),
                                         max_tokens=50, temperature=0)
    check(r.usage.completion_tokens == 4 and
          r.choices[0].finish_reason in ("length", "stop"),
          f"context end: {r.usage}")
    ok("generation ends with the context")

    # Still serving.
    r = chat(server, "Still there?", max_tokens=3)
    check(r.choices[0].finish_reason in ("stop", "length"), "after errors")
    h = server.wait_idle()
    check(h["active"] == 0, "slots busy after errors")
    ok("the server keeps serving after every error")


def scenario_queue(server, args):
    # --max-batch 1 --max-queue 1: one generating, one waiting, the third
    # refused.
    # A completion, whose text streams as it comes (a chat reply's random
    # text may look like the start of a tool call, which the reply parser
    # holds back).
    a = server.client.completions.create(
        model=MODEL, prompt="A", max_tokens=60000, stream=True,
        temperature=0.8, extra_body={"ignore_eos": True})
    it = iter(a)
    next(it)
    next(it)
    b = server.client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "B"}],
        max_tokens=4, stream=True)
    h = server.health()
    check(h["active"] == 1 and h["queued"] == 1, f"health {h}")
    try:
        chat(server, "C", max_tokens=2)
        fail("a third request was accepted")
    except openai.RateLimitError as e:
        check(e.status_code == 429 and
              e.body["code"] == "rate_limit_exceeded", f"{e.body}")
    ok("full queue: 429 rate_limit_exceeded")

    # The first client goes away mid-stream: its slot goes to the second.
    a.response.close()
    text = ""
    finish = None
    for chunk in b:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    check(finish in ("stop", "length"), "the queued request did not finish")
    h = server.wait_idle(30)
    m = server.metrics()
    finished = {k: v for k, v in m.items()
                if k.startswith("compressa_requests_finished_total")}
    check(m.get('compressa_requests_finished_total{reason="cancelled"}', 0)
          >= 1, f"the disconnect was not counted as cancelled: {finished}")
    check(m["compressa_generation_tokens_total"] < 60000,
          "the disconnected request generated to its end")
    ok("disconnect mid-stream frees the slot; the queued request ran")

    # A client that waits for a whole (non-streaming) reply and goes away:
    # nothing is written to it before the reply is whole, so the server has
    # to notice the closed socket. A long request holds the slot, a second
    # waits in the queue; closing the second frees its queue place while
    # the first still runs, closing the first frees the slot.
    def cancelled(m):
        return m.get('compressa_requests_finished_total{reason="cancelled"}',
                     0)

    before = server.metrics()
    long_body = {"model": MODEL, "max_tokens": 60000, "temperature": 0.8,
                 "ignore_eos": True,
                 "messages": [{"role": "user", "content": "E"}]}
    holder = server.open_post("/v1/chat/completions", long_body)
    h = server.wait_for(lambda h: h["active"] == 1 and h["queued"] == 0,
                        "the long request in the slot")
    waiter = server.open_post("/v1/completions",
                              {"model": MODEL, "prompt": "F", "max_tokens": 4})
    server.wait_for(lambda h: h["active"] == 1 and h["queued"] == 1,
                    "the second request in the queue")
    waiter.close()
    server.wait_for(lambda h: h["active"] == 1 and h["queued"] == 0,
                    "the queue place freed, the long request still running")
    m = server.metrics()
    check(cancelled(m) == cancelled(before) + 1,
          f"cancelled {cancelled(before)} -> {cancelled(m)}, expected +1")
    holder.close()
    h = server.wait_idle(10)
    after = server.metrics()
    check(cancelled(after) == cancelled(before) + 2,
          f"cancelled {cancelled(before)} -> {cancelled(after)}, expected +2")
    generated = (after["compressa_generation_tokens_total"] -
                 before["compressa_generation_tokens_total"])
    check(0 < generated < 60000,
          f"the closed request generated {generated} tokens")
    time.sleep(0.5)
    check(server.metrics()["compressa_generation_tokens_total"] ==
          after["compressa_generation_tokens_total"],
          "tokens are still being generated after the client went away")
    check(h["active"] == 0 and h["queued"] == 0 and
          after["compressa_active_slots"] == 0 and
          after["compressa_queue_requests"] == 0, f"after: {h}")
    ok(f"disconnect while waiting for a whole reply frees the slot and the "
       f"queue place (slots busy 1 -> 0, queued 1 -> 0, "
       f"{int(cancelled(after) - cancelled(before))} cancelled)")

    # And the server keeps serving.
    r = chat(server, "D", max_tokens=3)
    check(r.choices[0].finish_reason in ("stop", "length"), "after")
    ok("the server keeps serving")


def scenario_batching(server, args):
    prompts = ["Once upon a time", "Hello!", "The capital of", "1 2 3 4",
               "def main():", "Why is the sky", "A", "Lorem ipsum dolor"]
    alone = []
    for p in prompts:
        r = server.client.completions.create(model=MODEL, prompt=p,
                                             max_tokens=24, temperature=0)
        alone.append((r.choices[0].text, r.usage.completion_tokens))
    ok(f"{len(prompts)} greedy replies alone")
    before = server.metrics()
    results = [None] * len(prompts)

    def run(i):
        # Half streaming, half not; all at once.
        if i % 2:
            text, _, usage = stream_completion(server, prompts[i],
                                               max_tokens=24, temperature=0)
            results[i] = (text, usage.completion_tokens)
        else:
            r = server.client.completions.create(model=MODEL,
                                                 prompt=prompts[i],
                                                 max_tokens=24, temperature=0)
            results[i] = (r.choices[0].text, r.usage.completion_tokens)

    threads = [threading.Thread(target=run, args=(i,))
               for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, p in enumerate(prompts):
        check(results[i] == alone[i],
              f"{p!r}: {results[i]!r} among others, {alone[i]!r} alone")
    after = server.metrics()
    steps = (after["compressa_batch_occupancy_count"] -
             before["compressa_batch_occupancy_count"])
    single = (after['compressa_batch_occupancy_bucket{le="1"}'] -
              before['compressa_batch_occupancy_bucket{le="1"}'])
    check(steps > single, "no decode step ran more than one sequence")
    ok(f"greedy replies identical alone and concurrently "
       f"({int(steps - single)} of {int(steps)} decode steps batched)")


def scenario_parsing(server, args):
    # COMPRESSA_SERVE_TEST_HOOKS=1: x_forced_reply fixes the generated
    # tokens, so the reply parser sees DeepSeek-V4 markup.
    reasoning, answer = "Let me think.", "The answer is 4."
    r = server.client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "2+2?"}],
        max_tokens=64, extra_body={
            "chat_template_kwargs": {"thinking": True},
            "x_forced_reply": f"{reasoning}</think>{answer}"})
    msg = r.choices[0].message
    check(msg.content == answer, f"content {msg.content!r}")
    check(getattr(msg, "reasoning_content", None) == reasoning,
          f"reasoning {getattr(msg, 'reasoning_content', None)!r}")
    check(r.choices[0].finish_reason == "stop", r.choices[0].finish_reason)
    text, think, finish, _, _ = stream_chat(
        server, "2+2?", max_tokens=64, extra_body={
            "chat_template_kwargs": {"thinking": True},
            "x_forced_reply": f"{reasoning}</think>{answer}"})
    check(text == answer and think == reasoning and finish == "stop",
          f"stream: {think!r} / {text!r}")
    ok("thinking: reasoning_content and content split (also streaming)")

    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"]}}}]
    dsml = ("I will check.\n\n<｜DSML｜tool_calls>\n"
            "<｜DSML｜invoke name=\"get_weather\">\n"
            "<｜DSML｜parameter name=\"city\" string=\"true\">Paris"
            "</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"days\" string=\"false\">3"
            "</｜DSML｜parameter>\n"
            "</｜DSML｜invoke>\n</｜DSML｜tool_calls>")
    r = server.client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather?"}],
        tools=tools, max_tokens=1000, extra_body={"x_forced_reply": dsml})
    msg = r.choices[0].message
    check(r.choices[0].finish_reason == "tool_calls",
          r.choices[0].finish_reason)
    check(msg.content == "I will check.", f"content {msg.content!r}")
    check(len(msg.tool_calls) == 1, f"{msg.tool_calls}")
    call = msg.tool_calls[0]
    check(call.type == "function" and call.function.name == "get_weather",
          f"{call}")
    check(json.loads(call.function.arguments) == {"city": "Paris", "days": 3},
          call.function.arguments)
    text, _, finish, _, calls = stream_chat(
        server, "Weather?", tools=tools, max_tokens=1000,
        extra_body={"x_forced_reply": dsml})
    check("DSML" not in text and "｜" not in text, f"markup leaked: {text!r}")
    check(text == "I will check." and finish == "tool_calls", f"{text!r}")
    check(len(calls) == 1 and calls[0].function.name == "get_weather" and
          json.loads(calls[0].function.arguments) ==
          {"city": "Paris", "days": 3} and calls[0].id == calls[0].id,
          f"{calls}")
    ok("tool calls parsed into tool_calls, no markup in content "
       "(also streaming)")

    # The tool result goes back as a `tool` message; the next reply runs.
    r2 = server.client.chat.completions.create(
        model=MODEL, max_tokens=4, tools=tools, messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "I will check.",
             "tool_calls": [{"id": call.id, "type": "function", "function": {
                 "name": "get_weather", "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    check(r2.choices[0].finish_reason in ("stop", "length"), "tool turn")
    ok("a tool result message is accepted")

    # The next chat turn continues the slot of the first: its prompt is the
    # first prompt, the reply (as the encoder renders it, here the very
    # tokens generated) and the new message.
    turn1 = server.client.chat.completions.create(
        model=MODEL, max_tokens=32,
        messages=[{"role": "user", "content": "Where to go?"}],
        extra_body={"x_forced_reply": "Paris is nice."})
    check(turn1.choices[0].message.content == "Paris is nice." and
          turn1.choices[0].finish_reason == "stop", f"{turn1}")
    turn2 = server.client.chat.completions.create(
        model=MODEL, max_tokens=4, messages=[
            {"role": "user", "content": "Where to go?"},
            {"role": "assistant", "content": "Paris is nice."},
            {"role": "user", "content": "Why?"}])
    # Every token but the end of sentence ran through the model.
    want = turn1.usage.prompt_tokens + turn1.usage.completion_tokens - 1
    cached = turn2.usage.prompt_tokens_details.cached_tokens
    check(cached == want, f"turn 2 reused {cached} tokens, expected {want}")
    ok(f"the next chat turn reuses the first turn's state ({cached} tokens)")


def run_load(server, clients, seconds):
    """`clients` threads sending mixed requests for `seconds`; the count of
    complete, well-formed responses (fails on any other)."""
    counts = {"ok": 0}
    errors = []
    lock = threading.Lock()
    deadline = time.time() + seconds

    def client(i):
        n = 0
        while time.time() < deadline and not errors:
            n += 1
            kind = (i + n) % 4
            try:
                max_tokens = 1 + (i * 7 + n * 3) % 24
                if kind == 0:
                    r = chat(server, f"client {i} request {n}",
                             max_tokens=max_tokens, seed=n)
                    check(r.choices[0].finish_reason in ("stop", "length"),
                          "finish")
                    check(r.usage.completion_tokens <= max_tokens, "usage")
                    check(isinstance(r.choices[0].message.content, str),
                          "content")
                elif kind == 1:
                    _, _, finish, usage, _ = stream_chat(
                        server, f"client {i} stream {n}",
                        max_tokens=max_tokens)
                    check(finish in ("stop", "length") and
                          usage.completion_tokens <= max_tokens, "stream")
                elif kind == 2:
                    r = server.client.completions.create(
                        model=MODEL, prompt=f"{i} {n}", max_tokens=max_tokens,
                        temperature=0.5)
                    check(r.choices[0].finish_reason in ("stop", "length"),
                          "finish")
                    check(r.usage.completion_tokens <= max_tokens, "usage")
                else:
                    _, finish, usage = stream_completion(
                        server, f"{n} {i}", max_tokens=max_tokens)
                    check(usage.completion_tokens <= max_tokens, "usage")
                with lock:
                    counts["ok"] += 1
            except SystemExit:
                errors.append(f"client {i}: a malformed response")
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(f"client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=client, args=(i,))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"{len(errors)} failed requests, first: {errors[:1]}")
    return counts["ok"]


def scenario_load(server, args):
    seconds = float(args.seconds)
    clients = int(args.clients)
    # A quarter of the time warms up: every slot, server thread and
    # allocator arena in use once. Then the rest is measured.
    warm = run_load(server, clients, seconds / 4)
    idle = server.wait_idle()
    rss_before = idle["resident_memory_bytes"]
    done = run_load(server, clients, seconds - seconds / 4)
    idle = server.wait_idle()
    growth = idle["resident_memory_bytes"] - rss_before
    check(idle["active"] == 0 and idle["queued"] == 0, f"{idle}")
    # A leak of one request's reply or state would grow with the count.
    print(f"load: {warm} + {done} requests by {clients} clients in "
          f"{seconds:.0f} s, resident memory {rss_before} -> "
          f"{idle['resident_memory_bytes']} bytes", file=sys.stderr)
    check(growth < 4 << 20,
          f"resident memory grew by {growth} bytes over {done} requests")
    m = server.metrics()
    check(m["compressa_active_slots"] == 0 and
          m["compressa_queue_requests"] == 0, "gauges after the load")
    ok("load: every response complete, no slot or memory leak")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--serve", required=True)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--seconds", default="20")
    parser.add_argument("--clients", default="8")
    parser.add_argument("--hooks", action="store_true")
    args, extra = parser.parse_known_args()
    if extra and extra[0] == "--":
        extra = extra[1:]
    env = {"COMPRESSA_SERVE_TEST_HOOKS": "1"} if args.hooks else {}
    if args.scenario == "load":
        # glibc makes a malloc arena per busy thread, up to 8 per core: how
        # many depends on the machine's load, not on leaks. Two keep the
        # resident memory comparable before and after.
        env["MALLOC_ARENA_MAX"] = "2"
    server = Server(args, extra, env)
    global MODEL
    MODEL = server.client.models.list().data[0].id
    try:
        globals()["scenario_" + args.scenario](server, args)
    except BaseException:
        server.proc.kill()
        raise
    server.stop()
    ok("stopped cleanly")


if __name__ == "__main__":
    main()
