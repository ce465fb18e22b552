#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Compressa and transformers' DeepseekV4ForCausalLM side by side, one run.

Both run the same geometry: layers A..B-1 of a DeepSeek-V4 config (each with
its attention and routing kind, embedding, final norm and head), random
weights. Compressa runs the artifact compiled here with
`compressa-compile MODEL --layers A:B --target=cuda:sm_90a --max-context N`
(in the official FP8/FP4 formats, or whatever it was compiled for) through
`compressa-bench --weights random --json`; transformers runs the model in
bf16 on the same device. Printed: decode ms per step, decode and prefill
tokens/s of both, and the ratio transformers / Compressa.

How each side gets to context C:
- Compressa: prefills --prompt P tokens, then fills the state rows of
  positions P..C-1 synthetically (compressa-bench --context), then times
  --gen G decode steps at positions C..C+G-1 (CUDA events, median of runs).
- transformers: prefills C tokens for real (in chunks of --hf-chunk, timed:
  its prefill figure), then times G decode steps with the cache (CUDA events
  around each step, median after --warmup steps).

    python3 scripts/bench-vs-transformers.py --model deepseek-v4-flash \\
        --layers 2:6 --artifact flash-2-6.cpa --bench bin/compressa-bench \\
        --prompt 64 --context 4096 --gen 16

--dry-run needs neither torch nor a GPU: it builds and checks the sliced
transformers config (printed with --print-config), runs the Compressa side
(on whatever target the artifact has, e.g. a CPU artifact of a tiny model)
and prints the table with the transformers column left empty. --device cpu
runs transformers on the CPU (for a tiny config).
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KIND_BY_RATIO = {0: "sliding_attention", 4: "compressed_sparse_attention",
                 128: "heavily_compressed_attention"}


def fail(message):
    print(f"bench-vs-transformers: error: {message}", file=sys.stderr)
    sys.exit(1)


def resolve_config(model, models_dir):
    """MODEL: a config.json, a directory holding one, or a name in models/."""
    for path in (model, os.path.join(model, "config.json"),
                 os.path.join(models_dir, model, "config.json")):
        if os.path.isfile(path):
            return path
    fail(f"'{model}' is neither a config.json, a directory holding one, nor "
         f"a model in {models_dir}")


def parse_layers(text, num_layers, where):
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        fail(f"{where}: --layers '{text}': expected A:B, two layer indices "
             f"(layers A..B-1 are kept)")
    if not 0 <= a < b <= num_layers:
        fail(f"{where}: --layers '{text}': expected 0 <= A < B <= "
             f"num_hidden_layers = {num_layers}, found A = {a}, B = {b}")
    return a, b


def sliced_hf_config(config, path, layers):
    """The transformers-style config (layer_types, compress_rates,
    mlp_layer_types, rope_parameters) of layers A..B-1 of `config`, an
    official-style (compress_ratios, num_hash_layers, rope_scaling) or a
    transformers-style config."""
    n = config["num_hidden_layers"]
    a, b = parse_layers(layers, n, path) if layers else (0, n)
    head_dim = config["head_dim"]
    rope_dim = config["qk_rope_head_dim"]
    if "layer_types" in config:
        kinds = list(config["layer_types"])
        mlp = list(config["mlp_layer_types"])
        rates = dict(config["compress_rates"])
        rope = config.get("rope_parameters")
    else:
        ratios = config["compress_ratios"][:n]
        unknown = sorted({r for r in ratios if r not in KIND_BY_RATIO})
        if unknown:
            fail(f"{path}: 'compress_ratios' holds {unknown}; the script maps "
                 f"only 0 (sliding), 4 (CSA) and 128 (HCA) to layer_types")
        kinds = [KIND_BY_RATIO[r] for r in ratios]
        hash_layers = config.get("num_hash_layers", 0)
        mlp = ["hash_moe" if i < hash_layers else "moe" for i in range(n)]
        rates = {"compressed_sparse_attention": 4,
                 "heavily_compressed_attention": 128}
        scaling = config.get("rope_scaling") or {}
        factor = rope_dim / head_dim
        compress = {"rope_type": "yarn" if scaling else "default",
                    "rope_theta": config.get("compress_rope_theta",
                                             config["rope_theta"]),
                    "partial_rotary_factor": factor}
        for key in ("factor", "original_max_position_embeddings",
                    "beta_fast", "beta_slow"):
            if key in scaling:
                compress[key] = scaling[key]
        if scaling:
            compress["attention_factor"] = 1.0
        rope = {"main": {"rope_type": "default",
                         "rope_theta": config["rope_theta"],
                         "partial_rotary_factor": factor},
                "compress": compress}
    keep = ("vocab_size", "hidden_size", "moe_intermediate_size",
            "num_attention_heads", "num_key_value_heads", "head_dim",
            "q_lora_rank", "num_experts_per_tok", "n_routed_experts",
            "n_shared_experts", "scoring_func", "norm_topk_prob",
            "routed_scaling_factor", "max_position_embeddings", "rope_theta",
            "compress_rope_theta", "hc_mult", "hc_sinkhorn_iters", "hc_eps",
            "swiglu_limit", "sliding_window", "o_groups", "o_lora_rank",
            "index_n_heads", "index_head_dim", "index_topk", "hidden_act",
            "rms_norm_eps", "bos_token_id", "eos_token_id",
            "qk_rope_head_dim")
    out = {k: config[k] for k in keep if k in config}
    out.update({
        "architectures": ["DeepseekV4ForCausalLM"],
        "model_type": "deepseek_v4",
        "num_hidden_layers": b - a,
        "layer_types": kinds[a:b],
        "mlp_layer_types": mlp[a:b],
        "compress_rates": rates,
        "rope_parameters": rope,
        "partial_rotary_factor": rope_dim / head_dim,
        "num_nextn_predict_layers": 0,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "dtype": "bfloat16",
    })
    # transformers keeps hash routing as a prefix too.
    seen_score = False
    for i, kind in enumerate(out["mlp_layer_types"]):
        if kind == "moe":
            seen_score = True
        elif seen_score:
            fail(f"{path}: layer {a + i} has hash routing after a score layer")
    return out


