// Issue 10: Workspace Trust on, a cloned folder that plants a crashguard package (and a psutil) which would
// write a marker file if anything imported it. In Restricted Mode nothing starts and the status bar says why;
// once the user trusts the folder the gauges appear, fed by the bundled sidecar, and the marker never appears.
// Issue 21: the folder's settings choose its own .venv as the interpreter, and a .pth file there would write the
// marker too: the probe and the monitor start with -I -S, so no site hook of the folder runs even once trusted.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  check, cwdOf, descendants, log, PLAIN_PATH, psutilPercent, ramGauge, RUN, sleep, statusText, STATUSBAR, until, SHOTS,
  openWorkbench,
} from '../harness.mjs';

export async function restrictedMode() {
  const ws = path.join(RUN, 'restricted', 'cloned-repo');
  const marker = path.join(RUN, 'restricted', 'MARKER');
  for (const pkg of ['crashguard', 'psutil', 'pygls']) {
    fs.mkdirSync(path.join(ws, pkg), { recursive: true });
    fs.writeFileSync(path.join(ws, pkg, '__init__.py'), `open(${JSON.stringify(marker)}, "a").write("${pkg} ran\\n")\n`);
  }
  fs.writeFileSync(path.join(ws, 'README.md'), '# a repository someone cloned\n');
  const venv = path.join(ws, '.venv');
  execFileSync('python3', ['-m', 'venv', '--without-pip', venv], { env: { ...process.env, PATH: PLAIN_PATH } });
  const lib = path.join(venv, 'lib');
  const sitePackages = path.join(lib, fs.readdirSync(lib).find((d) => d.startsWith('python')) ?? '', 'site-packages');
  fs.writeFileSync(path.join(sitePackages, 'zz-hook.pth'),
    `import os; open(${JSON.stringify(marker)}, "a").write("a .pth file of the folder's .venv ran\\n")\n`);
  fs.mkdirSync(path.join(ws, '.vscode'), { recursive: true });
  fs.writeFileSync(path.join(ws, '.vscode', 'settings.json'),
    JSON.stringify({ 'crashGuard.pythonPath': '${workspaceFolder}/.venv/bin/python' }));
  const wb = await openWorkbench('restricted', { target: `?folder=${encodeURIComponent(ws)}`, trust: true });
  const { page, server } = wb;
  try {
    const text = await until(async () => {
      const s = await statusText(page);
      return /Crash Guard: Restricted Mode/.test(s) ? s : undefined;
    }, 60_000, 'the Restricted Mode state in the status bar');
    log(`status bar: ${text.replace(/\n/g, ' | ')}`);
    await sleep(3000); // time for anything that would start to start
    check(/Crash Guard: Restricted Mode/.test(await statusText(page)) && (await ramGauge(page)) === undefined,
      'in Restricted Mode the status bar says "Crash Guard: Restricted Mode" and shows no gauge');
    check(wb.monitors().length === 0, 'in Restricted Mode no memory monitor is started, nor connected to');
    check(!descendants(server.pid).some((p) => /python/.test(p.cmdline[0] ?? '')),
      'in Restricted Mode the extension host runs no Python process');
    check(!fs.existsSync(marker), 'the planted crashguard was never imported');
    await page.locator(STATUSBAR).screenshot({ path: path.join(SHOTS, 'statusbar-restricted.png') });

    // Trust the folder the way a user does: the status item opens the trust editor.
    await page.locator(`${STATUSBAR} .statusbar-item`, { hasText: 'Crash Guard: Restricted Mode' }).first().click();
    const trustButton = page.locator('.workspace-trust-editor .workspace-trust-buttons-row .monaco-button', { hasText: /^Trust/ }).first();
    await trustButton.waitFor({ timeout: 15_000 });
    await trustButton.click();
    log('granted trust in the Workspace Trust editor');
    const percent = await until(() => ramGauge(page), 30_000, 'the RAM gauge after trust was granted', 100);
    const reference = psutilPercent();
    check(Math.abs(percent - reference) <= 5, `after trust the gauge appears: RAM ${percent}% (psutil ${reference}%)`);
    const [sidecar] = wb.monitors();
    check(sidecar && sidecar.cmdline.includes('-I') && sidecar.cmdline.includes('-S'),
      `the sidecar runs isolated and without site hooks: ${sidecar?.cmdline.join(' ')}`);
    check(sidecar.cmdline[0] === path.join(venv, 'bin', 'python'), 'once trusted, the monitor runs on the folder\'s own .venv');
    const cwd = cwdOf(sidecar.pid);
    check(cwd && !cwd.startsWith(ws), `the sidecar's working directory is outside the folder (${cwd})`);
    check(sidecar.cmdline.some((a) => a.includes(path.join('extensions', 'crashguard.crash-guard-'))),
      'the sidecar is the one bundled with the installed extension');
    await sleep(2000);
    check(!fs.existsSync(marker), 'after trust too, nothing was imported from the folder and no .pth of its .venv ran ' +
      '(no marker file)');
    check(/monitor interpreter: .*\.venv\/bin\/python \(source: setting crashGuard\.pythonPath\)/.test(wb.logText()),
      'the log names the monitor\'s interpreter and its source');
  } catch (error) {
    await wb.shot('failure-restricted.png').catch(() => undefined);
    throw error;
  } finally {
    await wb.close();
  }
}
