/**
 * Isolation for runs that must not share state: a fresh database per run and
 * per-namespace JetStream streams, both removable afterwards.
 */
import { randomBytes } from 'node:crypto';
import type { JetStreamManager } from '@nats-io/jetstream';
import { streamNames, type Config } from '../system/config.ts';
import { openJetStream } from '../system/jetstream.ts';
import { Database } from '../persistence/db.ts';

/** The database a URL names. */
export const databaseNameOf = (url: string): string => new URL(url).pathname.slice(1);

export function withDatabaseName(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

const SAFE_NAME = /^[a-z][a-z0-9_]{0,62}$/;

/**
 * A run's own names: database `blockfill_<tag>_<hex>` and stream namespace
 * `<TAG><HEX>`, random, so two runs on one machine never share (nor drop)
 * each other's state.
 */
export function runNames(tag: string): { databaseName: string; namespace: string } {
  if (!/^[a-z][a-z0-9]{0,15}$/.test(tag)) throw new Error(`unsafe run tag ${tag}`);
  const suffix = randomBytes(4).toString('hex');
  return {
    databaseName: `blockfill_${tag}_${suffix}`,
    namespace: `${tag.toUpperCase()}${suffix.toUpperCase()}`,
  };
}

/** Runs `work` on the server's maintenance database (`postgres`, or CockroachDB's `defaultdb`). */
export async function withMaintenance<T>(
  url: string,
  work: (db: Database) => Promise<T>,
): Promise<T> {
  // PostgreSQL has `postgres`; CockroachDB has `defaultdb`.
  let lastError: unknown;
  for (const maintenance of ['postgres', 'defaultdb']) {
    let db: Database | undefined;
    try {
      db = await Database.open({
        url: withDatabaseName(url, maintenance),
        poolMax: 2,
        retriesMax: 3,
        retryBackoffMs: 10,
      });
      await db.ping();
    } catch (error) {
      lastError = error;
      await db?.close().catch(() => undefined);
      continue;
    }
    try {
      return await work(db);
    } finally {
      await db.close();
    }
  }
  throw lastError;
}

async function dropIn(db: Database, name: string): Promise<void> {
  try {
    // PostgreSQL 13+: also ends sessions a crashed earlier run left behind.
    await db.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } catch {
    // CockroachDB has no WITH (FORCE); its DROP DATABASE cascades.
    await db.query(`DROP DATABASE IF EXISTS ${name}`);
  }
}

/**
 * Creates database `name` on the server of `url`; returns its URL. Never
 * drops first: a name that exists may be another run's, so it fails instead.
 */
export async function freshDatabase(url: string, name: string): Promise<string> {
  if (!SAFE_NAME.test(name)) throw new Error(`unsafe database name ${name}`);
  await withMaintenance(url, (db) => db.query(`CREATE DATABASE ${name}`));
  return withDatabaseName(url, name);
}

export async function dropDatabase(url: string, name: string): Promise<void> {
  if (!SAFE_NAME.test(name)) throw new Error(`unsafe database name ${name}`);
  await withMaintenance(url, (db) => dropIn(db, name));
}

/**
 * Fails unless no stream of `namespace` exists: a run deletes its streams
 * when it ends, so it must never adopt streams that may be another run's.
 */
export async function assertNamespaceFree(jsm: JetStreamManager, namespace: string): Promise<void> {
  const names = streamNames({ namespace });
  for (const stream of [names.executions, names.deadLetter]) {
    const taken = await jsm.streams.info(stream).then(
      () => true,
      (error: Error) => {
        if (error.name !== 'StreamNotFoundError') throw error;
        return false;
      },
    );
    if (taken)
      throw new Error(`stream ${stream} exists: namespace ${namespace} may be another run's`);
  }
}

/** assertNamespaceFree on its own connection, before a run creates anything. */
export async function claimNamespace(config: Config, namespace: string): Promise<void> {
  const nats = await openJetStream(config, 'blockfill-namespace-check');
  try {
    await assertNamespaceFree(nats.jsm, namespace);
  } finally {
    await nats.nc.close();
  }
}

export async function deleteStreams(jsm: JetStreamManager, namespace: string): Promise<void> {
  const names = streamNames({ namespace });
  for (const stream of [names.executions, names.deadLetter]) {
    await jsm.streams.delete(stream).catch((error: Error) => {
      if (error.name !== 'StreamNotFoundError') throw error;
    });
  }
}
