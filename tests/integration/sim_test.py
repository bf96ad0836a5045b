"""twilio-sim on its own: credentials, magic numbers, faults, recording.
The other tests trust it to behave like Twilio; this is where that is held."""
import base64
import signal
import socket
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import harness

ACCOUNT = harness.SIM_ACCOUNT_SID
MESSAGES = "/2010-04-01/Accounts/%s/Messages.json" % ACCOUNT
CALLS = "/2010-04-01/Accounts/%s/Calls.json" % ACCOUNT
VERIFY = "/v2/Services/%s" % harness.SIM_VERIFY_SID


class SimTest(unittest.TestCase):
    def setUp(self):
        self.p = harness.start_sim()
        self.sim = harness.Sim(self.p.url)

    def tearDown(self):
        rc = self.p.stop()
        self.assertEqual(rc, 0, self.p.output())
        self.assertNotIn("runtime error", self.p.output())
        self.assertNotIn("Sanitizer", self.p.output())

    def post(self, path, params, user=ACCOUNT, password=harness.SIM_AUTH_TOKEN, headers=None):
        body = urllib.parse.urlencode(params).encode()
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        if user is not None:
            h["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % (user, password)).encode()).decode()
        h.update(headers or {})
        req = urllib.request.Request(self.p.url + path, data=body, method="POST", headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, __import__("json").loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, __import__("json").loads(e.read())

    def sms(self, to, frm="+15005550006", body="hi"):
        return self.post(MESSAGES, [("To", to), ("From", frm), ("Body", body)])

    def test_auth(self):
        status, err = self.post(MESSAGES, [("To", "+14155550100")], password="wrong")
        self.assertEqual((status, err["code"]), (401, 20003))
        status, err = self.post(MESSAGES, [("To", "+14155550100")], user=None)
        self.assertEqual((status, err["code"]), (401, 20003))
        self.assertIn("more_info", err)

    def test_message_shape(self):
        status, m = self.sms("+14155550100", body="a" * 161)
        self.assertEqual(status, 201)
        self.assertRegex(m["sid"], r"^SM[0-9a-f]{32}$")
        self.assertEqual((m["status"], m["num_segments"], m["direction"]),
                         ("queued", "2", "outbound-api"))
        self.assertEqual(m["account_sid"], ACCOUNT)

    def test_magic_numbers(self):
        for to, code in (("+15005550001", 21211), ("+15005550002", 21612),
                         ("+15005550003", 21408), ("+15005550004", 21610),
                         ("+15005550009", 21614)):
            status, err = self.sms(to)
            self.assertEqual((status, err["code"]), (400, code), to)
        for frm, code in (("+15005550001", 21212), ("+15005550007", 21606),
                          ("+15005550008", 21611)):
            status, err = self.sms("+14155550100", frm=frm)
            self.assertEqual((status, err["code"]), (400, code), frm)
        status, err = self.post(CALLS, [("To", "+15005550003"), ("From", "+15005550006"),
                                        ("Url", "https://x/t")])
        self.assertEqual(err["code"], 21215)

    def test_missing_parameters(self):
        self.assertEqual(self.post(MESSAGES, [("From", "+15005550006"),
                                              ("Body", "x")])[1]["code"], 21604)
        self.assertEqual(self.post(MESSAGES, [("To", "+14155550100"),
                                              ("Body", "x")])[1]["code"], 21603)
        self.assertEqual(self.post(MESSAGES, [("To", "+14155550100"),
                                              ("From", "+15005550006")])[1]["code"], 21619)
        self.assertEqual(self.post(CALLS, [("To", "+14155550100"),
                                           ("From", "+15005550006")])[1]["code"], 21205)
        self.assertEqual(self.sms("+14155550100", body="x" * 1601)[1]["code"], 21617)

    def test_recording_keeps_repeated_params_in_order(self):
        self.post(MESSAGES, [("To", "whatsapp:+14155550100"), ("From", "whatsapp:+15005550006"),
                             ("MediaUrl", "https://a/1"), ("MediaUrl", "https://a/2")])
        reqs = self.sim.requests("Messages.json")
        self.assertEqual(len(reqs), 1)
        self.assertEqual([v for k, v in reqs[0]["params"] if k == "MediaUrl"],
                         ["https://a/1", "https://a/2"])
        self.assertEqual(reqs[0]["auth_user"], ACCOUNT)
        self.assertEqual(reqs[0]["status"], 201)
        self.sim.reset()
        self.assertEqual(self.sim.requests(), [])

    def test_verify_flow(self):
        to = "+14155550177"
        status, v = self.post(VERIFY + "/Verifications", [("To", to), ("Channel", "sms")])
        self.assertEqual((status, v["status"]), (201, "pending"))
        code = self.sim.verifications()[0]["code"]
        self.assertRegex(code, r"^\d{6}$")
        wrong = "000000" if code != "000000" else "111111"
        status, c = self.post(VERIFY + "/VerificationCheck", [("To", to), ("Code", wrong)])
        self.assertEqual((status, c["status"], c["valid"]), (200, "pending", False))
        status, c = self.post(VERIFY + "/VerificationCheck", [("To", to), ("Code", code)])
        self.assertEqual((status, c["status"], c["valid"]), (200, "approved", True))
        status, err = self.post(VERIFY + "/VerificationCheck", [("To", to), ("Code", code)])
        self.assertEqual((status, err["code"]), (404, 20404))

    def test_verify_limits(self):
        to = "+14155550178"
        for _ in range(5):
            self.assertEqual(self.post(VERIFY + "/Verifications",
                                       [("To", to), ("Channel", "sms")])[0], 201)
        status, err = self.post(VERIFY + "/Verifications", [("To", to), ("Channel", "sms")])
        self.assertEqual((status, err["code"]), (429, 60203))
        for _ in range(5):
            self.assertEqual(self.post(VERIFY + "/VerificationCheck",
                                       [("To", to), ("Code", "999999x")])[0], 200)
        status, err = self.post(VERIFY + "/VerificationCheck", [("To", to), ("Code", "9")])
        self.assertEqual((status, err["code"]), (429, 60202))
        status, err = self.post(VERIFY + "/Verifications", [("To", to), ("Channel", "fax")])
        self.assertEqual(err["code"], 60200)

    def test_queued_faults(self):
        self.sim.fault(path_suffix="Messages.json", status=429, code=20429, times=2)
        self.assertEqual(self.sms("+14155550100")[1]["code"], 20429)
        self.assertEqual(self.sms("+14155550100")[1]["code"], 20429)
        self.assertEqual(self.sms("+14155550100")[0], 201)
        self.sim.fault(to="+14155550199", status=500, code=20500)
        self.assertEqual(self.sms("+14155550100")[0], 201)  # other numbers unaffected
        self.assertEqual(self.sms("+14155550199")[0], 500)

    def test_concurrency_limit_and_cut_after_acting(self):
        import concurrent.futures
        self.sim.config(max_open=1)
        self.sim.fault(path_suffix="Messages.json", latency_ms=500, times=2)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(self.sms, "+14155550100")
            time.sleep(0.2)
            second = pool.submit(self.sms, "+14155550101")
            results = [first.result(), second.result()]
        self.assertEqual(results[0][0], 201)
        self.assertEqual((results[1][0], results[1][1]["code"]), (429, 20429))
        self.sim.reset()  # the limit goes with the rest
        self.assertEqual(self.sms("+14155550102")[0], 201)
        # after: "reset" acts, then resets the connection instead of answering.
        self.sim.fault(path_suffix="Messages.json", after="reset")
        with self.assertRaises((ConnectionError, urllib.error.URLError, OSError)):
            self.sms("+14155550103")
        got = self.sim.requests("Messages.json")
        self.assertEqual((got[-1]["status"], got[-1]["cut"]), (201, "reset"))

    def get(self, path, params=(), user=ACCOUNT, password=harness.SIM_AUTH_TOKEN):
        url = self.p.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        h = {"Authorization": "Basic " + base64.b64encode(
            ("%s:%s" % (user, password)).encode()).decode()}
        req = urllib.request.Request(url, method="GET", headers=h)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, __import__("json").loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, __import__("json").loads(e.read())

    def test_lists_filter_page_newest_first(self):
        sids = [self.sms("+14155550100", body="m%d" % i)[1]["sid"] for i in range(5)]
        self.sms("+14155550199", body="other recipient")
        self.sms("+14155550100", frm="+15005550010", body="other sender")
        status, page = self.get(MESSAGES, [("To", "+14155550100"), ("From", "+15005550006"),
                                           ("PageSize", "2")])
        self.assertEqual(status, 200)
        self.assertEqual([m["sid"] for m in page["messages"]], sids[::-1][:2])
        self.assertEqual((page["page"], page["page_size"], page["start"]), (0, 2, 0))
        seen = [m["sid"] for m in page["messages"]]
        while page["next_page_uri"]:
            status, page = self.get(page["next_page_uri"])
            self.assertEqual(status, 200)
            seen += [m["sid"] for m in page["messages"]]
        self.assertEqual(seen, sids[::-1])
        self.assertEqual(len(self.get(MESSAGES, [("To", "+14155550100")])[1]["messages"]), 6)
        self.assertEqual(self.get(MESSAGES, [("To", "+14155550100")], password="x")[0], 401)
        status, call = self.post(CALLS, [("To", "+14155550100"), ("From", "+15005550006"),
                                         ("Url", "http://127.0.0.1/twiml")])
        status, calls = self.get(CALLS, [("To", "+14155550100")])
        self.assertEqual([c["sid"] for c in calls["calls"]], [call["sid"]])
        self.sim.reset()
        self.assertEqual(self.get(MESSAGES)[1]["messages"], [])

    def test_verify_attempts_list(self):
        sids = []
        for ch in ("sms", "whatsapp"):
            status, v = self.post(VERIFY + "/Verifications", [("To", "+14155550100"),
                                                                ("Channel", ch)])
            self.assertEqual(status, 201)
            sids.append(v["sid"])
        self.post(VERIFY + "/Verifications", [("To", "+14155550199"), ("Channel", "sms")])
        status, page = self.get("/v2/Attempts", [("ChannelData.To", "+14155550100"),
                                                 ("VerifyServiceSid", harness.SIM_VERIFY_SID),
                                                 ("PageSize", "1")])
        self.assertEqual(status, 200)
        self.assertEqual([a["channel"] for a in page["attempts"]], ["whatsapp"])
        self.assertTrue(page["attempts"][0]["sid"].startswith("VL"))
        self.assertEqual(page["attempts"][0]["verification_sid"], sids[1])
        self.assertEqual(page["attempts"][0]["conversion_status"], "unconverted")
        nxt = page["meta"]["next_page_url"]
        self.assertTrue(nxt.startswith("http://"))
        status, page = self.get(nxt[nxt.index("/v2/"):])
        self.assertEqual([a["channel"] for a in page["attempts"]], ["sms"])
        self.assertIsNone(page["meta"]["next_page_url"])
        status, page = self.get("/v2/Attempts", [("Channel", "sms"),
                                                 ("DateCreatedAfter", "2000-01-01T00:00:00Z")])
        self.assertEqual(len(page["attempts"]), 2)
        status, page = self.get("/v2/Attempts", [("DateCreatedAfter", "2999-01-01T00:00:00Z")])
        self.assertEqual(page["attempts"], [])
        # A code typed right converts the verification's attempts.
        code = [v["code"] for v in self.sim.verifications() if v["sid"] == sids[1]][0]
        self.post(VERIFY + "/VerificationCheck", [("To", "+14155550100"), ("Code", code)])
        status, page = self.get("/v2/Attempts", [("ChannelData.To", "+14155550100")])
        self.assertEqual({a["conversion_status"] for a in page["attempts"]}, {"converted"})

    def test_list_lag_and_get_faults(self):
        self.sim.config(list_lag_ms=400)
        sid = self.sms("+14155550100")[1]["sid"]
        self.assertEqual(self.get(MESSAGES, [("To", "+14155550100")])[1]["messages"], [])
        time.sleep(0.5)
        self.assertEqual([m["sid"] for m in
                          self.get(MESSAGES, [("To", "+14155550100")])[1]["messages"]], [sid])
        # A fault aimed at the lists leaves the POSTs alone, and the reverse.
        self.sim.fault(path_suffix="Messages.json", method="GET", status=503, code=20503)
        self.assertEqual(self.sms("+14155550100")[0], 201)
        self.assertEqual(self.get(MESSAGES)[0], 503)
        self.assertEqual(self.get(MESSAGES)[0], 200)
        self.sim.fault(path_suffix="Messages.json", status=503, code=20503)
        self.assertEqual(self.get(MESSAGES)[0], 200)
        self.assertEqual(self.sms("+14155550100")[0], 503)

    def test_https_only_with_a_certificate(self):
        ca = harness.TestCA()
        p = harness.start_sim(tls=ca)
        try:
            self.assertTrue(p.url.startswith("https://"))
            sim = harness.Sim(p.url)
            sim.config(keepalive=True)  # trusted through the test CA
            self.assertEqual(harness.http_json("GET", p.url + "/__sim/health")[1], {"ok": True})
            # Plain HTTP is not served; an unknown CA is refused by the client.
            with self.assertRaises(Exception):
                harness.http_json("GET", p.url.replace("https", "http") + "/__sim/health",
                                  timeout=2)
            import ssl
            with self.assertRaises(urllib.error.URLError) as cm:
                urllib.request.urlopen(p.url + "/__sim/health", timeout=2,
                                       context=ssl.create_default_context())
            self.assertIsInstance(cm.exception.reason, ssl.SSLCertVerificationError)
        finally:
            self.assertEqual(p.stop(), 0, p.output())
            ca.remove()

    def test_latency_and_drop(self):
        self.sim.fault(path_suffix="Messages.json", latency_ms=400)
        t0 = time.monotonic()
        self.assertEqual(self.sms("+14155550100")[0], 201)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        self.sim.fault(path_suffix="Messages.json", drop=True)
        with self.assertRaises((urllib.error.URLError, ConnectionError, socket.error)):
            self.sms("+14155550100")
        # The per-request header does the same without queueing.
        status, err = self.post(MESSAGES, [("To", "+14155550100")],
                                headers={"X-Sim-Fault": "status=503,code=20503"})
        self.assertEqual((status, err["code"]), (503, 20503))

    def test_slow_answer_does_not_block_others(self):
        self.sim.fault(path_suffix="Messages.json", latency_ms=1500, to="+14155550111")
        import threading
        slow = threading.Thread(target=self.sms, args=("+14155550111",))
        slow.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        self.assertEqual(self.sms("+14155550100")[0], 201)
        self.assertLess(time.monotonic() - t0, 0.5)
        slow.join()

    def test_no_record_answers_but_keeps_no_log(self):
        # The benchmarks' mode: every answer as usual, no request log.
        self.p.stop()
        self.p = harness.start_sim(["--no-record"])
        self.sim = harness.Sim(self.p.url)
        status, m = self.sms("+14155550100")
        self.assertEqual((status, m["status"]), (201, "queued"))
        status, err = self.post(MESSAGES, [("To", "+14155550100")], password="wrong")
        self.assertEqual(status, 401)
        self.assertEqual(self.sim.requests(), [])

    def test_sigint_exits_cleanly(self):
        self.sms("+14155550100")
        self.p.signal(signal.SIGINT)
        self.assertEqual(self.p.wait(5), 0)


if __name__ == "__main__":
    unittest.main()
