/** The consumer's hold for fills ahead of their order's next seq: pure, services-free. */
import t from 'tap';
import { HeldFills } from '../system/held-fills.ts';

t.test('holds by order and seq, takes the next one, bounded', async (t) => {
  const held = new HeldFills<string>(3);
  t.ok(held.hold('A', 3, 'A3', 0));
  t.ok(held.hold('A', 2, 'A2', 0));
  t.notOk(held.hold('A', 2, 'A2-again', 0), 'one per seq');
  t.ok(held.hold('B', 9, 'B9', 0));
  t.notOk(held.hold('C', 1, 'C1', 0), 'full: the caller naks instead');
  t.equal(held.size, 3);
  t.equal(held.take('A', 4), undefined);
  t.equal(held.take('A', 2), 'A2');
  t.equal(held.take('A', 2), undefined, 'taken once');
  t.equal(held.size, 2);
  t.strictSame([...held.items()].sort(), ['A3', 'B9']);
  t.ok(held.hold('C', 1, 'C1', 0), 'room again');
});

t.test('stale: the lowest held fill per order, once it waited long enough', async (t) => {
  const held = new HeldFills<string>(10);
  held.hold('A', 5, 'A5', 0);
  held.hold('A', 3, 'A3', 100);
  held.hold('B', 7, 'B7', 900);
  t.strictSame(held.takeStale(500, 1_000), [], 'nothing waited 1 s');
  t.strictSame(held.takeStale(1_099, 1_000), [], 'A3 (lowest of A) held at 100: not yet');
  t.strictSame(held.takeStale(1_200, 1_000), ['A3']);
  t.strictSame(held.takeStale(2_000, 1_000).sort(), ['A5', 'B7']);
  t.equal(held.size, 0);
});

t.test('takeAll empties it (shutdown naks them for the next process)', async (t) => {
  const held = new HeldFills<number>(10);
  for (let seq = 2; seq <= 5; seq++) held.hold('A', seq, seq, 0);
  t.strictSame(held.takeAll().sort(), [2, 3, 4, 5]);
  t.equal(held.size, 0);
  t.equal(held.take('A', 2), undefined);
});
