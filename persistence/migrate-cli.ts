import { loadConfig } from '../system/config.ts';
import { Database } from './db.ts';
import { migrate } from './migrate.ts';

const config = loadConfig();
const db = await Database.open({
  url: config.databaseUrl,
  poolMax: 2,
  retriesMax: config.dbRetriesMax,
  retryBackoffMs: config.dbRetryBackoffMs,
});
try {
  const applied = await migrate(db);
  console.log(
    applied.length ? `applied migrations: ${applied.join(', ')}` : 'schema is up to date',
  );
} finally {
  await db.close();
}
