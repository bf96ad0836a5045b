"""The request path: queue thread -> loop thread -> Redis -> answer from the
loop thread, under hundreds of calls in flight, with a fixed thread count;
with one loop (the default) and with two (COMMSGATE_LOOPS), where every
test runs again and the calls must be spread over both loops."""
import collections
import os
import re
import time
import unittest

import grpc

import harness


def thread_cpu_ticks(pid):
    """{thread name: utime + stime in clock ticks}."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0) + int(fields[11]) + int(fields[12])
    return out


def redis_pings(port):
    stats = harness.redis_cli(port, "INFO", "commandstats")
    m = re.search(r"cmdstat_ping:calls=(\d+)", stats)
    return int(m.group(1)) if m else 0


def ours(pid):
    """commsgate's own threads: main, queue threads, loops."""
    return [n for n in harness.thread_names(pid) if n == "commsgate" or n.startswith("cg-")]


class LoopPathTest(unittest.TestCase):
    LOOPS = 1

    def setUp(self):
        # A send rate far above the load, so this test measures the path,
        # not the account budget.
        self.stack = harness.Stack(env={"COMMSGATE_SEND_RATE": "100000",
                                        "COMMSGATE_LOOPS": str(self.LOOPS)})
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
        ours_before = sorted(ours(pid))
        ticks_before = thread_cpu_ticks(pid)
        for burst in range(2):
            pings_before = redis_pings(self.stack.redis.port)
            sent_before = len(self.sim_requests())
            futures = [self.stack.stubs.SendSMS.future(
                self.msg.SendSMSRequest(to="+14155550100", body="hi %d" % i), timeout=30)
                for i in range(500)]
            peak, grew = threads_before, []
            while not all(f.done() for f in futures):
                n = harness.thread_count(pid)
                if n > peak:
                    peak, grew = n, harness.thread_names(pid)
                self.assertEqual(sorted(ours(pid)), ours_before, "commsgate's threads changed")
                time.sleep(0.005)
            errors = [f.exception() for f in futures if f.exception()]
            self.assertEqual(errors, [])
            sids = {f.result().sid for f in futures}
            self.assertEqual(len(sids), 500)
            self.assertTrue(all(s.startswith("SM") for s in sids))
            # Every call reached Twilio (the simulator) exactly once.
            self.assertEqual(len(self.sim_requests()) - sent_before, 500)
            # gRPC's own pools (event_engine, timers) may add a thread or two
            # when the machine is slow (seen under ThreadSanitizer); a thread
            # per call would be hundreds.
            self.assertLessEqual(peak, threads_before + 2, "threads grew under load: %s" % grew)
        self.assertEqual(harness.thread_count(pid), threads_before)
        # Our own threads: main, the loops, and COMMSGATE_GRPC_THREADS pollers.
        names = harness.thread_names(pid)
        loops = ["cg-loop"] + ["cg-loop-%d" % i for i in range(1, self.LOOPS)]
        self.assertEqual(sorted(n for n in names if n.startswith("cg-loop")), sorted(loops))
        self.assertEqual(sum(1 for n in names if n.startswith("cg-cq-")), 2)
        # Every loop did its share of the 1,000 calls (each is tens of
        # microseconds of its CPU, so even a tenth of them shows in ticks),
        # each on a Redis connection of its own.
        ticks = thread_cpu_ticks(pid)
        for name in loops:
            self.assertGreater(ticks[name] - ticks_before.get(name, 0), 0, (name, ticks))
        clients = harness.redis_cli(self.stack.redis.port, "CLIENT", "LIST").splitlines()
        self.assertEqual(sum(1 for c in clients if " cmd=client" not in c), self.LOOPS, clients)

    def fire(self, n):
        fs = [self.stack.stubs.SendSMS.future(
            self.msg.SendSMSRequest(to="+14155550100", body="warm-up"), timeout=30)
            for _ in range(n)]
        for f in fs:
            f.exception()

    def sim_requests(self):
        _, reqs = harness.http_json("GET", self.stack.sim.url +
                                    "/__sim/requests?path_suffix=Messages.json")
        return reqs

    def test_get_message_reads_redis(self):
        r = self.stack.stubs.SendSMS(self.msg.SendSMSRequest(to="+14155550100", body="x"),
                                     timeout=5)
        got = self.stack.stubs.GetMessage(self.msg.GetMessageRequest(sid=r.sid), timeout=5)
        self.assertEqual(got.sid, r.sid)
        # queued at acceptance; the simulator's callbacks may already have moved it on.
        self.assertIn(got.status, ("queued", "sent", "delivered"))
        with self.assertRaises(grpc.RpcError) as cm:
            self.stack.stubs.GetMessage(self.msg.GetMessageRequest(sid="SM" + "0" * 32),
                                        timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as cm:
            self.stack.stubs.GetMessage(self.msg.GetMessageRequest(sid="nope"), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_redis_down_fails_closed_with_unavailable(self):
        R = self.stack.stubs.health_pb2.HealthCheckResponse
        port = self.stack.redis.port
        self.stack.redis.stop()
        self.stack.wait_serving(R.NOT_SERVING)
        sent_before = len(self.sim_requests())
        futures = [self.stack.stubs.SendSMS.future(
            self.msg.SendSMSRequest(to="+14155550100", body="x"), timeout=10)
            for _ in range(100)]
        codes = collections.Counter(f.exception().code() for f in futures)
        self.assertEqual(codes, {grpc.StatusCode.UNAVAILABLE: 100})
        # Policies fail closed: nothing reached Twilio.
        self.assertEqual(len(self.sim_requests()), sent_before)
        self.stack.redis = harness.start_redis(port)
        self.stack.wait_serving(R.SERVING)

    def test_unknown_method_answers_at_once(self):
        call = self.stack.channel.unary_unary("/commsgate.v1.MessagingService/NoSuchMethod")
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            call(b"", timeout=20)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertLess(time.monotonic() - t0, 5)

    def test_garbage_request_is_invalid_argument(self):
        call = self.stack.channel.unary_unary("/commsgate.v1.MessagingService/SendSMS")
        with self.assertRaises(grpc.RpcError) as cm:
            call(b"\xff\xff\xff\xff", timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_oversized_request_is_refused(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.stack.stubs.SendSMS(self.msg.SendSMSRequest(body="x" * 200000), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)

    def test_expired_deadline_is_not_worked_on(self):
        # A valid request whose answer cannot come in time (the simulator
        # holds it), so DEADLINE_EXCEEDED is the only possible outcome.
        harness.http_json("POST", self.stack.sim.url + "/__sim/faults",
                          {"path_suffix": "Messages.json", "latency_ms": 2000})
        with self.assertRaises(grpc.RpcError) as cm:
            self.stack.stubs.SendSMS(self.msg.SendSMSRequest(to="+14155550100", body="x"),
                                     timeout=0.0001)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The daemon stays healthy afterwards.
        self.stack.wait_serving(self.stack.stubs.health_pb2.HealthCheckResponse.SERVING)


class TwoLoopsPathTest(LoopPathTest):
    LOOPS = 2


if __name__ == "__main__":
    unittest.main()
