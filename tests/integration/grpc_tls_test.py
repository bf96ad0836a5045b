"""TLS and mutual TLS on the gRPC port, with certificates made now by
OpenSSL and Python grpcio as the client: what is refused at the handshake,
what gets through, and a certificate rotated under a running daemon."""
import os
import shutil
import subprocess
import time
import unittest

import grpc

import harness


def read(path):
    with open(path, "rb") as f:
        return f.read()


def replace(src, dst):
    """As Kubernetes rotates a mounted secret: the new file appears whole."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class GrpcTlsTest(unittest.TestCase):
    def setUp(self):
        self.ca, self.other = harness.TestCA(), harness.TestCA()
        self.dir = self.ca.dir
        # The daemon's files, which the rotation test replaces in place.
        self.cert, self.key = os.path.join(self.dir, "grpc.pem"), os.path.join(self.dir, "grpc.key")
        shutil.copyfile(self.ca.cert_file, self.cert)
        shutil.copyfile(self.ca.key_file, self.key)
        self.stack = None

    def tearDown(self):
        if self.stack:
            self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())
        self.ca.remove()
        self.other.remove()

    def start(self, mutual):
        env = {"COMMSGATE_GRPC_TLS_CERT_FILE": self.cert, "COMMSGATE_GRPC_TLS_KEY_FILE": self.key}
        own = self.ca.issue("harness", "harness", client=True) if mutual else (None, None)
        if mutual:
            env["COMMSGATE_GRPC_TLS_CLIENT_CA_FILE"] = self.ca.ca_file
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(self.ca.ca_file),
            private_key=read(own[1]) if own[1] else None,
            certificate_chain=read(own[0]) if own[0] else None)
        self.stack = harness.Stack(env=env, channel_creds=creds)
        self.stack.wait_serving(1)
        return self.stack

    def channel(self, root, cert=None, key=None):
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(root), private_key=read(key) if key else None,
            certificate_chain=read(cert) if cert else None)
        return grpc.secure_channel(self.stack.daemon.grpc_target, creds)

    def send(self, ch, timeout=5):
        stubs = harness.Stubs(ch)
        m = stubs.messaging_pb2
        return stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="x"), timeout=timeout)

    def refused(self, ch):
        with self.assertRaises(grpc.RpcError) as cm:
            self.send(ch, timeout=3)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE, cm.exception.details())

    def test_tls_serves_tls_only(self):
        self.start(mutual=False)
        self.assertIn('"mode":"tls"', self.stack.daemon.output())
        with self.channel(self.ca.ca_file) as ch:
            self.assertTrue(self.send(ch).sid.startswith("SM"))
        with grpc.insecure_channel(self.stack.daemon.grpc_target) as ch:
            self.refused(ch)
        with self.channel(self.other.ca_file) as ch:  # the server is not who it says
            self.refused(ch)
        self.assertEqual(len(harness.Sim(self.stack.sim.url).requests()), 1)

    def test_mutual_tls_refuses_at_the_handshake(self):
        self.start(mutual=True)
        self.assertIn('"mode":"mutual_tls"', self.stack.daemon.output())
        good = self.ca.issue("billing", "billing", san="DNS:billing.internal", client=True)
        stranger = self.other.issue("stranger", "billing", san="DNS:billing.internal",
                                    client=True)
        with self.channel(self.ca.ca_file) as ch:  # no client certificate
            self.refused(ch)
        with self.channel(self.ca.ca_file, *stranger) as ch:  # signed by another CA
            self.refused(ch)
        with self.channel(self.ca.ca_file, *good) as ch:
            self.assertTrue(self.send(ch).sid.startswith("SM"))
        # Nothing refused reached Twilio.
        self.assertEqual(len(harness.Sim(self.stack.sim.url).requests()), 1)

    def test_rotated_certificate_is_picked_up_without_a_restart(self):
        self.start(mutual=False)
        pid = self.stack.daemon.pid
        with self.channel(self.ca.ca_file) as ch:
            self.send(ch)
        # A certificate from another CA replaces the files: new connections
        # must see it, so a client trusting only the old CA is refused and
        # one trusting the new CA gets through, same process.
        cert, key = self.other.issue("rotated", "127.0.0.1", san="IP:127.0.0.1")
        replace(key, self.key)
        replace(cert, self.cert)
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.channel(self.other.ca_file) as ch:
                    self.send(ch, timeout=2)
                break
            except grpc.RpcError:
                self.assertLess(time.monotonic(), deadline, self.stack.daemon.output()[-3000:])
                time.sleep(0.1)
        with self.channel(self.ca.ca_file) as ch:
            self.refused(ch)
        self.assertEqual(self.stack.daemon.pid, pid)
        self.assertIn('"grpc_tls_reloaded"', self.stack.daemon.output())
        # A half-written replacement is refused and the current one kept.
        with open(self.cert + ".new", "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
        os.replace(self.cert + ".new", self.cert)
        time.sleep(0.05)
        with self.channel(self.other.ca_file) as ch:
            self.send(ch)
        self.assertIn('"grpc_tls_reload_failed"', self.stack.daemon.output())


class GrpcTlsConfigTest(unittest.TestCase):
    def run_daemon(self, env):
        full = harness.daemon_env(1, "http://127.0.0.1:1", harness.free_port(), harness.free_port(),
                                  env)
        full["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
        return subprocess.run([os.path.join(harness.BIN_DIR, "commsgate")], env=full,
                              capture_output=True, text=True, timeout=10)

    def test_bad_combinations_stop_startup_with_the_reason(self):
        ca, other = harness.TestCA(), harness.TestCA()
        try:
            cases = [
                ({"COMMSGATE_GRPC_TLS_CERT_FILE": ca.cert_file}, "go together"),
                ({"COMMSGATE_GRPC_TLS_CLIENT_CA_FILE": ca.ca_file}, "needs"),
                ({"COMMSGATE_GRPC_TLS_CERT_FILE": ca.cert_file,
                  "COMMSGATE_GRPC_TLS_KEY_FILE": other.key_file}, "does not match"),
            ]
            for env, why in cases:
                r = self.run_daemon(env)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(why, r.stderr)
        finally:
            ca.remove()
            other.remove()

    def test_plaintext_off_loopback_warns(self):
        redis = harness.start_redis()
        port = harness.free_port()
        env = harness.daemon_env(redis.port, "http://127.0.0.1:1", port, harness.free_port(),
                                 {"COMMSGATE_GRPC_ADDR": "0.0.0.0:%d" % port})
        d = harness.Proc("commsgate", [os.path.join(harness.BIN_DIR, "commsgate")], env=env,
                         port=port)
        try:
            self.assertIn('"grpc_plaintext_exposed"', d.output())
            self.assertIn('"grpc_callers_unchecked"', d.output())
            self.assertIn('"mode":"plaintext"', d.output())
        finally:
            self.assertEqual(d.stop(), 0)
            redis.stop()
        # On loopback (what the tests and a sidecar use): no warning.
        stack = harness.Stack(with_sim=False)
        try:
            stack.wait_serving(1)
            self.assertNotIn('"grpc_plaintext_exposed"', stack.daemon.output())
            self.assertNotIn('"grpc_callers_unchecked"', stack.daemon.output())
        finally:
            stack.close()


if __name__ == "__main__":
    unittest.main()
