"""The README, executed: every code block it tells a user to run is run here,
taken from README.md itself, against the stack `make run` starts
(scripts/run.sh: its own Redis, the simulator, commsgate), so the two cannot
drift. So are the steps in clients/python/send_sms.py's docstring.

A block is run (sh, python, c; plain and `text` ones are not code) unless
the line before it says why not:
    <!-- readme_test: skip: REASON -->
Other markers: `file: NAME` saves the block (C, say) as NAME in a scratch
directory, and `cwd: files` runs an sh block there (to build that file).

Python blocks run in order in one namespace, as a reader pastes them into
one interpreter; a `print(...)  # EXPECTED` line must print EXPECTED (up
to a `;`; commas are separators, `...` matches anything). sh blocks run
with bash -e and must exit 0.

What differs from a reader's terminal, and only this: the address
127.0.0.1:50051 becomes this stack's (and COMMSGATE_TARGET says it, for
commsctl's default), `build/` is this test's build directory, `.run/`
this stack's state directory, `commsctl` is the one `cmake --install` put
on PATH, and `cc` gets the sanitizers the library was built with."""
import contextlib
import fnmatch
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness

ROOT = harness.SRC_DIR
BUILD = os.path.normpath(os.path.join(harness.BIN_DIR, ".."))
MARKER = re.compile(r"^<!-- readme_test: (skip|file|cwd): (.+?) -->$")
PRINT = re.compile(r"^(\s*)print\((.*)\)\s+#\s*(.+)$")


def blocks(path):
    """(line, language, marker, value, text) for every fenced block."""
    with open(path) as f:
        lines = f.read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i + 1, m.group(1)
        j = i + 1
        while not lines[j].startswith("```"):
            j += 1
        mark = MARKER.match(lines[i - 1]) if i else None
        out.append((start, lang, mark.group(1) if mark else None,
                    mark.group(2) if mark else None, "\n".join(lines[i + 1:j]) + "\n"))
        i = j + 1
    return out


def expected_tokens(comment):
    return comment.split(";")[0].replace(",", " ").split()


def matches(want, got):
    return len(want) == len(got) and all(
        fnmatch.fnmatchcase(g, w.replace("...", "*")) for w, g in zip(want, got))


class ReadmeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="commsgate-readme-")
        cls.files = os.path.join(cls.dir, "files")
        cls.state = os.path.join(cls.dir, "run")
        os.makedirs(cls.files)
        cls.env = harness.install_client(os.path.join(cls.dir, "prefix"))
        for k in list(cls.env):
            if k.startswith(("TWILIO_", "REDIS_", "COMMSGATE_")):
                del cls.env[k]  # as a fresh terminal: make run picks the simulator
        cls.grpc = "127.0.0.1:%d" % harness.free_port()
        cls.env.update(COMMSGATE_GRPC_ADDR=cls.grpc,
                       COMMSGATE_HTTP_ADDR="127.0.0.1:%d" % harness.free_port(),
                       COMMSGATE_ADMIN_ADDR="127.0.0.1:%d" % harness.free_port(),
                       COMMSGATE_RUN_DIR=cls.state, COMMSGATE_TARGET=cls.grpc)
        cls.stack_log = open(os.path.join(cls.dir, "run.log"), "w+")
        cls.stack_proc = subprocess.Popen(["sh", os.path.join(ROOT, "scripts/run.sh"), BUILD],
                                   cwd=ROOT, env=cls.env, stdout=cls.stack_log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while '"event":"serving"' not in cls.log():
            if cls.stack_proc.poll() is not None or time.monotonic() > deadline:
                cls.stop_run()
                raise RuntimeError("make run's stack did not start:\n" + cls.log())
            time.sleep(0.05)

    @classmethod
    def log(cls):
        cls.stack_log.seek(0)
        return cls.stack_log.read()

    @classmethod
    def stop_run(cls):
        if cls.stack_proc.poll() is None:
            os.killpg(cls.stack_proc.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
            try:
                cls.stack_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(cls.stack_proc.pid, signal.SIGKILL)
                cls.stack_proc.wait()

    @classmethod
    def tearDownClass(cls):
        cls.stop_run()
        cls.stack_log.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def local(self, text):
        text = text.replace("127.0.0.1:50051", self.grpc)
        text = re.sub(r"(?<![\w./-])build/", BUILD + "/", text)
        text = re.sub(r"(?<![\w./-])\.run/", self.state + "/", text)
        if harness.SANITIZE_CFLAGS:
            text = re.sub(r"(?m)^cc ", "cc %s " % " ".join(harness.SANITIZE_CFLAGS), text)
        return text

    def sh(self, where, text, cwd=ROOT):
        r = subprocess.run(["bash", "-e", "-c", self.local(text)], cwd=cwd, env=self.env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, "%s failed:\n%s\n%s\n%s" % (
            where, text, r.stdout[-2000:], r.stderr[-2000:]))
        return r.stdout

    def python(self, where, text, namespace):
        checks, lines = [], []
        for line in self.local(text).split("\n"):
            m = PRINT.match(line)
            if m:
                checks.append(expected_tokens(m.group(3)))
                line = "%s__readme_print(%d, %s)" % (m.group(1), len(checks) - 1, m.group(2))
            lines.append(line)
        printed = {}

        def readme_print(i, *args):
            printed[i] = " ".join(str(a) for a in args).split()
        namespace["__readme_print"] = readme_print
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile("\n".join(lines), where, "exec"), namespace)
        for i, want in enumerate(checks):
            self.assertIn(i, printed, "%s: a print with an expected output never ran" % where)
            self.assertTrue(matches(want, printed[i]),
                            "%s: printed %r, the README says %r; make run's log ends:\n%s" % (
                                where, " ".join(printed[i]), " ".join(want),
                                "\n".join(self.log().splitlines()[-15:])))

    def test_every_block_runs(self):
        ran = 0
        namespace = {}
        found = blocks(os.path.join(ROOT, "README.md"))
        # Every fence opens or closes a block found: none lost to a typo.
        with open(os.path.join(ROOT, "README.md")) as f:
            fences = sum(1 for line in f if line.startswith("```"))
        self.assertEqual(fences, 2 * len(found))
        for line, lang, mark, value, text in found:
            where = "README.md:%d" % line
            if lang not in ("sh", "python", "c"):
                self.assertIn(lang, ("", "text", "yaml"), "%s: a %s block readme_test cannot run"
                              % (where, lang))
                continue  # a diagram, a form to fill in, a manifest's lines
            if mark == "skip":
                self.assertTrue(len(value) > 20, "%s: say why it is not run" % where)
                continue
            if mark == "file":
                with open(os.path.join(self.files, value), "w") as f:
                    f.write(self.local(text))
                continue
            self.assertIn(lang, ("sh", "python"), "%s: a %s block needs a file: marker" % (
                where, lang))
            with self.subTest(block=where):
                if lang == "sh":
                    self.sh(where, text, cwd=self.files if (mark, value) == ("cwd", "files")
                            else ROOT)
                else:
                    self.python(where, text, namespace)
            ran += 1
        self.assertGreater(ran, 0)

    def test_the_python_example_steps(self):
        with open(os.path.join(ROOT, "clients/python/send_sms.py")) as f:
            doc = f.read().split('"""')[1]
        steps = [line[4:] for line in doc.split("\n") if line.startswith("    ")]
        self.assertGreaterEqual(len(steps), 4)
        self.env["COMMSGATE_PY"] = os.path.join(BUILD, "py", "commsgate", "v1")  # build/ default
        try:
            out = self.sh("send_sms.py's first step", steps[0])
        finally:
            del self.env["COMMSGATE_PY"]
        self.assertRegex(out, r"SM[0-9a-f]{32}")
        out = self.sh("send_sms.py's other steps", "\n".join(steps[1:]))
        self.assertRegex(out, r"SM[0-9a-f]{32}")

    def test_z_ctrl_c_stops_everything_it_started(self):
        # Last (by name): the README says Ctrl-C stops all three.
        with open(os.path.join(self.state, "redis.url")) as f:
            redis_port = int(f.read().split(":")[2].split("/")[0])
        sim_port = int(re.search(r"simulator on 127\.0\.0\.1:(\d+)", self.log()).group(1))
        grpc_port = int(self.grpc.split(":")[1])
        self.stop_run()
        self.assertEqual(self.stack_proc.returncode, 130, self.log())
        for port in (redis_port, sim_port, grpc_port):
            with self.assertRaises(OSError, msg="port %d still open" % port):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
        self.assertIn("make run: stopped", self.log())


if __name__ == "__main__":
    unittest.main()
