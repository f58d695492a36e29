/**
 * The contract the host relies on from nact 7.6.2 (unmaintained), through
 * system/nact-adapter.ts. If an upgrade or a patch changes any of this
 * behaviour, these tests fail before the kernel silently misbehaves.
 */
import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import {
  childCount,
  childOf,
  CrashDecision,
  dispatchTo,
  entityKind,
  entityAddress,
  liveActor,
  spawnEntity,
  spawnGroup,
  startSystem,
  stopChildren,
  stopSystem,
  type LiveActor,
} from '../system/nact-adapter.ts';
import { deferred } from './helpers/asserts.ts';

let systems = 0;

function group(t: Test) {
  const name = `adapter-${process.pid}-${++systems}`;
  const system = startSystem(name);
  const things = spawnGroup(system, 'things');
  t.teardown(() => {
    // nact's recursive stop misses grandchildren (and their idle timers).
    stopChildren(things);
    stopSystem(system);
  });
  return { name, group: things };
}

t.test('nact is the version this adapter was written against', async (t) => {
  const pkg = JSON.parse(
    readFileSync(new URL('../node_modules/nact/package.json', import.meta.url), 'utf8'),
  ) as { version: string };
  t.equal(pkg.version, '7.6.2');
});

t.test('one message at a time, in order; queued messages can be taken as a batch', async (t) => {
  const { name, group: g } = group(t);
  const seen: unknown[][] = [];
  const gate = deferred();
  let self: LiveActor | undefined;
  const kind = entityKind<number>({
    initialState: () => 0,
    handle: async (count, message, id, selfRef) => {
      t.equal(id, 'a', 'the handler learns its id');
      self = liveActor(selfRef);
      t.equal(self?.busy, true, 'busy while the handler runs');
      if (message === 'first') await gate.promise;
      seen.push([message, ...(self?.takeQueued(10) ?? [])]);
      return count + 1;
    },
    onCrash: async () => CrashDecision.Stop,
  });
  const ref = spawnEntity(g, 'a', kind, 60_000);
  t.ok(dispatchTo(ref, 'first'));
  await new Promise((resolve) => setImmediate(resolve));
  for (const m of ['second', 'third']) dispatchTo(ref, m);
  t.equal(childOf(g, 'a')?.queued, 2, 'dispatched while busy: queued');
  gate.resolve();
  await new Promise((resolve) => setTimeout(resolve, 5));
  t.same(seen, [['first', 'second', 'third']]);
  t.equal(childOf(g, 'a')?.queued, 0);
  t.equal(childCount(g), 1);
  t.same(entityAddress(ref), { systemName: name, group: 'things', id: 'a' });
});

t.test('a crash: reset re-runs initialState and goes on with the queue', async (t) => {
  const { group: g } = group(t);
  const states: number[] = [];
  const queuedAtCrash: unknown[][] = [];
  const gate = deferred();
  const kind = entityKind<number>({
    initialState: () => 100,
    handle: async (state, message) => {
      if (message === 'boom') {
        await gate.promise;
        throw new Error('boom');
      }
      states.push(state);
      return state + 1;
    },
    onCrash: async (id, error, queued) => {
      t.equal(id, 'b', 'the supervisor learns the id');
      t.equal(error.message, 'boom');
      queuedAtCrash.push(queued);
      return CrashDecision.Reset;
    },
  });
  const ref = spawnEntity(g, 'b', kind, 60_000);
  dispatchTo(ref, 'tick');
  dispatchTo(ref, 'tick');
  await new Promise((resolve) => setTimeout(resolve, 5));
  dispatchTo(ref, 'boom');
  dispatchTo(ref, 'after');
  gate.resolve();
  await new Promise((resolve) => setTimeout(resolve, 10));
  t.same(queuedAtCrash, [['after']], 'the supervisor sees what is still queued');
  t.same(states, [100, 101, 100], 'state reset to initialState; the next message is handled');
});

t.test('a crash: stop drops the actor; dispatch then finds nobody', async (t) => {
  const { group: g } = group(t);
  const kind = entityKind<number>({
    initialState: () => 0,
    handle: async () => {
      throw new Error('always');
    },
    onCrash: async () => CrashDecision.Stop,
  });
  const ref = spawnEntity(g, 'c', kind, 60_000);
  dispatchTo(ref, 'x');
  await new Promise((resolve) => setTimeout(resolve, 10));
  t.equal(childOf(g, 'c'), undefined, 'stopped');
  t.equal(dispatchTo(ref, 'y'), false, 'nobody takes it');
  t.equal(childCount(g), 0);
});

t.test('an idle actor stops after idleMs (passivation)', async (t) => {
  const { group: g } = group(t);
  const kind = entityKind<number>({
    initialState: () => 0,
    handle: async (s) => s + 1,
    onCrash: async () => CrashDecision.Stop,
  });
  const ref = spawnEntity(g, 'd', kind, 20);
  dispatchTo(ref, 'x');
  await new Promise((resolve) => setTimeout(resolve, 5));
  t.ok(childOf(g, 'd'), 'alive while recently used');
  await new Promise((resolve) => setTimeout(resolve, 60));
  t.equal(childOf(g, 'd'), undefined, 'passivated');
  t.equal(entityAddress({ type: 'temp' }), undefined, 'only entity references have an address');
});
