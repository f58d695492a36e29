/**
 * `npm run cli -- <command> [options]`: one entry point for operators
 * (`npm run cli -- --help` lists the commands; dispatch.ts runs them).
 *
 * Exit codes: 0 done; 1 a runtime failure; 2 a bad command line; 3 reconcile
 * found breaks.
 */
import module from 'node:module';

// V8's code cache for every module loaded after this line (most of the
// start-up of a short command), so the rest is imported dynamically.
module.enableCompileCache?.();
const { main } = await import('./dispatch.ts');
const { processIo } = await import('./output.ts');

process.exitCode = await main(process.argv.slice(2), { io: processIo, env: process.env });
