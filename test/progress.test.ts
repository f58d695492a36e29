/**
 * Progress: plain lines (percentage, rate, ETA) when not on a terminal, at
 * most every plainEveryMs plus a final line; bars on a terminal; and after
 * stop() nothing keeps drawing or keeps the process alive.
 */
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { createProgress } from '../simulations/progress.ts';

/** A stream that keeps what is written; `tty` makes it look like a terminal to cli-progress. */
function capture(tty = false) {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  if (tty) Object.assign(stream, { isTTY: true, columns: 120, rows: 40 });
  return { stream, text: () => chunks.join(''), writes: () => chunks.length };
}

function timeouts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

t.test('not a TTY: plain lines with percentage, rate and ETA, throttled', async (t) => {
  const out = capture();
  let nowMs = 0;
  const progress = createProgress({ stream: out.stream, plainEveryMs: 1000, nowMs: () => nowMs });
  const phase = progress.phase('publishing', 1000);
  for (let i = 1; i <= 10; i++) {
    nowMs = i * 250;
    phase.increment(25); // 100 per second
  }
  progress.line('a note');
  phase.stop();
  const lines = out.text().trimEnd().split('\n');
  t.same(lines, [
    'publishing: 0/1,000 (0%), 0.0/s, ETA ?',
    'publishing: 100/1,000 (10%), 100/s, ETA 9.0 s',
    'publishing: 200/1,000 (20%), 100/s, ETA 8.0 s',
    'a note',
    'publishing: 250/1,000 (25%), 100/s, took 2.5 s',
  ]);
  phase.stop();
  t.equal(out.text().trimEnd().split('\n').length, lines.length, 'stop is idempotent');
});

t.test('not a TTY by default when the stream is not one', async (t) => {
  const out = capture();
  const progress = createProgress({ stream: out.stream });
  const phase = progress.phase('seeding', 10);
  phase.update(10);
  progress.stop();
  t.match(out.text(), /^seeding: 0\/10 \(0%\).*\nseeding: 10\/10 \(100%\), [\d.,]+\/s, took /);
  t.notMatch(out.text(), /\x1b\[/, 'no escape codes');
});

t.test('a TTY: bars with value, total, rate and ETA; nothing left running', async (t) => {
  const before = timeouts();
  const out = capture(true);
  const progress = createProgress({ stream: out.stream, tty: true });
  const seeding = progress.phase('seeding', 2000);
  const publishing = progress.phase('publishing', 50_000);
  for (let i = 1; i <= 5; i++) {
    seeding.update(i * 400);
    publishing.increment(5_000);
    await sleep(60);
  }
  progress.line('between the bars');
  seeding.stop();
  await sleep(250);
  publishing.stop();
  const text = out.text();
  t.match(text, /seeding\s+█+ 100% \| 2,000\/2,000 \| [\d.,]+\/s \| took /, 'a full bar');
  t.match(text, /publishing\s+█+░+ 50% \| 25,000\/50,000 \| [\d.,]+\/s \| ETA /, 'a half bar');
  t.match(text, /\x1b\[/, 'drawn with cursor movements');
  t.match(text, 'between the bars');

  const writes = out.writes();
  await sleep(300);
  t.equal(out.writes(), writes, 'no redraws after stop');
  t.equal(timeouts(), before, 'no timers left');
});

t.test('a TTY: progress.stop() ends every phase still running', async (t) => {
  const before = timeouts();
  const out = capture(true);
  const progress = createProgress({ stream: out.stream });
  progress.phase('draining', 10).update(3);
  progress.phase('checking', 4).update(1);
  progress.stop();
  t.match(out.text(), /draining .* 30% .*took/);
  t.match(out.text(), /checking .* 25% .*took/);
  t.equal(timeouts(), before, 'no timers left');
});
