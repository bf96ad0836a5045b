"""REDIS_URL=redis-cluster://: commsgate on a real Redis Cluster (three
masters and three replicas, redis-server --cluster-enabled yes joined by
redis-cli --cluster create). Every RPC's and webhook's tests run again on
it, their keys spread over the masters; then a slot migrated under load
(redis-cli --cluster reshard, so MOVED and ASK) and a master killed."""
import signal
import subprocess
import threading
import time
import unittest

import grpc

import harness
import rpc_policy_test
import webhook_test


def on_cluster(cls):
    """cls's tests, on a Redis Cluster."""
    return type(cls.__name__ + "OnCluster", (cls,), {"CLUSTER": True})


SmsOnCluster = on_cluster(rpc_policy_test.SmsTest)
IdempotencyOnCluster = on_cluster(rpc_policy_test.IdempotencyTest)
WhatsAppOnCluster = on_cluster(rpc_policy_test.WhatsAppTest)
CallOnCluster = on_cluster(rpc_policy_test.CallTest)
VerifyOnCluster = on_cluster(rpc_policy_test.VerifyTest)
KeywordOnCluster = on_cluster(webhook_test.KeywordTest)
DeliveryOnCluster = on_cluster(webhook_test.DeliveryTest)
BudgetOnCluster = on_cluster(rpc_policy_test.BudgetTest)

del rpc_policy_test, webhook_test  # so unittest finds only the cluster's


