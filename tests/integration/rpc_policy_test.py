"""Every policy rule of the five RPCs, against a real redis-server, the
simulator and the daemon, from Python grpcio."""
import collections
import concurrent.futures
import re
import signal
import time
import unittest

import grpc

import harness

WA_SENDER = "+14155238886"


class Base(unittest.TestCase):
    ENV = {}
    CLUSTER = False  # cluster_test runs these on a Redis Cluster

    def setUp(self):
        env = {"TWILIO_WHATSAPP_NUMBER": WA_SENDER}
        env.update(self.ENV)
        self.stack = harness.Stack(env=env, cluster=self.CLUSTER)
        self.stack.wait_serving(self.stack.stubs.health_pb2.HealthCheckResponse.SERVING)
        self.m = self.stack.stubs.messaging_pb2
        self.s = self.stack.stubs
        self.sim = harness.Sim(self.stack.sim.url)

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())

    def fails(self, call, req, code, timeout=10):
        with self.assertRaises(grpc.RpcError) as cm:
            call(req, timeout=timeout)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception

    def redis(self, *args):
        return harness.redis_cli(self.stack.redis.port, *args)

    def now_ms(self):
        sec, usec = self.redis("TIME").split()
        return int(sec) * 1000 + int(usec) // 1000


class SmsTest(Base):
    def test_send_returns_sid_segments_and_encoding(self):
        r = self.s.SendSMS(self.m.SendSMSRequest(to="+14155550100", body="a" * 161), timeout=5)
        self.assertRegex(r.sid, r"^SM[0-9a-f]{32}$")
        self.assertEqual(r.status, "queued")
        self.assertEqual((r.segments, r.encoding), (2, self.m.ENCODING_GSM7))
        r = self.s.SendSMS(self.m.SendSMSRequest(to="+14155550100", body="hi \U0001F600"),
                           timeout=5)
        self.assertEqual((r.segments, r.encoding), (1, self.m.ENCODING_UCS2))
        sent = self.sim.params(self.sim.requests("Messages.json")[0])
        self.assertEqual(sent["To"], "+14155550100")
        self.assertEqual(sent["From"], harness.SIM_FROM)
        self.assertEqual(sent["Body"], "a" * 161)
        self.assertTrue(sent["StatusCallback"].endswith("/webhooks/twilio/messages/status"))

    def test_bad_input_names_the_field(self):
        for req, field in ((self.m.SendSMSRequest(to="4155550100", body="x"), "to"),
                           (self.m.SendSMSRequest(to="+14155550100", body=""), "body"),
                           (self.m.SendSMSRequest(to="+14155550100", body="x" * 1601), "body"),
                           (self.m.SendSMSRequest(to="+14155550100", body="x", sender="MGx"),
                            "sender"),
                           (self.m.SendSMSRequest(to="+14155550100", body="x",
                                                  idempotency_key="has space"),
                            "idempotency_key")):
            e = self.fails(self.s.SendSMS, req, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertTrue(e.details().startswith(field + ":"), e.details())
        self.assertEqual(self.sim.requests("Messages.json"), [])

    def test_invalid_utf8_is_refused(self):
        # protobuf-c accepts any bytes in a string; commsgate must not.
        call = self.stack.channel.unary_unary("/commsgate.v1.MessagingService/SendSMS")
        bad = b"\x0a\x0c+14155550100\x12\x02\xc3\x28"  # to=..., body=invalid UTF-8
        with self.assertRaises(grpc.RpcError) as cm:
            call(bad, timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("UTF-8", cm.exception.details())

    def test_a_nul_in_any_string_is_refused_and_nothing_sent(self):
        # protobuf-c would cut each of these at the NUL: "Hi" sent, OK told.
        cases = [
            (self.s.SendSMS, self.m.SendSMSRequest(to="+14155550100", body="Hi\x00 secret"), "body"),
            (self.s.SendSMS, self.m.SendSMSRequest(to="+14155550100\x00+1999", body="x"), "to"),
            (self.s.SendWhatsApp, self.m.SendWhatsAppRequest(
                to="+14155550100", content_sid="HX" + "0" * 32,
                content_variables={"1": "Jo\x00hn"}), "content_variables.value"),
            (self.s.PlaceCall, self.m.PlaceCallRequest(
                to="+14155550100", say=self.m.Say(text="hello\x00world")), "say.text"),
            (self.s.SendSMS, self.m.SendSMSRequest(to="+14155550100", body="x",
                                                   idempotency_key="k\x00"), "idempotency_key"),
        ]
        for call, req, field in cases:
            e = self.fails(call, req, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertEqual(e.details(), "%s: must not contain a NUL character" % field)
        self.assertEqual(self.sim.requests(), [])

    def test_opt_out_from_twilio_21610_then_refused_without_request(self):
        e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+15005550004", body="x"),
                       grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(harness.trailer(e, "twilio-error-code"), "21610")
        st, info, _ = harness.status_details(e)
        self.assertEqual(info.reason, "OPTED_OUT")
        self.assertEqual(info.metadata["twilio_error_code"], "21610")
        self.assertEqual(st.code, grpc.StatusCode.FAILED_PRECONDITION.value[0])
        # Now on the list: refused by commsgate, Twilio never asked again.
        e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+15005550004", body="y"),
                       grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("opted out", e.details())
        self.assertIsNone(harness.trailer(e, "twilio-error-code"))
        self.assertEqual(len(self.sim.requests("Messages.json")), 1)
        ttl = int(self.redis("TTL", "cg:{+15005550004}:optout"))
        self.assertGreater(ttl, 86400 * 365)

    def test_opted_out_number_is_refused_and_start_clears_it(self):
        self.redis("SET", "cg:{+14155550123}:optout", "1", "EX", "3600")
        self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+14155550123", body="x"),
                   grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(self.sim.requests("Messages.json"), [])
        self.redis("DEL", "cg:{+14155550123}:optout")
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550123", body="x"), timeout=5)
        self.assertEqual(len(self.sim.requests("Messages.json")), 1)

    def test_twilio_errors_map_to_status_and_trailer(self):
        for to, code, twilio in (("+15005550001", grpc.StatusCode.INVALID_ARGUMENT, "21211"),
                                 ("+15005550002", grpc.StatusCode.FAILED_PRECONDITION, "21612"),
                                 ("+15005550003", grpc.StatusCode.PERMISSION_DENIED, "21408"),
                                 ("+15005550009", grpc.StatusCode.INVALID_ARGUMENT, "21614")):
            e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to=to, body="x"), code)
            self.assertEqual(harness.trailer(e, "twilio-error-code"), twilio)
            self.assertIn(twilio, e.details())

    def test_429_is_retried_until_accepted(self):
        self.sim.fault(path_suffix="Messages.json", status=429, code=20429, times=2)
        r = self.s.SendSMS(self.m.SendSMSRequest(to="+14155550100", body="x"), timeout=10)
        self.assertTrue(r.sid.startswith("SM"))
        self.assertEqual([q["status"] for q in self.sim.requests("Messages.json")],
                         [429, 429, 201])

    def test_429_past_the_deadline_is_resource_exhausted_with_its_wait(self):
        self.sim.fault(path_suffix="Messages.json", status=429, code=20429, times=0)
        e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+14155550100", body="x"),
                       grpc.StatusCode.RESOURCE_EXHAUSTED, timeout=1)
        self.assertEqual(harness.trailer(e, "twilio-error-code"), "20429")
        _, info, retry = harness.status_details(e)
        self.assertEqual(info.reason, "TWILIO_ERROR")
        self.assertIsNotNone(retry)
        wait_ms = retry.retry_delay.seconds * 1000 + retry.retry_delay.nanos // 10**6
        self.assertGreaterEqual(wait_ms, 100)  # at least the backoff's first step
        statuses = [q["status"] for q in self.sim.requests("Messages.json")]
        self.assertGreaterEqual(len(statuses), 1)
        self.assertEqual(set(statuses), {429})  # acted on none

    def test_unknown_outcome_is_never_retried_or_repeated(self):
        self.sim.fault(path_suffix="Messages.json", latency_ms=3000)
        req = self.m.SendSMSRequest(to="+14155550100", body="x", idempotency_key="slow-1")
        e = self.fails(self.s.SendSMS, req, grpc.StatusCode.UNKNOWN, timeout=1)
        self.assertIn("outcome unknown", e.details())
        # The same key again: commsgate asks Twilio's list, finds the
        # message and answers with its SID; it is never sent a second time.
        got = self.s.SendSMS(req, timeout=5)
        made = self.sim.made("Messages", "+14155550100")
        self.assertEqual([m["sid"] for m in made], [got.sid])
        time.sleep(2.5)
        posts = [r for r in self.sim.requests("Messages.json") if r["method"] == "POST"]
        self.assertEqual(len(posts), 1)

    def test_connection_dropped_after_writing_is_outcome_unknown(self):
        self.sim.fault(path_suffix="Messages.json", drop=True, times=10)
        e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+14155550100", body="x"),
                       grpc.StatusCode.UNKNOWN, timeout=3)
        # A dropped connection after the request was written: outcome unknown.
        self.assertIn("outcome unknown", e.details())


