// commsgate from Node's @grpc/grpc-js with messages loaded from proto/ by
// @grpc/proto-loader: health, the loop path under concurrency, and Watch.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const net = require('node:net');
const { spawn, execFileSync } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const SRC = path.resolve(__dirname, '..', '..', '..');
const BIN = process.env.COMMSGATE_BIN_DIR || path.join(SRC, 'build', 'bin');
const SIM_ACCOUNT_SID = 'AC00000000000000000000000000000000';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitPort(port, proc, ms = 10000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode} before listening`);
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.end(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing on port ${port}`);
}

function load() {
  const opts = { keepCase: true, enums: String, defaults: true, includeDirs: [path.join(SRC, 'proto')] };
  const def = protoLoader.loadSync(['commsgate/v1/messaging.proto', 'grpc/health/v1/health.proto'], opts);
  return grpc.loadPackageDefinition(def);
}

async function startStack() {
  const redisPort = await freePort();
  const grpcPort = await freePort();
  const httpPort = await freePort();
  const simPort = await freePort();
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await waitPort(redisPort, redis);
  const sim = spawn(path.join(BIN, 'twilio-sim'), ['--listen', `127.0.0.1:${simPort}`], {
    env: { ...process.env, TWILIO_ACCOUNT_SID: SIM_ACCOUNT_SID, TWILIO_AUTH_TOKEN: 'simulator-auth-token' },
    stdio: 'ignore',
  });
  await waitPort(simPort, sim);
  let log = '';
  const daemon = spawn(path.join(BIN, 'commsgate'), [], {
    env: {
      ...process.env,
      COMMSGATE_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
      COMMSGATE_HTTP_ADDR: `127.0.0.1:${httpPort}`,
      REDIS_URL: `redis://127.0.0.1:${redisPort}/0`,
      TWILIO_ACCOUNT_SID: SIM_ACCOUNT_SID,
      TWILIO_AUTH_TOKEN: 'simulator-auth-token',
      TWILIO_PHONE_NUMBER: '+15005550006',
      TWILIO_API_BASE_URL: `http://127.0.0.1:${simPort}`,
      TWILIO_VERIFY_BASE_URL: `http://127.0.0.1:${simPort}`,
      COMMSGATE_SEND_RATE: '100000',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  daemon.stderr.on('data', (d) => { log += d; });
  await waitPort(grpcPort, daemon);
  const pkg = load();
  const target = `127.0.0.1:${grpcPort}`;
  const health = new pkg.grpc.health.v1.Health(target, grpc.credentials.createInsecure());
  const messaging = new pkg.commsgate.v1.Messaging(target, grpc.credentials.createInsecure());
  const stop = () => new Promise((resolve) => {
    health.close();
    messaging.close();
    daemon.on('exit', (code) => { redis.kill('SIGTERM'); sim.kill('SIGTERM'); resolve(code); });
    daemon.kill('SIGTERM');
  });
  return { redis, redisPort, daemon, health, messaging, stop, log: () => log };
}

function check(health, service = '') {
  return new Promise((resolve, reject) => {
    health.Check({ service }, { deadline: Date.now() + 2000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function waitStatus(health, want, ms = 5000) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    last = (await check(health)).status;
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`health stayed ${last}, wanted ${want}`);
}

test('health, the loop path and Watch from @grpc/grpc-js', async (t) => {
  const s = await startStack();
  try {
    await waitStatus(s.health, 'SERVING');

    await t.test('unknown service is NOT_FOUND', async () => {
      await assert.rejects(check(s.health, 'nope.Nope'), (e) => e.code === grpc.status.NOT_FOUND);
    });

    await t.test('300 concurrent SendSMS all reach Twilio once and come back with a SID', async () => {
      const calls = [];
      for (let i = 0; i < 300; i++) {
        calls.push(new Promise((resolve) => {
          s.messaging.SendSMS({ to: '+14155550100', body: `n${i}` }, { deadline: Date.now() + 20000 },
            (err, res) => resolve({ err, res }));
        }));
      }
      const out = await Promise.all(calls);
      const sids = new Set();
      for (const { err, res } of out) {
        assert.ifError(err);
        assert.match(res.sid, /^SM[0-9a-f]{32}$/);
        assert.strictEqual(res.segments, 1);
        assert.strictEqual(res.encoding, 'ENCODING_GSM7');
        sids.add(res.sid);
      }
      assert.strictEqual(sids.size, 300);
    });

    await t.test('bad input is INVALID_ARGUMENT naming the field', async () => {
      const err = await new Promise((resolve) => {
        s.messaging.SendSMS({ to: '4155550100', body: 'x' }, { deadline: Date.now() + 5000 },
          (e) => resolve(e));
      });
      assert.strictEqual(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /^to: /);
    });

    await t.test('Watch hears NOT_SERVING when Redis stops', async () => {
      const seen = [];
      const stream = s.health.Watch({ service: '' });
      const got = (n) => new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`saw only ${seen}`)), 5000);
        const on = (msg) => {
          seen.push(msg.status);
          if (seen.length >= n) { clearTimeout(timer); stream.off('data', on); resolve(); }
        };
        stream.on('data', on);
      });
      stream.on('error', () => {});
      await got(1);
      assert.strictEqual(seen[0], 'SERVING');
      execFileSync('redis-cli', ['-p', String(s.redisPort), 'shutdown', 'nosave']);
      await got(2);
      assert.strictEqual(seen[1], 'NOT_SERVING');
      stream.cancel();
    });
  } finally {
    const code = await s.stop();
    assert.strictEqual(code, 0, s.log());
  }
});
