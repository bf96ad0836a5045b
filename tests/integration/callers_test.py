"""The callers file: only the services it names can call, each only its
RPCs, and the identity it gives (not what the client says) scopes
idempotency keys. Recognised by bearer token (plaintext, loopback) and by
client certificate SAN (mutual TLS), from Python grpcio."""
import hashlib
import os
import shutil
import tempfile
import time
import unittest

import grpc

import harness

TOKEN = "tok-" + "7" * 28  # made up for this test; only its hash goes in the file


def write_callers(path, text):
    with open(path, "w") as f:
        f.write(text)


class TokenCallersTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="commsgate-callers-")
        self.file = os.path.join(self.dir, "callers.yaml")
        write_callers(self.file, (
            "callers:\n"
            "  - name: batch\n"
            "    token_sha256: %s\n"
            "    rpcs: [SendSMS, GetMessage]\n") % hashlib.sha256(TOKEN.encode()).hexdigest())
        self.stack = harness.Stack(env={"COMMSGATE_CALLERS_FILE": self.file})
        self.stack.wait_serving(1)  # health needs no identity: probes have none
        self.m, self.s = self.stack.stubs.messaging_pb2, self.stack.stubs
        self.sim = harness.Sim(self.stack.sim.url)

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())
        shutil.rmtree(self.dir, ignore_errors=True)

    def fails(self, call, req, md, code, reason):
        with self.assertRaises(grpc.RpcError) as cm:
            call(req, timeout=5, metadata=md)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        _, info, _ = harness.status_details(cm.exception)
        self.assertEqual(info.reason, reason)
        return cm.exception

    def test_only_the_named_caller_and_its_rpcs(self):
        sms = self.m.SendSMSRequest(to="+14155550100", body="x")
        U, P = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
        self.fails(self.s.SendSMS, sms, (), U, "CALLER_UNKNOWN")
        self.fails(self.s.SendSMS, sms, (("authorization", "Bearer wrong"),), U, "CALLER_UNKNOWN")
        # The hash itself is not the token.
        h = hashlib.sha256(TOKEN.encode()).hexdigest()
        self.fails(self.s.SendSMS, sms, (("authorization", "Bearer " + h),), U, "CALLER_UNKNOWN")
        # Claiming to be someone is not being them.
        self.fails(self.s.SendSMS, sms, (("commsgate-caller", "batch"),), U, "CALLER_UNKNOWN")
        self.assertEqual(self.sim.requests(), [])
        good = (("authorization", "Bearer " + TOKEN),)
        r = self.s.SendSMS(sms, timeout=5, metadata=good)
        self.assertTrue(r.sid.startswith("SM"))
        e = self.fails(self.s.StartVerification, self.m.StartVerificationRequest(
            to="+14155550100"), good, P, "RPC_NOT_ALLOWED")
        self.assertIn("batch may not use StartVerification", e.details())
        self.assertEqual(len(self.sim.requests()), 1)
        import urllib.request
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.stack.daemon.admin_port,
                                      timeout=5).read().decode()
        self.assertIn('commsgate_caller_calls_total{caller="batch",result="accepted"} 1', text)
        self.assertIn('commsgate_caller_calls_total{caller="batch",result="denied"} 1', text)
        self.assertIn("commsgate_caller_unknown_total 4", text)
        # Its log lines name it: a Twilio refusal is logged with the caller.
        self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+15005550001", body="x"), good,
                   grpc.StatusCode.INVALID_ARGUMENT, "TWILIO_ERROR")
        lines = [l for l in self.stack.daemon.output().splitlines() if '"twilio_failed"' in l]
        self.assertTrue(lines and '"caller":"batch"' in lines[-1], lines)

    def test_the_identity_scopes_idempotency_not_the_header(self):
        md = (("authorization", "Bearer " + TOKEN), ("commsgate-caller", "billing"))
        req = self.m.SendSMSRequest(to="+14155550100", body="x", idempotency_key="k-1")
        a = self.s.SendSMS(req, timeout=5, metadata=md)
        keys = harness.redis_cli(self.stack.redis.port, "KEYS", "cg:{key:*").split()
        self.assertEqual(keys, ["cg:{key:batch:k-1}:idem"])
        # The same key from the same caller is a repeat, whatever it claims.
        b = self.s.SendSMS(req, timeout=5, metadata=(("authorization", "Bearer " + TOKEN),))
        self.assertEqual(a.sid, b.sid)
        self.assertEqual(len(self.sim.requests("Messages.json")), 1)


