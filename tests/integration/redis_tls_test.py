"""Redis over TLS through a sidecar, the README's way while Debian 12's
hiredis (0.14) has no TLS: a real redis-server serving TLS only, stunnel
(Debian stunnel4) in client mode on loopback, and commsgate given the
tunnel's plain end. Certificates are made now (OpenSSL)."""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import grpc

import harness


def stunnel_conf(path, accept, connect, ca):
    with open(path, "w") as f:
        f.write("foreground = yes\npid =\n[redis]\nclient = yes\naccept = 127.0.0.1:%d\n"
                "connect = 127.0.0.1:%d\nverifyChain = yes\nCAfile = %s\n"
                "checkIP = 127.0.0.1\n" % (accept, connect, ca))


class RedisTlsTest(unittest.TestCase):
    def setUp(self):
        self.ca = harness.TestCA()
        self.dir = tempfile.mkdtemp(prefix="commsgate-redis-tls-")
        self.procs = []
        self.tls_port, self.plain_port = harness.free_port(), harness.free_port()
        self.procs.append(harness.Proc("redis-tls", [
            "redis-server", "--port", "0", "--tls-port", str(self.tls_port), "--bind",
            "127.0.0.1", "--dir", harness.redis_dir(), "--save", "",
            "--tls-cert-file", self.ca.cert_file, "--tls-key-file", self.ca.key_file,
            "--tls-ca-cert-file", self.ca.ca_file, "--tls-auth-clients", "no"],
            port=self.tls_port))

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
        self.ca.remove()
        shutil.rmtree(self.dir, ignore_errors=True)

    def tunnel(self, ca):
        conf = os.path.join(self.dir, "stunnel-%d.conf" % len(self.procs))
        stunnel_conf(conf, self.plain_port, self.tls_port, ca)
        p = harness.Proc("stunnel", ["stunnel", conf], port=self.plain_port)
        self.procs.append(p)
        return p

    def tls_cli(self, *args):
        return subprocess.run(["redis-cli", "--tls", "--cacert", self.ca.ca_file, "-p",
                               str(self.tls_port)] + list(args), capture_output=True,
                              text=True, check=True).stdout.strip()

    def behind(self, ca):
        """The tunnel trusting `ca`, the simulator, and commsgate on the
        tunnel's plain end."""
        self.tunnel(ca)
        sim = harness.start_sim()
        self.procs.append(sim)
        d = harness.start_daemon(self.plain_port, sim.url)
        self.procs.append(d)
        return sim, d

    def test_through_the_tunnel(self):
        _, d = self.behind(self.ca.ca_file)
        with grpc.insecure_channel(d.grpc_target) as ch:
            s = harness.Stubs(ch)
            deadline = time.monotonic() + 10
            while s.Check(s.health_pb2.HealthCheckRequest(), timeout=2).status != \
                    s.health_pb2.HealthCheckResponse.SERVING:
                self.assertLess(time.monotonic(), deadline, d.output())
                time.sleep(0.05)
            r = s.SendSMS(s.messaging_pb2.SendSMSRequest(
                to="+14155550100", body="over TLS", idempotency_key="tls-1"), timeout=10)
            self.assertTrue(r.sid.startswith("SM"))
        # The record is in the Redis that speaks TLS only.
        self.assertEqual(self.tls_cli("EXISTS", "cg:{key:default:tls-1}:idem"), "1")

    def test_a_tunnel_that_cannot_verify_redis_serves_nothing(self):
        other = harness.TestCA()  # a CA that did not sign Redis's certificate
        try:
            sim, d = self.behind(other.ca_file)
            with grpc.insecure_channel(d.grpc_target) as ch:
                s = harness.Stubs(ch)
                time.sleep(1.5)
                self.assertEqual(s.Check(s.health_pb2.HealthCheckRequest(), timeout=2).status,
                                 s.health_pb2.HealthCheckResponse.NOT_SERVING)
                with self.assertRaises(grpc.RpcError) as cm:
                    s.SendSMS(s.messaging_pb2.SendSMSRequest(to="+14155550100", body="x"),
                              timeout=5)
                self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertEqual(harness.Sim(sim.url).requests("/Messages.json"), [])
        finally:
            other.remove()


if __name__ == "__main__":
    unittest.main()
