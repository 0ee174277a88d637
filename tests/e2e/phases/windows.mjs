// Issue 22: two VS Code windows on two folders at once (two browser pages on one code-server, each with its own
// extension host) share ONE memory monitor: both gauges live; a spike (a real memory hog, the thresholds lowered
// below the use it causes) gives one level toast in all, one cleanup round and one stop on the host, each logged
// once in every window and a toast in one; closing the first window keeps the monitor for the second; kill -9 of
// the monitor: both windows are back within 5 s, on one new monitor.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  check, log, openWorkbench, psutilPercent, PYTHON, ramGauge, RUN, SHOTS, sleep, startTrainer, toasts, until,
  waitRegistered,
} from '../harness.mjs';

// A real memory hog (not a registered run: the ladder may never touch it): holds `argv[1]` MiB, touched, until killed.
const HOG = `
import sys, time
buf = bytearray(b"\\x01") * (int(sys.argv[1]) << 20)
print("holding", flush=True)
while True:
    time.sleep(1)
`;

const QUIET = { 'crashGuard.ramWarningPercent': 99, 'crashGuard.ramCriticalPercent': 100 };

/** The lines of a window's Crash Guard log matching `pattern` (each window logs into its own session folder). */
function logLines(dataDir, pattern) {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.existsSync(dir) ? fs.readdirSync(dir, { withFileTypes: true }) : []) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name === 'Crash Guard.log') found.push(full);
    }
  };
  walk(dataDir);
  return found.map((file) => fs.readFileSync(file, 'utf8').split('\n').filter((l) => pattern.test(l)));
}

const levelToasts = async (page) => (await toasts(page)).filter((x) => /Crash Guard: RAM (at|critical)/.test(x.text));
const ACTION_TOAST = /Crash Guard (ran an automatic cleanup|checkpointed and stopped a run|sent SIGTERM)/;
const actionToasts = async (page) => (await toasts(page)).filter((x) => ACTION_TOAST.test(x.text));