class QuotaTest(unittest.TestCase):
    """Each caller's own quotas, across two replicas on one Redis."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="commsgate-quota-")
        path = os.path.join(self.dir, "callers.yaml")
        h = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
        write_callers(path, (
            "callers:\n"
            "  - {name: batch, token_sha256: %s, rpcs: [\"*\"],\n"
            "     quotas: {messages_per_day: 4, verifications_per_hour: 2}}\n"
            "  - {name: burst, token_sha256: %s, rpcs: [\"*\"],\n"
            "     quotas: {messages_per_second: 2}}\n"
            "  - {name: free, token_sha256: %s, rpcs: [\"*\"]}\n") % (
                h("tok-batch"), h("tok-burst"), h("tok-free")))
        self.redis = harness.start_redis()
        self.sim = harness.start_sim()
        env = {"COMMSGATE_CALLERS_FILE": path, "COMMSGATE_SEND_RATE": "100000",
               "COMMSGATE_VERIFY_COOLDOWN_SECONDS": "0"}
        self.daemons = [harness.start_daemon(self.redis.port, self.sim.url, extra_env=env)
                        for _ in range(2)]
        self.channels = [grpc.insecure_channel(d.grpc_target) for d in self.daemons]
        self.stubs = [harness.Stubs(c) for c in self.channels]
        self.m = self.stubs[0].messaging_pb2
        time.sleep(0.3)

    def tearDown(self):
        for c in self.channels:
            c.close()
        rcs = [d.stop() for d in self.daemons]
        self.sim.stop()
        self.redis.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        self.assertEqual(rcs, [0, 0])

    def call(self, i, method, req, token):
        try:
            return getattr(self.stubs[i % 2], method)(
                req, timeout=5, metadata=(("authorization", "Bearer " + token),)), None
        except grpc.RpcError as e:
            return None, e

    def test_messages_per_day_across_replicas_and_refusals_give_back(self):
        # Twilio refusing (21211) sent nothing: it spends no quota.
        _, e = self.call(0, "SendSMS", self.m.SendSMSRequest(to="+15005550001", body="x"),
                         "tok-batch")
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
        got = [self.call(i, "SendSMS", self.m.SendSMSRequest(to="+1415555%04d" % i, body="x"),
                         "tok-batch") for i in range(6)]
        ok = [r for r, e in got if r]
        refused = [e for r, e in got if e]
        self.assertEqual(len(ok), 4)
        self.assertEqual(len(refused), 2)
        for e in refused:
            self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            _, info, retry = harness.status_details(e)
            self.assertEqual(info.reason, "CALLER_QUOTA_EXHAUSTED")
            self.assertIn("messages_per_day", e.details())
            self.assertGreater(retry.retry_delay.seconds, 3600)
        self.assertEqual(len(harness.Sim(self.sim.url).requests("Messages.json")), 5)
        # Another caller has its own quotas; verifications are counted apart.
        r, e = self.call(0, "SendSMS", self.m.SendSMSRequest(to="+14155550100", body="x"),
                         "tok-free")
        self.assertIsNone(e)
        vs = [self.call(i, "StartVerification", self.m.StartVerificationRequest(
            to="+1415666%04d" % i), "tok-batch") for i in range(3)]
        self.assertEqual([e is None for _, e in vs], [True, True, False])
        _, info, _ = harness.status_details(vs[2][1])
        self.assertEqual(info.reason, "CALLER_QUOTA_EXHAUSTED")
        # Every quota key expires.
        for k in harness.redis_cli(self.redis.port, "KEYS", "cg:{caller:*").split():
            self.assertGreater(int(harness.redis_cli(self.redis.port, "PTTL", k)), 0, k)

    def test_messages_per_second(self):
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            got = list(pool.map(lambda i: self.call(i, "SendSMS", self.m.SendSMSRequest(
                to="+1415777%04d" % i, body="x"), "tok-burst"), range(3)))
        errors = [e for _, e in got if e]
        self.assertEqual(len(errors), 1, [e.details() for e in errors])
        _, _, retry = harness.status_details(errors[0])
        self.assertLessEqual(retry.retry_delay.seconds, 1)
        time.sleep(1.1)
        r, e = self.call(0, "SendSMS", self.m.SendSMSRequest(to="+14157770009", body="x"),
                         "tok-burst")
        self.assertIsNone(e)


class CertificateCallersTest(unittest.TestCase):
    def test_client_certificate_san_names_the_caller(self):
        ca = harness.TestCA()
        try:
            billing = ca.issue("billing", "billing", san="DNS:billing.internal", client=True)
            other = ca.issue("other", "other", san="DNS:other.internal", client=True)
            path = os.path.join(ca.dir, "callers.yaml")
            write_callers(path, "callers:\n"
                                "  - {name: billing, client_cert_san: billing.internal,"
                                " rpcs: [\"*\"]}\n")
            read = lambda p: open(p, "rb").read()
            creds = lambda cert: grpc.ssl_channel_credentials(
                root_certificates=read(ca.ca_file), private_key=read(cert[1]),
                certificate_chain=read(cert[0]))
            stack = harness.Stack(env={"COMMSGATE_CALLERS_FILE": path,
                                       "COMMSGATE_GRPC_TLS_CERT_FILE": ca.cert_file,
                                       "COMMSGATE_GRPC_TLS_KEY_FILE": ca.key_file,
                                       "COMMSGATE_GRPC_TLS_CLIENT_CA_FILE": ca.ca_file},
                                  channel_creds=creds(billing))
            try:
                stack.wait_serving(1)
                m = stack.stubs.messaging_pb2
                r = stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="x"), timeout=5)
                self.assertTrue(r.sid.startswith("SM"))
                # Signed by the same CA but not named in the file.
                with grpc.secure_channel(stack.daemon.grpc_target, creds(other)) as ch:
                    with self.assertRaises(grpc.RpcError) as cm:
                        harness.Stubs(ch).SendSMS(m.SendSMSRequest(to="+14155550100", body="x"),
                                                  timeout=5)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
            finally:
                self.assertEqual(stack.close(), 0, stack.daemon.output())
        finally:
            ca.remove()

    def test_the_shipped_callers_files_are_valid(self):
        import yaml
        deploy = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy")
        with open(os.path.join(deploy, "k8s", "gateway.yaml")) as f:
            maps = [d for d in yaml.safe_load_all(f)
                    if d and d["kind"] == "ConfigMap" and "callers.yaml" in d.get("data", {})]
        self.assertEqual(len(maps), 1)
        d = tempfile.mkdtemp()
        gateway = os.path.join(d, "callers.yaml")
        write_callers(gateway, maps[0]["data"]["callers.yaml"])
        try:
            for path in (os.path.join(deploy, "callers.example.yaml"), gateway):
                stack = harness.Stack(env={"COMMSGATE_CALLERS_FILE": path}, with_sim=False)
                try:
                    stack.wait_serving(1)
                    m = stack.stubs.messaging_pb2
                    with self.assertRaises(grpc.RpcError) as cm:
                        stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="x"),
                                            timeout=5)
                    self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
                finally:
                    self.assertEqual(stack.close(), 0, stack.daemon.output())
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_a_bad_callers_file_stops_startup(self):
        d = tempfile.mkdtemp()
        try:
            path = os.path.join(d, "callers.yaml")
            write_callers(path, "callers:\n  - {name: a, client_cert_san: x, rpcs: [SendFax]}\n")
            env = harness.daemon_env(1, "http://127.0.0.1:1", harness.free_port(),
                                     harness.free_port(), {"COMMSGATE_CALLERS_FILE": path})
            import subprocess
            r = subprocess.run([os.path.join(harness.BIN_DIR, "commsgate")], env=env,
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(r.returncode, 2)
            self.assertIn("unknown RPC SendFax", r.stderr)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
