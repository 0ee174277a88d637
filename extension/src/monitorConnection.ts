// Reaching this user's ONE memory monitor on this host (docs/extension.md, "One monitor for every window"): the
// bundled launcher's `--ensure` starts it detached when none runs (an flock decides who starts it, so windows that
// start at once end with one) and prints where it listens; this window then connects to that unix socket itself.
// A monitor that is not up yet (or just died) is retried with a bounded backoff, each try asking `--ensure` again.
// Node only (no 'vscode' import): sidecar.ts feeds the socket to vscode-languageclient.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';

/** What `--ensure` prints (one JSON line). */
export interface MonitorEndpoint {
  socket: string;
  pid: number | null;
  /** This window's `--ensure` started it (else it was running already). */
  started: boolean;
  /** The monitor's Python version, as it recorded it. */
  python: string | null;
  /** Protocol and crashguard version (and `-dev`): the socket of another build is another monitor. */
  build: string;
}

export class MonitorUnavailable extends Error {
  /** The starter's exit code when it exited with one (monitorTransport.ts tells a platform without a shared
   *  monitor from a refusal by it). */
  constructor(message: string, readonly exitCode?: number) {
    super(message);
  }
}

/** The last line of `--ensure`'s stdout, checked; throws MonitorUnavailable naming what is wrong. */
export function parseEndpoint(stdout: string): MonitorEndpoint {
  const line = stdout.trim().split('\n').pop() ?? '';
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    throw new MonitorUnavailable(`the monitor's starter printed no endpoint (${JSON.stringify(line.slice(0, 200))})`);
  }
  const o = raw as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null || typeof o.socket !== 'string' || !o.socket.startsWith('/') ||
      typeof o.started !== 'boolean' || typeof o.build !== 'string' ||
      !(o.pid === null || (typeof o.pid === 'number' && Number.isSafeInteger(o.pid))) ||
      !(o.python === null || typeof o.python === 'string')) {
    throw new MonitorUnavailable(`the monitor's starter printed an endpoint of another shape (${line.slice(0, 200)})`);
  }
  return { socket: o.socket, pid: o.pid, started: o.started, python: o.python, build: o.build };
}

/** `<python> <launcher args> --ensure`: make sure the monitor runs; where it listens. */
export function ensureMonitor(python: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv,
  timeoutMs = 40_000): Promise<MonitorEndpoint> {
  return new Promise((resolve, reject) => {
    execFile(python, [...args, '--ensure'], { cwd, env, timeout: timeoutMs, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      if (error) {
        const why = stderr.trim().split('\n').filter((l) => !/development mode/.test(l)).join('\n') || error.message;
        // A number: the starter's exit code; a string (ENOENT, ...) or none: it did not run, or was killed.
        const code = typeof error.code === 'number' ? error.code : undefined;
        reject(new MonitorUnavailable(`the memory monitor could not be started: ${why}`, code));
        return;
      }
      try {
        resolve(parseEndpoint(stdout));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  });
}

/** The socket must be this user's and closed to others (the monitor checks our uid; we check its socket). */
export async function checkSocket(path: string, uid = process.getuid?.()): Promise<void> {
  const st = await fs.promises.lstat(path);
  if (!st.isSocket()) throw new MonitorUnavailable(`${path} is not a socket`);
  if (uid !== undefined && st.uid !== uid) throw new MonitorUnavailable(`${path} belongs to uid ${st.uid}, not to this user (${uid})`);
  if ((st.mode & 0o077) !== 0) throw new MonitorUnavailable(`${path} is open to other users (mode ${(st.mode & 0o777).toString(8)})`);
}

export function connectSocket(path: string, timeoutMs = 5000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(Object.assign(new Error(`connecting to ${path} timed out`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Errors after which another `--ensure` may help: the monitor is starting, exiting, or was just killed. */
const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EAGAIN', 'ETIMEDOUT']);

export function retryable(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && RETRYABLE.has(code);
}

export interface Connected {
  endpoint: MonitorEndpoint;
  socket: net.Socket;
}

export interface ConnectDeps {
  ensure(): Promise<MonitorEndpoint>;
  check(path: string): Promise<void>;
  connect(path: string): Promise<net.Socket>;
  sleep(ms: number): Promise<void>;
}

/** Delays before the 2nd, 3rd, ... try (about 4 s in all): a monitor that exits as we connect is started again. */
export const BACKOFF_MS = [100, 250, 500, 1000, 2000] as const;

/** Ensure, check, connect; a retryable failure tries again after BACKOFF_MS[i]. */
export async function connectMonitor(deps: ConnectDeps, backoff: readonly number[] = BACKOFF_MS): Promise<Connected> {
  for (let attempt = 0; ; attempt++) {
    const endpoint = await deps.ensure();
    try {
      await deps.check(endpoint.socket);
      return { endpoint, socket: await deps.connect(endpoint.socket) };
    } catch (error) {
      const delay = backoff[attempt];
      if (!retryable(error) || delay === undefined) {
        if (error instanceof MonitorUnavailable) throw error;
        throw new MonitorUnavailable(`connecting to the memory monitor at ${endpoint.socket}: ${String(error)}`);
      }
      await deps.sleep(delay);
    }
  }
}

export const nodeConnectDeps = (ensure: () => Promise<MonitorEndpoint>): ConnectDeps => ({
  ensure,
  check: (path) => checkSocket(path),
  connect: (path) => connectSocket(path),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
});
