// "Who holds my VRAM?": the processes on each GPU (every process NVML lists, guarded run or not), as tooltip
// lines and report rows. Pure: no 'vscode' import.
import { inlineCode, markdownText } from './escape';
import { formatBytes } from './format';
import type { GpuInfo, GpuProcessInfo, Sample } from './protocol';

export interface GpuProcessRow { gpu: string; pid: number; name: string; user: string; vram: string; command: string }

const COMMAND_CHARS = 80;

function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function who(p: GpuProcessInfo): string {
  return p.user === null ? 'not visible to the memory monitor' : p.user;
}

/** Heaviest first (a sidecar sends them so; sorted again so a caller need not know), unknown figures last. */
function ordered(processes: readonly GpuProcessInfo[]): GpuProcessInfo[] {
  return [...processes].sort((a, b) => (b.used ?? -1) - (a.used ?? -1));
}

/** Markdown lines for a GPU's tooltip: its heaviest processes, with user and command. */
export function gpuProcessLines(gpu: GpuInfo, max = 5): string[] {
  if (gpu.processes === undefined) return [];
  if (gpu.processes.length === 0) return ['', 'No process holds memory on this GPU.'];
  const lines = ['', '**Who holds the VRAM**', ''];
  const shown = ordered(gpu.processes);
  for (const p of shown.slice(0, max)) {
    const command = p.command === null ? '' : ` — ${inlineCode(shorten(p.command, COMMAND_CHARS))}`;
    lines.push(`- ${formatBytes(p.used)} ${markdownText(p.name)} (${p.pid}, ${markdownText(who(p))})${command}`);
  }
  if (shown.length > max) lines.push(`- … and ${shown.length - max} more (see the memory report)`);
  return lines;
}

/** Rows of the report's "Who holds the VRAM" table: every process on every GPU. */
export function gpuProcessRows(sample: Sample | undefined): GpuProcessRow[] {
  if (!sample) return [];
  return sample.gpus.flatMap((g) => ordered(g.processes ?? []).map((p) => ({
    gpu: `GPU ${g.index}`, pid: p.pid, name: p.name, user: who(p), vram: formatBytes(p.used),
    command: p.command ?? '',
  })));
}
