// Shared parts of the end-to-end test: checks, the process table, a code-server with a fresh profile driven by
// headless chromium, and the workbench's status bar, notifications, palette and settings editor.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const E2E = path.join(ROOT, '.e2e');
export const RUN = path.join(E2E, 'run');
export const SHOTS = path.join(E2E, 'screenshots');
export const NODE = path.join(E2E, 'node', 'bin', 'node');
export const CODE_SERVER = path.join(E2E, 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
export const VSIX = path.join(ROOT, 'crash-guard.vsix');
/** The test's own Python (the project venv): psutil's reference reading and the stand-in training runs. */
export const PYTHON = process.env.CRASH_GUARD_TEST_PYTHON || path.join(ROOT, '.venv', 'bin', 'python');
export const EDITOR = '#workbench\\.parts\\.editor';
export const STATUSBAR = '#workbench\\.parts\\.statusbar';
/** A PATH with no project venv and no pyenv shims: the extension must find a Python of the machine. */
export const PLAIN_PATH = `${path.dirname(NODE)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

// A stand-in trainer: registers like `python -m crashguard train` does (RunHook), with a watchdog that records (and
// seals: contract C1) a crash the way the train command's supervisor does, steps until killed, and honours
// checkpoint-and-stop at a step boundary (writes a checkpoint file, ends in state "stopped", exits 0).
export const TRAINER = `
import json, sys, time
from pathlib import Path
from crashguard.runs.hook import RunHook
from crashguard.runs.status import RunState
from crashguard.runs.watchdog import start_watchdog
hook = RunHook(sys.argv[3], runs_dir=sys.argv[1], config=sys.argv[2], write_interval=0.2)
hook.start()
if "--no-watchdog" not in sys.argv[4:]:
    start_watchdog(hook.run_dir / "status.json", hook.status.pid, hook.status.create_time)
step = 0
while True:
    step += 1
    time.sleep(0.1)
    hook.step_boundary(step=step, loss=1.0 / step)
    if hook.stop_requested:
        ckpt = hook.run_dir / "checkpoints" / f"step_{step}.json"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_text(json.dumps({"step": step}))
        hook.finish(RunState.STOPPED, checkpoint=ckpt)
        sys.exit(0)
`;

const require = createRequire(import.meta.url);
const { chromium } = require(fs.existsSync(path.join(E2E, 'playwright', 'node_modules', 'playwright-core'))
  ? path.join(E2E, 'playwright', 'node_modules', 'playwright-core') : 'playwright-core');

const started = Date.now();
export const results = [];
export const t = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
export const log = (msg) => console.log(`[e2e ${t()}] ${msg}`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class CheckFailed extends Error {}
export function check(ok, what) {
  results.push({ ok: Boolean(ok), what });
  log(`${ok ? 'PASS' : 'FAIL'} ${what}`);
  if (!ok) throw new CheckFailed(what);
}

export async function until(fn, timeoutMs, what, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await sleep(intervalMs);
  }
  throw new CheckFailed(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last)})`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

/** psutil's RAM percentage, read with the test's python at this moment. */
export function psutilPercent() {
  return Number(execFileSync(PYTHON, ['-c', 'import psutil; print(psutil.virtual_memory().percent)']).toString().trim());
}

/** pid → parent pid and command line for every process, from /proc. */
function processTable() {
  const table = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      table.set(Number(entry), { ppid, cmdline });
    } catch {
      // the process ended meanwhile
    }
  }
  return table;
}

export function descendants(rootPid) {
  const table = processTable();
  const out = [];
  const walk = (pid) => {
    for (const [child, info] of table) {
      if (info.ppid === pid) {
        out.push({ pid: child, cmdline: info.cmdline });
        walk(child);
      }
    }
  };
  walk(rootPid);
  return out;
}

const LAUNCHER = path.join('bundled', 'tool', 'sidecar.py');

