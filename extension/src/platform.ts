// What the memory monitor cannot see or do on this platform, said in the gauge's tooltip rather than left out
// silently. The extension host runs where the monitor runs (a workspace extension), so its platform is the monitor's.
// Pure: no 'vscode' import.

const NAMES: Partial<Record<NodeJS.Platform, string>> = { darwin: 'macOS', win32: 'Windows', linux: 'Linux' };

/** Whether the Linux kernel's interfaces (cgroups, PSI, /proc) can exist here at all. */
export function isLinux(platform: NodeJS.Platform): boolean {
  return platform === 'linux';
}

/**
 * The tooltip's line about this platform, or null on Linux (where a missing cgroup, PSI or NVML is already said by
 * the lines about each: the limit's source, the memory pressure reason, the GPU reason).
 */
export function platformNote(platform: NodeJS.Platform): string | null {
  if (isLinux(platform)) return null;
  const name = NAMES[platform] ?? platform;
  return `**${name}**: Crash Guard watches RAM, the heaviest processes and NVIDIA GPUs here. Memory cgroups, ` +
    'memory pressure (PSI) and OOM scores are Linux kernel features, and a guarded run proves its registration ' +
    'through Linux\'s /proc, so runs are listed but never cleaned up or stopped by Crash Guard on this platform.';
}
