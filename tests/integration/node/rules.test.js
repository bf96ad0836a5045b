// The policy rules of the five RPCs from Node's @grpc/grpc-js: opt-outs,
// verification limits with machine-readable waits, the WhatsApp window, and
// idempotency under concurrency.
'use strict';
const test = require('node:test');
const assert = require('node:assert');

const { startStack, statusDetails, unary, grpc } = require('./stack');

test('policy rules from @grpc/grpc-js', async (t) => {
  const s = await startStack({
    TWILIO_WHATSAPP_NUMBER: '+14155238886',
    COMMSGATE_VERIFY_COOLDOWN_SECONDS: '0',
  });
  try {
    await t.test('a 21610 opts the number out; the next send never reaches Twilio', async () => {
      let r = await unary(s.messaging, 'SendSMS', { to: '+15005550004', body: 'x' });
      assert.strictEqual(r.err.code, grpc.status.FAILED_PRECONDITION);
      assert.deepStrictEqual(r.err.metadata.get('twilio-error-code'), ['21610']);
      assert.strictEqual(statusDetails(r.err).ErrorInfo.reason, 'OPTED_OUT');
      r = await unary(s.messaging, 'SendSMS', { to: '+15005550004', body: 'again' });
      assert.strictEqual(r.err.code, grpc.status.FAILED_PRECONDITION);
      assert.match(r.err.details, /opted out/);
      const sent = (await s.simRequests('Messages.json')).filter((q) =>
        q.params.some(([k, v]) => k === 'To' && v === '+15005550004'));
      assert.strictEqual(sent.length, 1);
    });

    await t.test('the 4th verification in 10 minutes is refused with the wait', async () => {
      for (let i = 0; i < 3; i++) {
        const r = await unary(s.messaging, 'StartVerification', { to: '+14155550170', channel: 'CHANNEL_SMS' });
        assert.ifError(r.err);
        assert.strictEqual(r.res.status, 'pending');
      }
      const r = await unary(s.messaging, 'StartVerification', { to: '+14155550170', channel: 'CHANNEL_SMS' });
      assert.strictEqual(r.err.code, grpc.status.RESOURCE_EXHAUSTED);
      const d = statusDetails(r.err);
      assert.strictEqual(d.ErrorInfo.reason, 'VERIFY_SEND_LIMIT');
      const wait = Number(d.RetryInfo.retry_delay.seconds);
      assert.ok(wait > 500 && wait <= 600, `wait ${wait}`);
      assert.match(r.err.details, new RegExp(`retry in ${d.ErrorInfo.metadata.retry_after_seconds} s`));
      assert.strictEqual((await s.simRequests('Verifications')).length, 3);
    });

    await t.test('WhatsApp free-form outside the window is refused, a template goes', async () => {
      let r = await unary(s.messaging, 'SendWhatsApp', { to: '+14155550150', body: 'hi' });
      assert.strictEqual(r.err.code, grpc.status.FAILED_PRECONDITION);
      assert.strictEqual(statusDetails(r.err).ErrorInfo.reason, 'WHATSAPP_WINDOW_CLOSED');
      r = await unary(s.messaging, 'SendWhatsApp', {
        to: '+14155550150', content_sid: `HX${'0'.repeat(32)}`, content_variables: { 1: 'Ada' },
      });
      assert.ifError(r.err);
      assert.strictEqual(r.res.template, true);
      const wa = (await s.simRequests('Messages.json')).filter((q) =>
        q.params.some(([k, v]) => k === 'To' && v === 'whatsapp:+14155550150'));
      assert.strictEqual(wa.length, 1);
    });

    await t.test('20 concurrent sends with one idempotency key: one send, one answer', async () => {
      await fetch(`${s.simUrl}/__sim/faults`, {
        method: 'POST', body: JSON.stringify({ path_suffix: 'Messages.json', latency_ms: 200 }),
      });
      const before = (await s.simRequests('Messages.json')).length;
      const req = { to: '+14155550160', body: 'once', idempotency_key: 'node-order-7' };
      const out = await Promise.all(Array.from({ length: 20 }, () => unary(s.messaging, 'SendSMS', req)));
      const sids = new Set(out.map(({ err, res }) => { assert.ifError(err); return res.sid; }));
      assert.strictEqual(sids.size, 1);
      assert.strictEqual((await s.simRequests('Messages.json')).length - before, 1);
    });
  } finally {
    const code = await s.stop();
    assert.strictEqual(code, 0, s.log());
  }
});
