"""The clients against a running stack: every commsctl command and its exit
codes, the Python and Node examples, and libcommsgate installed by
`cmake --install` and found with pkg-config."""
import json
import os
import subprocess
import tempfile
import unittest

import harness

COMMSCTL = os.path.join(harness.BIN_DIR, "commsctl")
EXAMPLES = os.path.join(harness.SRC_DIR, "clients")


class ClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack(env={"TWILIO_WHATSAPP_NUMBER": "+14155238886",
                                       "COMMSGATE_VERIFY_COOLDOWN_SECONDS": "0"})
        cls.addClassCleanup(cls.close)
        cls.stack.wait_serving(1)
        cls.sim = harness.Sim(cls.stack.sim.url)

    @classmethod
    def close(cls):
        assert cls.stack.close() == 0, cls.stack.daemon.output()

    def ctl(self, *args, addr=None):
        argv = [COMMSCTL, "--addr", addr or self.stack.daemon.grpc_target, "--timeout", "5"]
        r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr

    def ctl_json(self, *args):
        rc, out, err = self.ctl("--json", *args)
        return rc, json.loads(out) if out.strip() else None

    def test_health(self):
        rc, out, _ = self.ctl("health")
        self.assertEqual((rc, out.strip()), (0, "status: SERVING"))
        rc, _, err = self.ctl("health", addr="127.0.0.1:1")
        self.assertEqual(rc, 4, err)

    def test_sms(self):
        rc, j = self.ctl_json("sms", "send", "--to", "+14155550100", "--body", "hi")
        self.assertEqual(rc, 0)
        self.assertRegex(j["sid"], r"^SM[0-9a-f]{32}$")
        self.assertEqual((j["segments"], j["encoding"]), (1, "GSM7"))
        rc, _, err = self.ctl("sms", "send", "--to", "4155550100", "--body", "hi")
        self.assertEqual(rc, 2, err)
        self.assertIn("INVALID_ARGUMENT", err)
        rc, _, _ = self.ctl("sms", "send", "--to", "+14155550100")  # no --body
        self.assertEqual(rc, 2)
        rc, j = self.ctl_json("sms", "send", "--to", "+15005550004", "--body", "x")
        self.assertEqual((rc, j["error"], j["twilio_error_code"], j["reason"]),
                         (3, "FAILED_PRECONDITION", 21610, "OPTED_OUT"))
        # message get on what was sent
        sid = self.ctl_json("sms", "send", "--to", "+14155550101", "--body", "track")[1]["sid"]
        rc, j = self.ctl_json("message", "get", sid)
        self.assertEqual(rc, 0)
        self.assertIn(j["status"], ("queued", "sent", "delivered"))
        rc, _, _ = self.ctl("message", "get", "SM" + "0" * 32)
        self.assertEqual(rc, 3)

    def test_outcome_unknown_exit_code(self):
        """A cut connection after the request left: exit 5, and the JSON says
        OUTCOME_UNKNOWN, so a script does not resend blindly."""
        harness.Sim(self.stack.sim.url).fault(path_suffix="Messages.json", drop=True)
        rc, j = self.ctl_json("sms", "send", "--to", "+14155550102", "--body", "maybe")
        self.assertEqual((rc, j["error"], j["reason"]), (5, "UNKNOWN", "OUTCOME_UNKNOWN"))

    def test_whatsapp_and_call(self):
        rc, j = self.ctl_json("whatsapp", "send", "--to", "+14155550150", "--body", "hi")
        self.assertEqual((rc, j["reason"]), (3, "WHATSAPP_WINDOW_CLOSED"))
        rc, j = self.ctl_json("whatsapp", "send", "--to", "+14155550150", "--content-sid",
                              "HX" + "0" * 32, "--var", "1=Ada")
        self.assertEqual((rc, j["template"]), (0, True))
        sent = [r for r in self.sim.requests("Messages.json")
                if dict(r["params"]).get("ContentSid")]
        self.assertEqual(dict(sent[-1]["params"])["ContentVariables"], '{"1":"Ada"}')
        rc, j = self.ctl_json("call", "--to", "+14155550160", "--say", "hello", "--voice", "alice")
        self.assertEqual(rc, 0)
        self.assertRegex(j["sid"], r"^CA")
        rc, _, _ = self.ctl("call", "--to", "+14155550160")  # no instructions
        self.assertEqual(rc, 2)

    def test_verify(self):
        rc, j = self.ctl_json("verify", "start", "--to", "+14155550170", "--channel", "sms")
        self.assertEqual((rc, j["status"], j["channel"]), (0, "pending", "sms"))
        code = [v for v in self.sim.verifications() if v["to"] == "+14155550170"][0]["code"]
        wrong = "000000" if code != "000000" else "111111"
        rc, j = self.ctl_json("verify", "check", "--to", "+14155550170", "--code", wrong)
        self.assertEqual((rc, j["valid"]), (0, False))  # a wrong code is an answer
        rc, j = self.ctl_json("verify", "check", "--to", "+14155550170", "--code", code)
        self.assertEqual((rc, j["valid"], j["status"]), (0, True, "approved"))
        rc, j = self.ctl_json("verify", "check", "--to", "+14155550170", "--code", code)
        self.assertEqual((rc, j["error"]), (3, "NOT_FOUND"))

    def test_help_everywhere_and_usage_errors(self):
        for args in (["--help"], ["sms", "send", "--help"], ["whatsapp", "send", "--help"],
                     ["call", "--help"], ["verify", "--help"], ["verify", "start", "--help"],
                     ["verify", "check", "--help"], ["message", "--help"], ["health", "--help"]):
            rc, out, _ = self.ctl(*args)
            self.assertEqual(rc, 0, args)
            self.assertIn("Usage", out, args)
        for args in ([], ["nope"], ["sms"], ["verify", "maybe"], ["--timeout", "x", "health"]):
            self.assertEqual(self.ctl(*args)[0], 2, args)

    def test_python_example(self):
        env = dict(os.environ, COMMSGATE_PY=os.path.join(os.environ.get(
            "COMMSGATE_PY_OUT", os.path.join(harness.BIN_DIR, "..", "py")), "commsgate", "v1"))
        r = subprocess.run(["/usr/bin/python3", os.path.join(EXAMPLES, "python", "send_sms.py"),
                            self.stack.daemon.grpc_target, "+14155550180", "from python"],
                           capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^sent SM[0-9a-f]{32} \(queued, 1 segment\(s\)\)")
        r = subprocess.run(["/usr/bin/python3", os.path.join(EXAMPLES, "python", "send_sms.py"),
                            self.stack.daemon.grpc_target, "+15005550001", "x"],
                           capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("Twilio 21211", r.stderr)

    def test_node_example(self):
        r = subprocess.run(["node", os.path.join(EXAMPLES, "node", "send_sms.js"),
                            self.stack.daemon.grpc_target, "+14155550181", "from node"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^sent SM[0-9a-f]{32} \(queued, 1 segment\(s\)\)")

    def test_installed_library_with_pkg_config(self):
        with tempfile.TemporaryDirectory() as prefix:
            env = harness.install_client(prefix)
            flags = subprocess.run(["pkg-config", "--cflags", "--libs", "commsgate"], env=env,
                                   capture_output=True, text=True, check=True).stdout.split()
            src = os.path.join(prefix, "hello.c")
            with open(src, "w") as f:
                f.write('#include <commsgate_client.h>\n#include <stdio.h>\n'
                        'int main(int c, char **v) { struct cgc_client *cl; struct cgc_status st;\n'
                        '  int s; if (cgc_client_new(v[1], &cl)) return 9;\n'
                        '  Commsgate__V1__SendSMSRequest r = COMMSGATE__V1__SEND_SMSREQUEST__INIT;\n'
                        '  Commsgate__V1__SendSMSResponse *resp = NULL;\n'
                        '  r.to = "+14155550190"; r.body = "from libcommsgate";\n'
                        '  cgc_health(cl, 5000, &s, &st);\n'
                        '  cgc_send_sms(cl, &r, 5000, &resp, &st);\n'
                        '  if (resp) { printf("%s %d\\n", resp->sid, s);\n'
                        '    commsgate__v1__send_smsresponse__free_unpacked(resp, NULL); }\n'
                        '  cgc_client_free(&cl); return st.code; }\n')
            exe = os.path.join(prefix, "hello")
            subprocess.run(["cc", src, "-o", exe] + harness.SANITIZE_CFLAGS + flags, check=True)
            # Run as a user would: no LD_LIBRARY_PATH, no ldconfig.
            env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
            r = subprocess.run([exe, self.stack.daemon.grpc_target], capture_output=True,
                               text=True, timeout=30, env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertRegex(r.stdout, r"^SM[0-9a-f]{32} 1$")

    def test_shared_library_exports_its_api_only(self):
        """Only cgc_* and the contract's own messages: the google.rpc and
        grpc.health messages inside would collide with an application's."""
        lib = os.path.normpath(os.path.join(harness.BIN_DIR, "..", "lib", "libcommsgate.so"))
        out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True,
                             text=True, check=True).stdout
        names = [line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()]
        self.assertIn("cgc_send_sms", names)
        self.assertIn("commsgate__v1__send_smsrequest__descriptor", names)
        stray = [n for n in names
                 if not n.startswith(("cgc_", "commsgate__v1__")) and n != "COMMSGATE_0"]
        self.assertEqual(stray, [])


if __name__ == "__main__":
    unittest.main()
