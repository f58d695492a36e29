/**
 * Progress of long phases (seeding, publishing, draining, checking): bars
 * with rate and ETA on a terminal (cli-progress), plain lines at most every
 * few seconds otherwise (logs, CI). Writes only to the stream it is given,
 * so a caller that prints JSON on stdout passes stderr.
 */
import cliProgress from 'cli-progress';

export interface Phase {
  /** Sets how much of the phase is done (same unit as its total). */
  update(done: number): void;
  increment(by?: number): void;
  /** Ends the phase: its final state is printed once. Idempotent. */
  stop(): void;
}

export interface Progress {
  phase(name: string, total: number): Phase;
  /** A line of text that does not break the bars. */
  line(text: string): void;
  /** Stops every phase still running. */
  stop(): void;
}

export interface ProgressOptions {
  stream: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Bars (true) or plain lines (false); default: whether the stream is a TTY. */
  tty?: boolean;
  /** Plain mode: at most one line per phase this often. Default 2000. */
  plainEveryMs?: number;
  /** For tests: the clock. */
  nowMs?: () => number;
}

const NAME_WIDTH = 10;
const number = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** Done, rate and ETA of one phase, measured from its start. */
class Meter {
  readonly name: string;
  readonly total: number;
  readonly startMs: number;
  done = 0;
  readonly #nowMs: () => number;

  constructor(name: string, total: number, nowMs: () => number) {
    this.name = name;
    this.total = Math.max(0, total);
    this.#nowMs = nowMs;
    this.startMs = nowMs();
  }

  elapsedSec(): number {
    return (this.#nowMs() - this.startMs) / 1000;
  }

  percent(): number {
    if (this.total === 0) return 100;
    return Math.min(100, Math.floor((this.done / this.total) * 100));
  }

  ratePerSec(): number {
    const sec = this.elapsedSec();
    return sec > 0 ? this.done / sec : 0;
  }

  /** "12 s", "3 min 4 s", or "?" before anything is done. */
  etaText(): string {
    const rate = this.ratePerSec();
    if (this.done >= this.total) return '0 s';
    if (rate <= 0) return '?';
    return durationText((this.total - this.done) / rate);
  }
}

function durationText(sec: number): string {
  if (sec < 10) return `${sec.toFixed(1)} s`;
  if (sec < 60) return `${Math.round(sec)} s`;
  const min = Math.floor(sec / 60);
  return `${min} min ${Math.round(sec - min * 60)} s`;
}

function rateText(ratePerSec: number): string {
  return ratePerSec >= 100 ? number.format(ratePerSec) : ratePerSec.toFixed(1);
}

/** `publishing: 1,200/5,000 (24%), 600/s, ETA 6.3 s` */
function plainLine(meter: Meter, final: boolean): string {
  const head = `${meter.name}: ${number.format(meter.done)}/${number.format(meter.total)}`;
  const tail = final ? `took ${durationText(meter.elapsedSec())}` : `ETA ${meter.etaText()}`;
  return `${head} (${meter.percent()}%), ${rateText(meter.ratePerSec())}/s, ${tail}`;
}

function plainProgress(options: ProgressOptions, nowMs: () => number): Progress {
  const everyMs = options.plainEveryMs ?? 2000;
  const write = (text: string) => options.stream.write(`${text}\n`);
  const running = new Set<Phase>();
  return {
    phase(name, total) {
      const meter = new Meter(name, total, nowMs);
      let lastMs = meter.startMs;
      let stopped = false;
      write(plainLine(meter, false));
      const tick = () => {
        if (stopped || nowMs() - lastMs < everyMs) return;
        lastMs = nowMs();
        write(plainLine(meter, false));
      };
      const phase: Phase = {
        update(done) {
          meter.done = done;
          tick();
        },
        increment(by = 1) {
          meter.done += by;
          tick();
        },
        stop() {
          if (stopped) return;
          stopped = true;
          running.delete(phase);
          write(plainLine(meter, true));
        },
      };
      running.add(phase);
      return phase;
    },
    line: write,
    stop() {
      for (const phase of [...running]) phase.stop();
    },
  };
}

/** A MultiBar's redraw timer must never keep the process alive (cli-progress does not unref it). */
function unrefTimer(bars: cliProgress.MultiBar): void {
  const timer = (bars as unknown as { timer: NodeJS.Timeout | null }).timer;
  timer?.unref();
}

function newMultiBar(options: ProgressOptions): cliProgress.MultiBar {
  const stream = options.stream as NodeJS.WriteStream;
  const bars = new cliProgress.MultiBar({
    stream,
    format: '{name} {bar} {percentage}% | {value}/{total} | {rate}/s | {tail}',
    formatValue: (v, _options, type) =>
      type === 'value' || type === 'total' ? number.format(v) : String(v),
    barsize: 30,
    barCompleteChar: '\u2588',
    barIncompleteChar: '\u2591',
    hideCursor: false,
    // Our caller owns SIGINT: cli-progress would swallow it to stop the bars.
    gracefulExit: false,
    // A stream forced into TTY mode without being one still gets output.
    noTTYOutput: stream.isTTY !== true,
  });
  bars.on('start', () => unrefTimer(bars));
  bars.on('update-post', () => unrefTimer(bars));
  return bars;
}

function barProgress(options: ProgressOptions, nowMs: () => number): Progress {
  let bars: cliProgress.MultiBar | null = null;
  const running = new Set<Phase>();
  const payloadOf = (meter: Meter) => ({
    name: meter.name.padEnd(NAME_WIDTH),
    rate: rateText(meter.ratePerSec()),
    tail: `ETA ${meter.etaText()}`,
  });
  const finishIfIdle = () => {
    if (running.size > 0 || bars === null) return;
    bars.update(); // flushes lines logged since the last redraw
    bars.stop();
    bars = null;
  };
  return {
    phase(name, total) {
      bars ??= newMultiBar(options);
      const meter = new Meter(name, total, nowMs);
      const bar = bars.create(meter.total, 0, payloadOf(meter));
      let stopped = false;
      const phase: Phase = {
        update(done) {
          if (stopped) return;
          meter.done = done;
          bar.update(done, payloadOf(meter));
        },
        increment(by = 1) {
          phase.update(meter.done + by);
        },
        stop() {
          if (stopped) return;
          stopped = true;
          bar.update(meter.done, {
            ...payloadOf(meter),
            tail: `took ${durationText(meter.elapsedSec())}`,
          });
          bar.stop();
          running.delete(phase);
          finishIfIdle();
        },
      };
      running.add(phase);
      return phase;
    },
    line(text) {
      if (bars === null) options.stream.write(`${text}\n`);
      else bars.log(`${text}\n`);
    },
    stop() {
      for (const phase of [...running]) phase.stop();
    },
  };
}

/** Bars on a terminal, plain lines elsewhere; only ever writes to `options.stream`. */
export function createProgress(options: ProgressOptions): Progress {
  const nowMs = options.nowMs ?? (() => performance.now());
  const tty = options.tty ?? (options.stream as NodeJS.WriteStream).isTTY === true;
  return tty ? barProgress(options, nowMs) : plainProgress(options, nowMs);
}
