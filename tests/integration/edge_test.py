"""The webhook port as the internet meets it: bounded headers, exact media
types, framing that could smuggle a request refused, slow clients cut, and
a process out of file descriptors that neither spins nor floods its log,
with the gRPC-to-Twilio path working meanwhile."""
import os
import socket
import time
import unittest

import grpc

import harness

INBOUND = "/webhooks/twilio/messages/inbound"


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def raw(port, data, timeout=5):
    """Sends bytes, returns the status line's code (0: closed, no answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, BrokenPipeError):
        return 0
    finally:
        s.close()
    return int(got.split()[1]) if got.startswith(b"HTTP/") else 0


def post(headers, body=b"Body=x"):
    head = "POST %s HTTP/1.1\r\nHost: x\r\n" % INBOUND
    head += "".join("%s: %s\r\n" % kv for kv in headers)
    return (head + "\r\n").encode() + body


class EdgeTest(unittest.TestCase):
    def setUp(self):
        self.stack = harness.Stack()
        self.stack.wait_serving(1)
        self.port = self.stack.daemon.http_port

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())

    def test_framing_and_media_types(self):
        form = ("Content-Type", "application/x-www-form-urlencoded")
        self.assertEqual(raw(self.port, post([form, ("Content-Length", "6"),
                                              ("Content-Length", "6")])), 400)
        self.assertEqual(raw(self.port, post([form, ("Content-Length", "6"),
                                              ("Content-Length", "60")])), 400)
        self.assertEqual(raw(self.port, post([("Content-Type",
                                               "application/x-www-form-urlencodedXX"),
                                              ("Content-Length", "6")])), 415)
        self.assertEqual(raw(self.port, post([form, form, ("Content-Length", "6")])), 400)
        many = [("X-H%d" % i, "v") for i in range(100)]
        self.assertEqual(raw(self.port, post([form, ("Content-Length", "6")] + many)), 431)
        # Still a webhook port: a sound request gets as far as its signature.
        self.assertEqual(raw(self.port, post([form, ("Content-Length", "6")])), 403)

    def test_header_floods_are_cut_and_memory_stays_bounded(self):
        pid = self.stack.daemon.pid
        before = rss_mb(pid)
        # One 8 MB header, then 20,000 small ones: refused, not held.
        big = post([("X-Big", "a" * (8 << 20))])
        self.assertIn(raw(self.port, big), (0, 400, 413, 431))
        flood = post([("X-H%d" % i, "v") for i in range(20000)])
        self.assertIn(raw(self.port, flood), (0, 400, 413, 431))
        # Eight connections each sending an endless header, unfinished.
        socks = []
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.sendall(b"POST / HTTP/1.1\r\nX-Endless: ")
            try:
                for _ in range(64):
                    s.sendall(b"a" * 65536)
            except OSError:
                pass  # cut by the server: what should happen
            socks.append(s)
        grown = rss_mb(pid) - before
        for s in socks:
            s.close()
        self.assertLess(grown, 20, "RSS grew %.1f MB" % grown)
        # The gRPC path works throughout.
        m = self.stack.stubs.messaging_pb2
        self.stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="x"), timeout=5)

    def test_a_silent_connection_is_cut(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        t0 = time.monotonic()
        try:
            self.assertEqual(s.recv(1), b"")
        except ConnectionResetError:
            pass
        waited = time.monotonic() - t0
        s.close()
        self.assertLess(waited, 20)


class ConnectionLimitsTest(unittest.TestCase):
    def setUp(self):
        self.stack = harness.Stack(env={"COMMSGATE_HTTP_MAX_CONNECTIONS": "20",
                                        "COMMSGATE_HTTP_REQUEST_TIMEOUT_S": "3"})
        self.stack.wait_serving(1)
        self.port = self.stack.daemon.http_port

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())

    def metric(self, name):
        import urllib.request
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.stack.daemon.admin_port,
                                      timeout=5).read().decode()
        return int(float([l for l in text.splitlines() if l.startswith(name + " ")][0].split()[1]))

    def test_past_the_cap_a_connection_is_closed_and_room_comes_back(self):
        idle = [socket.create_connection(("127.0.0.1", self.port), timeout=5) for _ in range(20)]
        time.sleep(0.3)
        self.assertEqual(self.metric("commsgate_webhook_connections"), 20)
        # The 21st is closed as it arrives, before it sends anything.
        extra = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        t0 = time.monotonic()
        try:
            closed = extra.recv(1) == b""
        except ConnectionResetError:
            closed = True
        extra.close()
        self.assertTrue(closed)
        self.assertLess(time.monotonic() - t0, 2)  # not the 10 s idle timeout
        self.assertEqual(self.metric('commsgate_webhook_connections_cut_total{reason="full"}'), 1)
        for s in idle[:5]:
            s.close()
        time.sleep(0.3)
        self.assertEqual(self.metric("commsgate_webhook_connections"), 15)
        form = ("Content-Type", "application/x-www-form-urlencoded")
        self.assertEqual(raw(self.port, post([form, ("Content-Length", "6")])), 403)
        for s in idle[5:]:
            s.close()
        time.sleep(0.3)
        self.assertEqual(self.metric("commsgate_webhook_connections"), 0)

    def test_a_kept_alive_connection_is_timed_per_request_not_per_life(self):
        form = ("Content-Type", "application/x-www-form-urlencoded")
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            for _ in range(2):  # 4 s apart: past the 3 s limit, were it the connection's
                s.sendall(post([form, ("Content-Length", "6")]))
                got = b""
                while b"not match" not in got and b"X-Twilio-Signature" not in got:
                    chunk = s.recv(4096)
                    self.assertTrue(chunk, got)
                    got += chunk
                self.assertTrue(got.startswith(b"HTTP/1.1 403"), got)
                time.sleep(4)
        finally:
            s.close()
        self.assertEqual(self.metric('commsgate_webhook_connections_cut_total{reason="slow"}'), 0)

    def test_a_client_trickling_bytes_is_cut(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        t0 = time.monotonic()
        cut = False
        try:
            s.sendall(b"POST / HTTP/1.1\r\n")
            for _ in range(20):  # a header byte a second: never idle for long
                time.sleep(0.5)
                s.sendall(b"X")
        except OSError:
            cut = True
        if not cut:  # the last send may have gone into the buffer: read the close
            try:
                cut = s.recv(1) == b""
            except OSError:
                cut = True
        s.close()
        self.assertTrue(cut)
        self.assertLess(time.monotonic() - t0, 8)
        self.assertEqual(self.metric('commsgate_webhook_connections_cut_total{reason="slow"}'), 1)

    def test_a_crowd_of_slow_clients_costs_little_and_sends_go_on(self):
        pid = self.stack.daemon.pid
        rss0, cpu0 = rss_mb(pid), cpu_s(pid)
        crowd = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.setblocking(False)
            crowd.append(s)
        m = self.stack.stubs.messaging_pb2
        sent = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:  # each trickles a byte every 250 ms
            for s in crowd:
                try:
                    s.send(b"X")
                except OSError:
                    pass  # cut: what should happen
            self.stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="x"), timeout=5)
            sent += 1
            time.sleep(0.25)
        cpu = cpu_s(pid) - cpu0
        grown = rss_mb(pid) - rss0
        for s in crowd:
            s.close()
        self.assertGreaterEqual(sent, 10)
        # 180 turned away as they came (and the simulator's status callbacks
        # for the sends, while the port was full), the 20 let in cut in 3 s.
        self.assertGreaterEqual(
            self.metric('commsgate_webhook_connections_cut_total{reason="full"}'), 180)
        self.assertEqual(self.metric('commsgate_webhook_connections_cut_total{reason="slow"}'), 20)
        self.assertLess(cpu, 2.5, "%.2f s of CPU in 5 s" % cpu)
        self.assertLess(grown, 10, "RSS grew %.1f MB" % grown)
        # Once the simulator's last status callbacks are in, nothing is held.
        deadline = time.monotonic() + 10
        while self.metric("commsgate_webhook_connections") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.metric("commsgate_webhook_connections"), 0)


class OutOfDescriptorsTest(unittest.TestCase):
    """300 idle connections against a limit of 128 open files."""

    def test_no_spin_no_log_flood_and_sends_still_work(self):
        redis = harness.start_redis()
        sim = harness.start_sim()
        grpc_port, http_port = harness.free_port(), harness.free_port()
        env = harness.daemon_env(redis.port, sim.url, grpc_port, http_port,
                                 {"COMMSGATE_LOOPS": "1"})
        d = harness.Proc("commsgate", ["prlimit", "--nofile=128:128", "--",
                                       os.path.join(harness.BIN_DIR, "commsgate")],
                         env=env, port=grpc_port)
        ch = grpc.insecure_channel("127.0.0.1:%d" % grpc_port)
        socks = []
        started = time.monotonic()
        try:
            stubs = harness.Stubs(ch)
            m = stubs.messaging_pb2
            stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="warm"), timeout=10)
            for _ in range(300):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", http_port), timeout=2))
                except OSError:
                    pass
            c0, t0 = cpu_s(d.pid), time.monotonic()
            time.sleep(3)
            cpu = (cpu_s(d.pid) - c0) / (time.monotonic() - t0)
            self.assertLess(cpu, 0.5, "the loop spins: %.0f%% CPU" % (cpu * 100))
            # A send needs a Redis reply and a new Twilio connection: it
            # goes through (connections past the limit are shed, not kept).
            for s in socks:
                s.close()
            socks = []
            r = stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="after"), timeout=10)
            self.assertTrue(r.sid.startswith("SM"))
        finally:
            for s in socks:
                s.close()
            ch.close()
            rc = d.stop()
            sim.stop()
            redis.stop()
        out = d.output()
        lines = [l for l in out.splitlines() if "accept" in l.lower()]
        # At most one line a second, each with the count it stands for
        # (libevent alone wrote about 300,000 a second).
        self.assertLessEqual(len(lines), time.monotonic() - started + 1, lines[:5])
        self.assertTrue(any('"http_accept_failed"' in l for l in lines), out[-2000:])
        self.assertEqual(rc, 0, out[-2000:])


if __name__ == "__main__":
    unittest.main()
