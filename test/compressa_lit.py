# SPDX-License-Identifier: Apache-2.0
"""The lit test format of the Compressa tests (a module, so that lit's worker
processes can unpickle it)."""
import lit.formats
import lit.Test


class NoSilentSkips(lit.formats.ShTest):
    """ShTest in which a test that cannot run fails instead of being skipped.

    Every lit test runs on a machine without a GPU (the GPU tests are gtests
    labelled `gpu`), so a test that lit would report UNSUPPORTED is missing a
    tool or data file: it FAILs, naming what is missing and how to get it.
    `missing` maps a feature name to that explanation.
    """

    def __init__(self, execute_external, missing):
        super().__init__(execute_external)
        self.missing = dict(missing)

    def execute(self, test, litConfig):
        result = super().execute(test, litConfig)
        if result.code != lit.Test.UNSUPPORTED:
            return result
        features = test.getMissingRequiredFeatures()
        why = [self.missing.get(f, f"feature '{f}' is not available")
               for f in features] or [result.output]
        return lit.Test.Result(
            lit.Test.FAIL,
            "cannot run, so it fails instead of being skipped:\n  "
            + "\n  ".join(why) + "\n")
