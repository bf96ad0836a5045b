"""The benchmark harness, in miniature, so it cannot rot: every scenario
runs with tiny counts and every answer's grpc-status is checked. No timing
is asserted here (machines are noisy); `make bench` measures."""
import os
import subprocess
import unittest

import harness


class BenchSmokeTest(unittest.TestCase):
    def test_every_scenario_runs_without_errors(self):
        r = subprocess.run(["/usr/bin/python3", os.path.join(harness.SRC_DIR, "bench", "run.py"),
                            "--bin", harness.BIN_DIR, "--smoke"],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rows = [l for l in r.stdout.splitlines() if l.startswith("| ") and not l.startswith("| scenario |")]
        self.assertEqual([row.split("|")[1].strip()[0] for row in rows],
                         ["1", "3", "4", "6", "2", "7", "8", "9", "c", "c", "c", "w", "5", "s"])
        for row in rows:
            if row.split("|")[2].strip():  # the idle and crowd rows send no requests
                self.assertEqual(row.split("|")[3].strip(), "0", row)  # errors


if __name__ == "__main__":
    unittest.main()