export async function twoWindows() {
  const root = path.join(RUN, 'windows');
  const folders = ['first', 'second'].map((name) => path.join(root, name));
  for (const dir of folders) {
    fs.mkdirSync(path.join(dir, 'runs'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'README.md'), `# ${path.basename(dir)}\n`);
  }
  const machine = {
    'crashGuard.pythonPath': PYTHON, 'crashGuard.autoCleanup': true, 'crashGuard.criticalAction': 'checkpointAndStop',
    'crashGuard.sampleIntervalMs': 500, ...QUIET,
  };
  const wb = await openWorkbench('windows', { target: `?folder=${encodeURIComponent(folders[0])}`, machineSettings: machine });
  const machineFile = path.join(wb.dataDir, 'Machine', 'settings.json');
  const setMachine = (more) => fs.writeFileSync(machineFile, JSON.stringify({ ...machine, ...more }, null, 2));
  const first = wb.page;
  let hog;
  try {
    const second = await wb.openWindow(`?folder=${encodeURIComponent(folders[1])}`);
    const pages = [first, second];

    // 1. Both gauges live, fed by one monitor process; one window started it, the other found it running.
    for (const [i, page] of pages.entries()) {
      const percent = await until(() => ramGauge(page), 60_000, `the RAM gauge in window ${i + 1}`, 100);
      const reference = psutilPercent();
      check(Math.abs(percent - reference) <= 5, `window ${i + 1}: RAM ${percent}% is within 5 points of psutil's ${reference}%`);
    }
    await sleep(1500); // any second monitor (or a starter) would be running by now
    const monitors = wb.monitors();
    log(`monitor processes: ${JSON.stringify(monitors.map((m) => m.cmdline.join(' ')))}`);
    check(monitors.length === 1 && monitors[0].cmdline.includes('--daemon'),
      'two windows, exactly one process runs the bundled launcher: the shared monitor');
    const [monitor] = wb.monitorPids();
    const connected = logLines(wb.dataDir, /memory monitor .* \(pid \d+/).flat();
    log(`connections: ${JSON.stringify(connected.map((l) => l.replace(/^.*memory monitor /, '')))}`);
    check(connected.filter((l) => /started by this window/.test(l)).length === 1 &&
      connected.filter((l) => /already running/.test(l)).length >= 1,
    'one window started the monitor, the other connected to it');
    await sleep(2500); // 5 sample intervals: a gauge without fresh samples reads "RAM: no data" after 3
    const live = await Promise.all(pages.map((page) => ramGauge(page)));
    check(live.every((x) => x !== undefined), `both gauges stay live (RAM ${live.join('%, ')}%)`);

    // 2. A run in each folder, then a spike: a hog, and the thresholds lowered below the use it causes (both
    // at once, as a user's settings.json edit does): one level toast in all, one cleanup round, one stop.
    const runs = folders.map((dir, i) => {
      const child = startTrainer(path.join(dir, 'runs'), path.join(dir, 'config.json'), `run-${i + 1}`, dir);
      wb.children.push(child);
      return child;
    });
    const exits = runs.map((child) => new Promise((resolve) => child.on('exit', (code) => resolve(code))));
    await Promise.all(folders.map((dir, i) => waitRegistered(path.join(dir, 'runs'), `run-${i + 1}`)));
    hog = spawn(PYTHON, ['-I', '-c', HOG, '768'], { stdio: ['ignore', 'pipe', 'inherit'] });
    wb.children.push(hog);
    await new Promise((resolve) => hog.stdout.once('data', resolve));
    const loaded = psutilPercent();
    const critical = Math.max(2, Math.floor(loaded) - 5);
    log(`hog holds 768 MiB: RAM at ${loaded}%; warning ${critical - 1}%, critical ${critical}%`);
    const levelChanges = () => logLines(wb.dataDir, /level change: RAM normal → (warning|critical)/).flat().length;
    setMachine({ 'crashGuard.ramWarningPercent': critical - 1, 'crashGuard.ramCriticalPercent': critical });
    const shown = pages.map(() => new Set());
    const told = pages.map(() => new Set()); // the ladder's action toasts, by what they say
    const watchToasts = async () => {
      for (const [i, page] of pages.entries()) {
        for (const x of await levelToasts(page)) shown[i].add(x.text.split('\n').find((l) => /RAM/.test(l)) ?? x.text);
        for (const x of await actionToasts(page)) told[i].add(x.text.match(ACTION_TOAST)[1]);
      }
    };
    const stopped = await until(async () => {
      await watchToasts();
      return Promise.race([...exits.map((e, i) => e.then((code) => ({ i, code }))), sleep(100).then(() => undefined)]);
    }, 40_000, 'the ladder to stop one run');
    log(`the ladder stopped run-${stopped.i + 1} (exit ${stopped.code})`);
    const settled = Date.now() + 3000; // a second ladder (or a second toast) would have acted by now
    while (Date.now() < settled) await watchToasts();
    log(`level toasts: ${JSON.stringify(shown.map((s) => [...s]))}`);
    check(levelChanges() === 1, 'one window (of two) was told of the level change');
    await first.screenshot({ path: path.join(SHOTS, 'windows-first-spike.png') });
    await second.screenshot({ path: path.join(SHOTS, 'windows-second-spike.png') });
    check(shown[0].size + shown[1].size === 1, 'the spike gives one level toast in all, in one of the two windows');
    log(`action toasts: ${JSON.stringify(told.map((s) => [...s]))}`);
    const toasted = told.findIndex((s) => s.size > 0);
    check(toasted >= 0 && told[1 - toasted].size === 0 && told[toasted].has('ran an automatic cleanup') &&
      told[toasted].has('checkpointed and stopped a run') && shown[toasted].size === 1,
    'the cleanup and the stop are toasts in one window only, the one that got the level toast');
    const other = runs[1 - stopped.i];
    check(stopped.code === 0 && other.exitCode === null && hog.exitCode === null,
      `one stop on the host: run-${stopped.i + 1} checkpointed and stopped, run-${2 - stopped.i} runs on, the hog untouched`);
    const actions = logLines(wb.dataDir, /automatic (cleanup|checkpointAndStop|terminate) \(/);
    log(`actions per window: ${JSON.stringify(actions.map((lines) => lines.map((l) => l.replace(/^.*automatic /, '').slice(0, 60))))}`);
    check(actions.length === 2 && actions.every((lines) => lines.filter((l) => /automatic cleanup/.test(l)).length === 1 &&
      lines.filter((l) => /automatic checkpointAndStop/.test(l)).length === 1 && !lines.some((l) => /automatic terminate/.test(l))),
    'each window reports the one cleanup round and the one stop once');
    setMachine(QUIET);
    hog.kill('SIGKILL');
    other.kill('SIGKILL');

    // 3. kill -9 of the monitor: both windows are back within 5 s, on one new monitor (started once).
    const daemons = () => wb.monitors().filter((m) => m.cmdline.includes('--daemon')).map((m) => m.pid);
    const seen = new Set();
    process.kill(monitor, 'SIGKILL');
    const killedAt = Date.now();
    await until(async () => {
      for (const pid of daemons()) seen.add(pid);
      const back = await Promise.all(pages.map((page) => ramGauge(page).catch(() => undefined)));
      return back.every((x) => x !== undefined) && daemons().some((pid) => pid !== monitor);
    }, 5_000, 'both gauges on a new monitor', 50);
    const took = Date.now() - killedAt;
    const watchUntil = Date.now() + 1500;
    while (Date.now() < watchUntil) {
      for (const pid of daemons()) seen.add(pid);
      await sleep(50);
    }
    seen.delete(monitor);
    check(took <= 5_000, `after kill -9 of the monitor both windows are back in ${took} ms`);
    check(seen.size === 1 && wb.monitorPids().length === 1,
      `the monitor was restarted once: one new monitor process (${JSON.stringify([...seen])}), nothing else running the launcher`);

    // 4. The first window closes: the monitor stays for the second, whose gauge goes on.
    const [survivor] = wb.monitorPids();
    await first.close();
    await until(() => /a window left; 1 still connected/.test(wb.monitorLog()), 30_000, 'the monitor to see the first window leave', 250);
    await sleep(1500);
    const stillThere = await ramGauge(second);
    check(JSON.stringify(wb.monitorPids()) === JSON.stringify([survivor]) && stillThere !== undefined,
      `after the first window closed the monitor (pid ${survivor}) serves the second (RAM ${stillThere}%)`);
    check(wb.consoleProblems.length === 0, `no console problems about Crash Guard (${wb.consoleProblems.join('; ')})`);
  } catch (error) {
    await wb.shot('failure-windows.png').catch(() => undefined);
    throw error;
  } finally {
    hog?.kill('SIGKILL');
    await wb.close();
  }
}
