/**
 * withAmendments (simulations/amend-scenario.ts): deterministic, one sequence
 * per order without a gap, at most one amendment per fill, and every entry
 * accepted by the pure deciders, the shell's lookups simulated.
 */
import t from 'tap';
import {
  versionAfter,
  versionOfPending,
  type FillVersion,
} from '../actors/block-order/amendments.ts';
import {
  decide,
  evolve,
  initialState,
  isAmendment,
  type BlockOrderDef,
  type BlockOrderState,
  type Entry,
} from '../actors/block-order/decider.ts';
import { withAmendments, type AmendScenarioOptions } from '../simulations/amend-scenario.ts';
import { amendmentCounts, publishedPart } from '../simulations/drills/books.ts';
import { generateScenario, type Scenario } from '../simulations/scenario.ts';

const SIZE = { fills: 3_000, accounts: 120, blockOrders: 24, securities: 8, seed: 11 };
/** Heavier than the drills' default, so that every rule is hit many times. */
const OPTIONS: AmendScenarioOptions = {
  seed: 5,
  bustShareBps: 800,
  correctionShareBps: 1_200,
  cancelShareBps: 10_000,
  delayEntriesMax: 60,
};

const amended = (scenario: Scenario) => {
  if (!scenario.amended) throw new Error('no amendments');
  return scenario.amended;
};

t.test('deterministic from the seed; the input is left as it was', async (t) => {
  const base = generateScenario({ ...SIZE, completeShare: 0.5 });
  const firstFill = { ...base.publishOrder[0] };
  const a = withAmendments(base, OPTIONS);
  const b = withAmendments(generateScenario({ ...SIZE, completeShare: 0.5 }), OPTIONS);
  t.same(amended(a).publishOrder, amended(b).publishOrder, 'same seed, same entries');
  t.same(amended(a).counts, amended(b).counts);
  const c = withAmendments(base, { ...OPTIONS, seed: 6 });
  t.notSame(
    amended(c).publishOrder.map((e) => e.seq),
    amended(a).publishOrder.map((e) => e.seq),
    'another seed, other amendments',
  );
  t.same(base.publishOrder[0], firstFill, 'the input scenario is not changed');
  t.equal(base.amended, undefined);
});

t.test('one sequence per order, no gap; one amendment per fill at most; counts', async (t) => {
  const base = generateScenario({ ...SIZE, completeShare: 0.5 });
  const s = withAmendments(base, OPTIONS);
  const { publishOrder, entriesByOrder, counts } = amended(s);
  t.equal(s.publishOrder.length, base.publishOrder.length, 'every fill still published');
  t.same(
    s.publishOrder.map((f) => f.fillId),
    base.publishOrder.map((f) => f.fillId),
    'fills in the same order',
  );
  const kinds = { BUST: 0, CORRECTION: 0, CANCEL: 0 };
  const amendedFills = new Set<string>();
  const twice: string[] = [];
  for (const [id, entries] of entriesByOrder) {
    t.same(
      entries.map((e) => e.seq),
      entries.map((_, i) => i + 1),
      `${id}: seqs 1..${entries.length}`,
    );
    const cancelAt = entries.findIndex((e) => isAmendment(e) && e.kind === 'CANCEL');
    if (cancelAt >= 0) t.equal(cancelAt, entries.length - 1, `${id}: the cancel comes last`);
    t.same(
      entries.filter((e) => !isAmendment(e)),
      s.fillsByOrder.get(id),
      `${id}: fillsByOrder holds its fills with their new seqs`,
    );
    for (const e of entries) {
      if (!isAmendment(e)) continue;
      kinds[e.kind] += 1;
      if (e.kind === 'CANCEL') continue;
      if (amendedFills.has(e.fillId)) twice.push(e.fillId);
      amendedFills.add(e.fillId);
    }
  }
  t.same(twice, [], 'no fill amended twice');
  t.same(counts, { busts: kinds.BUST, corrections: kinds.CORRECTION, cancels: kinds.CANCEL });
  t.equal(
    publishOrder.length,
    s.publishOrder.length + kinds.BUST + kinds.CORRECTION + kinds.CANCEL,
  );
  t.ok(
    counts.busts > 100 && counts.corrections > 150,
    `${counts.busts} busts, ${counts.corrections} corrections`,
  );
  t.ok(counts.cancels > 3, `${counts.cancels} cancels`);
  const none = withAmendments(base, {
    ...OPTIONS,
    ...{ bustShareBps: 0, correctionShareBps: 0, cancelShareBps: 0 },
  });
  t.same(amended(none).publishOrder, base.publishOrder, 'no amendments: the fills as they were');
});

/** The decider as the shell drives it: the amended fill's current version looked up. */
class OrderSim {
  state: BlockOrderState = initialState();
  readonly versions = new Map<string, FillVersion>();

