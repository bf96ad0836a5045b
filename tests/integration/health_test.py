"""grpc.health.v1 from Python grpcio: SERVING only while Redis answers."""
import time
import unittest

import grpc

import harness


class HealthTest(unittest.TestCase):
    def setUp(self):
        self.stack = harness.Stack(with_sim=False)
        self.h = self.stack.stubs.health_pb2
        self.stack.wait_serving(self.h.HealthCheckResponse.SERVING)

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())

    def check(self, service=""):
        return self.stack.stubs.Check(self.h.HealthCheckRequest(service=service), timeout=2).status

    def test_serving_for_known_services(self):
        S = self.h.HealthCheckResponse.SERVING
        self.assertEqual(self.check(""), S)
        self.assertEqual(self.check("commsgate.v1.MessagingService"), S)
        # The first SERVING is logged with the time it took, for operators.
        self.assertRegex(self.stack.daemon.output(),
                         r'"event":"serving","since_start_ms":\d+')

    def test_unknown_service_is_not_found(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.check("no.such.Service")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_not_serving_within_2s_of_redis_stop_then_serving_again(self):
        R = self.h.HealthCheckResponse
        redis_port = self.stack.redis.port
        self.stack.redis.stop()
        t0 = time.monotonic()
        t1 = self.stack.wait_serving(R.NOT_SERVING, timeout=5)
        self.assertLess(t1 - t0, 2.0)
        self.assertIn('"event":"redis_down"', self.stack.daemon.output())

        self.stack.redis = harness.start_redis(redis_port)
        t0 = time.monotonic()
        self.stack.wait_serving(R.SERVING, timeout=5)

    def test_hung_redis_counts_as_down(self):
        import signal
        R = self.h.HealthCheckResponse
        self.stack.redis.signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            t1 = self.stack.wait_serving(R.NOT_SERVING, timeout=5)
            self.assertLess(t1 - t0, 2.0)
        finally:
            self.stack.redis.signal(signal.SIGCONT)
        self.stack.wait_serving(R.SERVING, timeout=5)

    def test_watch_streams_changes(self):
        R = self.h.HealthCheckResponse
        stream = self.stack.stubs.Watch(self.h.HealthCheckRequest(), timeout=20)
        self.assertEqual(next(stream).status, R.SERVING)
        redis_port = self.stack.redis.port
        self.stack.redis.stop()
        self.assertEqual(next(stream).status, R.NOT_SERVING)
        self.stack.redis = harness.start_redis(redis_port)
        self.assertEqual(next(stream).status, R.SERVING)
        stream.cancel()

    def test_watch_unknown_service(self):
        R = self.h.HealthCheckResponse
        stream = self.stack.stubs.Watch(self.h.HealthCheckRequest(service="nope"), timeout=5)
        self.assertEqual(next(stream).status, R.SERVICE_UNKNOWN)
        stream.cancel()

    def test_many_watchers_end_cleanly_on_shutdown(self):
        R = self.h.HealthCheckResponse
        streams = [self.stack.stubs.Watch(self.h.HealthCheckRequest(), timeout=30)
                   for _ in range(20)]
        for s in streams:
            self.assertEqual(next(s).status, R.SERVING)
        self.stack.daemon.signal(__import__("signal").SIGTERM)
        for s in streams:
            with self.assertRaises(grpc.RpcError) as cm:
                for _ in s:
                    pass
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.stack.daemon.wait(10), 0, self.stack.daemon.output())


if __name__ == "__main__":
    unittest.main()
