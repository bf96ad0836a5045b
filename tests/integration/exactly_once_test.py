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
import time
import unittest

import grpc

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

WHATSAPP_FROM = "+14155238886"
# A fresh recipient per request: verifications to one number have a cool-down.
NUMBERS = ("+1415555%04d" % n for n in itertools.count(1000))
# How long Twilio's lists are given to show a message before its absence is
# believed (COMMSGATE_RESOLVE_CATCHUP_SECONDS).
CATCHUP_S = 2


class ExactlyOnceTest(unittest.TestCase):
    """Over plain HTTP to the simulator."""
    TLS = False

    @classmethod
    def setUpClass(cls):
        cls.stack = harness.Stack(env={"TWILIO_WHATSAPP_NUMBER": WHATSAPP_FROM,
                                       "COMMSGATE_RESOLVE_INTERVAL_MS": "100",
                                       "COMMSGATE_RESOLVE_CATCHUP_SECONDS": str(CATCHUP_S)},
                                  tls=cls.TLS)
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
        for suffix, call, request in self.cases():
            with self.subTest(rpc=call):
                self.sim.reset()
                self.sim.config(max_open=5)
                self.sim.fault(path_suffix=suffix, latency_ms=300, times=0)
                reqs = [request() for _ in range(20)]

                def send(req):
                    try:
                        return req.to, call(req, timeout=15)
                    except grpc.RpcError as e:
                        return req.to, e

                with concurrent.futures.ThreadPoolExecutor(20) as pool:
                    results = list(pool.map(send, reqs))
                got = self.sim.requests(suffix)
                self.assertGreater(len([r for r in got if r["status"] == 429]), 0)  # hit
                acted = [self.sim.params(r)["To"].replace("whatsapp:", "")
                         for r in self.acted(suffix)]
                ok = 0
                for to, r in results:
                    if isinstance(r, grpc.RpcError):
                        self.assertEqual(r.code(), grpc.StatusCode.RESOURCE_EXHAUSTED,
                                         r.details())
                        self.assertEqual(harness.trailer(r, "twilio-error-code"), "20429")
                        self.assertEqual(acted.count(to), 0, to)
                    else:
                        ok += 1
                        self.assertEqual(acted.count(to), 1, to)
                self.assertGreater(ok, 5)  # retries got most of them through

    # The keyed RPCs, as (path the simulator sees, the call, a request for
    # `to` with key `key`, the SIDs the simulator made for `to`).
    def keyed_cases(self, verifications=True):
        m, sim = self.m, self.sim

        def made(what, prefix=""):
            return lambda to: [x["sid"] for x in sim.made(what, prefix + to)]

        cases = [
            ("Messages.json", self.s.SendSMS,
             lambda to, key: m.SendSMSRequest(to=to, body="once", idempotency_key=key),
             made("Messages")),
            ("Messages.json", self.s.SendWhatsApp,
             lambda to, key: m.SendWhatsAppRequest(to=to, content_sid="HX" + "0" * 32,
                                                   idempotency_key=key),
             made("Messages", "whatsapp:")),
            ("Calls.json", self.s.PlaceCall,
             lambda to, key: m.PlaceCallRequest(to=to, say=m.Say(text="once"),
                                                idempotency_key=key),
             made("Calls")),
        ]
        if verifications:  # Verify sends no status callbacks
            cases.append(
                ("Verifications", self.s.StartVerification,
                 lambda to, key: m.StartVerificationRequest(to=to, idempotency_key=key),
                 lambda to: [v["sid"] for v in sim.verifications() if v["to"] == to]))
        return cases

    def repeat_until_settled(self, call, req, limit_s=15):
        """Repeats req (same key) until it is answered other than "being
        resolved"; returns (response or RpcError, how many said resolving)."""
        deadline = time.monotonic() + limit_s
        resolving = 0
        while time.monotonic() < deadline:
            try:
                return call(req, timeout=2), resolving
            except grpc.RpcError as e:
                _, info, _ = harness.status_details(e)
                if not info or info.reason != "OUTCOME_RESOLVING":
                    return e, resolving
                self.assertEqual(e.code(), grpc.StatusCode.ABORTED, e.details())
                resolving += 1
                time.sleep(0.05)
        self.fail("still resolving after %d s" % limit_s)

    def posts_to(self, suffix, to):
        return [r for r in self.acted(suffix) if r["method"] == "POST" and
                self.sim.params(r).get("To", "").endswith(to)]

    def test_repeat_of_a_cut_key_learns_its_sid(self):
        """Cut after Twilio acted: the caller hears outcome unknown; commsgate
        finds the message (call) in Twilio's list, and a repeat of the key
        answers OK with its SID, never sending it again. (No status
        callbacks here: the lists alone resolve it.)"""
        for n, (suffix, call, request, made) in enumerate(self.keyed_cases()):
            with self.subTest(rpc=call):
                self.sim.reset()
                self.sim.config(callbacks=False)
                call(request(next(NUMBERS), "warm-%d" % n), timeout=10)
                to = next(NUMBERS)
                req = request(to, "cut-%d-%s" % (n, self.TLS))
                self.sim.fault(path_suffix=suffix, after="reset", times=1)
                with self.assertRaises(grpc.RpcError) as cm:
                    call(req, timeout=10)
                self.assert_outcome_unknown(cm.exception)
                self.assertIn("repeat with the same idempotency_key", cm.exception.details())
                got, _ = self.repeat_until_settled(call, req)
                self.assertNotIsInstance(got, grpc.RpcError)
                self.assertEqual(made(to), [got.sid])
                self.assertEqual(len(self.posts_to(suffix, to)), 1)
                # Found once, it stays: the next repeat is answered at once.
                self.assertEqual(call(req, timeout=2).sid, got.sid)
                if suffix == "Messages.json":
                    status = self.s.GetMessage(self.m.GetMessageRequest(sid=got.sid), timeout=2)
                    self.assertEqual(status.sid, got.sid)
                self.assertEqual(len(self.posts_to(suffix, to)), 1)
        # A verification found is answered as StartVerification answers.
        self.assertEqual(got.status, "pending")
        self.assertEqual([v["sends"] for v in self.sim.verifications() if v["to"] == to], [1])
        # Operators see it: one resolution found per case.
        import re
        import urllib.request
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.stack.daemon.admin_port,
                                      timeout=5).read().decode()
        found = re.search(r'^commsgate_resolutions_total\{result="found"\} (\d+)$', text, re.M)
        self.assertIsNotNone(found, text[-2000:])
        self.assertGreaterEqual(int(found.group(1)), len(self.keyed_cases()))

    def test_cut_before_twilio_acted_frees_the_key_after_catchup(self):
        """The connection dies before Twilio acted (nothing was made): the
        caller hears outcome unknown; once the catch-up time has passed with
        nothing in Twilio's list, the key may send, and sends once."""
        self.sim.reset()
        self.sim.config(callbacks=False)  # the lists alone resolve it
        self.s.SendSMS(self.m.SendSMSRequest(to=next(NUMBERS), body="warm"), timeout=10)
        to = next(NUMBERS)
        req = self.m.SendSMSRequest(to=to, body="lost", idempotency_key="drop-%s" % self.TLS)
        self.sim.fault(path_suffix="Messages.json", drop=True, times=1)
        with self.assertRaises(grpc.RpcError) as cm:
            self.s.SendSMS(req, timeout=10)
        self.assert_outcome_unknown(cm.exception)
        got, _ = self.repeat_until_settled(self.s.SendSMS, req)
        self.assertNotIsInstance(got, grpc.RpcError)
        made = self.sim.made("Messages", to)
        self.assertEqual([m["sid"] for m in made], [got.sid])
        self.assertEqual(len(self.posts_to("Messages.json", to)), 1)  # acted on once
        received = [r for r in self.sim.requests("Messages.json") if r["method"] == "POST"
                    and self.sim.params(r)["To"] == to]
        self.assertEqual(len(received), 2)  # the lost one, then the repeat
        # Not sent again before Twilio's list had its catch-up time.
        self.assertGreaterEqual(received[1]["time"] - received[0]["time"], CATCHUP_S)

    def test_lagging_list_is_waited_for(self):
        """Twilio's list shows the message only after a while: it is not
        taken for absent meanwhile (which would send it twice)."""
        self.sim.reset()
        self.sim.config(callbacks=False)  # the lists alone resolve it
        self.sim.config(list_lag_ms=1200)
        self.s.SendSMS(self.m.SendSMSRequest(to=next(NUMBERS), body="warm"), timeout=10)
        to = next(NUMBERS)
        req = self.m.SendSMSRequest(to=to, body="lagging", idempotency_key="lag-%s" % self.TLS)
        self.sim.fault(path_suffix="Messages.json", after="close", times=1)
        with self.assertRaises(grpc.RpcError):
            self.s.SendSMS(req, timeout=10)
        got, _ = self.repeat_until_settled(self.s.SendSMS, req)
        self.assertNotIsInstance(got, grpc.RpcError)
        self.sim.config(list_lag_ms=0)
        self.assertEqual([m["sid"] for m in self.sim.made("Messages", to)], [got.sid])
        self.assertEqual(len(self.posts_to("Messages.json", to)), 1)
        reads = [r for r in self.sim.requests("Messages.json") if r["method"] == "GET"]
        self.assertGreater(len(reads), 1)  # the first read did not find it

    def test_status_callback_resolves_without_the_list(self):
        """Twilio's lists unreadable (every GET 503): the message's first
        status callback, whose URL names the key's record, resolves it."""
        for n, (suffix, call, request, made) in enumerate(self.keyed_cases(False)):
            with self.subTest(rpc=call):
                self.sim.reset()
                call(request(next(NUMBERS), "warm-cb-%d" % n), timeout=10)
                to = next(NUMBERS)
                req = request(to, "cb-%d-%s" % (n, self.TLS))
                self.sim.fault(method="GET", status=503, code=20503, times=0)
                self.sim.fault(path_suffix=suffix, after="reset", times=1)
                with self.assertRaises(grpc.RpcError) as cm:
                    call(req, timeout=10)
                self.assert_outcome_unknown(cm.exception)
                posted = self.posts_to(suffix, to)[0]
                callback = self.sim.params(posted)["StatusCallback"]
                self.assertIn("?cg=", callback)
                got, _ = self.repeat_until_settled(call, req)
                self.assertNotIsInstance(got, grpc.RpcError)
                reads = [r for r in self.sim.requests() if r["method"] == "GET"]
                self.assertTrue(all(r["status"] == 503 for r in reads), reads)
                self.sim.clear_faults()  # so the test itself can read the list
                self.assertEqual(made(to), [got.sid])
                self.assertEqual(len(self.posts_to(suffix, to)), 1)
        # An unkeyed send's callback names no record.
        self.s.SendSMS(self.m.SendSMSRequest(to=next(NUMBERS), body="plain"), timeout=10)
        last = [r for r in self.sim.requests("Messages.json") if r["method"] == "POST"][-1]
        self.assertNotIn("?cg=", self.sim.params(last)["StatusCallback"])

    def test_failed_list_read_is_tried_again(self):
        self.sim.reset()
        self.sim.config(callbacks=False)  # the lists alone resolve it
        self.s.SendSMS(self.m.SendSMSRequest(to=next(NUMBERS), body="warm"), timeout=10)
        to = next(NUMBERS)
        req = self.m.SendSMSRequest(to=to, body="x", idempotency_key="read-%s" % self.TLS)
        self.sim.fault(path_suffix="Messages.json", after="close", times=1)
        self.sim.fault(path_suffix="Messages.json", method="GET", status=503, code=20503,
                       times=1)
        self.sim.fault(path_suffix="Messages.json", method="GET", after="reset", times=1)
        with self.assertRaises(grpc.RpcError):
            self.s.SendSMS(req, timeout=10)
        got, _ = self.repeat_until_settled(self.s.SendSMS, req)
        self.assertNotIsInstance(got, grpc.RpcError)
        self.assertEqual([m["sid"] for m in self.sim.made("Messages", to)], [got.sid])
        self.assertEqual(len(self.posts_to("Messages.json", to)), 1)


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
