/**
 * `npm start`: the service alone (API, JetStream consumers, actors) against
 * the configured services. SIGTERM/SIGINT shut it down gracefully.
 */
import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './log.ts';
import { startService } from './service.ts';

let config;
try {
  config = loadConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(error.message);
    process.exit(2);
  }
  throw error;
}
const log = createLogger(config.logLevel, { service: 'blockfill' });
const service = await startService(config, { listen: true, log }).catch((error: Error) => {
  log.error('start-up failed', { error });
  process.exit(1);
});

let signals = 0;
const shutdown = (signal: string) => {
  if (++signals > 1) {
    log.warn('second signal: exiting now', { signal });
    process.exit(1);
  }
  log.info('shutting down', { signal });
  service.stop().then(
    () => process.exit(0),
    (error: Error) => {
      log.error('shutdown failed', { error });
      process.exit(1);
    },
  );
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
