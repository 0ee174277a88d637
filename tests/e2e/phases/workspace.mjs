// A two-folder workspace that trains with Crash Guard (the project venv is the training environment): runs of
// both folders are seen by one sidecar, a crash the monitor witnessed in folder 2 is offered for Resume and, after
// a modal that shows the command, its folder and its interpreter, resumes in folder 2; prompts survive a window
// reload and a monitor that was off when the run crashed (two of them: one toast); a crash its watchdog sealed is
// asked about though no monitor saw it; a crash nothing proves (a run without a watchdog killed before any monitor
// saw it, a planted status file with an attacker's command) is never asked about, and what its files say is shown
// as text; folder 2's own settings cannot aim its runs directory at folder 1's runs (issue 21). Plus the gauge and
// its tooltip, Emergency Cleanup, the memory report, warnings, a killed sidecar, Stop Training, and a training
// environment that goes missing (a quiet status-bar state, the gauge keeps going).
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  check, clickDialogButton, cwdOf, descendants, dialogText, EDITOR, log, newestLog, openWorkbench, psutilPercent, PYTHON,
  quickPickRows, ramGauge, ramItemStyle, ROOT, RUN, runCommand, setSetting, SHOTS, sleep, startTrainer, statusText,
  STATUSBAR, toastTexts, until, waitRegistered,
} from '../harness.mjs';

const README_SHOT = path.join(ROOT, 'docs', 'images', 'statusbar.png');
const REPORT_SHOT = path.join(ROOT, 'docs', 'images', 'report.png');
const updateDocs = () => process.argv.includes('--update-docs-image');

/** The memory report's webview content (a frame nested in the webview's iframe), read from the DOM. */
async function reportState(page) {
  for (const frame of page.frames()) {
    const state = await frame.evaluate(() => {
      const svg = document.getElementById('chart');
      if (!svg || !document.getElementById('processes')) return undefined;
      return {
        points: Number(svg.dataset.points),
        series: svg.querySelectorAll('path.series').length,
        thresholds: [...svg.querySelectorAll('line.threshold')].map((l) => l.dataset.label),
        markers: [...svg.querySelectorAll('.marker title')].map((t) => t.textContent),
        processes: [...document.querySelectorAll('#processes tbody tr.row')].map((r) => r.innerText),
        runs: [...document.querySelectorAll('#runs tbody tr.row')].map((r) => r.innerText),
        status: document.getElementById('status')?.textContent ?? '',
        stroke: getComputedStyle(svg.querySelector('path.series') ?? svg).stroke,
      };
    }).catch(() => undefined);
    if (state) return state;
  }
  return undefined;
}

const line = (text, pattern) => text.split('\n').find((l) => pattern.test(l)) ?? text;

const toastWith = (page, pattern, timeoutMs, what) =>
  until(async () => (await toastTexts(page)).find((x) => pattern.test(x)), timeoutMs, what);

/** The buttons of the toast holding `text`: their labels and whether VS Code had to cut them short. */
async function toastButtons(page, text) {
  const toast = page.locator('.notifications-toasts .notification-toast', { hasText: text }).first();
  return toast.locator('.monaco-button').evaluateAll((els) => els.map((el) => ({
    text: el.textContent.trim(), cut: el.scrollWidth > el.clientWidth + 1 })));
}

/** The RAM item's icon (codicon name) and accessibility label. */
async function ramItemAccessibility(page) {
  return page.evaluate(() => {
    const item = [...document.querySelectorAll('#workbench\\.parts\\.statusbar .statusbar-item')].find((el) => /RAM \d+%/.test(el.textContent ?? ''));
    const icon = item?.querySelector('.codicon');
    return { icon: icon ? [...icon.classList].find((c) => c.startsWith('codicon-'))?.slice('codicon-'.length) : undefined,
      label: item?.querySelector('[aria-label]')?.getAttribute('aria-label') ?? '' };
  });
}

async function clickToastButton(page, text, button) {
  await page.locator('.notifications-toasts .notification-toast', { hasText: text }).getByRole('button', { name: button }).click();
}

