// Issue 12: a user installs the .vsix into a fresh profile and opens their own folders, with no project venv
// anywhere on PATH: the gauge works (on the machine's python3, the bundled sidecar), nothing pops up, and nothing
// of training leaks in: Ctrl+Shift+B offers no training, the F5 list offers no Safe Training. Then
// crashGuard.monitorPerWindow on and off (perWindow.mjs).
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  check, log, psutilPercent, quickPickRows, runCommand, ramGauge, RUN, sleep, statusText, toasts, until, openWorkbench,
} from '../harness.mjs';
import { monitorPerWindow } from './perWindow.mjs';

async function oneFolder(wb, folder, label, full) {
  const { page } = wb;
  await page.goto(`http://127.0.0.1:${wb.port}/?folder=${encodeURIComponent(folder)}`);
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  const percent = await until(() => ramGauge(page), 60_000, `the RAM gauge in ${label}`, 100);
  const reference = psutilPercent();
  check(Math.abs(percent - reference) <= 5, `${label}: RAM ${percent}% is within 5 points of psutil's ${reference}%`);
  await sleep(3000); // activation toasts, if any, would be up by now
  const shown = await toasts(page);
  log(`${label}: toasts ${JSON.stringify(shown)}`);
  check(!shown.some((x) => x.severity !== 'info'), `${label}: no error or warning notification`);
  check(!shown.some((x) => /Crash Guard/i.test(x.text)), `${label}: no Crash Guard notification at all on activation`);
  check(!/set up training/i.test(await statusText(page)), `${label}: no training set-up item where nothing trains`);

  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+Shift+B');
  const build = await quickPickRows(page).catch(() => []);
  log(`${label}: Ctrl+Shift+B offers ${JSON.stringify(build)}`);
  check(!build.some((r) => /Crash Guard|Safe Training|train/i.test(r)), `${label}: Ctrl+Shift+B offers no training`);
  await page.keyboard.press('Escape');
  // (every task and debug configuration provider is asked: one folder is enough for the long lists)
  for (const title of full ? ['Debug: Select and Start Debugging', 'Tasks: Run Task'] : []) {
    await runCommand(page, title);
    let rows = await quickPickRows(page, title);
    log(`${label}: ${title} offers ${JSON.stringify(rows)}`);
    if (title === 'Tasks: Run Task' && rows.some((r) => r.trim() === 'crashGuard')) {
      // VS Code lists every contributed task type (grunt, gulp, …) as a group; ours must hold no task here.
      await page.locator('.quick-input-list .monaco-list-row')
        .filter({ has: page.locator('.label-name', { hasText: /^\s*crashGuard\s*$/ }) }).first().click({ timeout: 5000 });
      rows = await quickPickRows(page, 'Show All Tasks');
      log(`${label}: its crashGuard group offers ${JSON.stringify(rows)}`);
    }
    check(!rows.some((r) => /Safe Training|Crash Guard|Memory Monitor|Emergency Cleanup|undefined/i.test(r)),
      `${label}: "${title}" offers nothing of Crash Guard`);
  }
  await page.keyboard.press('Escape');
  await page.keyboard.press('F5');
  const f5 = await quickPickRows(page).catch(() => []);
  log(`${label}: F5 offers ${JSON.stringify(f5)}`);
  check(!f5.some((r) => /Safe Training|undefined/i.test(r)), `${label}: F5 offers no Safe Training (and no nameless debugger)`);
  await page.keyboard.press('Escape');
}

export async function freshProfile() {
  const empty = path.join(RUN, 'fresh', 'empty-folder');
  const other = path.join(RUN, 'fresh', 'someone-elses-project');
  fs.mkdirSync(empty, { recursive: true });
  fs.mkdirSync(path.join(other, 'config'), { recursive: true });
  fs.writeFileSync(path.join(other, 'main.py'), 'print("hello")\n');
  // Another tool's config with "training" in its name: Crash Guard's schema must not claim it.
  fs.writeFileSync(path.join(other, 'config', 'training.json'), '{"lr": 0.1, "steps": 10}\n');
  // The default, written out: the per-window step edits this file (machine settings live there in code-server).
  const wb = await openWorkbench('fresh', { target: `?folder=${encodeURIComponent(empty)}`,
    machineSettings: { 'crashGuard.monitorPerWindow': false } });
  try {
    await oneFolder(wb, empty, 'an empty folder', false);
    await wb.shot('fresh-empty-folder.png');
    await oneFolder(wb, other, 'an unrelated project', true);
    const [sidecar] = wb.monitors();
    check(sidecar && sidecar.cmdline[0] !== path.resolve('.venv/bin/python') && !sidecar.cmdline[0].includes('.venv'),
      `the monitor runs on the machine's Python, not a project venv (${sidecar?.cmdline.join(' ')})`);
    const logText = wb.logText();
    check(/monitor interpreter: python3 \(source: PATH\)/.test(logText), 'the log says the monitor uses python3 from PATH');
    check(/training environment: not set up/.test(logText), 'the log says training is not set up, quietly');
    await monitorPerWindow(wb);
    check(wb.consoleProblems.length === 0, `no console problems about Crash Guard (${wb.consoleProblems.join('; ')})`);
  } catch (error) {
    await wb.shot('failure-fresh.png').catch(() => undefined);
    throw error;
  } finally {
    await wb.close();
  }
}