class ReadYourWritesAcrossLoopsTest(Base):
    """A caller told of what Twilio's answer changed finds it on its next
    call, whichever loop (each its own Redis connection) takes that call:
    the answer waits until Redis has the write. Calls alternate between the
    two loops, so every second call is on the other connection."""
    ENV = {"COMMSGATE_LOOPS": "2", "COMMSGATE_SEND_RATE": "100000"}

    def test_opt_out_then_next_call_refused_100_times(self):
        for i in range(100):
            self.redis("DEL", "cg:{+15005550004}:optout")
            before = len(self.sim.requests("Messages.json"))
            e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+15005550004", body="x"),
                           grpc.StatusCode.FAILED_PRECONDITION)
            self.assertEqual(harness.trailer(e, "twilio-error-code"), "21610")
            e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+15005550004", body="y"),
                           grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIsNone(harness.trailer(e, "twilio-error-code"), "round %d" % i)
            self.assertEqual(len(self.sim.requests("Messages.json")) - before, 1, "round %d" % i)

    def test_sent_then_get_message_finds_it_100_times(self):
        for i in range(100):
            r = self.s.SendSMS(self.m.SendSMSRequest(to="+14155550100", body="m%d" % i),
                               timeout=5)
            got = self.s.GetMessage(self.m.GetMessageRequest(sid=r.sid), timeout=5)
            self.assertEqual(got.sid, r.sid, "round %d" % i)