def run_compressa(args):
    cmd = [args.bench, args.artifact, "--weights", "random", "--seed",
           str(args.seed), "--prompt", str(args.prompt), "--gen",
           str(args.gen), "--context", str(args.context), "--repeat",
           str(args.repeat), "--json"]
    print("compressa:", " ".join(cmd), file=sys.stderr, flush=True)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        fail(f"cannot run {args.bench}: {e}")
    if done.returncode != 0:
        fail(f"compressa-bench failed (exit {done.returncode}): "
             f"{done.stderr.strip()}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as e:
        fail(f"compressa-bench printed no JSON object ({e}): {done.stdout[:200]}")


def init_random_(model, torch, seed):
    """bf16 weights at the scale compressa-bench uses: norms near 1,
    matrices uniform +-sqrt(3/fan_in), vectors +-0.1, index tables in range."""
    gen = torch.Generator(device=next(model.parameters()).device)
    gen.manual_seed(seed)
    experts = model.config.n_routed_experts
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.is_floating_point():
                p.copy_(torch.randint(0, experts, p.shape, generator=gen,
                                      device=p.device, dtype=p.dtype))
            elif name.endswith("norm.weight"):
                p.uniform_(0.95, 1.05, generator=gen)
            elif p.dim() >= 2:
                a = math.sqrt(3.0 / p.shape[-1])
                if "hc_" in name:
                    a /= 10
                if "embed" in name:
                    a = 1.0
                p.uniform_(-a, a, generator=gen)
            else:
                p.uniform_(-0.1, 0.1, generator=gen)
        for name, buf in model.named_buffers():
            if "tid2eid" in name:
                buf.copy_(torch.randint(0, experts, buf.shape, generator=gen,
                                        device=buf.device, dtype=buf.dtype))


def run_transformers(args, hf_config):
    try:
        import torch
        import transformers
    except ImportError as e:
        fail(f"transformers side: {e} (use --dry-run to skip it)")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda, but torch sees no CUDA GPU")
    config = transformers.DeepseekV4Config(**hf_config)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    with torch.device(device):
        model = transformers.DeepseekV4ForCausalLM._from_config(
            config, torch_dtype=torch.bfloat16)
    model.eval()
    init_random_(model, torch, args.seed)
    build_s = time.perf_counter() - t0
    vocab = hf_config["vocab_size"]
    first = 2 if vocab > 2 else 0
    ids = torch.tensor([[first + (i * 7919) % (vocab - first)
                         for i in range(args.context + args.warmup + args.gen)]],
                       device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        sync()
        t0 = time.perf_counter()
        past = None
        for start in range(0, args.context, args.hf_chunk):
            end = min(args.context, start + args.hf_chunk)
            out = model(input_ids=ids[:, start:end], past_key_values=past,
                        use_cache=True)
            past = out.past_key_values
        sync()
        prefill_s = time.perf_counter() - t0
        steps = []
        nxt = out.logits[:, -1:].argmax(-1)
        for step in range(args.warmup + args.gen):
            if device.type == "cuda":
                begin = torch.cuda.Event(enable_timing=True)
                stop = torch.cuda.Event(enable_timing=True)
                begin.record()
                out = model(input_ids=nxt, past_key_values=past, use_cache=True)
                stop.record()
                torch.cuda.synchronize()
                ms = begin.elapsed_time(stop)
            else:
                t0 = time.perf_counter()
                out = model(input_ids=nxt, past_key_values=past, use_cache=True)
                ms = (time.perf_counter() - t0) * 1e3
            past = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
            if step >= args.warmup:
                steps.append(ms)
    step_ms = statistics.median(steps)
    return {"decode_ms_per_step": step_ms,
            "decode_tokens_per_s": 1e3 / step_ms,
            "prefill_tokens_per_s": args.context / prefill_s,
            "build_s": build_s,
            "device": (torch.cuda.get_device_name(device)
                       if device.type == "cuda" else "cpu"),
            "versions": f"torch {torch.__version__}, transformers "
                        f"{transformers.__version__}"}


def main():
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="config.json, a directory holding one, or a name in "
                        "models/ (the one the artifact was compiled from)")
    p.add_argument("--layers", default="",
                   help="A:B, as given to compressa-compile --layers")
    p.add_argument("--artifact", required=True,
                   help="the .cpa compiled with the same --layers")
    p.add_argument("--bench", default=os.path.join(ROOT, "build", "bin",
                                                   "compressa-bench"))
    p.add_argument("--models-dir", default=os.path.join(ROOT, "models"))
    p.add_argument("--prompt", type=int, default=64,
                   help="tokens Compressa prefills before the synthetic fill")
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--gen", type=int, default=16, help="timed decode steps")
    p.add_argument("--repeat", type=int, default=3,
                   help="compressa-bench runs after its warm-up")
    p.add_argument("--warmup", type=int, default=3,
                   help="transformers decode steps before the timed ones")
    p.add_argument("--hf-chunk", type=int, default=4096,
                   help="transformers prefill chunk")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cuda", help="transformers' device")
    p.add_argument("--dry-run", action="store_true",
                   help="skip transformers (no torch needed)")
    p.add_argument("--print-config", action="store_true",
                   help="print the sliced transformers config")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead of the table")
    args = p.parse_args()
    for name in ("prompt", "context", "gen", "repeat", "hf_chunk"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        fail("--warmup must be >= 0")
    if args.context < args.prompt:
        fail(f"--context {args.context} is shorter than --prompt {args.prompt}")
    path = resolve_config(args.model, args.models_dir)
    with open(path) as f:
        config = json.load(f)
    hf_config = sliced_hf_config(config, path, args.layers)
    if args.print_config:
        print(json.dumps(hf_config, indent=1, sort_keys=True))
    if not os.path.isfile(args.artifact):
        fail(f"--artifact {args.artifact}: no such file (compile it with "
             f"compressa-compile {args.model} --layers {args.layers or 'A:B'} "
             f"--target=cuda:sm_90a --max-context N)")

    ours = run_compressa(args)
    theirs = None if args.dry_run else run_transformers(args, hf_config)
    kinds = hf_config["layer_types"]
    summary = {
        "model": os.path.basename(os.path.dirname(os.path.abspath(path))),
        "layers": args.layers or f"0:{config['num_hidden_layers']}",
        "layer_types": kinds,
        "context": args.context, "gen": args.gen,
        "compressa": {k: ours[k] for k in (
            "decode_ms_per_step", "decode_tokens_per_s",
            "prefill_tokens_per_s", "decode_bytes_per_step", "decode_GBps",
            "device_copy_GBps", "decode_pct_of_copy", "backend", "weights")},
        "transformers": theirs,
        "decode_speedup": (theirs["decode_ms_per_step"] /
                           ours["decode_ms_per_step"]) if theirs else None,
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    short = {"sliding_attention": "SWA", "compressed_sparse_attention": "CSA",
             "heavily_compressed_attention": "HCA"}
    print(f"\n{summary['model']} layers {summary['layers']} "
          f"({', '.join(short.get(k, k) for k in kinds)}), decode at context "
          f"{args.context}, random weights")
    print(f"compressa backend: {ours['backend']}")
    if theirs:
        print(f"transformers: {theirs['versions']} on {theirs['device']}, bf16")
    rows = [("decode ms/step", "decode_ms_per_step", "{:.3f}"),
            ("decode tokens/s", "decode_tokens_per_s", "{:.1f}"),
            ("prefill tokens/s", "prefill_tokens_per_s", "{:.1f}")]
    print(f"{'':18} {'compressa':>12} {'transformers':>13} {'speedup':>8}")
    for label, key, fmt in rows:
        a = ours[key]
        b = theirs[key] if theirs else None
        ratio = ""
        if b:
            ratio = "{:.2f}x".format(b / a if key == "decode_ms_per_step"
                                     else a / b)
        print(f"{label:18} {fmt.format(a):>12} "
              f"{fmt.format(b) if b else '(dry run)':>13} {ratio:>8}")
    print(f"compressa decode reads {ours['decode_bytes_per_step'] / 1e9:.3f} "
          f"GB/step: {ours['decode_GBps']:.1f} GB/s, "
          f"{ours['decode_pct_of_copy']:.1f}% of the device copy "
          f"({ours['device_copy_GBps']:.1f} GB/s)")
    if theirs:
        print(f"decode speedup (transformers ms / compressa ms): "
              f"{summary['decode_speedup']:.2f}x")


if __name__ == "__main__":
    main()
