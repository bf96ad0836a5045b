"""Runs one integration test module against the ThreadSanitizer build (make
tsan) and fails if the daemon, or anything else it started, reported a race.
TSan writes its reports to files here, not to the daemon's stderr, whose JSON
lines the tests read."""
import glob
import os
import subprocess
import sys
import tempfile

module = sys.argv[1]
supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tsan.supp")
with tempfile.TemporaryDirectory() as d:
    env = dict(os.environ, TSAN_OPTIONS="log_path=%s/tsan halt_on_error=0 suppressions=%s"
               % (d, os.path.normpath(supp)))
    rc = subprocess.call([sys.executable, "-m", "unittest", "-v", module], env=env)
    reports = sorted(glob.glob(os.path.join(d, "tsan.*")))
    for r in reports:
        with open(r) as f:
            sys.stderr.write(f.read())
    if reports:
        sys.stderr.write("ThreadSanitizer reported races (%d report files)\n" % len(reports))
        sys.exit(1)
    sys.exit(rc)