  constructor(def: BlockOrderDef) {
    this.#apply(decide({ type: 'Open', def, nowMs: 0 }, this.state));
  }

  take(entry: Entry): ReturnType<typeof decide> {
    const decision = isAmendment(entry)
      ? decide(
          {
            type: 'Amend',
            amendment: entry,
            target: entry.kind === 'CANCEL' ? undefined : (this.versions.get(entry.fillId) ?? null),
            nowMs: 1,
          },
          this.state,
        )
      : decide({ type: 'AllocateFill', fill: entry, nowMs: 1 }, this.state);
    this.#apply(decision);
    return decision;
  }

  #apply(decision: ReturnType<typeof decide>): void {
    for (const event of decision.events) {
      this.state = evolve(this.state, event);
      const version = versionAfter(event);
      if (version) this.versions.set(version.fill.fillId, version);
    }
  }
}

function defsOf(s: Scenario): Map<string, BlockOrderDef> {
  const lots = new Map(s.seed.securities.map((sec) => [sec.id, sec.lotSize]));
  return new Map(
    s.seed.blockOrders.map((o) => [
      o.id,
      {
        ...{ blockOrderId: o.id, securityId: o.securityId, side: o.side, tradeDate: o.tradeDate },
        lotSize: lots.get(o.securityId) ?? 1n,
        targets: o.targets,
      },
    ]),
  );
}

t.test('every entry is accepted by the pure deciders, in publish order', async (t) => {
  for (const [size, options] of [
    [{ ...SIZE, completeShare: 0.5 }, OPTIONS],
    [
      { ...SIZE, seed: 3, completeShare: 0.9 },
      { ...OPTIONS, seed: 9, delayEntriesMax: 400 },
    ],
    [
      { fills: 600, accounts: 30, blockOrders: 6, securities: 3, seed: 2, completeShare: 0 },
      { ...OPTIONS, seed: 1, bustShareBps: 3_000, correctionShareBps: 7_000, delayEntriesMax: 0 },
    ],
  ] as const) {
    const s = withAmendments(generateScenario(size), options);
    const defs = defsOf(s);
    const sims = new Map<string, OrderSim>();
    const refused: string[] = [];
    for (const entry of amended(s).publishOrder) {
      const def = defs.get(entry.blockOrderId);
      if (!def) throw new Error(`no order ${entry.blockOrderId}`);
      const sim = sims.get(def.blockOrderId) ?? new OrderSim(def);
      sims.set(def.blockOrderId, sim);
      const decision = sim.take(entry);
      if (decision.outcome !== 'Accepted')
        refused.push(`${entry.blockOrderId} seq ${entry.seq}: ${JSON.stringify(decision)}`);
    }
    // The first few refusals say why (the rest of that order is then out of order).
    t.same(
      refused.slice(0, 3),
      [],
      `seed ${size.seed}: all ${amended(s).publishOrder.length} accepted`,
    );
    for (const [id, sim] of sims) {
      const st = sim.state;
      if (st.status !== 'Open') throw new Error(`${id} not open`);
      // The shell's in-memory lookup (the newest pending entry of a fill) agrees with the events'.
      const fromPending = new Map<string, FillVersion>();
      for (const p of st.pending) {
        const v = versionOfPending(p);
        if (v) fromPending.set(v.fill.fillId, v);
      }
      t.same(fromPending, sim.versions, `${id}: pending entries give the same versions`);
      const live = [...sim.versions.values()].filter((v) => !v.busted);
      t.equal(
        st.filledQuantity,
        live.reduce((sum, v) => sum + v.quantity, 0n),
        `${id}: filled = its live fills`,
      );
    }
  }
});

t.test('a drill that stops publishing part-way checks the prefix it published', async (t) => {
  const s = withAmendments(generateScenario({ ...SIZE, completeShare: 0.5 }), OPTIONS);
  const all = amended(s).publishOrder;
  for (const n of [0, 1, 777, all.length]) {
    const part = publishedPart(s, n);
    const p = amended(part);
    t.same(p.publishOrder, all.slice(0, n), `${n}: the first ${n} entries`);
    t.same(p.counts, amendmentCounts(all.slice(0, n)));
    t.same(
      part.publishOrder,
      all.slice(0, n).filter((e) => !isAmendment(e)),
      `${n}: the fills among them`,
    );
    for (const [id, entries] of p.entriesByOrder)
      if (entries.length > 0)
        t.same(entries, amended(s).entriesByOrder.get(id)?.slice(0, entries.length));
  }
  const fillsOnly = generateScenario(SIZE);
  t.equal(publishedPart(fillsOnly, 10).amended, undefined, 'a fills-only scenario stays one');
  t.equal(publishedPart(fillsOnly, 10).publishOrder.length, 10);
});