class ClusterChangesTest(unittest.TestCase):
    """Its own cluster, changed under a steady load of keyed sends whose
    keys (and recipients) spread over every master; a caller repeats a key
    until told OK, as a careful one does."""

    def setUp(self):
        self.cluster = harness.RedisCluster()
        self.addCleanup(self.cluster.stop)
        self.sim = harness.start_sim()
        self.addCleanup(self.sim.stop)
        self.simc = harness.Sim(self.sim.url)
        self.start()

    def start(self, **env):
        env.update(REDIS_URL=self.cluster.url, COMMSGATE_SEND_RATE="2000")
        self.daemon = harness.start_daemon(self.cluster.port, self.sim.url, extra_env=env)
        self.addCleanup(self.daemon.stop)
        channel = grpc.insecure_channel(self.daemon.grpc_target)
        self.addCleanup(channel.close)
        self.stubs = harness.Stubs(channel)
        self.m = self.stubs.messaging_pb2
        self.wait(self.serving, "SERVING")

    def wait(self, cond, what, timeout=30.0):
        harness.wait_for(cond, what, timeout, step=0.05)

    def serving(self):
        h = self.stubs.health_pb2
        return self.stubs.Check(h.HealthCheckRequest(), timeout=1).status == \
            h.HealthCheckResponse.SERVING

    def under_load(self, change, threads=8, stops=None):
        """Runs change() while callers send (and, given a dict, STOPs are
        posted from new numbers, each's HTTP status kept there); returns
        {key: SID} of the keys told OK and every attempt's status code."""
        settled, codes = {}, []
        stop = threading.Event()

        def stopper():
            harness.post_stops(stops, stop, lambda i: self.daemon.http_port)

        def caller(n):
            i = 0
            while not stop.is_set():
                i += 1
                key, to = "c-%d-%d" % (n, i), "+1415558%04d" % (n * 1000 + i % 1000)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        settled[key] = self.stubs.SendSMS(self.m.SendSMSRequest(
                            to=to, body=key, idempotency_key=key), timeout=2).sid
                        codes.append(grpc.StatusCode.OK)
                        break
                    except grpc.RpcError as e:
                        codes.append(e.code())
                        time.sleep(0.05)
        workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
        if stops is not None:
            workers.append(threading.Thread(target=stopper))
        for t in workers:
            t.start()
        try:
            time.sleep(1)
            change()
            time.sleep(1)
        finally:
            stop.set()
            for t in workers:
                t.join()
        return settled, codes

    def assert_each_key_once(self, settled):
        made = {}
        for q in self.simc.requests("/Messages.json"):
            if q["method"] == "POST":
                body = self.simc.params(q).get("Body")
                made[body] = made.get(body, 0) + 1
        self.assertEqual({k: n for k, n in made.items() if n > 1}, {})
        for k in settled:
            self.assertEqual(made.get(k), 1, k)
        # Each key told OK is told the same SID again, with nothing sent. A
        # record a failover lost (no WAIT here) is found again in Twilio's
        # list: "being resolved" (ABORTED) until then.
        posts, resolved = sum(made.values()), 0
        for k, sid in sorted(settled.items()):
            n, i = k.split("-")[1:]
            req = self.m.SendSMSRequest(to="+1415558%04d" % (int(n) * 1000 + int(i) % 1000),
                                        body=k, idempotency_key=k)
            deadline = time.monotonic() + 15
            while True:
                try:
                    self.assertEqual(self.stubs.SendSMS(req, timeout=5).sid, sid, k)
                    break
                except grpc.RpcError as e:
                    _, info, _ = harness.status_details(e)
                    if not info or info.reason != "OUTCOME_RESOLVING" or \
                            time.monotonic() > deadline:
                        raise
                    resolved += 1
                    time.sleep(0.1)
        self.assertEqual(len([q for q in self.simc.requests("/Messages.json")
                              if q["method"] == "POST"]), posts)
        return resolved

    def test_slots_migrated_under_load(self):
        """redis-cli --cluster reshard moves 2000 slots, keys and all, while
        the calls go on: commands for a slot being moved are redirected
        (ASK, then MOVED), and every call is answered as if nothing moved."""
        masters = self.cluster.masters()
        (a, a_id), (b, b_id) = list(masters.items())[:2]
        changes = harness.metric(self.daemon.admin_port, "commsgate_redis_master_changes_total")

        def reshard():
            subprocess.run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % a,
                            "--cluster-from", a_id, "--cluster-to", b_id,
                            "--cluster-slots", "2000", "--cluster-yes"],
                           check=True, capture_output=True, timeout=120)
        settled, codes = self.under_load(reshard)
        self.assertEqual(set(codes), {grpc.StatusCode.OK}, set(codes))
        self.assertGreater(len(settled), 100)
        self.assert_each_key_once(settled)
        self.wait(lambda: harness.metric(self.daemon.admin_port,
                                         "commsgate_redis_master_changes_total") > changes,
                  "the new map")
        # The slots' old master answered the redirects; every master took commands.
        redirects = harness.node_metric(self.daemon.admin_port,
                                        "commsgate_redis_node_redirects_total")
        self.assertGreater(redirects["127.0.0.1:%d" % a], 0, redirects)
        commands = harness.node_metric(self.daemon.admin_port,
                                       "commsgate_redis_node_commands_total")
        for port in masters:
            self.assertGreater(commands["127.0.0.1:%d" % port], 0, commands)
        print("\nreshard of 2000 slots under load: %d keys, all told OK" % len(settled))

    def killer(self, victim, back):
        """A change for under_load: SIGKILL of victim, then until SERVING
        again (its time appended to back)."""
        def kill():
            t0 = time.monotonic()
            self.cluster.nodes[victim].signal(signal.SIGKILL)
            self.wait(lambda: not self.serving(), "NOT_SERVING", timeout=10)
            self.wait(self.serving, "SERVING again")
            back.append(time.monotonic() - t0)
        return kill

    def test_master_killed_under_load(self):
        """A master SIGKILLed: its replica takes over (cluster-node-timeout
        1 s); calls whose keys were there are refused UNAVAILABLE meanwhile,
        never sent unchecked, and SERVING comes back."""
        victim = list(self.cluster.masters())[0]
        back = []
        settled, codes = self.under_load(self.killer(victim, back))
        self.assertLessEqual(set(codes), {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED})
        self.assertIn(grpc.StatusCode.UNAVAILABLE, codes)
        self.assertGreater(len(settled), 100)
        self.assertNotIn(victim, self.cluster.masters())
        up = harness.node_metric(self.daemon.admin_port, "commsgate_redis_node_up")
        self.assertEqual(up["127.0.0.1:%d" % victim], 0, up)
        for port in self.cluster.masters():
            self.assertEqual(up["127.0.0.1:%d" % port], 1, up)
        resolving = self.assert_each_key_once(settled)
        print("\nmaster SIGKILLed under load: SERVING again after %.1f s; %d keys told OK, "
              "none sent twice; repeats answered 'being resolved' %d times before their SID"
              % (back[0], len(settled), resolving))

    def test_master_killed_with_wait(self):
        """COMMSGATE_REDIS_WAIT_REPLICAS=1, and a master SIGKILLed under
        keyed sends and STOPs: its one replica, promoted, has every claim and
        record (each key told OK is answered its SID at once, never "being
        resolved") and every STOP acknowledged to Twilio."""
        self.daemon.stop()
        self.start(COMMSGATE_REDIS_WAIT_REPLICAS="1")
        victim = list(self.cluster.masters())[0]
        back, stops = [], {}
        settled, codes = self.under_load(self.killer(victim, back), stops=stops)
        self.assertLessEqual(set(codes), {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE,
                                          grpc.StatusCode.UNKNOWN})
        self.assertIn(grpc.StatusCode.UNAVAILABLE, codes)
        self.assertGreater(len(settled), 100)
        self.assertNotIn(victim, self.cluster.masters())
        self.assertEqual(self.assert_each_key_once(settled), 0)
        acked = [frm for frm, code in stops.items() if code == 200]
        self.assertLessEqual(set(stops.values()), {200, 503}, stops)
        self.assertGreater(len(acked), 10)
        posts = len([q for q in self.simc.requests("/Messages.json") if q["method"] == "POST"])
        alive = next(iter(self.cluster.masters()))  # not cluster.port: it may be the one killed
        for frm in acked:
            self.assertEqual(harness.redis_cli(alive, "EXISTS", "cg:{%s}:optout" % frm), "1", frm)
            with self.assertRaises(grpc.RpcError) as cm:
                self.stubs.SendSMS(self.m.SendSMSRequest(to=frm, body="no"), timeout=5)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION, frm)
        self.assertEqual(len([q for q in self.simc.requests("/Messages.json")
                              if q["method"] == "POST"]), posts)
        print("\nmaster SIGKILLed with WAIT 1: SERVING again after %.1f s; %d keys told OK, "
              "none sent twice or lost; %d of %d STOPs acknowledged, all kept"
              % (back[0], len(settled), len(acked), len(stops)))

if __name__ == "__main__":
    unittest.main()
