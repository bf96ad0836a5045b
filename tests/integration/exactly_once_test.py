"""Exactly once on the wire: a connection to Twilio cut at the worst moment.

The simulator acts on the request (creates the message, call or
verification) and then closes or resets the kept-alive connection instead of
answering. Each fault is injected once, on a connection the previous request
left open, and then repeated; each case counts what the simulator received
and acted on, and checks what the caller was told."""
import concurrent.futures
import itertools
import os
import sys
import unittest

import grpc

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

WHATSAPP_FROM = "+14155238886"
# A fresh recipient per request: verifications to one number have a cool-down.
NUMBERS = ("+1415555%04d" % n for n in itertools.count(1000))


class ExactlyOnceTest(unittest.TestCase):
    """Over plain HTTP to the simulator."""
    TLS = False

    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack(env={"TWILIO_WHATSAPP_NUMBER": WHATSAPP_FROM}, tls=cls.TLS)
        cls.stack.wait_serving(cls.stack.stubs.health_pb2.HealthCheckResponse.SERVING)
        cls.s = cls.stack.stubs
        cls.m = cls.s.messaging_pb2
        cls.sim = harness.Sim(cls.stack.sim.url)

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def setUp(self):
        self.sim.reset()

    # Each RPC, as (path the simulator sees, the call, a fresh request).
    def cases(self):
        m = self.m

        def to():
            return next(NUMBERS)

        return [
            ("Messages.json", self.s.SendSMS, lambda: m.SendSMSRequest(to=to(), body="hello")),
            ("Messages.json", self.s.SendWhatsApp,
             lambda: m.SendWhatsAppRequest(to=to(), content_sid="HX" + "0" * 32)),
            ("Calls.json", self.s.PlaceCall,
             lambda: m.PlaceCallRequest(to=to(), say=m.Say(text="hello"))),
            ("Verifications", self.s.StartVerification,
             lambda: m.StartVerificationRequest(to=to())),
        ]

    def acted(self, suffix):
        """Requests the simulator acted on (answered or not)."""
        return [r for r in self.sim.requests(suffix) if 200 <= r["status"] < 300]

    def assert_outcome_unknown(self, e):
        self.assertEqual(e.code(), harness.OUTCOME_UNKNOWN_STATUS, e.details())
        _, info, _ = harness.status_details(e)
        self.assertEqual(info.reason, "OUTCOME_UNKNOWN")
        self.assertIn("outcome unknown", e.details())

    def cut_once(self, after):
        for suffix, call, request in self.cases():
            with self.subTest(rpc=call, after=after):
                self.sim.reset()
                call(request(), timeout=10)  # opens the connection and leaves it open
                self.sim.fault(path_suffix=suffix, after=after, times=1)
                with self.assertRaises(grpc.RpcError) as cm:
                    call(request(), timeout=10)
                self.assert_outcome_unknown(cm.exception)
                got = self.sim.requests(suffix)
                self.assertEqual(len(got), 2, "received: %s" % got)
                self.assertEqual(len(self.acted(suffix)), 2)
                # The connection is gone, the next request is fine.
                call(request(), timeout=10)
                self.assertEqual(len(self.acted(suffix)), 3)

    def test_close_after_acting_once(self):
        self.cut_once("close")

    def test_reset_after_acting_once(self):
        self.cut_once("reset")

    def test_cut_repeatedly(self):
        for suffix, call, request in self.cases():
            with self.subTest(rpc=call):
                self.sim.reset()
                call(request(), timeout=10)
                self.sim.fault(path_suffix=suffix, after="close", times=3)
                for _ in range(3):
                    with self.assertRaises(grpc.RpcError) as cm:
                        call(request(), timeout=10)
                    self.assert_outcome_unknown(cm.exception)
                # Three callers told "unknown", three requests acted on: none twice.
                self.assertEqual(len(self.sim.requests(suffix)), 4)
                self.assertEqual(len(self.acted(suffix)), 4)

    def test_slow_answer_after_acting(self):
        """Twilio acts, then answers after the caller's deadline: outcome
        unknown, once; the simulator acted once and was not asked again."""
        for suffix, call, request in self.cases():
            with self.subTest(rpc=call):
                self.sim.reset()
                self.sim.fault(path_suffix=suffix, latency_ms=2500, times=1)
                with self.assertRaises(grpc.RpcError) as cm:
                    call(request(), timeout=1)
                self.assert_outcome_unknown(cm.exception)
                self.assertEqual(len(self.sim.requests(suffix)), 1)
                self.assertEqual(len(self.acted(suffix)), 1)

    def test_concurrency_refusals_are_retried_never_doubled(self):
        """Twilio refuses requests over the account's concurrency with 20429,
        before acting: those are retried within the deadline (at most five
        attempts), and each caller is told the truth: OK and acted on once,
        or RESOURCE_EXHAUSTED 20429 and not acted on at all."""
        self.sim.config(max_open=5)
        self.sim.fault(path_suffix="Messages.json", latency_ms=300, times=0)
        numbers = [next(NUMBERS) for _ in range(20)]

        def send(to):
            try:
                return to, self.s.SendSMS(self.m.SendSMSRequest(to=to, body="x"), timeout=15)
            except grpc.RpcError as e:
                return to, e

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(send, numbers))
        got = self.sim.requests("Messages.json")
        self.assertGreater(len([r for r in got if r["status"] == 429]), 0)  # the limit was hit
        acted = [self.sim.params(r)["To"] for r in self.acted("Messages.json")]
        ok = 0
        for to, r in results:
            if isinstance(r, grpc.RpcError):
                self.assertEqual(r.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, r.details())
                self.assertEqual(harness.trailer(r, "twilio-error-code"), "20429")
                self.assertEqual(acted.count(to), 0, to)
            else:
                ok += 1
                self.assertEqual(acted.count(to), 1, to)
        self.assertGreater(ok, 5)  # retries got most of them through

    def test_repeat_of_a_cut_key_is_not_sent_again(self):
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155552000", body="warm"), timeout=10)
        self.sim.fault(path_suffix="Messages.json", after="reset", times=1)
        req = self.m.SendSMSRequest(to="+14155552001", body="once", idempotency_key="cut-1")
        for _ in range(2):
            with self.assertRaises(grpc.RpcError) as cm:
                self.s.SendSMS(req, timeout=10)
            self.assert_outcome_unknown(cm.exception)
        sent = [r for r in self.acted("Messages.json")
                if self.sim.params(r).get("To") == "+14155552001"]
        self.assertEqual(len(sent), 1)


class ExactlyOnceHttpsTest(ExactlyOnceTest):
    """The same faults over HTTPS, as Twilio is reached: TLS in front of the
    simulator with a CA made at test time (COMMSGATE_TWILIO_CA_FILE)."""
    TLS = True

    def test_the_path_is_https(self):
        self.assertTrue(self.stack.sim_url.startswith("https://"))
        self.s.SendSMS(self.m.SendSMSRequest(to=next(NUMBERS), body="over TLS"), timeout=10)
        self.assertEqual(len(self.acted("Messages.json")), 1)


if __name__ == "__main__":
    unittest.main()
