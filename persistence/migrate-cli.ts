/** `npm run db:migrate`: applies the migrations to DATABASE_URL. */
import { BlockfillError } from '../actors/errors.ts';
import { loadConfig } from '../system/config.ts';
import { Database } from './db.ts';
import { migrate } from './migrate.ts';

/** A known failure (bad setting, wrong URL, silent server) is one line; anything else keeps its stack. */
function fail(error: unknown): never {
  if (error instanceof BlockfillError && !error.transient) {
    console.error(`db:migrate failed [${error.code}]: ${error.message}`);
    process.exit(1);
  }
  throw error;
}

const config = (() => {
  try {
    return loadConfig();
  } catch (error) {
    return fail(error);
  }
})();
const db = await Database.open({
  url: config.databaseUrl,
  poolMax: 2,
  retriesMax: config.dbRetriesMax,
  retryBackoffMs: config.dbRetryBackoffMs,
  connectTimeoutMs: config.dbConnectTimeoutMs,
}).catch(fail);
try {
  const applied = await migrate(db);
  console.log(
    applied.length ? `applied migrations: ${applied.join(', ')}` : 'schema is up to date',
  );
} finally {
  await db.close();
}
