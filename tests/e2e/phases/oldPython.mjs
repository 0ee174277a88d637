// Issue 22: a remote GPU host whose python3 is older than 3.10 (and crashGuard.pythonPath a Python 3.9): the gauge
// says so plainly, with no error toast and no monitor process; a click offers the interpreters on the machine that
// can run the monitor; picking one starts the gauge, and the choice survives a window reload.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  check, log, NODE, openWorkbench, quickPickRows, ramGauge, RUN, sidecars, sleep, STATUSBAR, statusText, toasts, until,
} from '../harness.mjs';

/** A Python 3.9: pyenv's when the machine has one, else a script that answers the probe as 3.9 (the probe is all
 *  the extension asks of it). */
function python39(dir) {
  const pyenv = path.join(os.homedir(), '.pyenv', 'versions');
  const real = fs.existsSync(pyenv) ? fs.readdirSync(pyenv).filter((v) => v.startsWith('3.9.'))
    .map((v) => path.join(pyenv, v, 'bin', 'python3.9')).find((p) => fs.existsSync(p)) : undefined;
  if (real) return real;
  const fake = path.join(dir, 'python3.9-fake');
  const info = { executable: fake, version: '3.9.18', prefix: '/usr', virtualEnv: false, crashguard: null,
    found: { crashguard: null, torch: null, monai: null }, crashguardScript: null, pip: false };
  fs.writeFileSync(fake, `#!/bin/sh\necho '${JSON.stringify(info)}'\nexit 0\n`, { mode: 0o755 });
  return fake;
}

/** A PATH folder with the machine's tools but no Python except python3 = that 3.9. */
function pathWithOldPython(dir, old) {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const name of fs.readdirSync('/usr/bin')) {
    if (/^(python|pydoc|idle|2to3)/.test(name)) continue;
    fs.symlinkSync(path.join('/usr/bin', name), path.join(bin, name));
  }
  fs.symlinkSync(old, path.join(bin, 'python3'));
  return `${path.dirname(NODE)}:${bin}`;
}

export async function oldPython() {
  const dir = path.join(RUN, 'old-python');
  const folder = path.join(dir, 'project');
  fs.mkdirSync(folder, { recursive: true });
  const old = python39(dir);
  log(`old-python: Python 3.9 is ${old}`);
  const wb = await openWorkbench('old-python', { target: `?folder=${encodeURIComponent(folder)}`,
    // VSCODE_CLI=1: the server takes this environment as it is instead of a login shell's (whose rc files put
    // pyenv's shims, and so a newer python3, first on PATH).
    env: { PATH: pathWithOldPython(dir, old), VSCODE_CLI: '1' }, machineSettings: { 'crashGuard.pythonPath': old } });
  const { page, server } = wb;
  try {
    await until(async () => /RAM: needs Python 3\.10\+/.test(await statusText(page)), 60_000, 'the "needs Python 3.10+" gauge');
    await sleep(3000); // a toast, if any, would be up by now
    const shown = await toasts(page);
    log(`old-python: toasts ${JSON.stringify(shown)}`);
    check(!shown.some((x) => x.severity === 'error'), 'no error toast for a missing Python 3.10+');
    check(!shown.some((x) => /Crash Guard/i.test(x.text)), 'no Crash Guard notification at all: the gauge says it');
    check(sidecars(server.pid).length === 0, 'no memory monitor process without a Python 3.10+');
    const label = await page.evaluate(() => [...document.querySelectorAll('#workbench\\.parts\\.statusbar .statusbar-item')]
      .find((el) => /needs Python/.test(el.textContent ?? ''))?.querySelector('[aria-label]')?.getAttribute('aria-label'));
    check(label === 'Crash Guard RAM: needs Python 3.10+', `the item's accessibility label says it (${label})`);
    check(/Python 3\.9\.\d+ is older than 3\.10/.test(wb.logText()), 'the log names the 3.9 that was passed over');
    await wb.shot('old-python.png');

    // A click offers what can run the monitor on this machine (not on PATH here, e.g. /usr/bin/python3.11).
    await page.locator(`${STATUSBAR} .statusbar-item`, { hasText: 'needs Python' }).first().click();
    const rows = await until(async () => {
      const r = await quickPickRows(page);
      return r.some((x) => /Python 3\.1\d/.test(x)) ? r : undefined;
    }, 60_000, 'interpreters in the quick pick', 500);
    log(`old-python: offered ${JSON.stringify(rows)}`);
    check(!rows.some((x) => /Python 3\.9/.test(x)), 'the quick pick offers no Python older than 3.10');
    check(rows.some((x) => /How to install Python 3\.10/.test(x)), 'the quick pick also says how to install one');
    const first = page.locator('.quick-input-list .monaco-list-row', { hasText: /Python 3\.1\d/ }).first();
    const picked = (await first.innerText()).replace(/\s+/g, ' ');
    await first.click();
    const percent = await until(() => ramGauge(page), 30_000, 'the gauge after picking an interpreter', 100);
    const [monitor] = sidecars(server.pid);
    log(`old-python: picked ${picked}; monitor ${monitor?.cmdline.join(' ')}`);
    check(percent > 0 && monitor && /python3\.1\d|python3$/.test(monitor.cmdline[0]) && monitor.cmdline[0] !== old,
      `picking ${picked} starts the gauge on it (RAM ${percent}%)`);

    // The choice is the host's (global state): a reloaded window starts the gauge on it at once.
    await page.reload();
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    await until(() => ramGauge(page), 60_000, 'the gauge after a reload', 100);
    check(/source: chosen for the memory monitor/.test(wb.logText()), 'after a reload the monitor runs on the chosen Python');
    check(wb.consoleProblems.length === 0, `no console problems about Crash Guard (${wb.consoleProblems.join('; ')})`);
  } catch (error) {
    await wb.shot('failure-old-python.png').catch(() => undefined);
    throw error;
  } finally {
    await wb.close();
  }
}
