"""The policy rules through commsgate's own C client (clients/c), on a
stack started here; the C side checks the answers, this side checks what
reached Twilio."""
import os
import subprocess
import unittest

import harness


class CClientTest(unittest.TestCase):
    def test_rules_through_the_c_client(self):
        stack = harness.Stack(env={"TWILIO_WHATSAPP_NUMBER": "+14155238886",
                                   "COMMSGATE_VERIFY_COOLDOWN_SECONDS": "0"})
        try:
            stack.wait_serving(1)
            out = subprocess.run([os.path.join(harness.BIN_DIR, "cg-client-check"),
                                  stack.daemon.grpc_target], capture_output=True, text=True,
                                 timeout=120)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("10 passed, 0 failed", out.stdout)
            sim = harness.Sim(stack.sim.url)
            to = [dict(r["params"])["To"] for r in sim.requests("Messages.json")]
            self.assertEqual(to.count("+15005550004"), 1)  # the opt-out held
            self.assertEqual(to.count("+14155550101"), 1)  # the repeat was not sent
            self.assertEqual(len(sim.requests("Verifications")), 3)
            self.assertFalse(any("whatsapp:" in t for t in to))
        finally:
            self.assertEqual(stack.close(), 0, stack.daemon.output())


if __name__ == "__main__":
    unittest.main()
