"""The request path: queue thread -> loop thread -> Redis -> answer from the
loop thread, under hundreds of calls in flight, with a fixed thread count."""
import collections
import re
import time
import unittest

import grpc

import harness


def redis_pings(port):
    stats = harness.redis_cli(port, "INFO", "commandstats")
    m = re.search(r"cmdstat_ping:calls=(\d+)", stats)
    return int(m.group(1)) if m else 0


class LoopPathTest(unittest.TestCase):
    def setUp(self):
        self.stack = harness.Stack(with_sim=False)
        self.stack.wait_serving(self.stack.stubs.health_pb2.HealthCheckResponse.SERVING)
        self.msg = self.stack.stubs.messaging_pb2

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())

    def test_500_concurrent_calls_fixed_threads(self):
        pid = self.stack.daemon.pid
        # Warm up: gRPC's timer manager adds a second timer thread on the
        # first burst and keeps it; after that the count must hold.
        self.fire(500)
        threads_before = harness.thread_count(pid)
        for burst in range(2):
            pings_before = redis_pings(self.stack.redis.port)
            futures = [self.stack.stubs.SendSMS.future(
                self.msg.SendSMSRequest(to="+14155550100", body="hi %d" % i), timeout=30)
                for i in range(500)]
            peak = threads_before
            while not all(f.done() for f in futures):
                peak = max(peak, harness.thread_count(pid))
                time.sleep(0.005)
            codes = collections.Counter(f.exception().code() for f in futures)
            details = {f.exception().details() for f in futures}

            self.assertEqual(codes, {grpc.StatusCode.UNIMPLEMENTED: 500})
            self.assertEqual(details, {"SendSMS is not implemented yet"})
            # Every call took its own Redis round trip on the loop thread.
            self.assertGreaterEqual(redis_pings(self.stack.redis.port) - pings_before, 500)
            self.assertEqual(peak, threads_before, "threads grew under load")
        self.assertEqual(harness.thread_count(pid), threads_before)
        # Our own threads: main, the loop, and COMMSGATE_GRPC_THREADS pollers.
        names = harness.thread_names(pid)
        self.assertEqual(names.count("cg-loop"), 1)
        self.assertEqual(sum(1 for n in names if n.startswith("cg-cq-")), 2)

    def fire(self, n):
        fs = [self.stack.stubs.SendSMS.future(self.msg.SendSMSRequest(), timeout=10)
              for _ in range(n)]
        for f in fs:
            f.exception()

    def test_every_messaging_method_takes_the_loop_path(self):
        for name in ("SendSMS", "SendWhatsApp", "PlaceCall", "StartVerification",
                     "CheckVerification", "GetMessage"):
            stub = getattr(self.stack.stubs, name)
            with self.assertRaises(grpc.RpcError) as cm:
                stub(getattr(self.msg, {"SendSMS": "SendSMSRequest",
                                        "SendWhatsApp": "SendWhatsAppRequest",
                                        "PlaceCall": "PlaceCallRequest",
                                        "StartVerification": "StartVerificationRequest",
                                        "CheckVerification": "CheckVerificationRequest",
                                        "GetMessage": "GetMessageRequest"}[name])(), timeout=5)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED, name)
            self.assertEqual(cm.exception.details(), "%s is not implemented yet" % name)

    def test_redis_down_fails_closed_with_unavailable(self):
        R = self.stack.stubs.health_pb2.HealthCheckResponse
        port = self.stack.redis.port
        self.stack.redis.stop()
        self.stack.wait_serving(R.NOT_SERVING)
        futures = [self.stack.stubs.SendSMS.future(self.msg.SendSMSRequest(), timeout=10)
                   for _ in range(100)]
        codes = collections.Counter(f.exception().code() for f in futures)
        self.assertEqual(codes, {grpc.StatusCode.UNAVAILABLE: 100})
        self.stack.redis = harness.start_redis(port)
        self.stack.wait_serving(R.SERVING)

    def test_unknown_method_answers_at_once(self):
        call = self.stack.channel.unary_unary("/commsgate.v1.Messaging/NoSuchMethod")
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            call(b"", timeout=20)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertLess(time.monotonic() - t0, 5)

    def test_garbage_request_is_invalid_argument(self):
        call = self.stack.channel.unary_unary("/commsgate.v1.Messaging/SendSMS")
        with self.assertRaises(grpc.RpcError) as cm:
            call(b"\xff\xff\xff\xff", timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_oversized_request_is_refused(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.stack.stubs.SendSMS(self.msg.SendSMSRequest(body="x" * 200000), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_expired_deadline_is_not_worked_on(self):
        pings_before = redis_pings(self.stack.redis.port)
        with self.assertRaises(grpc.RpcError) as cm:
            self.stack.stubs.SendSMS(self.msg.SendSMSRequest(), timeout=0.0001)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The daemon stays healthy afterwards.
        self.stack.wait_serving(self.stack.stubs.health_pb2.HealthCheckResponse.SERVING)
        self.assertGreaterEqual(redis_pings(self.stack.redis.port), pings_before)


if __name__ == "__main__":
    unittest.main()
