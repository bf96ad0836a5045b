"""The callers file: only the services it names can call, each only its
RPCs, and the identity it gives (not what the client says) scopes
idempotency keys. Recognised by bearer token (plaintext, loopback) and by
client certificate SAN (mutual TLS), from Python grpcio."""
import hashlib
import os
import shutil
import tempfile
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

    def test_the_shipped_example_is_valid(self):
        example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                               "callers.example.yaml")
        stack = harness.Stack(env={"COMMSGATE_CALLERS_FILE": example}, with_sim=False)
        try:
            stack.wait_serving(1)
            m = stack.stubs.messaging_pb2
            with self.assertRaises(grpc.RpcError) as cm:
                stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="x"), timeout=5)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        finally:
            self.assertEqual(stack.close(), 0, stack.daemon.output())

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
