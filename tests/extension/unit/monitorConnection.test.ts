// Reaching the shared monitor: the starter's output is checked, the socket must be this user's and private, a
// monitor that is not up yet is retried with a bounded backoff; and against the real bundled launcher, two
// `--ensure` calls find one monitor that this module connects to.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  checkSocket, connectMonitor, connectSocket, ensureMonitor, MonitorUnavailable, parseEndpoint, type ConnectDeps,
  type MonitorEndpoint,
} from '../../../extension/src/monitorConnection';

const ROOT = path.resolve(__dirname, '../../../../..');
const PYTHON = process.env.CRASH_GUARD_TEST_PYTHON ?? path.join(ROOT, '.venv', 'bin', 'python');

function privateDir(): string {
  const dir = fs.mkdtempSync(path.join('/tmp', 'cg-unit-'));
  fs.chmodSync(dir, 0o700);
  return dir;
}

function listen(socketPath: string, mode = 0o600): Promise<net.Server> {
  return new Promise((resolve) => {
    const server = net.createServer((c) => c.end());
    server.listen(socketPath, () => {
      fs.chmodSync(socketPath, mode);
      resolve(server);
    });
  });
}

const endpointAt = (socket: string): MonitorEndpoint => ({ socket, pid: 1, started: false, python: '3.11.7', build: 'p2-0.1.0' });

describe('parseEndpoint', () => {
  it('reads the last line the starter printed', () => {
    const line = JSON.stringify({ socket: '/run/user/1/crashguard/monitor-p2-0.1.0.sock', pid: 42, started: true, python: '3.12.1', build: 'p2-0.1.0' });
    assert.deepEqual(parseEndpoint(`noise\n${line}\n`), JSON.parse(line));
  });
  it('refuses anything else, saying so', () => {
    assert.throws(() => parseEndpoint('Traceback (most recent call last):'), MonitorUnavailable);
    for (const bad of [{}, { socket: 'relative.sock', pid: 1, started: true, python: null, build: 'b' },
      { socket: '/a.sock', pid: 1.5, started: true, python: null, build: 'b' },
      { socket: '/a.sock', pid: 1, started: 'yes', python: null, build: 'b' }]) {
      assert.throws(() => parseEndpoint(JSON.stringify(bad)), /another shape/);
    }
  });
});

describe('checkSocket', () => {
  it('accepts only a private socket of this user', async () => {
    const dir = privateDir();
    const socketPath = path.join(dir, 'm.sock');
    const server = await listen(socketPath);
    try {
      await checkSocket(socketPath);
      await assert.rejects(checkSocket(socketPath, (process.getuid?.() ?? 0) + 1), /belongs to uid/);
      fs.chmodSync(socketPath, 0o666);
      await assert.rejects(checkSocket(socketPath), /open to other users/);
      const file = path.join(dir, 'plain');
      fs.writeFileSync(file, '');
      await assert.rejects(checkSocket(file), /is not a socket/);
      await assert.rejects(checkSocket(path.join(dir, 'missing.sock')), { code: 'ENOENT' });
    } finally {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('connectMonitor', () => {
  it('asks the starter again, after a short wait, while the monitor is not up yet', async () => {
    const dir = privateDir();
    const socketPath = path.join(dir, 'm.sock');
    let ensures = 0;
    let server: net.Server | undefined;
    const slept: number[] = [];
    const deps: ConnectDeps = {
      ensure: () => { ensures++; return Promise.resolve(endpointAt(socketPath)); },
      check: (p) => checkSocket(p),
      connect: (p) => connectSocket(p),
      sleep: async (ms) => {
        slept.push(ms);
        if (slept.length === 2) server = await listen(socketPath); // up by the third try
      },
    };
    try {
      const { endpoint, socket } = await connectMonitor(deps, [10, 20, 30]);
      socket.destroy();
      assert.equal(endpoint.socket, socketPath);
      assert.equal(ensures, 3);
      assert.deepEqual(slept, [10, 20]);
    } finally {
      server?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
  it('gives up after its backoff, and at once on a socket that is not private', async () => {
    const slept: number[] = [];
    const deps: ConnectDeps = {
      ensure: () => Promise.resolve(endpointAt('/nonexistent/m.sock')),
      check: (p) => checkSocket(p),
      connect: (p) => connectSocket(p),
      sleep: (ms) => { slept.push(ms); return Promise.resolve(); },
    };
    await assert.rejects(connectMonitor(deps, [1, 2]), MonitorUnavailable);
    assert.deepEqual(slept, [1, 2]);
    slept.length = 0;
    await assert.rejects(connectMonitor({ ...deps, check: () => Promise.reject(new MonitorUnavailable('open to other users')) }, [1, 2]),
      /open to other users/);
    assert.deepEqual(slept, []);
  });
});

describe('the real launcher', () => {
  const dir = privateDir();
  const pids = new Set<number>();
  after(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  it('starts one monitor that two windows\' --ensure find, and connects to it', async () => {
    const launcher = path.join(ROOT, 'bundled', 'tool', 'sidecar.py');
    const env = { ...process.env, XDG_RUNTIME_DIR: dir };
    const args = ['-I', launcher, '--development'];
    const [first, second] = await Promise.all([ensureMonitor(PYTHON, [...args, '--idle-grace', '5'], os.tmpdir(), env),
      ensureMonitor(PYTHON, [...args, '--idle-grace', '5'], os.tmpdir(), env)]);
    for (const found of [first, second]) if (found.pid !== null) pids.add(found.pid);
    assert.equal(first.pid, second.pid);
    assert.equal([first.started, second.started].filter(Boolean).length, 1);
    assert.match(first.build, /^p\d+-.+-dev$/);
    const { socket } = await connectMonitor(nodeDeps(first));
    socket.destroy();
    const running = execFileSync('ps', ['-o', 'args=', '-p', String(first.pid)]).toString();
    assert.match(running, /sidecar\.py --development .*--daemon/);
  });
});

function nodeDeps(found: MonitorEndpoint): ConnectDeps {
  return {
    ensure: () => Promise.resolve(found), check: (p) => checkSocket(p), connect: (p) => connectSocket(p),
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  };
}
