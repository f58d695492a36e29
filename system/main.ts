/**
 * `npm start`: the service alone (API, JetStream consumers, actors) against
 * the configured services. SIGTERM/SIGINT shut it down gracefully.
 */
import module from 'node:module';

// V8's code cache for every module loaded after this line (about a quarter
// of a second of every start, which is downtime after a crash), so the rest
// is imported dynamically. Best effort.
module.enableCompileCache?.();
const { BlockfillError, ErrorCode } = await import('../actors/errors.ts');
const { ConfigError, loadConfig } = await import('./config.ts');
const { createLogger, logFormatOf } = await import('./log.ts');
const { startService } = await import('./service.ts');

/**
 * Start-up failures whose message already says what to fix: logged as one
 * line without a stack trace. Anything else keeps its stack.
 */
const KNOWN_STARTUP_FAILURES: ReadonlySet<string> = new Set([
  ErrorCode.DbUnreachable,
  ErrorCode.DbMissing,
  ErrorCode.DbAuthFailed,
  ErrorCode.DbTimeout,
  ErrorCode.SchemaNotMigrated,
  ErrorCode.NatsUnreachable,
  ErrorCode.PartitionCountChanged,
]);

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
// The pid lets a supervisor (or a test) find this process behind `npm start`.
const log = createLogger(
  config.logLevel,
  { service: 'blockfill', pid: process.pid },
  logFormatOf(config.logFormat),
);
const service = await startService(config, { listen: true, log }).catch((error: unknown) => {
  if (error instanceof BlockfillError && KNOWN_STARTUP_FAILURES.has(error.code)) {
    log.error(`start-up failed: ${error.message}`, { code: error.code });
  } else {
    log.error('start-up failed', { error });
  }
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
