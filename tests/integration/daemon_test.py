"""The daemon as an operator meets it: --help, one-line config errors,
secrets never logged, SIGTERM/SIGINT with calls in flight."""
import collections
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

import grpc

import harness

COMMSGATE = os.path.join(harness.BIN_DIR, "commsgate")


def run(env, args=(), timeout=10):
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for k in ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            full[k] = os.environ[k]
    full.update(env)
    return subprocess.run([COMMSGATE] + list(args), env=full, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


GOOD = {"TWILIO_ACCOUNT_SID": harness.SIM_ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "t",
        "REDIS_URL": "redis://127.0.0.1:1/0", "COMMSGATE_GRPC_ADDR": "127.0.0.1:1",
        # Free ports, not the defaults: other tests run beside this one.
        "COMMSGATE_HTTP_ADDR": "127.0.0.1:%d" % harness.free_port(),
        "COMMSGATE_ADMIN_ADDR": "127.0.0.1:%d" % harness.free_port()}


class ConfigTest(unittest.TestCase):
    def test_help_lists_every_setting_with_defaults(self):
        r = run({}, ["--help"])
        self.assertEqual(r.returncode, 0)
        for name in ("COMMSGATE_GRPC_ADDR", "COMMSGATE_HTTP_ADDR", "COMMSGATE_PUBLIC_URL",
                     "REDIS_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                     "TWILIO_API_KEY_SID", "TWILIO_API_KEY_SECRET", "TWILIO_PHONE_NUMBER",
                     "TWILIO_MESSAGING_SERVICE_SID", "TWILIO_WHATSAPP_NUMBER",
                     "TWILIO_VERIFY_SERVICE_SID", "TWILIO_API_BASE_URL",
                     "TWILIO_VERIFY_BASE_URL"):
            self.assertIn(name, r.stdout)
        for default in ("0.0.0.0:50051", "0.0.0.0:8080", "redis://127.0.0.1:6379/0",
                        "https://api.twilio.com", "https://verify.twilio.com"):
            self.assertIn(default, r.stdout)

    def test_unknown_argument(self):
        r = run({}, ["--frobnicate"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("--frobnicate", r.stderr)

    def assert_one_line_naming(self, env, name):
        r = run(env)
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        line = json.loads(lines[0])
        self.assertEqual(line["level"], "error")
        self.assertEqual(line["event"], "config_invalid")
        self.assertIn(name, line["msg"])
        return line["msg"]

    def test_missing_account_sid(self):
        env = dict(GOOD)
        del env["TWILIO_ACCOUNT_SID"]
        self.assert_one_line_naming(env, "TWILIO_ACCOUNT_SID")

    def test_empty_required_a_missing_file_and_both_forms_are_refused(self):
        env = dict(GOOD)
        env["TWILIO_ACCOUNT_SID"] = ""
        self.assertIn("empty", self.assert_one_line_naming(env, "TWILIO_ACCOUNT_SID"))
        env = dict(GOOD)
        del env["TWILIO_AUTH_TOKEN"]
        env["TWILIO_AUTH_TOKEN_FILE"] = "/nonexistent/token"
        self.assertIn("/nonexistent/token",
                      self.assert_one_line_naming(env, "TWILIO_AUTH_TOKEN_FILE"))
        with tempfile.NamedTemporaryFile("w") as f:
            f.write("from-the-file\n")
            f.flush()
            env = dict(GOOD, TWILIO_AUTH_TOKEN="from-the-variable")
            env["TWILIO_AUTH_TOKEN_FILE"] = f.name
            msg = self.assert_one_line_naming(env, "TWILIO_AUTH_TOKEN_FILE")
            self.assertIn("both", msg)
            self.assertNotIn("from-the-file", msg)
            self.assertNotIn("from-the-variable", msg)

    def test_grpc_cores_own_lines_are_json_too(self):
        # A busy gRPC port makes gRPC core log its own error: in the JSON
        # log like every other line, not in gRPC's text format.
        import socket
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        try:
            env = dict(GOOD, COMMSGATE_GRPC_ADDR="127.0.0.1:%d" % busy.getsockname()[1])
            r = run(env)
        finally:
            busy.close()
        self.assertNotEqual(r.returncode, 0)
        lines = [json.loads(l) for l in r.stderr.strip().splitlines()]  # each parses
        core = [l for l in lines if l["event"] == "grpc_core"]
        self.assertTrue(core, r.stderr)
        self.assertEqual(core[0]["level"], "error")
        self.assertIn("Address already in use", core[0]["msg"])
        self.assertIn("grpc_listen_failed", [l["event"] for l in lines])

    def test_malformed_settings(self):
        for name, value in (("REDIS_URL", "localhost:6379"),
                            ("COMMSGATE_GRPC_ADDR", "nope"),
                            ("TWILIO_API_BASE_URL", "api.twilio.com"),
                            ("TWILIO_PHONE_NUMBER", "555-1234"),
                            ("COMMSGATE_GRPC_THREADS", "many")):
            env = dict(GOOD)
            env[name] = value
            self.assert_one_line_naming(env, name)

    def test_secret_not_echoed_in_config_error(self):
        env = dict(GOOD)
        env["REDIS_URL"] = "redis://:Sup3rSecretPw@host:notaport/0"
        msg = self.assert_one_line_naming(env, "REDIS_URL")
        self.assertNotIn("Sup3rSecretPw", msg)

    def test_a_token_pasted_into_a_sid_setting_is_not_echoed(self):
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_API_KEY_SID", "TWILIO_VERIFY_SERVICE_SID"):
            env = dict(GOOD)
            env[name] = "SENTINEL-tok-4f9a"
            if name == "TWILIO_API_KEY_SID":
                env["TWILIO_API_KEY_SECRET"] = "s"
            msg = self.assert_one_line_naming(env, name)
            self.assertNotIn("SENTINEL", msg)

    def test_ca_file_without_a_certificate_stops_startup(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
            f.write("not a certificate\n")
            f.flush()
            env = dict(GOOD)
            env["COMMSGATE_TWILIO_CA_FILE"] = f.name
            r = run(env)
        self.assertNotEqual(r.returncode, 0)
        events = [json.loads(l) for l in r.stderr.strip().splitlines() if l.startswith("{")]
        bad = [e for e in events if e["event"] == "tls_cas_unreadable"]
        self.assertEqual(len(bad), 1, r.stderr)
        self.assertIn(f.name, bad[0]["msg"])

    def test_port_in_use_is_one_clear_line(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        env = dict(GOOD)
        env["COMMSGATE_GRPC_ADDR"] = "127.0.0.1:%d" % s.getsockname()[1]
        r = run(env)
        s.close()
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("COMMSGATE_GRPC_ADDR", r.stderr)


class RunningDaemonTest(unittest.TestCase):
    TOKEN = "tok-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    REDIS_PW = "redis-pw-5ae1c0ffee"

    def test_secrets_from_files_and_never_logged(self):
        port = harness.free_port()
        redis = harness.Proc("redis", ["redis-server", "--port", str(port), "--bind",
                                       "127.0.0.1", "--dir", harness.redis_dir(),
                                       "--save", "", "--requirepass",
                                       self.REDIS_PW], port=port)
        grpc_port = harness.free_port()
        env = harness.daemon_env(port, "http://127.0.0.1:1", grpc_port, harness.free_port(),
                                 {"COMMSGATE_LOG_LEVEL": "debug"})
        with tempfile.TemporaryDirectory() as d:
            # The secrets come only from *_FILE twins.
            del env["REDIS_URL"], env["TWILIO_AUTH_TOKEN"]
            env["TWILIO_AUTH_TOKEN_FILE"] = os.path.join(d, "token")
            env["REDIS_URL_FILE"] = os.path.join(d, "redis_url")
            with open(env["TWILIO_AUTH_TOKEN_FILE"], "w") as f:
                f.write(self.TOKEN + "\n")
            with open(env["REDIS_URL_FILE"], "w") as f:
                f.write("redis://:%s@127.0.0.1:%d/0\n" % (self.REDIS_PW, port))
            full = {k: v for k, v in os.environ.items()
                    if k not in ("REDIS_URL", "TWILIO_AUTH_TOKEN")}
            full.update(env)
            p = subprocess.Popen([COMMSGATE], env=full, stderr=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
            try:
                harness.wait_port(grpc_port, proc=p)
                ch = grpc.insecure_channel("127.0.0.1:%d" % grpc_port)
                stubs = harness.Stubs(ch)
                H = stubs.health_pb2
                deadline = time.monotonic() + 5
                while stubs.Check(H.HealthCheckRequest(), timeout=1).status != \
                        H.HealthCheckResponse.SERVING:
                    self.assertLess(time.monotonic(), deadline, "never SERVING with file secrets")
                    time.sleep(0.05)
                for _ in range(5):
                    with self.assertRaises(grpc.RpcError):  # Twilio is unreachable here
                        stubs.SendSMS(stubs.messaging_pb2.SendSMSRequest(
                            to="+14155550100", body="x"), timeout=2)
                ch.close()
            finally:
                p.send_signal(signal.SIGTERM)
                _, err = p.communicate(timeout=10)
                redis.stop()
        self.assertEqual(p.returncode, 0, err)
        self.assertIn('"event":"redis_up"', err)
        for line in err.strip().splitlines():
            obj = json.loads(line)  # every line is one JSON object
            for key in ("time", "level", "event"):
                self.assertIn(key, obj)
        self.assertNotIn(self.TOKEN, err)
        self.assertNotIn(self.REDIS_PW, err)

    def test_sigterm_with_calls_in_flight(self):
        stack = harness.Stack(env={"COMMSGATE_SHUTDOWN_GRACE_MS": "500"})
        try:
            stack.wait_serving(stack.stubs.health_pb2.HealthCheckResponse.SERVING)
            # A hung Redis holds every call on the loop thread.
            stack.redis.signal(signal.SIGSTOP)
            msg = stack.stubs.messaging_pb2
            futures = [stack.stubs.SendSMS.future(
                msg.SendSMSRequest(to="+14155550100", body="hello"), timeout=30)
                for _ in range(200)]
            time.sleep(0.2)
            t0 = time.monotonic()
            stack.daemon.signal(signal.SIGTERM)
            codes = collections.Counter(f.exception().code() for f in futures)
            rc = stack.daemon.wait(10)
            took = time.monotonic() - t0
        finally:
            stack.redis.signal(signal.SIGCONT)
            stack.close()
        # Every call got a status (none hung to its 30 s deadline), and the
        # daemon exited 0 well within grace + a margin.
        self.assertEqual(sum(codes.values()), 200)
        self.assertTrue(set(codes) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED},
                        codes)
        self.assertEqual(rc, 0, stack.daemon.output())
        self.assertLess(took, 5.0)
        self.assertIn('"event":"stopped"', stack.daemon.output())

    def test_sigterm_with_requests_at_twilio(self):
        self.sigterm_with_requests_at_twilio(tls=False)

    def test_sigterm_with_requests_at_twilio_over_https(self):
        """The same over HTTPS: a call whose TLS handshake is still going
        when the grace ends sent nothing, and is told so."""
        self.sigterm_with_requests_at_twilio(tls=True)

    def sigterm_with_requests_at_twilio(self, tls):
        """Calls whose request is at Twilio when the grace ends are told the
        outcome is unknown, never gRPC's CANCELLED; calls still waiting for
        their rate slot are told nothing was sent. The simulator counts which
        is which."""
        stack = harness.Stack(env={"COMMSGATE_SHUTDOWN_GRACE_MS": "500"}, tls=tls)
        try:
            stack.wait_serving(stack.stubs.health_pb2.HealthCheckResponse.SERVING)
            sim = harness.Sim(stack.sim.url)
            sim.fault(path_suffix="Messages.json", latency_ms=3000, times=0)
            msg = stack.stubs.messaging_pb2
            # 80 segments/s: some reach Twilio, the rest wait for their slot.
            futures = [stack.stubs.SendSMS.future(
                msg.SendSMSRequest(to="+1415555%04d" % i, body="hello"), timeout=30)
                for i in range(200)]
            time.sleep(0.3)
            stack.daemon.signal(signal.SIGTERM)
            codes = [f.exception().code() if f.exception() else grpc.StatusCode.OK
                     for f in futures]
            rc = stack.daemon.wait(10)
            acted = {sim.params(r)["To"] for r in sim.requests("Messages.json")
                     if 200 <= r["status"] < 300}
        finally:
            stack.close()
        self.assertEqual(rc, 0, stack.daemon.output())
        self.assertGreater(len(acted), 0)
        # Per call: the simulator acted on it exactly when its caller was told
        # "outcome unknown"; every other call was told nothing was sent (or,
        # on a machine slow enough that its Redis reply missed the last word,
        # was cancelled before anything was sent).
        for i, code in enumerate(codes):
            to = "+1415555%04d" % i
            if to in acted:
                self.assertEqual(code, grpc.StatusCode.UNKNOWN, to)
            else:
                self.assertIn(code, (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), to)
        self.assertGreater(codes.count(grpc.StatusCode.UNAVAILABLE), 0)

    def test_sigint_exits_zero(self):
        stack = harness.Stack(with_sim=False)
        stack.wait_serving(stack.stubs.health_pb2.HealthCheckResponse.SERVING)
        stack.daemon.signal(signal.SIGINT)
        rc = stack.daemon.wait(10)
        stack.close()
        self.assertEqual(rc, 0, stack.daemon.output())
        self.assertIn('"signal":"SIGINT"', stack.daemon.output())


class LogHygieneTest(unittest.TestCase):
    """Nothing a caller or Twilio put in a request comes back out in a log
    line or a caller-facing error: not a value that failed validation, not
    Twilio's own error text (it can echo what it was sent), and numbers
    only masked."""
    SENTINEL = "SENTINEL-tok-4f9a"

    def test_sentinel_never_logged_or_echoed(self):
        stack = harness.Stack(env={"COMMSGATE_LOG_LEVEL": "debug"})
        try:
            stack.wait_serving(stack.stubs.health_pb2.HealthCheckResponse.SERVING)
            m, s = stack.stubs.messaging_pb2, stack.stubs
            sim = harness.Sim(stack.sim.url)
            details = []

            def fails(call, req):
                with self.assertRaises(grpc.RpcError) as cm:
                    call(req, timeout=10)
                details.append(cm.exception.details())
                return cm.exception

            fails(s.SendSMS, m.SendSMSRequest(to=self.SENTINEL, body="x"))
            fails(s.PlaceCall, m.PlaceCallRequest(to="+1" + self.SENTINEL, url="https://a.example/t"))
            # Twilio refusing with a code commsgate's table does not know,
            # and with one it knows, each text echoing the sentinel and a number.
            for code in (21999, 21211):
                sim.fault(path_suffix="Messages.json", status=400, code=code,
                          message="The 'To' number +14155550177 %s is not valid" % self.SENTINEL)
                e = fails(s.SendSMS, m.SendSMSRequest(to="+14155550177", body="x"))
                self.assertEqual(harness.trailer(e, "twilio-error-code"), str(code))
            self.assertIn("https://www.twilio.com/docs/errors/21999", details[2])
            # A refusal naming its recipient masks it.
            fails(s.SendSMS, m.SendSMSRequest(to="+15005550004", body="x"))  # 21610
            e = fails(s.SendSMS, m.SendSMSRequest(to="+15005550004", body="x"))
            self.assertIn("+15*******04", e.details())
        finally:
            stack.close()
        out = stack.daemon.output()
        for text in details + [out]:
            self.assertNotIn(self.SENTINEL, text)
            self.assertNotIn("+14155550177", text)
            self.assertNotIn("+15005550004", text)


class LoopsTest(unittest.TestCase):
    def test_default_is_one_loop_per_cpu_at_most_four(self):
        want = min(len(os.sched_getaffinity(0)), 4)
        stack = harness.Stack(with_sim=False)
        try:
            stack.wait_serving(stack.stubs.health_pb2.HealthCheckResponse.SERVING)
            ready = [json.loads(l) for l in stack.daemon.output().splitlines()
                     if '"event":"ready"' in l]
            self.assertEqual(ready[0]["loops"], want, ready)
            names = [n for n in harness.thread_names(stack.daemon.pid)
                     if n.startswith("cg-loop")]
            self.assertEqual(len(names), want, names)
        finally:
            stack.close()

    def test_one_cpu_means_one_loop(self):
        # taskset-like: the daemon inherits this affinity.
        cpu = sorted(os.sched_getaffinity(0))[0]
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            stack = harness.Stack(with_sim=False)
        finally:
            os.sched_setaffinity(0, old)
        try:
            stack.wait_serving(stack.stubs.health_pb2.HealthCheckResponse.SERVING)
            self.assertIn('"loops":1', stack.daemon.output())
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
