'use strict';
// Mocha reporter for .ci/run: the usual "spec" output, then one plain closing
// line that CI reads:  "N passed, N failed" (", N skipped" when some are pending).
// Failures include failed hooks, as in mocha's own epilogue; mocha's exit status
// is unchanged (non-zero when anything failed).
//
// Usage: mocha --reporter ./test/support/counting-reporter.cjs
// (CommonJS on purpose: mocha loads reporters with require().)

let Mocha;
try {
  Mocha = require('mocha');
} catch {
  // Older Node without require(esm): mocha 12's CommonJS build.
  Mocha = require('mocha/lib/mocha.cjs');
}
if (Mocha.default && !Mocha.reporters) Mocha = Mocha.default;

const { Spec } = Mocha.reporters;
const { EVENT_RUN_END } = Mocha.Runner.constants;

class CountingReporter extends Spec {
  constructor(runner, options) {
    super(runner, options);
    // Registered after Spec's own run-end handler, so this line comes last.
    runner.once(EVENT_RUN_END, () => {
      const { passes = 0, failures = 0, pending = 0 } = this.stats || {};
      const skipped = pending ? `, ${pending} skipped` : '';
      process.stdout.write(`${passes} passed, ${failures} failed${skipped}\n`);
    });
  }
}

module.exports = CountingReporter;
