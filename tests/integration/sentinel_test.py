"""REDIS_URL=redis-sentinel://: commsgate asks real sentinels (redis-server
--sentinel, three of them) for the master, checks its ROLE, and follows a
failover, both SENTINEL FAILOVER (the old master stays up, demoted) and a
SIGKILL of the master. Calls during each switch are answered within their
deadline; every send the simulator saw is one a caller was told of."""
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import unittest

import grpc

import harness

MASTER = "mymaster"
# 2 x COMMSGATE_REDIS_PING_INTERVAL_MS + COMMSGATE_REDIS_TIMEOUT_MS, the
# defaults: the README's bound.
SERVING_BOUND_S = 2 * 0.5 + 1.0


def start_node(port, *extra):
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
            harness.redis_dir(), "--save", "", "--appendonly", "no"] + list(extra)
    return harness.Proc("redis-%d" % port, argv, port=port)


def start_sentinel(workdir, port, master_port):
    conf = os.path.join(workdir, "sentinel-%d.conf" % port)
    with open(conf, "w") as f:  # sentinels rewrite their file: one each, in a scratch dir
        f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                "sentinel monitor %s 127.0.0.1 %d 2\n"
                "sentinel down-after-milliseconds %s 1000\n"
                "sentinel failover-timeout %s 10000\n" % (
                    port, workdir, MASTER, master_port, MASTER, MASTER))
    return harness.Proc("sentinel-%d" % port, ["redis-server", conf, "--sentinel"], port=port)


class SentinelTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="commsgate-sentinel-")
        self.procs = []
        a, b = harness.free_port(), harness.free_port()
        self.nodes = {a: self.keep(start_node(a)),
                      b: self.keep(start_node(b, "--replicaof", "127.0.0.1", str(a)))}
        self.sentinels = [harness.free_port() for _ in range(3)]
        for p in self.sentinels:
            self.keep(start_sentinel(self.dir, p, a))
        self.wait(lambda: self.sentinel_cli("SENTINEL", "ckquorum", MASTER).startswith("OK"),
                  "the sentinels to see each other")
        self.wait(lambda: "master_link_status:up" in harness.redis_cli(b, "INFO", "replication"),
                  "the replica to sync")
        self.sim = harness.start_sim()
        self.keep(self.sim)
        self.simc = harness.Sim(self.sim.url)

    def start(self, **env):
        self.daemon, self.stubs = self.replica(**env)
        self.m = self.stubs.messaging_pb2
        self.wait_serving()

    def replica(self, **env):
        """One more commsgate on the sentinels: (its Proc, its Stubs)."""
        env["REDIS_URL"] = "redis-sentinel://%s#%s" % (
            ",".join("127.0.0.1:%d" % p for p in self.sentinels), MASTER)
        # One redis port is enough for the harness; the URL is what counts.
        d = self.keep(harness.start_daemon(self.master_port(), self.sim.url, extra_env=env))
        channel = grpc.insecure_channel(d.grpc_target)
        self.addCleanup(channel.close)
        return d, harness.Stubs(channel)

    def tearDown(self):
        for p in reversed(self.procs):
            p.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def keep(self, p):
        self.procs.append(p)
        return p

    def kill_and_hold(self, port):
        """SIGKILL of a node, and its port held at once: the sentinels keep
        trying the old master's address, and would make whatever Redis
        another test starts there next a replica of ours (seen: another
        test's Redis filled with this one's keys)."""
        self.nodes[port].signal(signal.SIGKILL)
        self.nodes[port].wait(5)
        hold = socket.socket()
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.bind(("127.0.0.1", port))
        hold.listen(64)  # accepts, never answers: down, to the sentinels
        self.addCleanup(hold.close)

    def sentinel_cli(self, *args):
        for p in self.sentinels:
            try:
                return harness.redis_cli(p, *args)
            except Exception:
                continue
        raise AssertionError("no sentinel answered")

    def master_port(self):
        return int(self.sentinel_cli("SENTINEL", "get-master-addr-by-name", MASTER).split()[1])

    def wait(self, cond, what, timeout=20.0):
        harness.wait_for(cond, what, timeout)

    def serving(self, stubs=None):
        stubs = stubs or self.stubs
        h = stubs.health_pb2
        return stubs.Check(h.HealthCheckRequest(), timeout=1).status == \
            h.HealthCheckResponse.SERVING

    def wait_serving(self, timeout=20.0):
        self.wait(self.serving, "SERVING", timeout)

    def send(self, key, timeout=3):
        return self.stubs.SendSMS(self.m.SendSMSRequest(
            to="+14155550100", body="through sentinel", idempotency_key=key), timeout=timeout)

    def posts(self):
        return [q for q in self.simc.requests("/Messages.json") if q["method"] == "POST"]

    def switch_under_load(self, do_switch, old):
        """Sends one call after another while do_switch() runs; returns
        when commsgate serves from the new master again."""
        answers = []
        stop = threading.Event()

        def caller():
            i = 0
            while not stop.is_set():
                i += 1
                t0 = time.monotonic()
                try:
                    self.send("load-%d-%d" % (old, i), timeout=2)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                answers.append((code, time.monotonic() - t0))
                time.sleep(0.02)
        t = threading.Thread(target=caller)
        t.start()
        try:
            time.sleep(0.5)
            t0 = time.monotonic()
            do_switch()
            harness.wait_for(lambda: self.master_port() != old, "the sentinels to switch",
                             step=0.02)
            named = time.monotonic()
            self.wait(lambda: '"port":%d' % self.master_port() in self.daemon.output()
                      .split('"event":"redis_master"')[-1], "commsgate to name the new master")
            harness.wait_for(self.serving, "SERVING", step=0.02)
            now = time.monotonic()
            back, after_named = now - t0, now - named
            time.sleep(0.5)
        finally:
            stop.set()
            t.join()
        codes = {c for c, _ in answers}
        # Answered within its deadline, OK or UNAVAILABLE (UNKNOWN, "may have
        # been sent", would be honest too, and is counted below).
        self.assertLessEqual(codes, {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE,
                                     grpc.StatusCode.UNKNOWN}, answers)
        self.assertLess(max(d for _, d in answers), 2.5)
        ok = sum(1 for c, _ in answers if c == grpc.StatusCode.OK)
        unknown = sum(1 for c, _ in answers if c == grpc.StatusCode.UNKNOWN)
        self.assertGreater(ok, 0)
        # The bound the README states: once the sentinels name the new
        # master, a connection still on the old address (which accepts and
        # never answers) is given up at the first tick past the reply
        # timeout, and the sentinels asked at the next tick; plus this
        # test's polling.
        self.assertLess(after_named, SERVING_BOUND_S + 0.3)
        return ok, unknown, back, after_named

    def test_follows_a_failover_and_a_killed_master(self):
        self.start()
        first = self.master_port()
        r = self.send("before")
        self.assertTrue(r.sid.startswith("SM"))
        self.assertIn('"event":"redis_master"', self.daemon.output())

        # SENTINEL FAILOVER: the old master stays up, as a replica; commsgate
        # must leave it (ROLE, +switch-master), not keep writing to it.
        ok1, unk1, back1, named1 = self.switch_under_load(
            lambda: self.sentinel_cli("SENTINEL", "FAILOVER", MASTER), first)
        second = self.master_port()
        self.assertNotEqual(second, first)
        # A repeat of the key sent before the switch is the first answer, from
        # the record on the new master (replicated before the switch).
        self.assertEqual(self.send("before").sid, r.sid)

        # SIGKILL of the new master: the sentinels promote the other node.
        self.wait(lambda: "master_link_status:up" in harness.redis_cli(
            first, "INFO", "replication"), "the old master to sync as a replica")
        ok2, unk2, back2, named2 = self.switch_under_load(lambda: self.kill_and_hold(second), second)
        self.assertEqual(self.master_port(), first)
        self.send("after")

        # Every send the simulator saw was answered OK, or UNKNOWN ("it may
        # have been sent"); none twice.
        posts = len(self.posts())
        sure = 1 + ok1 + ok2 + 1
        self.assertGreaterEqual(posts, sure)
        self.assertLessEqual(posts, sure + unk1 + unk2)
        print("\nback to SERVING after SENTINEL FAILOVER: %.2f s (%.2f s after the sentinels "
              "named the new master), after SIGKILL: %.2f s (%.2f s)"
              % (back1, named1, back2, named2))
        # Each loop moved twice.
        self.assertGreaterEqual(self.metric("commsgate_redis_master_changes_total"), 2)
        self.assertEqual(self.metric("commsgate_redis_no_master"), 0)
        # Per node: the master in use now, and only it.
        self.assertEqual(harness.node_metric(self.daemon.admin_port, "commsgate_redis_node_up"),
                         {"127.0.0.1:%d" % first: 1})

    def metric(self, name):
        return harness.metric(self.daemon.admin_port, name)

    def readyz(self):
        return harness.http_get("http://127.0.0.1:%d/readyz" % self.daemon.admin_port)

    def test_no_master_is_told_apart_from_redis_down(self):
        """With every sentinel gone and then the master unanswering, nobody
        names a master: /readyz and the metric say so, as apart from a
        master that does not answer (the single-node case, deploy_test)."""
        self.start()
        self.assertEqual(self.readyz(), (200, "ready\n"))
        for p in self.procs:
            if p.name.startswith("sentinel-"):
                p.stop()
        self.assertEqual(self.readyz(), (200, "ready\n"))  # the master still answers
        master = self.master_port_seen()
        self.nodes[master].signal(signal.SIGSTOP)
        try:
            self.wait(lambda: self.metric("commsgate_redis_no_master") == 1, "no master")
            self.assertEqual(self.readyz(), (503, "no Redis master: the sentinels name none\n"))
            self.assertIn('"event":"redis_no_master"', self.daemon.output())
        finally:
            self.nodes[master].signal(signal.SIGCONT)

    def master_port_seen(self):
        """The master commsgate last named in its log."""
        tail = self.daemon.output().split('"event":"redis_master"')[-1]
        return int(tail.split('"port":')[1].split("}")[0].split(",")[0])

    def inbound_stop(self, frm, daemon=None, sid=None):
        return harness.inbound_stop((daemon or self.daemon).http_port, frm, sid)

    def test_wait_for_a_replica(self):
        """COMMSGATE_REDIS_WAIT_REPLICAS=1: with the replica stopped (SIGSTOP),
        an idempotency claim cannot reach it, so nothing is sent and the
        caller hears UNAVAILABLE; an opt-out is not acknowledged to Twilio
        (503: it sends again). Once the replica runs, both go through, and
        the replica has them: what a failover to it would keep."""
        self.start(COMMSGATE_REDIS_WAIT_REPLICAS="1", COMMSGATE_REDIS_WAIT_TIMEOUT_MS="200")
        replica = [p for p in self.nodes if p != self.master_port()][0]
        t0 = time.monotonic()
        self.send("w-0")
        with_wait = time.monotonic() - t0
        self.nodes[replica].signal(signal.SIGSTOP)
        try:
            with self.assertRaises(grpc.RpcError) as cm:
                self.send("w-1")
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("replicas", cm.exception.details())
            self.assertEqual(len(self.posts()), 1)  # w-1 never reached Twilio
            sid = "SM" + "7" * 32
            self.assertEqual(self.inbound_stop("+14155550177", sid=sid), 503)
            unconfirmed = [json.loads(l) for l in self.daemon.output().splitlines()
                           if '"event":"webhook_unconfirmed"' in l]
            # (w-0's status callbacks may be there too: they waited as well)
            self.assertIn((sid, "stop"), [(l["sid"], l["keyword"]) for l in unconfirmed])
        finally:
            self.nodes[replica].signal(signal.SIGCONT)
        r = self.send("w-1")  # the same key: its claim was dropped, so it sends now
        self.assertTrue(r.sid.startswith("SM"))
        self.assertEqual(len(self.posts()), 2)
        self.assertEqual(self.inbound_stop("+14155550177"), 200)
        self.wait(lambda: harness.redis_cli(replica, "EXISTS", "cg:{+14155550177}:optout") == "1",
                  "the opt-out on the replica")
        self.assertEqual(harness.redis_cli(replica, "EXISTS", "cg:{key:default:w-1}:idem"), "1")
        print("\nSendSMS with WAIT 1 on loopback: %.1f ms" % (with_wait * 1000))

    def add_replica(self):
        """A new replica of the master, as an operator replaces a lost one."""
        port = harness.free_port()
        self.nodes[port] = self.keep(start_node(port, "--replicaof", "127.0.0.1",
                                                str(self.master_port())))
        self.wait(lambda: "master_link_status:up" in harness.redis_cli(
            port, "INFO", "replication"), "the new replica to sync")

    def all_moved_from(self, old, replicas):
        """Once the sentinels name a master other than old and every
        commsgate in replicas serves from it: its port."""
        self.wait(lambda: self.master_port() != old, "the sentinels to switch")
        new = self.master_port()
        for d, stubs in replicas:
            self.wait(lambda: '"port":%d' % new in d.output().split(
                '"event":"redis_master"')[-1], "commsgate to name the new master")
            self.wait(lambda: self.serving(stubs), "SERVING")
        return new

    def test_two_replicas_through_both_switches(self):
        """Two commsgate replicas under a steady load, a caller that repeats
        a key on the other replica whenever it is not told OK, and STOPs
        arriving at both; SENTINEL FAILOVER and then a SIGKILL of the new
        master, with COMMSGATE_REDIS_WAIT_REPLICAS=1 and one replica (WAIT
        for as many replicas as there are: the README says why). Once the
        master left has no replica, nothing is sent until one is added.
        What the simulator made holds each key at most once; every key
        answered OK is answered with the same SID again, on the new master,
        without a send; every STOP acknowledged to Twilio is on the new
        master and refuses sends."""
        env = dict(COMMSGATE_REDIS_WAIT_REPLICAS="1", COMMSGATE_SEND_RATE="2000")
        replicas = [self.replica(**env) for _ in range(2)]
        self.daemon, self.stubs = replicas[0]
        self.m = self.stubs.messaging_pb2
        for _, stubs in replicas:
            self.wait(lambda: self.serving(stubs), "SERVING")
        retry = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN,
                 grpc.StatusCode.ABORTED, grpc.StatusCode.DEADLINE_EXCEEDED}
        settled = {}   # key: the SID answered, or the last status code
        answers = []   # (status code, seconds) of every attempt
        oks = []
        stops = {}     # number: the webhook's HTTP status
        stop = threading.Event()
        threads, rate = 24, 300.0

        def send(n, key, to, start):
            """One key, repeated (the other replica each time) until it is
            told OK or 20 s pass, as a careful caller does."""
            deadline = time.monotonic() + 20
            for attempt in range(10 ** 6):
                stubs = replicas[(start + attempt) % 2][1]
                t0 = time.monotonic()
                try:
                    r = stubs.SendSMS(self.m.SendSMSRequest(to=to, body=key, idempotency_key=key),
                                      timeout=2)
                    answers.append((grpc.StatusCode.OK, time.monotonic() - t0))
                    oks.append(time.monotonic())
                    settled[key] = r.sid
                    return
                except grpc.RpcError as e:
                    answers.append((e.code(), time.monotonic() - t0))
                    settled[key] = e.code()
                    if e.code() not in retry or time.monotonic() > deadline:
                        return
                time.sleep(0.05)

        def caller(n):
            to = "+1415556%04d" % n
            at = time.monotonic()
            i = 0
            while not stop.is_set():
                i += 1
                send(n, "two-%d-%d" % (n, i), to, i % 2)
                at += threads / rate
                time.sleep(max(0.0, at - time.monotonic()))

        def stopper():
            harness.post_stops(stops, stop, lambda i: replicas[i % 2][0].http_port)

        workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
        workers.append(threading.Thread(target=stopper))
        for t in workers:
            t.start()
        t_start = time.monotonic()
        try:
            time.sleep(1)
            first = self.master_port()
            self.sentinel_cli("SENTINEL", "FAILOVER", MASTER)
            second = self.all_moved_from(first, replicas)
            self.wait(lambda: "master_link_status:up" in harness.redis_cli(
                first, "INFO", "replication"), "the old master to sync as a replica")
            time.sleep(1)
            self.kill_and_hold(second)
            third = self.all_moved_from(second, replicas)
            time.sleep(1)
            sent = len(self.posts())
            time.sleep(1)
            self.assertEqual(len(self.posts()), sent)  # no replica: nothing sent
            self.add_replica()
            time.sleep(2)
            self.assertGreater(len(self.posts()), sent)
        finally:
            stop.set()
            for t in workers:
                t.join()
        elapsed = time.monotonic() - t_start

        # Every attempt was answered within its deadline, OK or retryable.
        codes = {c for c, _ in answers}
        self.assertLessEqual(codes, retry | {grpc.StatusCode.OK}, codes)
        self.assertLess(max(d for _, d in answers), 2.5)
        ok = {k: sid for k, sid in settled.items() if isinstance(sid, str)}
        self.assertGreater(len(ok), len(settled) * 0.9)

        # What the simulator made, by key (each key is its message's body):
        # none twice, and each key told OK made once, with the SID told.
        made = {}
        for n in range(threads):
            for msg in self.simc.made("Messages", "+1415556%04d" % n):
                made.setdefault(msg["body"], []).append(msg["sid"])
        doubles = {k: sids for k, sids in made.items() if len(sids) > 1}
        self.assertEqual(doubles, {})
        for k, sid in ok.items():
            self.assertEqual(made.get(k), [sid], k)

        # The records are on the master left standing: each key told OK is
        # told the same SID again, on either replica, and nothing is sent.
        posts = len(self.posts())
        for i, (k, sid) in enumerate(sorted(ok.items())):
            n = int(k.split("-")[1])
            r = replicas[i % 2][1].SendSMS(self.m.SendSMSRequest(
                to="+1415556%04d" % n, body=k, idempotency_key=k), timeout=5)
            self.assertEqual(r.sid, sid, k)
        self.assertEqual(len(self.posts()), posts)

        # Every STOP acknowledged (200) is on the master and refuses a send.
        acked = [frm for frm, code in stops.items() if code == 200]
        self.assertLessEqual(set(stops.values()), {200, 503}, stops)
        self.assertGreater(len(acked), 0)
        for i, frm in enumerate(acked):
            self.assertEqual(harness.redis_cli(third, "EXISTS", "cg:{%s}:optout" % frm), "1", frm)
            with self.assertRaises(grpc.RpcError) as cm:
                replicas[i % 2][1].SendSMS(self.m.SendSMSRequest(to=frm, body="no"), timeout=5)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION, frm)
        self.assertEqual(len(self.posts()), posts)
        per_s = [0] * (int(elapsed) + 1)
        for t in oks:
            per_s[min(int(t - t_start), len(per_s) - 1)] += 1
        print("\ntwo replicas, %.0f sends/s offered: %d keys in %.1f s, %d attempts, %d told OK, "
              "%d STOPs (%d acknowledged); told OK each second: %s" % (
                  rate, len(settled), elapsed, len(answers), len(ok), len(stops), len(acked),
                  " ".join(map(str, per_s))))

if __name__ == "__main__":
    unittest.main()
