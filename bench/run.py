#!/usr/bin/python3
"""make bench: commsgate against the limit of this machine.

Starts redis-server, the simulator and commsgate (Release build) on loopback,
loads them from a separate process (bench-load, gRPC C core, every answer's
grpc-status checked), and prints one table, also written to
bench/results/latest.md. Every commsgate figure stands next to a bare gRPC
C-core echo server (bench-echo: same library, same thread count, no Redis,
no HTTP) loaded the same way, as a ratio, because absolute numbers on shared
machines drift.

    bench/run.py --bin build-bench/bin [--smoke]
"""
import argparse
import json
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid):
    return proc_status(pid, "VmRSS") / 1024.0


def peak_mb(pid):
    return proc_status(pid, "VmHWM") / 1024.0


def cpu_s(pid):
    """User + system CPU seconds a running process has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak(pid):
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0).
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    except OSError:
        pass


def commandstats(port):
    out = harness.redis_cli(port, "INFO", "commandstats")
    stats = {}
    for name, calls in re.findall(r"cmdstat_(\w+):calls=(\d+)", out):
        stats[name] = int(calls)
    return stats


def write_payloads(path, messages):
    with open(path, "wb") as f:
        for m in messages:
            b = m.SerializeToString()
            f.write(struct.pack(">I", len(b)) + b)


def relay_rtt_ms(port, n=50):
    """A PING's round trip through the delay relay on port, median: what one
    round trip costs there (the relay's timers add to its nominal delay)."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            t0 = time.monotonic()
            s.sendall(b"PING\r\n")
            got = b""
            while not got.endswith(b"\r\n"):
                got += s.recv(64)
            times.append((time.monotonic() - t0) * 1000)
    return sorted(times)[n // 2]


class Bench:
    def __init__(self, bindir, smoke):
        self.bin = bindir
        self.smoke = smoke
        harness.BIN_DIR = bindir
        os.environ.setdefault("COMMSGATE_PY_OUT", os.path.join(bindir, "..", "py"))
        self.rows = []
        self.procs = []  # everything started, stopped even if a scenario fails
        self.tmp = os.path.join(HERE, "results", ".payloads")
        os.makedirs(self.tmp, exist_ok=True)
        _, self.m = harness.protos()

    def n(self, full, smoke):
        return smoke if self.smoke else full

    def load(self, target, method, payloads, requests, concurrency, rate=0, timeout_ms=30000):
        argv = [os.path.join(self.bin, "bench-load"), "--target", target, "--method", method,
                "--payloads", payloads, "--requests", str(requests), "--concurrency",
                str(concurrency), "--timeout-ms", str(timeout_ms)]
        if rate:
            argv += ["--rate", str(rate)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = json.loads(out.stdout)
        # The servers are children too, but still running: only the load
        # generator was reaped in between.
        res["load_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return res

    def echo(self, delay_ms=0):
        port = harness.free_port()
        p = harness.Proc("echo", [os.path.join(self.bin, "bench-echo"), "--listen",
                                  "127.0.0.1:%d" % port, "--threads", "2", "--delay-ms",
                                  str(delay_ms)], port=port)
        p.target = "127.0.0.1:%d" % port
        self.procs.append(p)
        return p

    def stack(self, sim_latency_ms=0, extra=None, tls=None):
        """redis, the simulator (HTTPS with tls, a harness.TestCA) and
        commsgate; with tls, commsgate trusts the system's CA bundle plus the
        test CA unless extra says otherwise: the store it parses on its
        default path."""
        env = {}
        if tls:
            env["COMMSGATE_TWILIO_CA_FILE"] = tls.bundle()
        env.update(extra or {})
        redis = harness.start_redis()
        self.procs.append(redis)
        sim = self.sim(sim_latency_ms, tls)
        daemon, serving_ms = self.serving(redis.port, sim, env)
        return redis, sim, daemon, serving_ms

    def sim(self, latency_ms=0, tls=None):
        # No callbacks and no request log: the stand-in for Twilio, which runs
        # elsewhere in production, takes as little of these two cores as it can.
        sim = harness.start_sim(["--latency-ms", str(latency_ms), "--no-callbacks",
                                 "--no-record"], tls=tls)
        self.procs.append(sim)
        return sim

    def serving(self, redis_port, sim, extra=None):
        """commsgate on the Redis at redis_port (or extra's REDIS_URL), once
        it says SERVING; and its own time from exec to SERVING."""
        env = {"COMMSGATE_SEND_RATE": "100000", "COMMSGATE_TWILIO_CONCURRENCY": "10000",
               "COMMSGATE_VERIFY_COOLDOWN_SECONDS": "0", "COMMSGATE_VERIFY_MAX_SENDS": "1000",
               "COMMSGATE_VERIFY_MAX_CHECKS": "1000", "COMMSGATE_LOG_LEVEL": "info"}
        env.update(extra or {})
        t0 = time.monotonic()
        daemon = harness.start_daemon(redis_port, sim.url, extra_env=env)
        self.procs.append(daemon)
        import grpc
        ch = grpc.insecure_channel(daemon.grpc_target)
        stubs = harness.Stubs(ch)
        while True:
            try:
                if stubs.Check(stubs.health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    break
            except grpc.RpcError:
                pass
            time.sleep(0.002)
        ch.close()
        # The daemon's own figure (exec to first SERVING); the client-side
        # poll above would add its own channel set-up.
        m = re.search(r'"event":"serving","since_start_ms":(\d+)', daemon.output())
        serving_ms = int(m.group(1)) if m else (time.monotonic() - t0) * 1000
        return daemon, serving_ms

    def row(self, name, res, base=None, rss=None, base_rss=None, threads=None, cmds=None,
            note="", cpu=None, base_cpu=None):
        """cpu, base_cpu: commsgate's and the echo server's CPU us per RPC,
        from the same interleaved rounds."""
        self.rows.append({"scenario": name, "res": res, "base": base, "rss": rss,
                          "base_rss": base_rss, "threads": threads, "cmds": cmds, "note": note,
                          "cpu": cpu, "base_cpu": base_cpu})

    def sim_capacity(self, sim, requests):
        """The simulator alone, loaded over HTTP/1.1 by h2load (Debian
        nghttp2-client), so the table shows it is not the bottleneck."""
        import base64
        body = os.path.join(self.tmp, "sim_body")
        with open(body, "w") as f:
            f.write("To=%2B14155550100&From=%2B15005550006&Body=hello")
        auth = base64.b64encode(("%s:%s" % (harness.SIM_ACCOUNT_SID,
                                            harness.SIM_AUTH_TOKEN)).encode()).decode()
        url = "%s/2010-04-01/Accounts/%s/Messages.json" % (sim.url, harness.SIM_ACCOUNT_SID)
        out = subprocess.run(["h2load", "--h1", "-n", str(requests), "-c", "50", "-d", body,
                              "-H", "Authorization: Basic " + auth,
                              "-H", "Content-Type: application/x-www-form-urlencoded", url],
                             capture_output=True, text=True, timeout=300).stdout
        rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
        ok = int(re.search(r"status codes: (\d+) 2xx", out).group(1))
        return {"requests": requests, "ok": ok, "errors": {"http": requests - ok} if ok < requests else {},
                "rps": rps}

    def keyed_payloads(self, tag, n):
        """n SendSMS, each with a new idempotency key (tag keeps runs apart)."""
        path = os.path.join(self.tmp, "keyed-%s.bin" % tag)
        write_payloads(path, [self.m.SendSMSRequest(to="+1415%07d" % (i % 1000),
                                                    body="Your code is 4711",
                                                    idempotency_key="bench-%s-%d" % (tag, i))
                              for i in range(n)])
        return path

    def cluster(self):
        """(c) keyed SendSMS on a Redis Cluster of three masters against one
        Redis node: at saturation (EVALSHA per call, summed over the masters),
        and one call at a time with Redis on loopback and then 2.5 ms away
        each way (a relay in front of every node, which the cluster
        announces as the node's port): each round trip on a call's path adds
        5 ms, so the added p50 counts them, for both."""
        smsm = "/commsgate.v1.MessagingService/SendSMS"
        n_sat, n1, delay = self.n(20000, 200), self.n(300, 10), 2.5
        sim = self.sim()
        cl = harness.RedisCluster(replicas=0)
        self.procs += list(cl.nodes.values())
        one = harness.start_redis()
        self.procs.append(one)
        setups = {"one node": (one.port, {}, [one.port]),
                  "cluster": (cl.port, {"REDIS_URL": cl.url}, list(cl.nodes))}
        sat, lat, plain = {}, {}, {}
        sms = self.sms_payloads()
        for name, (port, env, nodes) in setups.items():
            d, _ = self.serving(port, sim, env)
            before = {p: commandstats(p) for p in nodes}
            r = self.load(d.grpc_target, smsm, self.keyed_payloads("s" + name[0], n_sat),
                          n_sat, 200)
            evalsha = sum(commandstats(p).get("evalsha", 0) - before[p].get("evalsha", 0)
                          for p in nodes)
            sat[name] = (r, evalsha / max(r["ok"], 1))
            lat[name, 0] = self.load(d.grpc_target, smsm, self.keyed_payloads("l" + name[0], n1),
                                     n1, 1)
            plain[name, 0] = self.load(d.grpc_target, smsm, sms, n1, 1)
            d.stop()

        relay = {p: harness.free_port() for p in [one.port] + list(cl.nodes)}
        proxy = harness.Proc("delay-proxy", [sys.executable, os.path.join(HERE, "delay_proxy.py"),
                                             "--delay-ms", str(delay)] +
                             ["%d=%d" % (r, p) for p, r in relay.items()])
        self.procs.append(proxy)
        for r in relay.values():
            harness.wait_port(r, proc=proxy.proc)
        for p in cl.nodes:
            harness.redis_cli(p, "CONFIG", "SET", "cluster-announce-port", str(relay[p]))
        harness.wait_for(lambda: all("127.0.0.1:%d@" % relay[q] in harness.redis_cli(p, "CLUSTER", "NODES")
                                     for p in cl.nodes for q in cl.nodes),
                         "the cluster to announce the relays")
        rtt = relay_rtt_ms(relay[one.port])
        far = {"one node": (relay[one.port], {}),
               "cluster": (cl.port, {"REDIS_URL": "redis-cluster://127.0.0.1:%d" % relay[cl.port]})}
        for name, (port, env) in far.items():
            d, _ = self.serving(port, sim, env)
            lat[name, delay] = self.load(d.grpc_target, smsm,
                                         self.keyed_payloads("f" + name[0], n1), n1, 1)
            plain[name, delay] = self.load(d.grpc_target, smsm, sms, n1, 1)
            d.stop()
        proxy.stop()
        for p in list(cl.nodes.values()) + [one, sim]:
            p.stop()

        (rc, ec), (ro, eo) = sat["cluster"], sat["one node"]
        self.row("c keyed SendSMS, 3-master cluster, saturation", rc, None,
                 cmds="%.2f EVALSHA (one node %.2f)" % (ec, eo),
                 note="one Redis node in the same run: %.0f req/s, p99 %.2f ms; cluster / one "
                      "node %.2f x" % (ro["rps"], ro["p99_ms"], rc["rps"] / max(ro["rps"], 1e-9)))
        for what, got in (("SendSMS", plain), ("keyed SendSMS", lat)):
            trips = {k: (got[k, delay]["p50_ms"] - got[k, 0]["p50_ms"]) / rtt for k in setups}
            self.row("c %s, one at a time, Redis %.1f ms away" % (what, rtt),
                     got["cluster", delay], None,
                     note="p50 with Redis on loopback, then through the relays: one node %.2f -> "
                          "%.2f ms, cluster %.2f -> %.2f ms; round trips to Redis on a call's "
                          "path (added p50 / a PING's %.2f ms): one node %.2f, cluster %.2f" % (
                              got["one node", 0]["p50_ms"], got["one node", delay]["p50_ms"],
                              got["cluster", 0]["p50_ms"], got["cluster", delay]["p50_ms"],
                              rtt, trips["one node"], trips["cluster"]))

    def wait_cost(self):
        """(w) keyed SendSMS with COMMSGATE_REDIS_WAIT_REPLICAS=1 against the
        same without, on one master with one replica on loopback: one call at
        a time (p50, interleaved rounds) and at saturation."""
        smsm = "/commsgate.v1.MessagingService/SendSMS"
        n_sat, n1, rounds = self.n(20000, 200), self.n(500, 10), self.n(3, 1)
        sim = self.sim()
        master = harness.start_redis()
        self.procs.append(master)
        rport = harness.free_port()
        replica = harness.Proc("redis-replica", [
            "redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir",
            harness.redis_dir(), "--save", "", "--appendonly", "no",
            "--replicaof", "127.0.0.1", str(master.port)], port=rport)
        self.procs.append(replica)
        harness.wait_for(lambda: "master_link_status:up" in harness.redis_cli(
            rport, "INFO", "replication"), "the replica to sync")
        modes = {"off": {}, "on": {"COMMSGATE_REDIS_WAIT_REPLICAS": "1"}}
        daemons = {k: self.serving(master.port, sim, env)[0] for k, env in modes.items()}
        p50 = {k: [] for k in modes}
        for i in range(rounds):
            for k, d in daemons.items():
                r = self.load(d.grpc_target, smsm, self.keyed_payloads("w%s%d" % (k, i), n1), n1, 1)
                p50[k].append(r["p50_ms"])
        sat = {k: self.load(d.grpc_target, smsm, self.keyed_payloads("ws" + k, n_sat), n_sat, 200)
               for k, d in daemons.items()}
        for p in list(daemons.values()) + [replica, master, sim]:
            p.stop()
        med = {k: sorted(v)[len(v) // 2] for k, v in p50.items()}
        self.row("w keyed SendSMS, WAIT for 1 replica, saturation", sat["on"], None,
                 note="without WAIT in the same run: %.0f req/s, p99 %.2f ms (with: %.2f x the "
                      "req/s); one at a time, p50 %.2f ms against %.2f (added %.2f ms; median of "
                      "%d rounds)" % (sat["off"]["rps"], sat["off"]["p99_ms"],
                                      sat["on"]["rps"] / max(sat["off"]["rps"], 1e-9),
                                      med["on"], med["off"], med["on"] - med["off"], rounds))

    def sms_payloads(self, n_numbers=1000):
        path = os.path.join(self.tmp, "sms.bin")
        write_payloads(path, [self.m.SendSMSRequest(to="+1415%07d" % i, body="Your code is 4711")
                              for i in range(n_numbers)])
        return path

    def run(self, only):
        sms = self.sms_payloads()
        smsm = "/commsgate.v1.MessagingService/SendSMS"
        shared = [k for k in "51346" if k in only]

        if shared:
            redis, sim, daemon, serving_ms = self.stack()
            e = self.echo()
        if "5" in only:
            # (5) idle RSS and time to SERVING, and the simulator's capacity
            cap = self.sim_capacity(sim, self.n(20000, 200))
            time.sleep(0.5)
            idle = rss_mb(daemon.pid)
            idle_threads = harness.thread_count(daemon.pid)
            echo_idle = rss_mb(e.pid)

        # Scenarios 1 and 3 run in interleaved rounds, the echo server then
        # commsgate, and report the round with the median ratio: this
        # machine's speed drifts by 10-20% within a minute.
        rounds = self.n(3, 1)
        if "1" in only or "4" in only:
            n1, c1 = self.n(40000, 400), 200
            before = commandstats(redis.port)
            runs = []
            for _ in range(rounds):
                echo_cpu = cpu_s(e.pid)
                base = self.load(e.target, "/bench.Echo/Echo", sms, n1, c1)
                echo_cpu = cpu_s(e.pid) - echo_cpu
                res, cpu = None, None
                if "1" in only:
                    # (1) saturation, simulator answering at once
                    cpu = [cpu_s(p.pid) for p in (daemon, sim, redis)]
                    res = self.load(daemon.grpc_target, smsm, sms, n1, c1)
                    cpu = [cpu_s(p.pid) - c for p, c in zip((daemon, sim, redis), cpu)]
                runs.append({"base": base, "echo_cpu": echo_cpu, "res": res, "cpu": cpu})
            after = commandstats(redis.port)
            key = (lambda r: r["res"]["rps"] / r["base"]["rps"]) if "1" in only else \
                (lambda r: r["base"]["rps"])
            mid = sorted(runs, key=key)[len(runs) // 2]
            base1 = mid["base"]
        if "1" in only:
            res1, cpu = mid["res"], mid["cpu"]
            ok = sum(r["res"]["ok"] for r in runs)
            per = {k: (after.get(k, 0) - before.get(k, 0)) / max(ok, 1) for k in after}
            # commandstats also counts what the Lua scripts call inside Redis,
            # so only EVALSHA is unambiguous; the total shows Redis's work.
            # Where the two cores went, per request: what bounds req/s here.
            us = lambda sec, res: sec * 1e6 / max(res["ok"], 1)  # noqa: E731
            note = ("median of %d rounds (x echo: %s); CPU us/request: commsgate %.0f, "
                    "simulator %.0f, Redis %.0f, load %.0f (echo: server %.0f, load %.0f)" % (
                        rounds, ", ".join("%.2f" % key(r) for r in runs),
                        us(cpu[0], res1), us(cpu[1], res1), us(cpu[2], res1),
                        us(res1["load_cpu_s"], res1), us(mid["echo_cpu"], base1),
                        us(base1["load_cpu_s"], base1)))
            self.row("1 SendSMS at saturation", res1, base1,
                     threads=harness.thread_count(daemon.pid),
                     cmds="%.2f EVALSHA (%.1f commands run)" % (per.get("evalsha", 0),
                                                               sum(per.values())),
                     note=note, cpu=us(cpu[0], res1), base_cpu=us(mid["echo_cpu"], base1))
            echo_cpu1 = us(mid["echo_cpu"], base1)

        if "3" in only:
            # (3) fixed 2,000 requests/s, simulator at 0 ms
            n3 = self.n(10000, 200)
            runs = []
            for _ in range(rounds):
                ecpu = cpu_s(e.pid)
                base = self.load(e.target, "/bench.Echo/Echo", sms, n3, 1000, rate=2000)
                ecpu = (cpu_s(e.pid) - ecpu) * 1e6 / max(base["ok"], 1)
                dcpu = cpu_s(daemon.pid)
                res = self.load(daemon.grpc_target, smsm, sms, n3, 1000, rate=2000)
                dcpu = (cpu_s(daemon.pid) - dcpu) * 1e6 / max(res["ok"], 1)
                runs.append((res["p99_ms"] - base["p99_ms"], res, base, dcpu, ecpu))
            runs.sort(key=lambda r: r[0])
            added, res3, base3, dcpu3, ecpu3 = runs[len(runs) // 2]
            self.row("3 SendSMS at 2,000/s", res3, base3, cpu=dcpu3, base_cpu=ecpu3,
                     note="added p99 %.2f ms, latency from each call's intended start (median "
                          "of %d rounds: %s)" % (
                              added, rounds, ", ".join("%.2f" % r[0] for r in runs)))

        if "4" in only:
            # (4) verification mix: StartVerification then CheckVerification per number
            n4 = self.n(5000, 100)
            starts = os.path.join(self.tmp, "vstart.bin")
            checks = os.path.join(self.tmp, "vcheck.bin")
            write_payloads(starts, [self.m.StartVerificationRequest(to="+1646%07d" % i)
                                    for i in range(n4)])
            write_payloads(checks, [self.m.CheckVerificationRequest(to="+1646%07d" % i,
                                                                    code="000000")
                                    for i in range(n4)])
            # Interleaved with the echo server like 1 and 3: each round a
            # new set of numbers (a number's sends are limited).
            runs4 = []
            for k in range(rounds):
                if k:
                    for path, make in ((starts, self.m.StartVerificationRequest),
                                       (checks, None)):
                        msgs = [self.m.StartVerificationRequest(to="+1646%07d" % (k * n4 + i))
                                if make else
                                self.m.CheckVerificationRequest(to="+1646%07d" % (k * n4 + i),
                                                                code="000000")
                                for i in range(n4)]
                        write_payloads(path, msgs)
                ecpu = cpu_s(e.pid)
                eb = self.load(e.target, "/bench.Echo/Echo", sms, 2 * n4, 200)
                ecpu = (cpu_s(e.pid) - ecpu) * 1e6 / max(eb["ok"], 1)
                dcpu = cpu_s(daemon.pid)
                a = self.load(daemon.grpc_target, "/commsgate.v1.MessagingService/StartVerification",
                              starts, n4, 200)
                b = self.load(daemon.grpc_target, "/commsgate.v1.MessagingService/CheckVerification",
                              checks, n4, 200)
                dcpu = (cpu_s(daemon.pid) - dcpu) * 1e6 / max(a["ok"] + b["ok"], 1)
                runs4.append((dcpu / max(ecpu, 1e-9), a, b, dcpu, ecpu, eb))
            runs4.sort(key=lambda r: r[0])
            _, r4a, r4b, dcpu4, ecpu4, base4 = runs4[len(runs4) // 2]
            mix = {"requests": r4a["requests"] + r4b["requests"], "ok": r4a["ok"] + r4b["ok"],
                   "errors": {**r4a["errors"], **r4b["errors"]},
                   "seconds": r4a["seconds"] + r4b["seconds"],
                   "rps": (r4a["requests"] + r4b["requests"]) / (r4a["seconds"] + r4b["seconds"]),
                   "p50_ms": max(r4a["p50_ms"], r4b["p50_ms"]),
                   "p99_ms": max(r4a["p99_ms"], r4b["p99_ms"]),
                   "p999_ms": max(r4a["p999_ms"], r4b["p999_ms"])}
            self.row("4 verification start+check", mix, base4, cpu=dcpu4, base_cpu=ecpu4,
                     note="median of %d rounds, each interleaved with the echo server"
                          % len(runs4))
        if "6" in only:
            # (6) keyed SendSMS at saturation: every request a new
            # idempotency key (claim, resolve-queue entry, settle, dequeue)
            n6, c6 = self.n(40000, 400), 200
            keyed = self.keyed_payloads("6", n6)
            before = commandstats(redis.port)
            cpu = cpu_s(daemon.pid)
            res6 = self.load(daemon.grpc_target, smsm, keyed, n6, c6)
            cpu = cpu_s(daemon.pid) - cpu
            after = commandstats(redis.port)
            per = {k: (after.get(k, 0) - before.get(k, 0)) / max(res6["ok"], 1) for k in after}
            base6 = base1 if "1" in only or "4" in only else None
            self.row("6 keyed SendSMS at saturation", res6, base6,
                     cmds="%.2f EVALSHA (%.1f commands run)" % (per.get("evalsha", 0),
                                                               sum(per.values())),
                     cpu=cpu * 1e6 / max(res6["ok"], 1),
                     base_cpu=echo_cpu1 if "1" in only else None,
                     note="every request a new idempotency_key (echo CPU: scenario 1's rounds)")
        if shared:
            for p in (e, daemon, sim, redis):
                p.stop()

        if "2" in only:
            # (2) 10,000 in flight, simulator answering after 1 s
            n2 = self.n(10000, 300)
            e = self.echo(delay_ms=1000)
            time.sleep(0.3)
            echo_threads = [harness.thread_count(e.pid)]
            reset_peak(e.pid)
            base2 = self.load(e.target, "/bench.Echo/Echo", sms, n2, n2, timeout_ms=30000)
            base2_peak = peak_mb(e.pid)
            echo_threads.append(harness.thread_count(e.pid))
            e.stop()
            redis, sim, daemon, _ = self.stack(sim_latency_ms=1000)
            time.sleep(0.3)
            threads_before = harness.thread_count(daemon.pid)
            reset_peak(daemon.pid)
            res2 = self.load(daemon.grpc_target, smsm, sms, n2, n2, timeout_ms=30000)
            peak2 = peak_mb(daemon.pid)
            threads_after = harness.thread_count(daemon.pid)
            self.row("2 %d in flight, Twilio 1 s" % n2, res2, base2, rss=peak2,
                     base_rss=base2_peak, threads="%d -> %d (echo %d -> %d)" % (
                         threads_before, threads_after, echo_threads[0], echo_threads[1]),
                     note="all done in %.2f s" % res2["seconds"])
            for p in (daemon, sim, redis):
                p.stop()

        if "7" in only:
            # (7) HTTPS, cold: 1,000 SendSMS at once on a fresh commsgate,
            # Twilio answering in 1 s, so every request needs a new TLS
            # connection (handshakes included); beside the same over HTTP.
            n7 = self.n(1000, 100)
            ca = harness.TestCA()
            runs = {}
            for name, tls in (("http", None), ("https", ca)):
                redis, sim, daemon, _ = self.stack(sim_latency_ms=1000, tls=tls,
                                                   extra={"COMMSGATE_TWILIO_CONCURRENCY": "1000"})
                time.sleep(0.3)
                cpu = cpu_s(daemon.pid)
                runs[name] = self.load(daemon.grpc_target, smsm, sms, n7, n7, timeout_ms=30000)
                runs[name]["cpu_us"] = (cpu_s(daemon.pid) - cpu) * 1e6 / max(n7, 1)
                runs[name]["redis_drops"] = daemon.output().count('"redis_down"')
                runs[name]["peak_mb"] = peak_mb(daemon.pid)  # a fresh process: its peak is this burst's
                for p in (daemon, sim, redis):
                    p.stop()
            # The echo server holding as many calls for 1 s: the memory floor
            # of 1,000 gRPC calls in flight.
            e7 = self.echo(delay_ms=1000)
            time.sleep(0.3)
            self.load(e7.target, "/bench.Echo/Echo", sms, n7, n7, timeout_ms=30000)
            echo_peak = peak_mb(e7.pid)
            e7.stop()
            h, t = runs["http"], runs["https"]
            self.row("7 HTTPS burst of %d, cold, Twilio 1 s" % n7, t, None,
                     rss=t["peak_mb"], base_rss=echo_peak,
                     note="done in %.2f s, %.2f x the same over HTTP (%.2f s); commsgate CPU "
                          "%.0f us/request (HTTP %.0f); peak RSS %.1f MB (HTTP %.1f; the echo "
                          "server holding %d calls %.1f); Redis connection dropped %d times"
                          % (t["seconds"], t["seconds"] / max(h["seconds"], 1e-9), h["seconds"],
                             t["cpu_us"], h["cpu_us"], t["peak_mb"], h["peak_mb"], n7, echo_peak,
                             t["redis_drops"]))
            ca.remove()

        if "8" in only:
            # (8) what a new HTTPS connection costs commsgate: the simulator
            # closes every connection, so each SendSMS opens one; the system
            # bundle (plus the test CA) against a one-certificate CA file, and
            # warm HTTPS against warm HTTP, interleaved in one run.
            n8, nwarm = self.n(400, 40), self.n(20000, 200)
            ca = harness.TestCA()
            # (name, settings (None: plain HTTP), keep-alive, requests, concurrency)
            cases = (("bundle, new", {}, False, n8, 4),
                     ("one-cert, new", {"COMMSGATE_TWILIO_CA_FILE": ca.ca_file}, False, n8, 4),
                     ("https warm", {}, True, nwarm, 200), ("http warm", None, True, nwarm, 200))
            got = {}
            for _ in range(self.n(2, 1)):
                for name, extra, keep, n, c in cases:
                    redis, sim, daemon, _ = self.stack(tls=None if extra is None else ca,
                                                       extra=extra or {})
                    harness.Sim(sim.url).config(keepalive=keep)
                    self.load(daemon.grpc_target, smsm, sms, 20, 4)  # warm up
                    cpu = cpu_s(daemon.pid)
                    r = self.load(daemon.grpc_target, smsm, sms, n, c)
                    got.setdefault(name, []).append((cpu_s(daemon.pid) - cpu) * 1e6 / max(r["ok"], 1))
                    got.setdefault(name + " res", r)
                    for p in (daemon, sim, redis):
                        p.stop()
            med = {k: sorted(v)[len(v) // 2] for k, v in got.items() if not k.endswith(" res")}
            self.row("8 new HTTPS connection", got["bundle, new res"], None,
                     note="commsgate CPU us/request with a new connection each: system bundle "
                          "%.0f, one-cert CA file %.0f (%.2f x); warm, at saturation: HTTPS %.0f, "
                          "HTTP %.0f (%.2f x)" % (med["bundle, new"], med["one-cert, new"],
                                        med["bundle, new"] / max(med["one-cert, new"], 1e-9),
                                        med["https warm"], med["http warm"],
                                        med["https warm"] / max(med["http warm"], 1e-9)))
            ca.remove()

        if "9" in only:
            # (9) a crowd on the webhook port: connections each holding an
            # unfinished 15 KB header, then all closed; is the memory given
            # back? Three rounds, so growth from round to round shows too.
            n9 = self.n(900, 50)
            redis, sim, daemon, _ = self.stack()
            time.sleep(0.3)
            before, held, after = rss_mb(daemon.pid), [], []
            for _ in range(3):
                crowd = [socket.create_connection(("127.0.0.1", daemon.http_port))
                         for _ in range(n9)]
                for s in crowd:
                    s.sendall(b"POST / HTTP/1.1\r\nX-A: " + b"a" * 15000)
                time.sleep(0.5)
                held.append(rss_mb(daemon.pid))
                for s in crowd:
                    s.close()
                time.sleep(1)
                after.append(rss_mb(daemon.pid))
            # RSS against the same process before the crowd, not the echo
            # server: in the note, not the ratio column.
            self.row("9 webhook crowd of %d, closed" % n9, None, None, rss=after[-1],
                     note="RSS before %.1f MB; with the crowd %s; after it closed %s"
                          % (before, ", ".join("%.1f" % x for x in held),
                             ", ".join("%.1f" % x for x in after)))
            for p in (daemon, sim, redis):
                p.stop()

        if "c" in only:
            self.cluster()
        if "w" in only:
            self.wait_cost()

        if "5" in only:
            self.row("5 idle", None, None, rss=idle, base_rss=echo_idle, threads=idle_threads,
                     note="start to SERVING %.0f ms" % serving_ms)
            self.row("simulator alone (h2load, HTTP/1.1)", cap, None,
                     note="its capacity: above scenario 1 means it is not the bottleneck")
        return self.table()

    def table(self):
        lines = ["| scenario | requests | errors | req/s (x echo) | p50 / p99 / p99.9 ms "
                 "(echo p99) | RSS MB (x echo) | threads | Redis cmds per RPC | "
                 "CPU us per RPC (x echo) | note |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            res, base = r["res"], r["base"]
            if res:
                errs = sum(res["errors"].values())
                rps = "%.0f" % res["rps"] + (" (%.2f)" % (res["rps"] / base["rps"]) if base else "")
                lat = ("%.2f / %.2f / %.2f" % (res["p50_ms"], res["p99_ms"], res["p999_ms"])
                       if "p50_ms" in res else "")
                if base:
                    lat += " (%.2f)" % base["p99_ms"]
                req = str(res["requests"])
            else:
                errs, rps, lat, req = "", "", "", ""
            rss = ""
            if r["rss"] is not None:
                rss = "%.1f" % r["rss"] + (" (%.2f)" % (r["rss"] / r["base_rss"]) if r["base_rss"] else "")
            cpu = ""
            if r["cpu"] is not None:
                cpu = "%.0f" % r["cpu"] + (" (%.2f)" % (r["cpu"] / r["base_cpu"])
                                           if r["base_cpu"] else "")
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r["scenario"], req, errs, rps, lat, rss, r["threads"] or "", r["cmds"] or "",
                cpu, r["note"]))
        return "\n".join(lines)


ALL_SCENARIOS = "123456789cw"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-bench", "bin"))
    ap.add_argument("--smoke", action="store_true", help="tiny counts, for make test")
    # The build tree, not the clone: a run never rewrites a tracked file.
    # The table kept in the repository (bench/results/latest.md) is updated
    # on purpose, with --out.
    ap.add_argument("--out", default=os.path.join(ROOT, "build-bench", "latest.md"))
    ap.add_argument("--only", default=ALL_SCENARIOS,
                    help="scenarios to run, e.g. 13 (a partial run does not write --out)")
    args = ap.parse_args()
    bench = Bench(os.path.abspath(args.bin), args.smoke)
    try:
        table = bench.run(args.only)
    finally:
        for p in bench.procs:
            p.stop()
    header = "commsgate benchmark, %s, %d cores, %s\n\n" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count(),
        "smoke run" if args.smoke else "full run")
    print(header + table)
    if not args.smoke and sorted(args.only) == sorted(ALL_SCENARIOS):
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(header + table + "\n")
    errors = sum(sum(r["res"]["errors"].values()) for r in bench.rows if r["res"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
