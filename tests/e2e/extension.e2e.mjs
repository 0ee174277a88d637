// End-to-end test of the packaged extension in a real VS Code (code-server) driven by headless chromium.
// Run with `npm run test:e2e` (scripts/e2e/run.sh: setup, package the .vsix, then this file under node 24).
// Five fresh profiles, each with the .vsix installed: a hostile folder in Restricted Mode, a user's own folders
// with no project venv (then a memory monitor per window: the setting, and a Python without peer credentials), a
// host whose Python is too old for the monitor, a two-folder workspace that trains, and two windows sharing one
// memory monitor. Exits non-zero on the first failed check; always stops code-server, chromium and
// everything they started.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CheckFailed, CODE_SERVER, log, NODE, PYTHON, results, RUN, SHOTS, t, VSIX } from './harness.mjs';
import { freshProfile } from './phases/fresh.mjs';
import { oldPython } from './phases/oldPython.mjs';
import { restrictedMode } from './phases/restricted.mjs';
import { twoWindows } from './phases/windows.mjs';
import { twoFolderWorkspace } from './phases/workspace.mjs';

const PHASES = { restricted: restrictedMode, fresh: freshProfile, oldpython: oldPython, workspace: twoFolderWorkspace,
  windows: twoWindows };

async function main() {
  for (const [what, p] of [['node 24', NODE], ['code-server', CODE_SERVER], ['vsix', VSIX], ['python', PYTHON]]) {
    if (!fs.existsSync(p)) throw new CheckFailed(`${what} missing at ${p} (run scripts/e2e/setup.sh / npm run package)`);
  }
  fs.rmSync(RUN, { recursive: true, force: true });
  fs.mkdirSync(SHOTS, { recursive: true });
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
  for (const [name, phase] of Object.entries(PHASES)) {
    if (only && !only.includes(name)) continue;
    log(`— phase ${name}`);
    await phase();
  }
}

try {
  await main();
  log(`all ${results.length} checks passed in ${t()}; screenshots in ${path.relative(process.cwd(), SHOTS)}/`);
  process.exit(0);
} catch (error) {
  log(`E2E FAILED: ${error instanceof CheckFailed ? error.message : error?.stack ?? String(error)}`);
  process.exit(1);
}
