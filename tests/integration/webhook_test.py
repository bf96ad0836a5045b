"""Webhooks: signatures checked against Twilio's own helper library
(Debian python3-twilio), opt-out keywords, the WhatsApp window, delivery
status from the simulator's signed callbacks, the events stream, replays,
and hostile requests."""
import json
import os
import subprocess
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import grpc
from twilio.request_validator import RequestValidator

import harness

PUBLIC = "https://hooks.example.com"  # what Twilio sees; we post to loopback
INBOUND = "/webhooks/twilio/messages/inbound"
STATUS = "/webhooks/twilio/messages/status"
CALLS = "/webhooks/twilio/calls/status"


class Base(unittest.TestCase):
    ENV = {}
    CLUSTER = False  # cluster_test runs these on a Redis Cluster

    def setUp(self):
        env = {"TWILIO_WHATSAPP_NUMBER": "+14155238886"}
        env.update(self.ENV)
        self.stack = harness.Stack(env=env, cluster=self.CLUSTER)
        self.stack.wait_serving(1)
        self.m = self.stack.stubs.messaging_pb2
        self.s = self.stack.stubs
        self.base = "http://127.0.0.1:%d" % self.stack.daemon.http_port
        self.admin = "http://127.0.0.1:%d" % self.stack.daemon.admin_port
        self.validator = RequestValidator(harness.SIM_AUTH_TOKEN)

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())

    def redis(self, *args):
        return harness.redis_cli(self.stack.redis.port, *args)

    def post(self, path, params, signature=None, sign_url=None, headers=None,
             content_type="application/x-www-form-urlencoded", body=None):
        """POSTs to the daemon as Twilio would, signed by Twilio's library
        for the URL Twilio would have called (the public URL)."""
        url = (sign_url or self.stack.public_url) + path
        if signature is None:
            signature = self.validator.compute_signature(url, dict(params))
        data = body if body is not None else urllib.parse.urlencode(params).encode()
        h = {"Content-Type": content_type}
        if signature is not False:
            h["X-Twilio-Signature"] = signature
        h.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method="POST", headers=h)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.headers.get("Content-Type"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()

    def inbound(self, frm, body, sid=None, **extra):
        params = {"MessageSid": sid or "SM%032x" % (hash((frm, body, time.time())) & (2**128 - 1)),
                  "AccountSid": harness.SIM_ACCOUNT_SID, "From": frm, "To": "+15005550006",
                  "Body": body, "NumMedia": "0"}
        params.update(extra)
        return self.post(INBOUND, params)

    def events(self):
        out = self.redis("XRANGE", "cg:events", "-", "+")
        return out


class WebhookSecurityTest(Base):
    ENV = {"COMMSGATE_PUBLIC_URL": PUBLIC}

    def setUp(self):
        super().setUp()
        self.stack.public_url = PUBLIC

    def test_twilio_library_signatures_are_accepted(self):
        cases = [
            {"MessageSid": "SM" + "1" * 32, "From": "+14155550100", "Body": "hello"},
            {"MessageSid": "SM" + "2" * 32, "From": "+14155550100", "Body": "héllo wörld ✓ 😀"},
            {"MessageSid": "SM" + "3" * 32, "From": "+14155550100", "Body": "a&b=c+d%e"},
            {"MessageSid": "SM" + "4" * 32, "From": "+14155550100", "Body": "",
             "MediaUrl0": "https://x/y?z=1", "NumMedia": "1", "ProfileName": "Ada"},
        ]
        for params in cases:
            status, ctype, body = self.post(INBOUND, params)
            self.assertEqual(status, 200, (params, body))
            self.assertEqual(ctype, "text/xml")
            self.assertIn("<Response/>", body)
        # With a query string in the webhook URL Twilio was given.
        status, _, _ = self.post(INBOUND + "?tenant=a&x=%20y",
                                 {"MessageSid": "SM" + "5" * 32, "From": "+14155550100",
                                  "Body": "q"})
        self.assertEqual(status, 200)

    def test_port_variants_are_accepted(self):
        params = {"MessageSid": "SM" + "6" * 32, "From": "+14155550100", "Body": "port"}
        sig = self.validator.compute_signature(PUBLIC + ":443" + INBOUND, params)
        status, _, _ = self.post(INBOUND, params, signature=sig)
        self.assertEqual(status, 200)

    def test_every_altered_byte_is_rejected(self):
        params = {"MessageSid": "SM" + "7" * 32, "From": "+14155550100", "Body": "STOP"}
        sig = self.validator.compute_signature(PUBLIC + INBOUND, params)
        for i in range(len(sig)):
            bad = sig[:i] + ("A" if sig[i] != "A" else "B") + sig[i + 1:]
            self.assertEqual(self.post(INBOUND, params, signature=bad)[0], 403, i)
        for key in params:
            for i in range(len(params[key])):
                altered = dict(params)
                v = altered[key]
                altered[key] = v[:i] + ("x" if v[i] != "x" else "y") + v[i + 1:]
                self.assertEqual(self.post(INBOUND, altered, signature=sig)[0], 403, (key, i))
        # The URL: signed for another path or query.
        other = self.validator.compute_signature(PUBLIC + INBOUND + "?a=1", params)
        self.assertEqual(self.post(INBOUND, params, signature=other)[0], 403)
        self.assertEqual(self.post(INBOUND, params, signature=False)[0], 403)
        # Nothing was applied: the STOP never landed.
        self.assertEqual(self.redis("EXISTS", "cg:{+14155550100}:optout"), "0")
        metrics = urllib.request.urlopen(self.admin + "/metrics", timeout=5).read().decode()
        failures = [l for l in metrics.splitlines()
                    if l.startswith("commsgate_webhook_signature_failures_total ")]
        self.assertGreater(int(failures[0].split()[1]), 40)

    def test_hostile_requests_get_a_clear_4xx_and_change_nothing(self):
        params = {"MessageSid": "SM" + "8" * 32, "From": "+14155550100", "Body": "STOP"}
        self.assertEqual(self.post(INBOUND, params, content_type="text/plain")[0], 415)
        self.assertEqual(self.post(INBOUND, params, body=b"Body=%zz&From=%2B1")[0], 400)
        huge = urllib.parse.urlencode({"Body": "x" * 70000}).encode()
        self.assertEqual(self.post(INBOUND, params, body=huge)[0], 413)
        self.assertEqual(self.redis("EXISTS", "cg:{+14155550100}:optout"), "0")
        self.assertEqual(self.redis("EXISTS", "cg:events"), "0")
        # Still alive and serving.
        r = urllib.request.urlopen(self.admin + "/healthz", timeout=5)
        self.assertEqual(r.status, 200)
        self.assertEqual(self.post(INBOUND, params)[0], 200)


class KeywordTest(Base):
    ENV = {"COMMSGATE_WHATSAPP_WINDOW_SECONDS": "2"}

    def setUp(self):
        super().setUp()
        self.stack.public_url = "http://127.0.0.1:%d" % self.stack.daemon.http_port

    def test_stop_then_refused_start_then_sent(self):
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550111", body="hi"), timeout=5)
        self.assertEqual(self.inbound("+14155550111", "  stop ")[0], 200)
        with self.assertRaises(grpc.RpcError) as cm:
            self.s.SendSMS(self.m.SendSMSRequest(to="+14155550111", body="hi"), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(self.inbound("+14155550111", "Start")[0], 200)
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550111", body="welcome back"), timeout=5)

    def test_a_nul_in_body_is_kept_and_is_no_keyword(self):
        # "STOP\0please do not..." must not opt the sender out, and the
        # events stream keeps the whole body, not "STOP".
        self.assertEqual(self.inbound("+14155550112", "STOP\x00please do not stop")[0], 200)
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550112", body="still here"), timeout=5)
        self.assertIn("STOP\x00please do not stop", self.events())
        self.assertEqual(self.redis("EXISTS", "cg:{+14155550112}:optout").strip(), "0")

    def test_a_nul_in_any_other_parameter_is_400(self):
        before = self.events()
        status, _, text = self.inbound("+14155550113\x00", "STOP")
        self.assertEqual(status, 400, text)
        status, _, text = self.inbound("+14155550113", "STOP", OptOutType="STOP\x00")
        self.assertEqual(status, 400, text)
        self.assertEqual(self.events(), before)
        self.assertEqual(self.redis("EXISTS", "cg:{+14155550113}:optout").strip(), "0")

    def test_every_keyword(self):
        for i, word in enumerate(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
                                  "OPTOUT", "REVOKE")):
            n = "+1415555%04d" % (2000 + i)
            self.inbound(n, word.lower())
            self.assertEqual(self.redis("EXISTS", "cg:{%s}:optout" % n), "1", word)
            self.inbound(n, ("START", "YES", "UNSTOP")[i % 3])
            self.assertEqual(self.redis("EXISTS", "cg:{%s}:optout" % n), "0", word)
        # Only the whole message counts; OptOutType wins when present.
        self.inbound("+14155552100", "please stop texting")
        self.assertEqual(self.redis("EXISTS", "cg:{+14155552100}:optout"), "0")
        self.inbound("+14155552101", "arrêtez", OptOutType="STOP")
        self.assertEqual(self.redis("EXISTS", "cg:{+14155552101}:optout"), "1")
        self.inbound("+14155552102", "help")
        kinds = self.events()
        self.assertIn("help", kinds)

    def test_inbound_whatsapp_opens_the_window_which_then_closes(self):
        req = self.m.SendWhatsAppRequest(to="+14155550150", body="hi")
        with self.assertRaises(grpc.RpcError):
            self.s.SendWhatsApp(req, timeout=5)
        self.assertEqual(self.inbound("whatsapp:+14155550150", "STOP")[0], 200)
        self.s.SendWhatsApp(req, timeout=5)  # the window is open now
        # A WhatsApp "STOP" is not an SMS opt-out.
        self.assertEqual(self.redis("EXISTS", "cg:{+14155550150}:optout"), "0")
        time.sleep(2.1)
        with self.assertRaises(grpc.RpcError) as cm:
            self.s.SendWhatsApp(req, timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)

    def test_a_stop_redis_did_not_take_is_503_named_in_the_log_and_applied_again(self):
        """Redis down: the STOP is answered 503 (never 200 for an opt-out not
        kept), the log names the message so an operator can find it in
        Twilio's console, and Twilio's retry of it, once Redis is back,
        opts the number out."""
        sid = "SM" + "5" * 32
        self.stack.redis.stop()
        status, _, text = self.inbound("+14155550118", "STOP", sid=sid)
        self.assertEqual(status, 503, text)
        lines = [json.loads(l) for l in self.stack.daemon.output().splitlines()
                 if '"webhook_not_applied"' in l]
        self.assertEqual([(l["route"], l["sid"], l["keyword"]) for l in lines],
                         [("messages_inbound", sid, "stop")], lines)
        # A burst: other events' lines are limited to ten a second (40 posts
        # in under 3 s make at most 30), while each opt-out among them, one
        # after every fifth, still has its own.
        t0 = time.monotonic()
        stops = []
        for i in range(40):
            st = self.post(STATUS, {"MessageSid": "SM%032x" % i, "MessageStatus": "sent",
                                    "AccountSid": harness.SIM_ACCOUNT_SID})[0]
            self.assertEqual(st, 503)
            if i % 5 == 4:
                stops.append("SM%032x" % (100 + i))
                self.assertEqual(self.inbound("+14155550119", "STOP", sid=stops[-1])[0], 503)
        self.assertLess(time.monotonic() - t0, 3)
        lines = [json.loads(l) for l in self.stack.daemon.output().splitlines()
                 if '"webhook_not_applied"' in l]
        statuses = [l for l in lines if l["route"] == "messages_status"]
        self.assertTrue(1 <= len(statuses) < 40, len(statuses))
        self.assertEqual([l["sid"] for l in lines if l["keyword"] == "stop"], [sid] + stops)
        if self.CLUSTER:  # a stopped cluster is made anew by the next test
            return
        self.stack.redis = harness.start_redis(self.stack.redis.port)
        self.stack.wait_serving(1)
        self.assertEqual(self.inbound("+14155550118", "STOP", sid=sid)[0], 200)
        self.assertEqual(self.redis("EXISTS", "cg:{+14155550118}:optout"), "1")

    def test_simulator_inbound_is_signed_and_applied(self):
        harness.http_json("POST", self.stack.sim.url + "/__sim/inbound",
                          {"url": self.stack.public_url + INBOUND, "from": "+14155550112",
                           "to": "+15005550006", "body": "STOP"})
        deadline = time.monotonic() + 5
        while self.redis("EXISTS", "cg:{+14155550112}:optout") != "1":
            self.assertLess(time.monotonic(), deadline, self.stack.daemon.output()[-2000:])
            time.sleep(0.05)


class DeliveryTest(Base):
    def setUp(self):
        super().setUp()
        self.stack.public_url = "http://127.0.0.1:%d" % self.stack.daemon.http_port

    def wait_status(self, sid, want, timeout=5):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.s.GetMessage(self.m.GetMessageRequest(sid=sid), timeout=5)
            if got.status == want:
                return got
            time.sleep(0.05)
        self.fail("status stayed %s, wanted %s" % (got and got.status, want))

    def test_simulator_callbacks_reach_delivered(self):
        r = self.s.SendSMS(self.m.SendSMSRequest(to="+14155550113", body="track me"), timeout=5)
        got = self.wait_status(r.sid, "delivered")
        self.assertGreater(got.updated_at.seconds, 0)
        r = self.s.SendSMS(self.m.SendSMSRequest(to="+15005550020", body="x"), timeout=5)
        got = self.wait_status(r.sid, "undelivered")
        self.assertEqual(got.error_code, 30003)

    def test_out_of_order_and_repeated_callbacks(self):
        sid = "SM" + "a" * 32
        for status in ("delivered", "sent", "queued", "delivered"):
            code, _, _ = self.post(STATUS, {"MessageSid": sid, "MessageStatus": status,
                                            "AccountSid": harness.SIM_ACCOUNT_SID})
            self.assertEqual(code, 200)
        self.assertEqual(self.s.GetMessage(self.m.GetMessageRequest(sid=sid), timeout=5).status,
                         "delivered")
        events = self.redis("XRANGE", "cg:events", "-", "+").splitlines()
        # delivered, sent, queued: each event once (the repeated delivered is not).
        self.assertEqual(events.count(sid), 3)
        self.assertTrue(0 < int(self.redis("TTL", "cg:events")) <= 604800)
        self.assertTrue(0 < int(self.redis("TTL", "cg:{%s}:msg" % sid)) <= 604800)

    def test_idempotency_token_applies_once(self):
        params = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "sent"}
        for _ in range(3):
            self.post(STATUS, params, headers={"I-Twilio-Idempotency-Token": "tok-1"})
        self.assertEqual(self.redis("XLEN", "cg:events"), "1")

    def test_replays_with_fresh_tokens_apply_once(self):
        """I-Twilio-Idempotency-Token is not signed: a replay of a signed
        callback under a new token is still the same event."""
        params = {"MessageSid": "SM" + "d" * 32, "MessageStatus": "delivered"}
        for i in range(5):
            self.assertEqual(self.post(STATUS, params,
                                       headers={"I-Twilio-Idempotency-Token": "fresh-%d" % i})[0],
                             200)
        self.assertEqual(self.redis("XLEN", "cg:events"), "1")
        inbound = {"MessageSid": "SM" + "e" * 32, "From": "+14155550190", "Body": "hi"}
        for i in range(3):
            self.post(INBOUND, inbound, headers={"I-Twilio-Idempotency-Token": "in-%d" % i})
        self.assertEqual(self.redis("XLEN", "cg:events"), "2")
        calls = {"CallSid": "CA" + "f" * 32, "CallStatus": "completed"}
        for i in range(3):
            self.post(CALLS, calls, headers={"I-Twilio-Idempotency-Token": "call-%d" % i})
        self.assertEqual(self.redis("XLEN", "cg:events"), "3")

    def test_call_status_recorded_once(self):
        params = {"CallSid": "CA" + "c" * 32, "CallStatus": "completed", "CallDuration": "12"}
        self.assertEqual(self.post(CALLS, params)[0], 200)
        self.assertEqual(self.post(CALLS, params)[0], 200)
        events = self.redis("XRANGE", "cg:events", "-", "+").splitlines()
        self.assertEqual(events.count("call_status"), 1)
        self.assertEqual(self.post(CALLS, {"CallSid": "nope", "CallStatus": "x"})[0], 400)

    def test_metrics_and_probes(self):
        self.s.SendSMS(self.m.SendSMSRequest(to="+14155550114", body="x"), timeout=5)
        self.wait_status(self.s.SendSMS(self.m.SendSMSRequest(to="+14155550115", body="y"),
                                        timeout=5).sid, "delivered")
        text = urllib.request.urlopen(self.admin + "/metrics", timeout=5).read().decode()
        for needle in ('commsgate_rpc_requests_total{method="SendSMS",code="OK"} 2',
                       'commsgate_twilio_requests_total{api="Messages.json",outcome="ok"} 2',
                       'commsgate_message_status_total{status="delivered"}',
                       "commsgate_twilio_request_duration_seconds_bucket",
                       "commsgate_redis_up 1"):
            self.assertIn(needle, text)
        self.assertEqual(urllib.request.urlopen(self.admin + "/readyz", timeout=5).status, 200)
        port = self.stack.redis.port
        # Per Redis node: the one node, or each master of the cluster.
        nodes = {"127.0.0.1:%d" % p
                 for p in (self.stack.redis.masters() if self.CLUSTER else [port])}
        admin_port = self.stack.daemon.admin_port
        self.assertEqual(harness.node_metric(admin_port, "commsgate_redis_node_up"),
                         dict.fromkeys(nodes, 1))
        commands = harness.node_metric(admin_port, "commsgate_redis_node_commands_total")
        self.assertGreater(sum(commands[n] for n in nodes), 2)
        self.stack.redis.stop()
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(self.admin + "/readyz", timeout=5)
        self.assertEqual(cm.exception.code, 503)
        harness.wait_for(lambda: set(harness.node_metric(
            admin_port, "commsgate_redis_node_up").values()) == {0}, "every node down")
        self.assertEqual(urllib.request.urlopen(self.admin + "/healthz", timeout=5).status, 200)
        if not self.CLUSTER:  # a stopped cluster is made anew by the next test
            self.stack.redis = harness.start_redis(port)

    def test_process_metrics_and_build_info(self):
        text = urllib.request.urlopen(self.admin + "/metrics", timeout=5).read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        pid = self.stack.daemon.pid
        with open("/proc/%d/status" % pid) as f:
            rss = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:")][0]
        self.assertLess(abs(values["process_resident_memory_bytes"] - rss), rss / 2)
        # The same count, give or take the admin connection it was asked on.
        self.assertLessEqual(abs(values["process_open_fds"] - len(os.listdir("/proc/%d/fd" % pid))),
                             2)
        self.assertGreater(values["process_max_fds"], values["process_open_fds"])
        self.assertLess(abs(values["process_start_time_seconds"] -
                            os.stat("/proc/%d" % pid).st_mtime), 60)
        self.assertGreater(values["process_cpu_seconds_total"], 0)
        version = subprocess.run([os.path.join(harness.BIN_DIR, "commsgate"), "--version"],
                                 capture_output=True, text=True).stdout.split()[1]
        info = [n for n in values if n.startswith("commsgate_build_info{")]
        self.assertEqual(len(info), 1, info)
        self.assertIn('version="%s"' % version, info[0])
        self.assertIn('grpc="', info[0])
        self.assertEqual(values[info[0]], 1)

    def test_the_public_port_serves_webhooks_only(self):
        # /metrics and the probes are on the admin listener, never on the
        # port that faces the internet.
        for path in ("/metrics", "/healthz", "/readyz"):
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(self.base + path, timeout=5)
            self.assertEqual(cm.exception.code, 404, path)
        # The admin listener answers GETs only, and on loopback by default.
        req = urllib.request.Request(self.admin + "/metrics", data=b"x", method="POST")
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=5)
        self.assertEqual(cm.exception.code, 405)
        out = subprocess.run([os.path.join(harness.BIN_DIR, "commsgate"), "--help"],
                             capture_output=True, text=True).stdout
        self.assertRegex(out, r"COMMSGATE_ADMIN_ADDR.*127\.0\.0\.1:8081")


if __name__ == "__main__":
    unittest.main()
