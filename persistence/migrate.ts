/**
 * A small migrator of our own: MikroORM's migrator keeps its history in a
 * SERIAL-keyed table, which our portability rules forbid. Each migration runs
 * in its own SERIALIZABLE transaction together with its history row, so a
 * concurrent second migrator either sees it applied or conflicts and retries.
 */
import { BlockfillError, ErrorCode } from '../actors/errors.ts';
import { redactUrl } from './addresses.ts';
import type { Database } from './db.ts';
import { migrations as allMigrations, type Migration } from './migrations/index.ts';

export class SchemaNotMigratedError extends BlockfillError {
  constructor(url: string, missing: number[]) {
    super(
      ErrorCode.SchemaNotMigrated,
      `the database at DATABASE_URL=${redactUrl(url)} lacks migrations ${missing.join(', ')}: ` +
        'run `npm run db:migrate`',
      { transient: false },
    );
    this.name = 'SchemaNotMigratedError';
  }
}

const UNDEFINED_TABLE = '42P01';

/** Throws SchemaNotMigratedError unless every migration is applied to `db` (at `url`). */
export async function assertMigrated(
  db: Database,
  url: string,
  migrations: Migration[] = allMigrations,
): Promise<void> {
  let applied = new Set<number>();
  try {
    const rows = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
    applied = new Set(rows.map((r) => Number(r.version)));
  } catch (error) {
    // Only a missing table means "not migrated"; other failures are reported as what they are.
    if ((error as { code?: unknown }).code !== UNDEFINED_TABLE) throw error;
  }
  const missing = migrations.map((m) => m.version).filter((v) => !applied.has(v));
  if (missing.length > 0) throw new SchemaNotMigratedError(url, missing);
}

export async function migrate(
  db: Database,
  migrations: Migration[] = allMigrations,
): Promise<number[]> {
  await db.serializable((q) =>
    q(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INT NOT NULL PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )`),
  );
  const applied: number[] = [];
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    const didApply = await db.serializable(async (q) => {
      const rows = await q('SELECT version FROM schema_migrations WHERE version = $1', [
        migration.version,
      ]);
      if (rows.length > 0) return false;
      for (const statement of migration.statements) await q(statement);
      await q('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        migration.version,
        migration.name,
      ]);
      return true;
    });
    if (didApply) applied.push(migration.version);
  }
  return applied;
}
