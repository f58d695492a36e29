/**
 * A small migrator of our own: MikroORM's migrator keeps its history in a
 * SERIAL-keyed table, which our portability rules forbid. Each migration runs
 * in its own SERIALIZABLE transaction together with its history row, so a
 * concurrent second migrator either sees it applied or conflicts and retries.
 */
import type { Database } from './db.ts';
import { migrations as allMigrations, type Migration } from './migrations/index.ts';

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
