/**
 * Writes a run's report: reports/<run-id>/report.json and report.html.
 * Validates first, so a malformed report fails loudly here rather than as
 * a blank chart later. Never writes to stdout.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { renderReportHtml } from './html.ts';
import { validateReport, type RunReport } from './types.ts';

export class InvalidReportError extends Error {
  override readonly name = 'InvalidReportError';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid run report (${problems.length} problems):\n  ${problems.join('\n  ')}`);
    this.problems = problems;
  }
}

export interface WrittenReport {
  dir: string;
  jsonPath: string;
  htmlPath: string;
}

export async function writeReport(
  report: RunReport,
  options: { reportsDir: string },
): Promise<WrittenReport> {
  const problems = validateReport(report);
  if (problems.length > 0) throw new InvalidReportError(problems);
  const dir = path.join(options.reportsDir, report.runId);
  const jsonPath = path.join(dir, 'report.json');
  const htmlPath = path.join(dir, 'report.html');
  await mkdir(dir, { recursive: true });
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(htmlPath, renderReportHtml(report));
  return { dir, jsonPath, htmlPath };
}

/** The machine block of a report: what the numbers were measured on. */
export function machineInfo(): RunReport['machine'] {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    platform: os.platform(),
    arch: os.arch(),
    cpus: os.availableParallelism(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    totalMemBytes: os.totalmem(),
    node: process.version,
    loadAvg: os.loadavg(),
  };
}