/** The memory monitor processes of one profile: whatever runs the launcher bundled in its extensions folder. The
 *  monitor runs detached (it outlives the window that started it), so it is not below code-server. */
export function monitorsOf(extDir) {
  const out = [];
  for (const [pid, info] of processTable()) {
    if (info.cmdline.some((a) => a.startsWith(`${extDir}${path.sep}`) && a.endsWith(LAUNCHER))) out.push({ pid, cmdline: info.cmdline });
  }
  return out;
}

export function cwdOf(pid) {
  try {
    return fs.readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined;
  }
}

/** The newest of the log files called `name` (a reloaded window logs into a new session folder). */
export function newestLog(dir, name, found = []) {
  for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newestLog(full, name, found);
    else if (entry.name === name) found.push(full);
  }
  return found.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
}

export async function statusText(page) {
  return page.locator(STATUSBAR).innerText({ timeout: 2000 });
}

export async function ramGauge(page) {
  const m = /RAM (\d+)%/.exec(await statusText(page));
  return m ? Number(m[1]) : undefined;
}

/** The RAM item's element: background, classes and the theme's warning/error colours. */
export async function ramItemStyle(page) {
  return page.evaluate(() => {
    const items = [...document.querySelectorAll('#workbench\\.parts\\.statusbar .statusbar-item')];
    const item = items.find((el) => /RAM/.test(el.textContent ?? ''));
    if (!item) return undefined;
    const root = getComputedStyle(document.querySelector('.monaco-workbench') ?? document.body);
    const probe = (color) => {
      const el = document.createElement('div');
      el.style.backgroundColor = color;
      document.body.appendChild(el);
      const rgb = getComputedStyle(el).backgroundColor;
      el.remove();
      return rgb;
    };
    const warning = root.getPropertyValue('--vscode-statusBarItem-warningBackground').trim();
    const error = root.getPropertyValue('--vscode-statusBarItem-errorBackground').trim();
    return {
      id: item.id, className: item.className, background: getComputedStyle(item).backgroundColor,
      warning: warning ? probe(warning) : '', error: error ? probe(error) : '',
    };
  });
}

/** The visible notification toasts: their text and severity (from the icon). */
export async function toasts(page) {
  return page.evaluate(() => [...document.querySelectorAll('.notifications-toasts .notification-toast')].map((el) => {
    const icon = el.querySelector('.notification-list-item-icon');
    const cls = icon ? icon.className : '';
    const severity = /codicon-error/.test(cls) ? 'error' : /codicon-warning/.test(cls) ? 'warning' : 'info';
    return { text: el.innerText, severity };
  }));
}

export async function toastTexts(page) {
  return (await toasts(page)).map((x) => x.text);
}

/** The modal dialog on screen (message and detail), or undefined. */
export async function dialogText(page) {
  const box = page.locator('.monaco-dialog-box');
  if (await box.count() === 0) return undefined;
  return box.first().innerText({ timeout: 2000 }).catch(() => undefined);
}

export async function clickDialogButton(page, name) {
  await page.locator('.monaco-dialog-box').first().getByRole('button', { name, exact: true }).click();
}

/** Runs a palette command by clicking its own row (Enter would take the first match, e.g. "Tasks: Rerun…"). */
export async function runCommand(page, title) {
  await page.keyboard.press('Escape');
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill(`>${title}`);
  const exact = new RegExp(`^\\s*${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`);
  const row = page.locator('.quick-input-list .monaco-list-row')
    .filter({ has: page.locator('.label-name', { hasText: exact }) }).first();
  await row.waitFor({ timeout: 10_000 });
  await row.click();
}

/** The rows of the quick input that is open now (after it settles; not while it still lists `leaving`). */
export async function quickPickRows(page, leaving) {
  await page.locator('.quick-input-widget').waitFor({ state: 'visible', timeout: 10_000 });
  const rows = () => page.locator('.quick-input-widget .quick-input-list .monaco-list-row').allInnerTexts();
  if (leaving) await until(async () => !(await rows()).some((r) => r.includes(leaving)), 10_000, `the list after "${leaving}"`);
  await sleep(1500); // providers (tasks, debug configurations) fill the list asynchronously
  return rows();
}