class IdempotencyTest(Base):
    ENV = {"COMMSGATE_SEND_RATE": "100000"}

    def test_50_concurrent_same_key_one_send_50_identical_answers(self):
        self.sim.fault(path_suffix="Messages.json", latency_ms=300)
        req = self.m.SendSMSRequest(to="+14155550100", body="once", idempotency_key="order-42")
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda _: self.s.SendSMS(req, timeout=10), range(50)))
        self.assertEqual(len(self.sim.requests("Messages.json")), 1)
        self.assertEqual(len({r.SerializeToString() for r in results}), 1)
        self.assertTrue(results[0].sid.startswith("SM"))
        # Later repeats too; and the record expires.
        again = self.s.SendSMS(req, timeout=5)
        self.assertEqual(again, results[0])
        ttl = int(self.redis("TTL", "cg:{key:default:order-42}:idem"))
        self.assertTrue(0 < ttl <= 86400, ttl)

    def test_same_key_other_request_is_refused(self):
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550100", body="a",
                                             idempotency_key="k"), timeout=5)
        e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+14155550100", body="b",
                                                             idempotency_key="k"),
                       grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("idempotency_key", e.details())

    def test_same_key_other_recipient_or_rpc_is_refused(self):
        """The key is the caller's, whatever the request: reusing it for
        another recipient or another RPC is a client bug, not a new send."""
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550100", body="a",
                                             idempotency_key="mine"), timeout=5)
        e = self.fails(self.s.SendSMS, self.m.SendSMSRequest(to="+14155550199", body="a",
                                                             idempotency_key="mine"),
                       grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("another recipient", e.details())
        _, info, _ = harness.status_details(e)
        self.assertEqual(info.reason, "IDEMPOTENCY_KEY_REUSED")
        self.fails(self.s.PlaceCall, self.m.PlaceCallRequest(to="+14155550100",
                                                             url="https://example.com/t",
                                                             idempotency_key="mine"),
                   grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(len(self.sim.requests("Messages.json")), 1)
        self.assertEqual(len(self.sim.requests("Calls.json")), 0)

    def test_key_is_scoped_per_caller_and_rpc(self):
        req = self.m.SendSMSRequest(to="+14155550100", body="a", idempotency_key="shared")
        a = self.s.SendSMS(req, timeout=5, metadata=(("commsgate-caller", "billing"),))
        b = self.s.SendSMS(req, timeout=5, metadata=(("commsgate-caller", "shipping"),))
        self.assertNotEqual(a.sid, b.sid)
        self.assertEqual(len(self.sim.requests("Messages.json")), 2)

    def test_refused_send_frees_the_key(self):
        self.sim.fault(path_suffix="Messages.json", status=400, code=21612)
        req = self.m.SendSMSRequest(to="+14155550100", body="a", idempotency_key="retry-me")
        self.fails(self.s.SendSMS, req, grpc.StatusCode.FAILED_PRECONDITION)
        r = self.s.SendSMS(req, timeout=5)  # Twilio did not act: a retry may send
        self.assertTrue(r.sid.startswith("SM"))


class IdempotencyFourLoopsTest(IdempotencyTest):
    """The same, with the calls spread over four loops (COMMSGATE_LOOPS),
    each with its own Redis connection: 50 concurrent calls of one key land
    on all four, and still one is sent."""
    ENV = {"COMMSGATE_SEND_RATE": "100000", "COMMSGATE_LOOPS": "4"}


class RepeatsAreFreeTest(Base):
    """A repeat answered from its key's record takes a rate slot and a lease
    only for a moment and hands both back: 1,000 of them leave the account's
    next free slot where it was."""
    ENV = {"COMMSGATE_SEND_RATE": "50"}  # 1,000 lost slots would be 20 s

    def test_1000_repeats_do_not_delay_the_next_send(self):
        req = self.m.SendSMSRequest(to="+14155550100", body="once", idempotency_key="loop-1")
        first = self.s.SendSMS(req, timeout=5)
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            again = list(pool.map(lambda _: self.s.SendSMS(req, timeout=30), range(1000)))
        self.assertEqual({a.sid for a in again}, {first.sid})
        self.assertEqual(len(self.sim.requests("Messages.json")), 1)
        # The next free slot is no more than a few slots ahead, not 20 s.
        secs, micros = self.redis("TIME").split()
        now_us = int(secs) * 10**6 + int(micros)
        tat = self.redis("GET", "cg:{account}:tat_us")
        ahead_ms = (int(tat) - now_us) / 1000 if tat else 0
        self.assertLess(ahead_ms, 200, "the next free slot is %d ms ahead" % ahead_ms)
        # A fresh send with a 1 s deadline goes at once.
        r = self.s.SendSMS(self.m.SendSMSRequest(to="+14155550101", body="fresh"), timeout=1)
        self.assertTrue(r.sid.startswith("SM"))
        # No lease outlives its call (released leases go out within 50 ms).
        deadline = time.monotonic() + 2
        while self.redis("ZCARD", "cg:{account}:leases") != "0" and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.redis("ZCARD", "cg:{account}:leases"), "0")


class WhatsAppTest(Base):
    ENV = {"COMMSGATE_WHATSAPP_WINDOW_SECONDS": "2"}
    TO = "+14155550150"

    def open_window(self, ago_ms=0):
        self.redis("SET", "cg:{%s}:wa" % self.TO, str(self.now_ms() - ago_ms), "EX", "604800")

    def test_free_form_outside_window_refused_without_request(self):
        e = self.fails(self.s.SendWhatsApp, self.m.SendWhatsAppRequest(to=self.TO, body="hi"),
                       grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("window", e.details())
        _, info, _ = harness.status_details(e)
        self.assertEqual(info.reason, "WHATSAPP_WINDOW_CLOSED")
        self.assertEqual(self.sim.requests("Messages.json"), [])

    def test_template_accepted_any_time(self):
        r = self.s.SendWhatsApp(self.m.SendWhatsAppRequest(
            to=self.TO, content_sid="HX" + "0" * 32, content_variables={"1": "Ada", "2": "3pm"}),
            timeout=5)
        self.assertTrue(r.template)
        sent = self.sim.params(self.sim.requests("Messages.json")[0])
        self.assertEqual(sent["To"], "whatsapp:" + self.TO)
        self.assertEqual(sent["From"], "whatsapp:" + WA_SENDER)
        self.assertEqual(sent["ContentSid"], "HX" + "0" * 32)
        self.assertEqual(sent["ContentVariables"], '{"1":"Ada","2":"3pm"}')
        self.assertNotIn("Body", sent)

    def test_inside_window_free_form_then_window_closes(self):
        self.open_window()
        r = self.s.SendWhatsApp(self.m.SendWhatsAppRequest(
            to=self.TO, body="hi", media_urls=["https://example.com/a.png"]), timeout=5)
        self.assertFalse(r.template)
        sent = self.sim.requests("Messages.json")[0]["params"]
        self.assertIn(["MediaUrl", "https://example.com/a.png"], sent)
        time.sleep(2.1)  # the configured window is 2 s
        e = self.fails(self.s.SendWhatsApp, self.m.SendWhatsAppRequest(to=self.TO, body="hi"),
                       grpc.StatusCode.FAILED_PRECONDITION)
        self.assertRegex(e.details(), r"closed at \d{4}-\d\d-\d\dT")
        self.assertEqual(len(self.sim.requests("Messages.json")), 1)

    def test_twilio_63016_closes_the_window(self):
        self.open_window()
        self.sim.fault(path_suffix="Messages.json", status=400, code=63016)
        e = self.fails(self.s.SendWhatsApp, self.m.SendWhatsAppRequest(to=self.TO, body="hi"),
                       grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(harness.trailer(e, "twilio-error-code"), "63016")
        time.sleep(0.2)
        self.assertEqual(self.redis("EXISTS", "cg:{%s}:wa" % self.TO), "0")

    def test_bad_combinations(self):
        for req in (self.m.SendWhatsAppRequest(to=self.TO),
                    self.m.SendWhatsAppRequest(to=self.TO, body="x", content_sid="HX" + "0" * 32),
                    self.m.SendWhatsAppRequest(to=self.TO, media_urls=["http://insecure/a.png"]),
                    self.m.SendWhatsAppRequest(to=self.TO, body="x" * 1025)):
            self.fails(self.s.SendWhatsApp, req, grpc.StatusCode.INVALID_ARGUMENT)


class CallTest(Base):
    def test_say_is_escaped_twiml(self):
        r = self.s.PlaceCall(self.m.PlaceCallRequest(
            to="+14155550160", say=self.m.Say(text='Tom & "Jerry" <3', voice="alice",
                                             language="en-US")), timeout=5)
        self.assertRegex(r.sid, r"^CA[0-9a-f]{32}$")
        sent = self.sim.requests("Calls.json")[0]["params"]
        twiml = dict(sent)["Twiml"]
        self.assertIn('<Say voice="alice" language="en-US">Tom &amp; &quot;Jerry&quot; &lt;3</Say>',
                      twiml)
        events = [v for k, v in sent if k == "StatusCallbackEvent"]
        self.assertEqual(events, ["initiated", "ringing", "answered", "completed"])

    def test_url_must_be_https_and_one_instruction_required(self):
        self.fails(self.s.PlaceCall, self.m.PlaceCallRequest(to="+14155550160",
                                                             url="http://x/twiml"),
                   grpc.StatusCode.INVALID_ARGUMENT)
        self.fails(self.s.PlaceCall, self.m.PlaceCallRequest(to="+14155550160"),
                   grpc.StatusCode.INVALID_ARGUMENT)
        r = self.s.PlaceCall(self.m.PlaceCallRequest(to="+14155550160",
                                                     url="https://example.com/t.xml"), timeout=5)
        self.assertEqual(r.status, "queued")


class VerifyTest(Base):
    ENV = {"COMMSGATE_VERIFY_COOLDOWN_SECONDS": "0"}
    TO = "+14155550170"

    def start(self, to=None, **kw):
        return self.s.StartVerification(self.m.StartVerificationRequest(to=to or self.TO, **kw),
                                        timeout=5)

    def check(self, code, to=None):
        return self.s.CheckVerification(self.m.CheckVerificationRequest(to=to or self.TO,
                                                                        code=code), timeout=5)

    def test_fourth_start_in_ten_minutes_refused_with_wait(self):
        for _ in range(3):
            self.assertEqual(self.start().status, "pending")
        e = self.fails(self.s.StartVerification, self.m.StartVerificationRequest(to=self.TO),
                       grpc.StatusCode.RESOURCE_EXHAUSTED)
        m = re.search(r"retry in (\d+) s", e.details())
        self.assertTrue(m, e.details())
        self.assertTrue(500 < int(m.group(1)) <= 600)
        _, info, retry = harness.status_details(e)
        self.assertEqual(info.reason, "VERIFY_SEND_LIMIT")
        self.assertEqual(info.metadata["retry_after_seconds"], m.group(1))
        self.assertTrue(500 < retry.retry_delay.seconds <= 600)
        self.assertEqual(len(self.sim.requests("Verifications")), 3)

    def test_only_successful_sends_count(self):
        self.sim.fault(path_suffix="Verifications", status=400, code=60200)
        self.fails(self.s.StartVerification, self.m.StartVerificationRequest(to=self.TO),
                   grpc.StatusCode.INVALID_ARGUMENT)
        for _ in range(3):
            self.start()
        self.assertEqual(len(self.sim.requests("Verifications")), 4)

    def test_right_code_valid_wrong_code_not_an_error(self):
        r = self.start(channel=self.m.CHANNEL_CALL, locale="fr")
        self.assertEqual(r.channel, self.m.CHANNEL_CALL)
        sent = self.sim.params(self.sim.requests("Verifications")[0])
        self.assertEqual((sent["Channel"], sent["Locale"]), ("call", "fr"))
        code = self.sim.verifications()[0]["code"]
        wrong = "000000" if code != "000000" else "111111"
        r = self.check(wrong)
        self.assertEqual((r.valid, r.status), (False, "pending"))
        r = self.check(code)
        self.assertEqual((r.valid, r.status), (True, "approved"))
        # Approved: nothing pending any more.
        e = self.fails(self.s.CheckVerification,
                       self.m.CheckVerificationRequest(to=self.TO, code=code),
                       grpc.StatusCode.NOT_FOUND)
        self.assertEqual(harness.trailer(e, "twilio-error-code"), "20404")

    def test_sixth_check_refused(self):
        self.start()
        for _ in range(5):
            self.assertFalse(self.check("999999").valid)
        e = self.fails(self.s.CheckVerification,
                       self.m.CheckVerificationRequest(to=self.TO, code="999999"),
                       grpc.StatusCode.RESOURCE_EXHAUSTED)
        _, info, retry = harness.status_details(e)
        self.assertEqual(info.reason, "VERIFY_CHECK_LIMIT")
        self.assertGreater(retry.retry_delay.seconds, 500)
        self.assertEqual(len(self.sim.requests("VerificationCheck")), 5)

    def test_twilio_60203_is_resource_exhausted(self):
        self.sim.fault(path_suffix="Verifications", status=429, code=60203)
        e = self.fails(self.s.StartVerification, self.m.StartVerificationRequest(to=self.TO),
                       grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(harness.trailer(e, "twilio-error-code"), "60203")

    def test_email_channel_and_bad_input(self):
        r = self.start(to="ada@example.com", channel=self.m.CHANNEL_EMAIL)
        self.assertEqual(r.status, "pending")
        self.fails(self.s.StartVerification,
                   self.m.StartVerificationRequest(to="not-an-email", channel=self.m.CHANNEL_EMAIL),
                   grpc.StatusCode.INVALID_ARGUMENT)
        self.fails(self.s.CheckVerification,
                   self.m.CheckVerificationRequest(to=self.TO, code="12ab"),
                   grpc.StatusCode.INVALID_ARGUMENT)


class CooldownTest(Base):
    def test_cooldown_between_sends(self):
        self.s.StartVerification(self.m.StartVerificationRequest(to="+14155550180"), timeout=5)
        e = self.fails(self.s.StartVerification,
                       self.m.StartVerificationRequest(to="+14155550180"),
                       grpc.StatusCode.RESOURCE_EXHAUSTED)
        _, info, retry = harness.status_details(e)
        self.assertEqual(info.reason, "VERIFY_COOLDOWN")
        self.assertTrue(0 < retry.retry_delay.seconds <= 30)


class BudgetTest(unittest.TestCase):
    """Daemons on one Redis share one account send rate."""
    CLUSTER = False

    def test_two_daemons_share_the_send_rate(self):
        self.check_shared_rate([{}, {}])

    def test_three_daemons_share_the_send_rate(self):
        self.check_shared_rate([{}, {}, {}])

    def test_two_daemons_of_three_loops_share_the_send_rate(self):
        # Six loops, each its own Redis client: the rate holds across them
        # as it does across replicas.
        self.check_shared_rate([{"COMMSGATE_LOOPS": "3"}, {"COMMSGATE_LOOPS": "3"}])

    def check_shared_rate(self, envs):
        redis = harness.shared_cluster() if self.CLUSTER else harness.start_redis()
        url = {"REDIS_URL": redis.url} if self.CLUSTER else {}
        sim = harness.start_sim()
        daemons = [harness.start_daemon(redis.port, sim.url,
                                        extra_env=dict(e, COMMSGATE_SEND_RATE="5", **url))
                   for e in envs]
        channels = [grpc.insecure_channel(d.grpc_target) for d in daemons]
        try:
            stubs = [harness.Stubs(c) for c in channels]
            m = stubs[0].messaging_pb2
            futures = [stubs[i % len(stubs)].SendSMS.future(
                m.SendSMSRequest(to="+1415555%04d" % i, body="x"), timeout=15)
                for i in range(15)]
            for f in futures:
                self.assertTrue(f.result().sid.startswith("SM"))
            times = sorted(r["time"] for r in harness.Sim(sim.url).requests("Messages.json"))
            self.assertEqual(len(times), 15)
            # 5 segments/s for the account: spaced ~200 ms apart, whichever
            # replica sent them; never more than 5 (+1 at a window's edge).
            self.assertGreaterEqual(times[-1] - times[0], 2.5)
            for i, t in enumerate(times):
                in_window = sum(1 for u in times[i:] if u - t < 1.0)
                self.assertLessEqual(in_window, 6, times)
        finally:
            for c in channels:
                c.close()
            rcs = [d.stop() for d in daemons]
            sim.stop()
            if not self.CLUSTER:
                redis.stop()
        self.assertEqual(rcs, [0] * len(envs))

    def test_over_budget_waits_within_deadline_or_is_refused(self):
        stack = harness.Stack(env={"COMMSGATE_SEND_RATE": "1"}, cluster=self.CLUSTER)
        try:
            m = stack.stubs.messaging_pb2
            stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550190", body="x"), timeout=5)
            t0 = time.monotonic()
            # The next place is ~1 s away: it fits a 3 s deadline, so it waits.
            stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550191", body="x"), timeout=3)
            self.assertGreater(time.monotonic() - t0, 0.5)
            # It does not fit 0.3 s: refused with the wait.
            with self.assertRaises(grpc.RpcError) as cm:
                stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550192", body="x"), timeout=0.3)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            _, info, retry = harness.status_details(cm.exception)
            self.assertEqual(info.reason, "ACCOUNT_RATE_LIMITED")
            self.assertIsNotNone(retry)
            self.assertEqual(len(harness.Sim(stack.sim.url).requests("Messages.json")), 2)
        finally:
            self.assertEqual(stack.close(), 0)


    def test_call_gone_while_waiting_for_its_slot_sends_nothing(self):
        # 2 segments/s: B is booked 0.5 s after A and waits for its slot;
        # its caller cancels. Nothing goes to Twilio for B, and C, booked
        # after B's slot, still keeps the spacing (B's slot goes unused).
        stack = harness.Stack(env={"COMMSGATE_SEND_RATE": "2"}, cluster=self.CLUSTER)
        try:
            m = stack.stubs.messaging_pb2
            stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550193", body="a"), timeout=5)
            b = stack.stubs.SendSMS.future(m.SendSMSRequest(to="+14155550194", body="b"),
                                           timeout=5)
            time.sleep(0.1)
            b.cancel()
            stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550195", body="c"), timeout=5)
            sent = harness.Sim(stack.sim.url).requests("Messages.json")
            to = [dict(r["params"])["To"] for r in sent]
            self.assertEqual(to, ["+14155550193", "+14155550195"])
            self.assertGreaterEqual(sent[1]["time"] - sent[0]["time"], 0.9)
            self.assertTrue(b.cancelled())
        finally:
            self.assertEqual(stack.close(), 0)


class RedisHangDuringKeyedSendsTest(Base):
    """Redis hangs while keyed sends are being decided: each caller is told
    nothing was sent, and each key works again once Redis is back (the claims
    are dropped by their owner), not locked for its lifetime."""

    def test_keys_usable_after_redis_returns(self):
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550100", body="warm"), timeout=5)
        self.stack.redis.signal(signal.SIGSTOP)
        try:
            reqs = [self.m.SendSMSRequest(to="+1415555%04d" % (3000 + i), body="x",
                                          idempotency_key="hang-%d" % i) for i in range(20)]
            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                errs = list(pool.map(lambda r: self.fails(self.s.SendSMS, r,
                                                          grpc.StatusCode.UNAVAILABLE,
                                                          timeout=3), reqs))
            for e in errs:
                self.assertIn("nothing was sent", e.details())
        finally:
            self.stack.redis.signal(signal.SIGCONT)
        self.stack.wait_serving(self.stack.stubs.health_pb2.HealthCheckResponse.SERVING,
                                timeout=10)
        first = {}
        deadline = time.monotonic() + 10
        for r in reqs:
            while True:  # a claim executed late by Redis is dropped right after
                try:
                    first[r.idempotency_key] = self.s.SendSMS(r, timeout=5).sid
                    break
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.ABORTED or time.monotonic() > deadline:
                        raise
        # Each message sent once; a repeat now answers with its SID.
        for r in reqs:
            self.assertEqual(self.s.SendSMS(r, timeout=5).sid, first[r.idempotency_key])
        sent = [q for q in self.sim.requests("Messages.json") if q["status"] == 201]
        self.assertEqual(len(sent), 21)


class RedisDownTest(Base):
    def test_redis_stopped_mid_test_unavailable_and_nothing_sent(self):
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550100", body="x"), timeout=5)
        self.stack.redis.signal(signal.SIGSTOP)  # hung, not closed: the harder case
        try:
            for call, req in ((self.s.SendSMS, self.m.SendSMSRequest(to="+14155550100",
                                                                     body="x")),
                              (self.s.StartVerification,
                               self.m.StartVerificationRequest(to="+14155550100")),
                              (self.s.PlaceCall, self.m.PlaceCallRequest(
                                  to="+14155550100", url="https://example.com/t"))):
                e = self.fails(call, req, grpc.StatusCode.UNAVAILABLE, timeout=5)
                self.assertIn("Redis", e.details())
        finally:
            self.stack.redis.signal(signal.SIGCONT)
        self.assertEqual(len(self.sim.requests()), 1)


if __name__ == "__main__":
    unittest.main()
