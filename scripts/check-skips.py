#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Counts the tests ctest skipped and fails when any of them is not a GPU test.

Usage: scripts/check-skips.py BUILD_DIR [JUNIT_XML]

Reads the JUnit report of the last ctest run (ctest --output-junit; default
BUILD_DIR/ctest.xml) and the names of the tests labelled `gpu`
(ctest -N -L gpu). The only tests allowed to skip are GPU tests on a machine
without a GPU; any other skipped test is missing a tool or data file and
fails the run here. Prints one summary line either way.
"""
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET


def main(argv):
    if len(argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    build = argv[1]
    junit = argv[2] if len(argv) == 3 else os.path.join(build, "ctest.xml")
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError) as err:
        print(f"check-skips: error: cannot read the ctest JUnit report {junit}: {err}"
              " (run ctest with --output-junit ctest.xml first)", file=sys.stderr)
        return 1
    listing = subprocess.run(["ctest", "--test-dir", build, "-N", "-L", "^gpu$"],
                             capture_output=True, text=True, check=True).stdout
    gpu = set(re.findall(r"^\s*Test\s+#\d+: (.+?)\s*$", listing, re.M))

    ran = skipped_gpu = 0
    other = []
    for case in root.iter("testcase"):
        status = case.get("status", "")
        if status in ("run", "fail"):
            ran += 1
        if case.find("skipped") is None and status not in ("notrun", "disabled"):
            continue
        name = case.get("name", "?")
        if name in gpu:
            skipped_gpu += 1
        else:
            other.append(name)
    print(f"check-skips: {ran} tests ran; skipped: {skipped_gpu + len(other)} "
          f"({skipped_gpu} GPU tests without a GPU, {len(other)} others)")
    if other:
        print("check-skips: error: these tests were skipped but are not GPU "
              "tests (a missing tool or data file must fail, not skip):",
              file=sys.stderr)
        for name in other:
            print(f"  {name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
