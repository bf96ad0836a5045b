// commsgate from Node's @grpc/grpc-js with messages loaded from proto/ by
// @grpc/proto-loader: health, the loop path under concurrency, and Watch.
'use strict';
const test = require('node:test');
const assert = require('node:assert');

const { startStack, check, waitStatus, grpc } = require('./stack');
const { execFileSync } = require('node:child_process');

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