async function hoverGauge(page) {
  await page.locator(`${STATUSBAR} .statusbar-item`, { hasText: 'RAM' }).first().hover();
  const hover = page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'Guarded runs' }).first();
  await hover.waitFor({ timeout: 10_000 });
  return hover;
}

export async function twoFolderWorkspace() {
  const root = path.join(RUN, 'workspace');
  const a = path.join(root, 'app-a');
  const b = path.join(root, 'app-b');
  for (const dir of [a, b]) fs.mkdirSync(path.join(dir, 'runs'), { recursive: true });
  fs.writeFileSync(path.join(a, 'README.md'), '# folder 1\n');
  fs.writeFileSync(path.join(b, 'README.md'), '# folder 2\n');
  // Issue 19: both (trusted) folders hold packages of their own named crashguard and python_backend, which write a
  // marker file if anything imports them: no command, task or Resume of Crash Guard may run them.
  const marker = path.join(root, 'MARKER');
  for (const dir of [a, b]) {
    for (const pkg of ['crashguard', 'python_backend']) {
      fs.mkdirSync(path.join(dir, pkg), { recursive: true });
      fs.writeFileSync(path.join(dir, pkg, '__init__.py'),
        `open(${JSON.stringify(marker)}, "a").write(${JSON.stringify(`${pkg} of ${dir} ran\n`)})\n`);
    }
  }
  const file = path.join(root, 'two-folders.code-workspace');
  fs.writeFileSync(file, JSON.stringify({ folders: [{ path: 'app-a' }, { path: 'app-b' }], settings: {} }, null, 2));
  const runsA = path.join(a, 'runs');
  const runsB = path.join(b, 'runs');
  const configA = path.join(a, 'config', 'e2e.json');
  const configB = path.join(b, 'config', 'e2e.json');

  // A run of folder 1 that crashed while the editor was closed: no monitor saw it, but its watchdog sealed the crash
  // (as crashguard train's supervisor does, contract C1). And one without a watchdog: nothing proves its crash.
  for (const [name, options] of [['a-pre', {}], ['a-bare', { watchdog: false }]]) {
    const early = startTrainer(runsA, configA, name, a, options);
    try {
      await waitRegistered(runsA, name);
    } finally {
      early.kill('SIGKILL');
    }
  }
  // Issue 21: a planted run in folder 1 — state "crashed", a dead pid, a date ten years ahead, an attacker's command
  // to resume with, Markdown, HTML and a command link in what it says. A file alone is no proof.
  const plantedMarker = path.join(root, 'PLANTED-RAN');
  const hostile = '# Heading [Resume now](command:workbench.action.terminal.sendSequence?%7B%7D) ' +
    '![pixel](https://attacker.invalid/p.png) <b>bold</b>';
  const now = Date.now() / 1000;
  fs.mkdirSync(path.join(runsA, 'planted'), { recursive: true });
  fs.writeFileSync(path.join(runsA, 'planted', 'status.json'), JSON.stringify({
    name: 'planted', pid: 32767, create_time: now - 60, state: 'crashed', step: 7, started: now - 60,
    updated: now + 10 * 365 * 86400, last_event: hostile, exit_cause: hostile, version: 2,
    resume_command: { argv: ['/bin/sh', '-c', `touch ${plantedMarker}`], cwd: root } }));
  // C3: folder 2's own settings aim its runs directory at folder 1's runs: ignored (folder 2 keeps its `runs`).
  fs.mkdirSync(path.join(b, '.vscode'), { recursive: true });
  fs.writeFileSync(path.join(b, '.vscode', 'settings.json'), JSON.stringify({ 'crashGuard.runsDirectory': '../app-a/runs' }));

  const wb = await openWorkbench('workspace', { target: `?workspace=${encodeURIComponent(file)}`,
    machineSettings: { 'crashGuard.pythonPath': PYTHON } });
  const { page, server } = wb;
  try {
    // 1. The gauge agrees with psutil; one sidecar for both folders; the tooltip says which Python does what.
    const percent = await until(() => ramGauge(page), 60_000, 'the RAM gauge', 50);
    const reference = psutilPercent();
    log(`window load → first gauge: ${Date.now() - wb.loadStart} ms`);
    check(Math.abs(percent - reference) <= 5, `status bar RAM ${percent}% is within 5 points of psutil's ${reference}%`);
    const firstGauge = /first gauge (\d+) ms after activation/.exec(wb.logText());
    check(firstGauge, 'the extension logged its time to the first gauge');
    log(`MEASURED activation → first gauge: ${firstGauge[1]} ms`);
    check(wb.monitorPids().length === 1, 'one memory monitor for the two folders');
    await page.locator(STATUSBAR).screenshot({ path: path.join(SHOTS, 'statusbar-normal.png') });

    // 2. The crash that happened while the editor was closed, sealed by its watchdog: asked on activation, named.
    // Folder 2's runsDirectory outside the folder is ignored, and said so; crashes nothing proves are not asked
    // about: a-bare (killed before any monitor saw it, no watchdog) and the planted run.
    const earlyToast = await toastWith(page, /Run a-pre stopped unexpectedly/, 20_000, 'the prompt for a-pre');
    check(/Resume/.test(earlyToast) && /Don't Ask Again/.test(earlyToast), `on activation: ${line(earlyToast, /a-pre/)}`);
    const scopeToast = await toastWith(page, /points outside that folder/, 20_000, 'the note about folder 2\'s runsDirectory');
    check(scopeToast.includes(b) && scopeToast.includes(runsA),
      `a folder's runsDirectory outside the folder is ignored: ${line(scopeToast, /outside/)}`);
    await sleep(3000);
    check(!(await toastTexts(page)).some((x) => /a-bare|planted/.test(x)),
      'no crash prompt for a crash only a file claims (a-bare, killed before any monitor saw it; the planted run)');
    await runCommand(page, 'Notifications: Clear All Notifications');

    // 3. Emergency Cleanup from the palette shows what was freed.
    await runCommand(page, 'Crash Guard: Emergency Cleanup');
    const cleanupToast = await toastWith(page, /Emergency cleanup freed/, 20_000, 'the cleanup result');
    check(/memory monitor .*B/.test(cleanupToast), `the cleanup reports what was freed: ${line(cleanupToast, /freed/)}`);

    // 4. A live run in folder 2, seen by the one sidecar; the tooltip's breakdown (the README's picture).
    const bRun = startTrainer(runsB, configB, 'b-run', b);
    wb.children.push(bRun);
    const bStatus = await waitRegistered(runsB, 'b-run');
    const hoverText = await until(async () => {
      const hover = await hoverGauge(page);
      const text = await hover.innerText();
      return /`?b-run`? running/.test(text) ? text : undefined;
    }, 20_000, 'b-run in the tooltip', 500);
    check(/used .* available .* limit/.test(hoverText) && /Monitor.*Python \d+\.\d+/.test(hoverText) &&
      /Training.*crashguard/.test(hoverText), 'the tooltip: the breakdown, the run of folder 2, which Python runs the monitor and training');
    const hover = page.locator('.workbench-hover, .monaco-hover').filter({ hasText: 'Guarded runs' }).first();
    const rendered = await hover.evaluate((el) => ({
      links: [...el.querySelectorAll('a')].map((x) => x.getAttribute('href') ?? x.getAttribute('data-href') ?? ''),
      images: el.querySelectorAll('img').length, headings: el.querySelectorAll('h1, h2, h3').length,
      bold: [...el.querySelectorAll('b')].map((x) => x.textContent),
    }));
    check(hoverText.includes('# Heading [Resume now](command:workbench.action.terminal.sendSequence') &&
      hoverText.includes('![pixel](https://attacker.invalid/p.png) <b>bold</b>') &&
      !rendered.links.some((h) => /sendSequence|attacker/.test(h)) && rendered.images === 0 && rendered.headings === 0 &&
      !rendered.bold.includes('bold'), `the planted run's last event is shown as text (${JSON.stringify(rendered)})`);
    const hb = await hover.boundingBox();
    const sb = await page.locator(STATUSBAR).boundingBox();
    const top = Math.max(0, Math.min(hb.y, sb.y) - 8);
    await page.screenshot({ path: path.join(SHOTS, 'statusbar-tooltip.png'),
      clip: { x: 0, y: top, width: Math.min(1280, Math.max(hb.x + hb.width + 16, 420)), height: sb.y + sb.height - top } });
    if (updateDocs() || !fs.existsSync(README_SHOT)) fs.copyFileSync(path.join(SHOTS, 'statusbar-tooltip.png'), README_SHOT);
    await page.mouse.move(640, 300);

    // 5. The memory report: a live chart; it survives being hidden and a window reload (and so do crash prompts
    // nobody answered: a-seen is asked about again in the reloaded window).
    await runCommand(page, 'Crash Guard: Show Memory Report');
    const opened = await until(async () => {
      const s = await reportState(page);
      return s && s.points >= 3 && s.processes.length > 0 && s.runs.some((r) => /b-run/.test(r)) ? s : undefined;
    }, 20_000, 'the memory report with data', 250);
    check(opened.series >= 1 && opened.stroke && opened.stroke !== 'none' && opened.thresholds.includes('RAM warning 80%'),
      `the report draws RAM in a theme colour with its thresholds (${opened.points} points)`);
    check(opened.markers.some((m) => /Run b-run started/.test(m)), 'the run\'s start is a marker on the chart');
    await page.locator(EDITOR).screenshot({ path: path.join(SHOTS, 'report-open.png') });
    // A crash the monitor witnessed (a run of folder 1 it saw alive, then killed): asked, and left unanswered.
    const seen = startTrainer(runsA, configA, 'a-seen', a);
    wb.children.push(seen);
    await waitRegistered(runsA, 'a-seen');
    await sleep(1500); // a sample has seen it alive
    seen.kill('SIGKILL');
    const seenToast = await toastWith(page, /Run a-seen stopped unexpectedly/, 20_000, 'the prompt for a-seen');
    check(/Resume/.test(seenToast) && /Don't Ask Again/.test(seenToast), `a witnessed crash is asked about: ${line(seenToast, /a-seen/)}`);
    const beforeReload = wb.monitorPids();
    await runCommand(page, 'Developer: Reload Window');
    // The monitor outlives the window (a grace after the last window leaves): the reloaded window reconnects to it.
    await until(async () => (await ramGauge(page)) !== undefined, 30_000, 'the gauge after the reload', 250);
    check(JSON.stringify(wb.monitorPids()) === JSON.stringify(beforeReload), 'the reloaded window reconnects to the same monitor');
    const revived = await until(async () => {
      const s = await reportState(page);
      return s && s.points > 0 && /memory monitor running/.test(s.status) ? s : undefined;
    }, 25_000, 'the report restored after the reload', 250);
    check(revived.thresholds.length >= 2, `the report survives a window reload (${revived.points} points)`);
    const again = await toastWith(page, /Run a-seen stopped unexpectedly/, 20_000, 'the unanswered a-seen prompt after the reload');
    check(Boolean(again), 'a crash prompt nobody answered is asked again in the reloaded window');
    await clickToastButton(page, 'a-seen', 'Don\'t Ask Again for This Run');
    await runCommand(page, 'View: Close All Editors');

    // 6. A warning threshold below current use: one notification with at most three short actions, none cut, on
    // the heaviest run; the warning colour and icon; the report one click away in the toast's text.
    await setSetting(page, 'crashGuard.ramWarningPercent', 'Ram Warning Percent', '1', 'Remote'); // machine-scoped
    const warningToast = await toastWith(page, /Crash Guard: RAM at/, 20_000, 'the RAM warning');
    log(`warning: ${warningToast.replace(/\n/g, ' | ')}`);
    const buttons = await toastButtons(page, 'Crash Guard: RAM at');
    log(`warning buttons: ${JSON.stringify(buttons)}`);
    check(buttons.length <= 3 && JSON.stringify(buttons.map((b) => b.text)) === JSON.stringify(['Clean Up', 'Stop Run', 'Don\'t Warn Again']),
      'the warning offers three short actions: Clean Up, Stop Run, Don\'t Warn Again');
    check(buttons.every((b) => !b.cut), 'no action is cut short ("Emergenc…")');
    check(/Heaviest run: b-run/.test(warningToast), 'the warning names the run Stop Run acts on');
    const warned = await until(async () => {
      const s = await ramItemStyle(page);
      return s && s.warning && s.background === s.warning ? s : undefined;
    }, 10_000, 'the warning colour on the gauge');
    check(warned.background !== 'rgba(0, 0, 0, 0)', `the RAM gauge has the warning colour (${warned.background})`);
    const ramA11y = await ramItemAccessibility(page);
    check(ramA11y.icon === 'warning' && /^Crash Guard: RAM \d+% used, warning$/.test(ramA11y.label),
      `a level is not colour alone: the warning icon and the label "${ramA11y.label}"`);
    await page.screenshot({ path: path.join(SHOTS, 'warning.png') });
    await page.locator('.notifications-toasts .notification-toast', { hasText: 'Crash Guard: RAM at' })
      .getByRole('link', { name: 'Memory report' }).click();
    await until(async () => (await reportState(page))?.points > 0, 20_000, 'the report from the toast\'s link', 250);
    check(true, 'the toast\'s "Memory report" link opens the memory report');
    await runCommand(page, 'View: Close All Editors');
    await runCommand(page, 'Notifications: Clear All Notifications');

    // 7. kill -9 of the sidecar: back within 10 s, no repeated warning, no repeated (answered) crash prompt.
    const [victim] = wb.monitorPids();
    process.kill(victim, 'SIGKILL');
    const killedAt = Date.now();
    await until(async () => (await ramGauge(page)) !== undefined && wb.monitorPids().some((p) => p !== victim),
      10_000, 'the gauge with a new sidecar', 100);
    check(Date.now() - killedAt <= 10_000, `the gauge came back ${Date.now() - killedAt} ms after kill -9 of the sidecar`);
    await sleep(2500);
    const after = await toastTexts(page);
    check(!after.some((x) => /RAM at|a-seen|a-pre|a-bare|planted/.test(x)),
      'after the restart: no repeated warning, no crash prompt already answered or never proved');
    // Start and Restart Memory Monitor differ: Start leaves a running monitor alone, Restart replaces it.
    const [running] = wb.monitorPids();
    await runCommand(page, 'Crash Guard: Start Memory Monitor');
    await toastWith(page, /memory monitor is already running/, 10_000, 'Start on a running monitor');
    check(JSON.stringify(wb.monitorPids()) === JSON.stringify([running]), 'Start Memory Monitor leaves a running monitor alone');
    await runCommand(page, 'Crash Guard: Restart Memory Monitor');
    await until(() => wb.monitorPids().length === 1 && !wb.monitorPids().includes(running), 20_000, 'a new monitor');
    await until(() => ramGauge(page), 20_000, 'the gauge after Restart Memory Monitor');
    check(true, 'Restart Memory Monitor replaces it');
    await runCommand(page, 'Notifications: Clear All Notifications');

    // 8. A crash in folder 2: the prompt names it; Resume runs in folder 2.
    const step = JSON.parse(fs.readFileSync(bStatus, 'utf8')).step;
    bRun.kill('SIGKILL');
    log(`killed b-run at recorded step ${step}`);
    const crashToast = await toastWith(page, /Run b-run stopped unexpectedly/, 20_000, 'the b-run crash prompt');
    check(/at step \d+ .*Resume\?/s.test(crashToast), `the prompt names the run and its step: ${line(crashToast, /b-run/)}`);
    await page.screenshot({ path: path.join(SHOTS, 'crash-prompt.png') });
    let resumed;
    const watch = (async () => {
      resumed = await until(() => {
        const p = descendants(server.pid).find((x) => x.cmdline.includes('--run-name') && x.cmdline.includes('b-run'));
        return p ? { ...p, cwd: cwdOf(p.pid) } : undefined;
      }, 20_000, 'the resume process', 20);
    })();
    await clickToastButton(page, 'b-run stopped unexpectedly', 'Resume');
    // Nothing runs before the user saw the command, its folder and its interpreter, and chose Resume.
    const confirm = await until(() => dialogText(page), 10_000, 'the Resume confirmation');
    log(`resume confirmation: ${confirm.replace(/\n/g, ' | ')}`);
    check(!descendants(server.pid).some((x) => x.cmdline.includes('--run-name') && x.cmdline.includes('b-run')),
      'nothing runs while the confirmation shows');
    check(/Resume run b-run\?/.test(confirm) && /Command: .*-I -m crashguard train .*--resume auto/.test(confirm) &&
      confirm.includes(`Folder: ${b}`) && /Interpreter: \S*python/.test(confirm) && /saw this run running/.test(confirm),
    'the confirmation shows the command, its folder, its interpreter and that the monitor witnessed the crash');
    await page.screenshot({ path: path.join(SHOTS, 'resume-confirm.png') });
    await clickDialogButton(page, 'Resume');
    await watch;
    log(`resume: ${resumed.cmdline.join(' ')} (cwd ${resumed.cwd})`);
    check(resumed.cwd === b && resumed.cmdline.includes('--resume') && resumed.cmdline.includes(runsB),
      'Resume runs in folder 2, with folder 2\'s runs directory');
    check(resumed.cmdline.slice(1, 4).join(' ') === '-I -m crashguard',
      'Resume starts crashguard isolated from the folder (python -I -m crashguard)');
    await page.screenshot({ path: path.join(SHOTS, 'resume.png') });
    await runCommand(page, 'Notifications: Clear All Notifications');

    // 9. A run in each folder crashes while the monitor is off (both seen alive before, both with a watchdog): Start
    // Memory Monitor asks about them in ONE toast.
    const late = startTrainer(runsA, configA, 'a-late', a);
    const lateB = startTrainer(runsB, configB, 'b-late', b);
    wb.children.push(late, lateB);
    await waitRegistered(runsA, 'a-late');
    await waitRegistered(runsB, 'b-late');
    await sleep(1500); // a sample has seen both alive
    await runCommand(page, 'Crash Guard: Stop Memory Monitor');
    await until(() => wb.monitorPids().length === 0, 10_000, 'the monitor to stop (the only window stopped it)');
    // "Off" is remembered: a reloaded window keeps the monitor off until Start Memory Monitor.
    await runCommand(page, 'Developer: Reload Window');
    await until(async () => /RAM: monitor off/.test(await statusText(page)), 60_000, '"monitor off" after the reload');
    await sleep(3000);
    check(wb.monitorPids().length === 0, 'Stop Memory Monitor survives a window reload (no monitor, "RAM: monitor off")');
    // Emergency Cleanup with the monitor down: the cleanup task, in a folder that plants crashguard/.
    let cleanup;
    const watchCleanup = (async () => {
      cleanup = await until(() => {
        const p = descendants(server.pid).find((x) => x.cmdline.includes('cleanup') && x.cmdline.includes('--runs-dir'));
        return p ? { ...p, cwd: cwdOf(p.pid) } : undefined;
      }, 20_000, 'the cleanup task', 20);
    })();
    await runCommand(page, 'Crash Guard: Emergency Cleanup');
    await watchCleanup;
    log(`cleanup task: ${cleanup.cmdline.join(' ')} (cwd ${cleanup.cwd})`);
    check([a, b].includes(cleanup.cwd) && cleanup.cmdline.slice(1, 4).join(' ') === '-I -m crashguard',
      'Emergency Cleanup with the monitor down runs the cleanup task isolated (python -I -m crashguard) in the folder');
    await until(() => !descendants(server.pid).some((x) => x.pid === cleanup.pid), 30_000, 'the cleanup task to finish', 100);
    late.kill('SIGKILL');
    lateB.kill('SIGKILL');
    await sleep(500);
    await runCommand(page, 'Crash Guard: Start Memory Monitor');
    const lateToast = await toastWith(page, /2 runs stopped unexpectedly/, 20_000, 'one toast for the two runs that crashed while the monitor was off');
    check(/2 runs stopped unexpectedly: (a-late and b-late|b-late and a-late)\./.test(lateToast) && /Show…/.test(lateToast) &&
      !(await toastTexts(page)).some((x) => /Run [ab]-late stopped/.test(x)),
    `after Start Memory Monitor, the runs that crashed while it was off are asked about in one toast: ${line(lateToast, /stopped/)}`);
    await clickToastButton(page, '2 runs stopped unexpectedly', 'Show…');
    const picked = await quickPickRows(page);
    check(picked.some((r) => r.includes('a-late')) && picked.some((r) => r.includes('b-late')), 'Show… lists both runs to resume');
    await page.keyboard.press('Escape');
    await runCommand(page, 'Notifications: Clear All Notifications');

    // 10. Stop Training (checkpoint) of a run in folder 2: a real checkpoint-and-stop through the sidecar.
    const stopper = startTrainer(runsB, configB, 'b-stop', b);
    wb.children.push(stopper);
    const stopExit = new Promise((resolve) => stopper.on('exit', (code) => resolve(code)));
    const stopStatus = await waitRegistered(runsB, 'b-stop');
    await sleep(1500); // the sidecar's next sample has it
    await runCommand(page, 'Crash Guard: Stop Training (checkpoint)');
    const stopToast = await toastWith(page, /Run b-stop stopped/, 40_000, 'the stop result');
    const code = await stopExit;
    const final = JSON.parse(fs.readFileSync(stopStatus, 'utf8'));
    check(code === 0 && final.state === 'stopped' && final.checkpoint && stopToast.includes(final.checkpoint),
      `Stop Training (checkpoint) stopped b-stop cleanly (exit ${code}, ${final.state}, checkpoint shown)`);

    // 11. A click on the gauge opens the report (this sidecar's history: it started after Restart Sidecar): the
    // run that started and was stopped since are markers, the stopped run is listed, the threshold is the live one.
    await page.locator(`${STATUSBAR} .statusbar-item`, { hasText: 'RAM' }).first().click();
    const report = await until(async () => {
      const s = await reportState(page);
      return s && s.markers.some((m) => /Run b-stop stopped/.test(m)) && s.runs.some((r) => /b-stop\s+stopped/.test(r)) ? s : undefined;
    }, 20_000, 'the report with the stopped run', 250);
    log(`report markers: ${JSON.stringify(report.markers)}`);
    check(report.thresholds.includes('RAM warning 1%'), 'the report shows the live threshold, the stop as a marker and the stopped run');
    await page.locator(EDITOR).screenshot({ path: path.join(SHOTS, 'report-chart.png') });
    if (updateDocs() || !fs.existsSync(REPORT_SHOT)) fs.copyFileSync(path.join(SHOTS, 'report-chart.png'), REPORT_SHOT);
    await runCommand(page, 'View: Close All Editors');

    // 12. The training environment goes missing: a quiet status-bar state (never red); the gauge keeps going.
    await runCommand(page, 'Notifications: Clear All Notifications');
    await setSetting(page, 'crashGuard.pythonPath', 'Python Path', path.join(RUN, 'no-such-python'), 'Remote');
    const setUp = await until(async () => /set up training/i.test(await statusText(page)), 20_000, 'the "set up training" item');
    check(setUp, 'a missing training environment is a status-bar item "Crash Guard: set up training"');
    const itemStyle = await page.evaluate(() => {
      const el = [...document.querySelectorAll('#workbench\\.parts\\.statusbar .statusbar-item')].find((e) => /set up training/i.test(e.textContent ?? ''));
      return el ? getComputedStyle(el).backgroundColor : undefined;
    });
    const ramStyle = await ramItemStyle(page);
    check(itemStyle && itemStyle !== ramStyle?.error, `the set-up item is not red (${itemStyle})`);
    await until(() => ramGauge(page), 20_000, 'the gauge after the interpreter change');
    check((await toastTexts(page)).every((x) => !/error/i.test(x)), 'no error toast: the monitor fell back to the machine\'s python3');
    await page.screenshot({ path: path.join(SHOTS, 'set-up-training.png') });

    check(!fs.existsSync(marker), 'no command, task or Resume imported the folders\' own crashguard/ or python_backend/');
    check(!fs.existsSync(plantedMarker), 'the planted run\'s command never ran');
    for (const p of [...wb.consoleProblems, ...wb.cspProblems]) log(`console: ${p}`);
    check(wb.cspProblems.length === 0, 'no Content Security Policy violations');
    check(wb.consoleProblems.length === 0, 'the workbench console has no errors or warnings about Crash Guard');
    check(newestLog(wb.dataDir, 'Crash Guard.log'), 'the log exists');
  } catch (error) {
    await wb.shot('failure-workspace.png').catch(() => undefined);
    throw error;
  } finally {
    await wb.close();
  }
}
