"""gRPC server reflection: tools that have no .proto list and call every RPC.
Driven by buf's own client (`buf curl`, which speaks v1 and v1alpha), and by
Python grpcio building its messages from nothing but what the server
described."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

import harness

BUF = os.path.join(harness.SRC_DIR, "tests", "proto", "node_modules", ".bin", "buf")
SERVICES = ["commsgate.v1.MessagingService", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]
V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def reflection_pb2():
    out = os.environ.get("COMMSGATE_PY_OUT", os.path.join(harness.BIN_DIR, "..", "py"))
    path = os.path.join(out, "grpc", "reflection", "v1")
    if path not in sys.path:
        sys.path.insert(0, path)
    import reflection_pb2 as r
    return r


class ReflectionTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BUF, os.X_OK):
            raise RuntimeError("buf is not installed: run scripts/node-deps.sh (make test does)")
        self.stack = harness.Stack()
        self.stack.wait_serving(1)
        self.sim = harness.Sim(self.stack.sim.url)
        self.url = "http://" + self.stack.daemon.grpc_target
        self.r = reflection_pb2()

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())

    def buf_curl(self, *args, check=True):
        r = subprocess.run([BUF, "curl", "--protocol", "grpc", "--http2-prior-knowledge"] +
                           list(args), capture_output=True, text=True, timeout=60)
        if check:
            self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def stream(self):
        return self.stack.channel.stream_stream(
            V1, request_serializer=self.r.ServerReflectionRequest.SerializeToString,
            response_deserializer=self.r.ServerReflectionResponse.FromString)

    def sms_posts(self):
        return [q for q in self.sim.requests("/Messages.json") if q["method"] == "POST"]

    def test_buf_curl_lists_and_calls_over_v1_and_v1alpha(self):
        for proto in ("grpc-v1", "grpc-v1alpha"):
            out = self.buf_curl("--reflect-protocol", proto, "--list-services", self.url)
            self.assertEqual(out.stdout.split(), SERVICES)
            methods = self.buf_curl("--reflect-protocol", proto, "--list-methods", self.url)
            for m in ("SendSMS", "SendWhatsApp", "PlaceCall", "StartVerification",
                      "CheckVerification", "GetMessage"):
                self.assertIn("commsgate.v1.MessagingService/" + m, methods.stdout.split())
        # A call whose request and answer buf encodes from the reflected
        # descriptors alone (JSON in, JSON out), Timestamp included.
        sent = json.loads(self.buf_curl(
            "-d", json.dumps({"to": "+14155550100", "body": "by reflection"}),
            self.url + "/commsgate.v1.MessagingService/SendSMS").stdout)
        self.assertTrue(sent["sid"].startswith("SM"), sent)
        self.assertEqual(sent["encoding"], "ENCODING_GSM7")
        self.assertEqual(len(self.sms_posts()), 1)
        got = json.loads(self.buf_curl(
            "-d", json.dumps({"sid": sent["sid"]}),
            self.url + "/commsgate.v1.MessagingService/GetMessage").stdout)
        self.assertRegex(got["updatedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        # Refusals keep their status through it.
        bad = self.buf_curl("-d", json.dumps({"to": "+1", "body": "x"}),
                            self.url + "/commsgate.v1.MessagingService/SendSMS", check=False)
        self.assertNotEqual(bad.returncode, 0)
        self.assertEqual(json.loads(bad.stderr)["code"], "invalid_argument")
        self.assertEqual(len(self.sms_posts()), 1)

    def test_python_calls_with_descriptors_from_the_server_only(self):
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        req = self.r.ServerReflectionRequest(
            file_containing_symbol="commsgate.v1.MessagingService")
        (resp,) = list(self.stream()(iter([req]), timeout=5))
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in resp.file_descriptor_response.file_descriptor_proto]
        self.assertEqual([f.name for f in files],
                         ["commsgate/v1/messaging.proto", "google/protobuf/timestamp.proto"])
        # The comments come too (tools show them).
        self.assertIn("Send one SMS", str(files[0].source_code_info))

        pool = descriptor_pool.DescriptorPool()
        for f in reversed(files):  # imports first
            pool.Add(f)
        factory = message_factory.MessageFactory(pool)

        def cls(name):
            return factory.GetPrototype(pool.FindMessageTypeByName(name))
        method = pool.FindServiceByName("commsgate.v1.MessagingService").FindMethodByName("SendSMS")
        Req, Resp = cls(method.input_type.full_name), cls(method.output_type.full_name)
        call = self.stack.channel.unary_unary(
            "/commsgate.v1.MessagingService/SendSMS", request_serializer=Req.SerializeToString,
            response_deserializer=Resp.FromString)
        out = call(Req(to="+14155550101", body="no .proto here", sender="+15005550006"),
                   timeout=10)
        self.assertTrue(out.sid.startswith("SM"))
        (post,) = self.sms_posts()
        self.assertEqual(self.sim.params(post)["From"], "+15005550006")

    def test_one_stream_answers_every_request_in_order(self):
        asks = []
        for i in range(60):
            kind = i % 4
            if kind == 0:
                asks.append(self.r.ServerReflectionRequest(host="h%d" % i, list_services=""))
            elif kind == 1:
                asks.append(self.r.ServerReflectionRequest(
                    host="h%d" % i, file_by_filename="grpc/health/v1/health.proto"))
            elif kind == 2:
                asks.append(self.r.ServerReflectionRequest(
                    host="h%d" % i, file_containing_symbol="commsgate.v1.NoSuch%d" % i))
            else:
                asks.append(self.r.ServerReflectionRequest(
                    host="h%d" % i, file_containing_symbol="grpc.health.v1.Health.Watch"))
        answers = list(self.stream()(iter(asks), timeout=10))
        self.assertEqual(len(answers), len(asks))
        for ask, a in zip(asks, answers):
            self.assertEqual(a.original_request, ask)
            self.assertEqual(a.valid_host, ask.host)
            which = ask.WhichOneof("message_request")
            if which == "list_services":
                self.assertEqual([s.name for s in a.list_services_response.service], SERVICES)
            elif ask.file_containing_symbol.startswith("commsgate.v1.NoSuch"):
                self.assertEqual(a.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
                self.assertIn(ask.file_containing_symbol, a.error_response.error_message)
            else:
                self.assertEqual(len(a.file_descriptor_response.file_descriptor_proto), 1)

    def in_flight(self):
        return harness.metric(self.stack.daemon.admin_port, "commsgate_rpc_in_flight")

    def test_a_stream_left_or_cancelled_is_let_go(self):
        # Cancelled while the server waits for the next request, and a
        # stream that never sends: neither stays held.
        import queue
        q = queue.Queue()

        def requests():
            while True:
                item = q.get()
                if item is None:
                    return
                yield item
        calls = []
        for _ in range(5):
            c = self.stream()(requests(), timeout=30)
            calls.append(c)
        q.put(self.r.ServerReflectionRequest(list_services=""))
        next(calls[0])  # one stream got its answer, then waits for more
        deadline = time.monotonic() + 5
        while self.in_flight() < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.in_flight(), 5)
        for c in calls:
            c.cancel()
        deadline = time.monotonic() + 5
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.in_flight(), 0)
        for _ in range(5):
            q.put(None)

    def test_a_request_that_does_not_parse_ends_the_stream(self):
        call = self.stack.channel.stream_stream(V1)  # raw bytes both ways
        with self.assertRaises(grpc.RpcError) as cm:
            list(call(iter([b"\x0a\x7fx"]), timeout=5))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


class ReflectionWithCallersTest(unittest.TestCase):
    """Reflection tells what the published .proto tells, so it is open to
    callers the callers file does not name, like health; the RPCs are not."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="commsgate-refl-")
        path = os.path.join(self.dir, "callers.yaml")
        with open(path, "w") as f:
            f.write("callers:\n  - name: batch\n    token_sha256: %s\n    rpcs: [\"*\"]\n" % ("0" * 64))
        self.stack = harness.Stack(env={"COMMSGATE_CALLERS_FILE": path})
        self.stack.wait_serving(1)

    def tearDown(self):
        self.assertEqual(self.stack.close(), 0, self.stack.daemon.output())
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_open_to_all_while_the_rpcs_are_not(self):
        r = reflection_pb2()
        call = self.stack.channel.stream_stream(
            V1, request_serializer=r.ServerReflectionRequest.SerializeToString,
            response_deserializer=r.ServerReflectionResponse.FromString)
        (a,) = list(call(iter([r.ServerReflectionRequest(list_services="")]), timeout=5))
        self.assertEqual([s.name for s in a.list_services_response.service], SERVICES)
        m = self.stack.stubs.messaging_pb2
        with self.assertRaises(grpc.RpcError) as cm:
            self.stack.stubs.SendSMS(m.SendSMSRequest(to="+14155550100", body="x"), timeout=5)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)


if __name__ == "__main__":
    unittest.main()
