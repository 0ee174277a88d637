// Task 22D: a memory monitor per window. A step of the fresh profile's phase, on its open window:
// 1. crashGuard.monitorPerWindow on: the window leaves the shared monitor for one of its own over stdio — a child of
//    the extension host, not detached — with a live gauge, one line in the log and the tooltip saying so;
// 2. off again: back on the shared one;
// 3. the path a Mac takes: crashGuard.pythonPath set to a Python whose socket module has no SO_PEERCRED; the starter
//    says "no shared monitor on this platform" (exit 7) and the window runs its own, saying so.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  check, descendants, log, psutilPercent, PYTHON, ramGauge, sleep, STATUSBAR, until,
} from '../harness.mjs';

const SETTING = 'crashGuard.monitorPerWindow';
const OWN_LOG = /crashGuard\.monitorPerWindow is on: this window runs a memory monitor of its own/;
const PLATFORM_LOG = /this platform: one memory monitor per window/;
// Every call the extension makes to a Python is `<python> -I -S <script> <args>`: this one runs the script the same
// way (isolated, no site hooks), after taking SO_PEERCRED out of its socket module (as macOS's Python never had it).
const WITHOUT_PEERCRED = `#!/bin/sh
[ "$1" = "-I" ] && shift
[ "$1" = "-S" ] && shift
exec ${PYTHON} -I -S -c 'import runpy, socket, sys; del socket.SO_PEERCRED; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name="__main__")' "$@"
`;

/** pid → { ppid, cmdline } of one process, from /proc. */
function processInfo(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return { ppid, cmdline: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean) };
  } catch {
    return undefined;
  }
}

async function gaugeNearPsutil(page, what) {
  const percent = await until(() => ramGauge(page), 30_000, `the RAM gauge ${what}`, 100);
  const reference = psutilPercent();
  check(Math.abs(percent - reference) <= 5, `${what}: RAM ${percent}% is within 5 points of psutil's ${reference}%`);
}

/** The RAM item's tooltip, once it holds `text`. */
async function tooltipWith(page, text) {
  return until(async () => {
    await page.mouse.move(640, 300);
    await page.locator(`${STATUSBAR} .statusbar-item`, { hasText: 'RAM' }).first().hover();
    const hover = page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'Guarded runs' }).first();
    await hover.waitFor({ timeout: 5_000 });
    const shown = await hover.innerText();
    return shown.includes(text) ? shown : undefined;
  }, 20_000, `"${text}" in the gauge's tooltip`, 500);
}

export async function monitorPerWindow(wb) {
  const { page } = wb;
  const machineFile = path.join(wb.dataDir, 'Machine', 'settings.json');
  const setMachine = (key, value) => {
    fs.writeFileSync(machineFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(machineFile, 'utf8')), [key]: value }, null, 2));
    log(`${key} = ${JSON.stringify(value)} (Machine settings)`);
  };
  const setOwn = (on) => setMachine(SETTING, on);
  const ownMonitors = () => wb.monitors().filter((m) => !m.cmdline.includes('--daemon') && !m.cmdline.includes('--ensure'));
  const daemons = () => wb.monitors().filter((m) => m.cmdline.includes('--daemon'));
  check(daemons().length === 1 && ownMonitors().length === 0, 'before: the window uses the shared monitor');

  // On: a monitor of the window's own, a child of its extension host (the launcher's argv, no flag).
  setOwn(true);
  const [own] = await until(() => {
    const found = ownMonitors();
    return found.length === 1 ? found : undefined;
  }, 30_000, "the window's own monitor");
  const parent = processInfo(processInfo(own.pid)?.ppid);
  log(`own monitor: pid ${own.pid}: ${own.cmdline.join(' ')}; parent: ${parent?.cmdline.join(' ').slice(0, 160)}`);
  check(descendants(wb.server.pid).some((p) => p.pid === own.pid),
    `the window's own monitor (pid ${own.pid}) runs below code-server, not detached`);
  check(parent && /extensionHost|bootstrap-fork/.test(parent.cmdline.join(' ')), 'its parent is the extension host');
  check(own.cmdline.includes('-I') && own.cmdline.includes('-S') && own.cmdline.at(-1).endsWith(path.join('bundled', 'tool', 'sidecar.py')),
    'it runs isolated, without site hooks (-I -S), the bundled launcher with no flag: stdio');
  await until(() => /memory monitor connected \(pid \d+, this window's own\)/.test(wb.logText()), 30_000, 'the log to say it connected');
  await gaugeNearPsutil(page, 'its own monitor');
  await sleep(3000); // 3 samples: the gauge stays live on it
  check((await ramGauge(page)) !== undefined, 'the gauge stays live on its own monitor');
  const said = wb.logText().split('\n').filter((l) => OWN_LOG.test(l));
  check(said.length === 1, `the log says so once (${said.length})`);
  const tip = await tooltipWith(page, 'One memory monitor per window');
  check(tip.includes(SETTING), 'the tooltip says one memory monitor per window, naming the setting');
  await page.mouse.move(640, 300);
  await wb.shot('per-window-monitor.png');

  // Off: back on the shared monitor; the window's own monitor ends with its connection.
  setOwn(false);
  await until(() => ownMonitors().length === 0 && daemons().length === 1, 30_000, 'the own monitor gone, a shared one running');
  await until(() => /memory monitor p\d+-\S+ \(pid \d+, Python [^)]+\) (started by this window|already running)/
    .test(wb.logText().split(OWN_LOG).at(-1) ?? ''), 30_000, 'the log to say the window joined the shared monitor again');
  const [shared] = daemons();
  check(!descendants(wb.server.pid).some((p) => p.pid === shared.pid), `the shared monitor (pid ${shared.pid}) runs detached`);
  await gaugeNearPsutil(page, 'the shared monitor again');
  await sleep(3000);
  check((await ramGauge(page)) !== undefined && wb.monitors().length === 1, 'the gauge stays live; one monitor process in all');

  // 3. A Python without peer credentials (a new interpreter: the shared monitor makes way, and none can replace it).
  const python = path.join(wb.dir, 'python-without-peercred');
  fs.writeFileSync(python, WITHOUT_PEERCRED, { mode: 0o755 });
  setMachine('crashGuard.pythonPath', python);
  await until(() => daemons().length === 0 && ownMonitors().length === 1, 30_000,
    'the shared monitor gone, the window running its own');
  await until(() => PLATFORM_LOG.test(wb.logText()), 30_000, 'the log to say why');
  const starter = wb.logText().split('\n').filter((l) => /no shared memory monitor on this platform/.test(l));
  log(`the starter said: ${starter.map((l) => l.replace(/^.*starter: /, '').slice(0, 160)).join(' | ')}`);
  check(starter.length === 1 && /SO_PEERCRED/.test(starter[0]), 'the starter said "no shared memory monitor on this platform" (exit 7)');
  const [mine] = ownMonitors();
  check(descendants(wb.server.pid).some((p) => p.pid === mine.pid), `the window's own monitor (pid ${mine.pid}) is its child`);
  await gaugeNearPsutil(page, 'without peer credentials');
  const platformTip = await tooltipWith(page, 'This platform: one memory monitor per window');
  check(!platformTip.includes(SETTING), 'the tooltip says "this platform: one memory monitor per window"');
  check(wb.logText().split('\n').filter((l) => PLATFORM_LOG.test(l)).length === 1, 'the log says so once');
  await page.mouse.move(640, 300);
}
