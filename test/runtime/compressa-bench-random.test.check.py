# Checks the JSON object of `compressa-bench --json` (issue 11's contract).
import json
import math
import sys

r = json.load(open(sys.argv[1]))
for key in ("decode_ms_per_step", "decode_tokens_per_s", "prefill_tokens_per_s",
            "decode_bytes_per_step", "decode_GBps", "device_copy_GBps",
            "decode_pct_of_copy"):
    assert isinstance(r[key], (int, float)) and r[key] > 0, (key, r.get(key))
assert abs(r["decode_ms_per_step"] * r["decode_tokens_per_s"] - 1e3) < 1e-2
gbps = r["decode_bytes_per_step"] / (r["decode_ms_per_step"] * 1e6)
assert math.isclose(gbps, r["decode_GBps"], rel_tol=1e-3), (gbps, r["decode_GBps"])
assert math.isclose(100 * r["decode_GBps"] / r["device_copy_GBps"],
                    r["decode_pct_of_copy"], rel_tol=1e-3)
assert (r["decode_weight_bytes_per_step"] + r["decode_state_bytes_per_step"]
        == r["decode_bytes_per_step"])
kernels = r["kernels"]
assert kernels, "no kernels"
for k in kernels:
    for key in ("name", "us_per_step", "bytes_per_step", "GBps"):
        assert key in k, (key, k)
# Every decode launch is in the profile.
assert round(sum(k["launches_per_step"] for k in kernels)) == r["decode_kernels"]
print("contract ok")
print("weights", r["weights"])
print("context", r["context"])
rms = r["decode_logits_rms"]
print("activations O(1)" if r["decode_logits_finite"] and 0.05 < rms < 20
      else "logits rms %g" % rms)