export async function setSetting(page, key, title, value, tab = 'User') {
  await runCommand(page, 'Preferences: Open User Settings');
  await page.locator('.settings-editor').waitFor({ timeout: 15_000 });
  await sleep(500); // the search box takes focus once the editor is built
  await page.keyboard.type(key);
  // Machine-scoped settings (crashGuard.pythonPath) live under the Remote tab in a code-server window.
  if (tab !== 'User') await page.locator('.settings-editor .settings-tabs-widget .action-label', { hasText: tab }).first().click();
  const item = page.locator('.settings-editor .setting-item', { hasText: title }).first();
  await item.waitFor({ timeout: 15_000 });
  const input = item.locator('input').first();
  await input.fill(value);
  await input.press('Tab');
  log(`set ${key} = ${value} in the Settings editor`);
}

/** A stand-in training run (TRAINER) registering in `runsDir`, started with the test's python (isolated: a folder
 *  may plant a crashguard package, which `-c` would import from the working directory). */
/** The stand-in trainer; `watchdog: false` leaves its watchdog out (a crash then has no seal: only a monitor that saw
 *  it alive can prove it). */
export function startTrainer(runsDir, config, name, cwd, { watchdog = true } = {}) {
  return spawn(PYTHON, ['-I', '-c', TRAINER, runsDir, config, name, ...(watchdog ? [] : ['--no-watchdog'])],
    { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
}

export async function waitRegistered(runsDir, name, minStep = 2) {
  const file = path.join(runsDir, name, 'status.json');
  await until(() => fs.existsSync(file) && JSON.parse(fs.readFileSync(file, 'utf8')).step >= minStep, 20_000,
    `run ${name} to register`, 100);
  return file;
}

/**
 * code-server with a fresh profile (its own user-data and extensions folders) and the .vsix installed (and the
 * `extraExtensions` .vsix files), opened in headless chromium at `target` (`?folder=` or `?workspace=`). `trust`:
 * Workspace Trust on (folders open in Restricted Mode, no prompt) or off. `env` reaches the extension host.
 */
export async function openWorkbench(name, { target, trust = false, env = {}, userSettings = {}, machineSettings = {},
  extraExtensions = [] }) {
  const dir = path.join(RUN, name);
  const dataDir = path.join(dir, 'data');
  const extDir = path.join(dir, 'extensions');
  // This profile's own runtime folder: its monitor's socket never meets the user's, another run's or another
  // profile's (the monitor is per user and build, and every profile installs the same build).
  const runtimeDir = path.join(dir, 'xdg');
  fs.mkdirSync(runtimeDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(runtimeDir, 0o700);
  fs.mkdirSync(path.join(dataDir, 'User'), { recursive: true });
  fs.writeFileSync(path.join(dataDir, 'User', 'settings.json'), JSON.stringify({
    'workbench.startupEditor': 'none',
    'security.workspace.trust.enabled': trust,
    'security.workspace.trust.startupPrompt': 'never',
    'telemetry.telemetryLevel': 'off',
    'update.mode': 'none',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'chat.disableAIFeatures': true,
    'workbench.secondarySideBar.defaultVisibility': 'hidden',
    'workbench.tips.enabled': false,
    ...userSettings,
  }, null, 2));
  if (Object.keys(machineSettings).length > 0) {
    fs.mkdirSync(path.join(dataDir, 'Machine'), { recursive: true });
    fs.writeFileSync(path.join(dataDir, 'Machine', 'settings.json'), JSON.stringify(machineSettings, null, 2));
  }
  for (const vsix of [VSIX, ...extraExtensions]) {
    execFileSync(NODE, [CODE_SERVER, '--extensions-dir', extDir, '--user-data-dir', dataDir, '--install-extension', vsix],
      { stdio: ['ignore', 'pipe', 'inherit'] });
  }
  check(fs.readdirSync(extDir).some((d) => d.startsWith('crashguard.crash-guard-')), `${name}: the .vsix installs into a fresh profile`);
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'config.yaml'), `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
  const serverLog = fs.openSync(path.join(dir, 'code-server.log'), 'w');
  const args = [CODE_SERVER, '--bind-addr', `127.0.0.1:${port}`, '--auth', 'none', '--disable-telemetry',
    '--disable-update-check', '--disable-getting-started-override', '--config', path.join(dir, 'config.yaml'),
    '--extensions-dir', extDir, '--user-data-dir', dataDir];
  if (!trust) args.push('--disable-workspace-trust');
  const baseEnv = { ...process.env };
  delete baseEnv.CRASH_GUARD_PYTHON;
  delete baseEnv.VIRTUAL_ENV;
  const server = spawn(NODE, args, { detached: true, stdio: ['ignore', serverLog, serverLog],
    env: { ...baseEnv, PATH: PLAIN_PATH, XDG_RUNTIME_DIR: runtimeDir, ...env } });
  const consoleProblems = [];
  const cspProblems = [];
  const children = [];
  let browser;
  const close = async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    if (browser) await browser.close().catch(() => undefined);
    const leftovers = [...(server.pid ? descendants(server.pid).map((p) => p.pid) : []), ...monitorsOf(extDir).map((p) => p.pid)];
    try {
      process.kill(-server.pid, 'SIGTERM');
    } catch {
      // already gone
    }
    await sleep(1000);
    for (const pid of [server.pid, ...leftovers]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };
  try {
    await until(async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60_000, 'code-server /healthz', 250);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    const watchConsole = (page) => page.on('console', (msg) => {
      if (/Content Security Policy|Refused to (load|apply|execute|connect)/.test(msg.text())) {
        cspProblems.push(`${msg.type()}: ${msg.text().slice(0, 300)} (${msg.location().url})`);
      }
      // Manifest or runtime problems of this extension (our own notifications start with "Crash Guard: ").
      if ((msg.type() === 'error' || msg.type() === 'warning') && /crash.?guard/i.test(msg.text()) &&
          !msg.text().startsWith('Crash Guard: ')) {
        consoleProblems.push(`${msg.type()}: ${msg.text()}`);
      }
    });
    /** Another VS Code window on the same code-server (its own extension host, as a second desktop window). */
    const openWindow = async (where) => {
      const other = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      watchConsole(other);
      await other.goto(`http://127.0.0.1:${port}/${where}`);
      await other.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
      log(`${name}: another window up (${where})`);
      return other;
    };
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    watchConsole(page);
    const loadStart = Date.now();
    await page.goto(`http://127.0.0.1:${port}/${target}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    log(`${name}: workbench up on port ${port} (${target})`);
    return { name, dir, dataDir, extDir, runtimeDir, server, page, port, loadStart, consoleProblems, cspProblems, children,
      close, openWindow,
      monitors: () => monitorsOf(extDir),
      monitorPids: () => monitorsOf(extDir).map((p) => p.pid),
      /** The monitor's own log (it has no window of its own): what it did for every window. */
      monitorLog: () => {
        const folder = path.join(runtimeDir, 'crashguard');
        return fs.existsSync(folder) ? fs.readdirSync(folder).filter((f) => /^monitor-.*\.log$/.test(f))
          .map((f) => fs.readFileSync(path.join(folder, f), 'utf8')).join('') : '';
      },
      shot: (file) => page.screenshot({ path: path.join(SHOTS, file) }),
      logText: () => {
        const file = newestLog(dataDir, 'Crash Guard.log');
        return file ? fs.readFileSync(file, 'utf8') : '';
      } };
  } catch (error) {
    await close();
    throw error;
  }
}
