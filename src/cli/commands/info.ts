import type { Command } from 'commander';

import { runtimeReport } from '../../runtime.js';
import { runSelfcheck } from '../../native/selfcheck.js';
import { printJson } from '../output.js';

export function register(program: Command): void {
  program
    .command('info')
    .description('versions of vmat-native, libtorch, CUDA and cuDNN; devices; threads; where the addon is')
    .option('--json', 'print one JSON document')
    .option('--check', "also run the addon's self-check (tensor sharing, async calls, progress, cancellation)")
    .action(async (options: { json?: boolean; check?: boolean }) => {
      const report = runtimeReport();
      const check = options.check ? await runSelfcheck() : undefined;
      if (options.json) {
        printJson(check ? { ...report, selfcheck: check } : report);
        return;
      }
      const lines = [
        `vmat-native   ${report.vmatNativeVersion}`,
        `addon         ${report.addonPath}`,
        `libtorch      ${report.libtorchVersion}`,
        `CUDA          kernels ${report.cuda.compiled ? 'compiled' : 'not compiled'}; libtorch ${report.cuda.libtorchHasCuda ? 'has CUDA' : 'is CPU-only'}; ${report.cuda.available ? `available (CUDA ${report.cuda.version ?? '?'})` : 'no device available'}`,
        `cuDNN         ${report.cudnn.available ? report.cudnn.version ?? 'available' : 'not available'}`,
        `devices       ${report.devices.length === 0 ? 'cpu only' : report.devices.map((d) => `cuda:${d.index} ${d.name} (${d.memoryGiB} GiB, sm ${d.computeCapability})`).join('; ')}`,
        `threads       libtorch ${report.threads.libtorch}, inter-op ${report.threads.interop}, CPU cores ${report.threads.cpuCores}`,
        `distributed   ${report.distributedBackends.length ? `c10d ${report.distributedBackends.join(', ')}` : 'not built (libtorch\'s c10d or gloo headers were missing at build time; on Debian: apt-get install libgloo-dev and rebuild)'}`,
        `node          ${report.node}`,
        `platform      ${report.platform}`,
      ];
      if (check) lines.push(`self-check    ${check.ok ? 'passed' : 'FAILED'}: ${check.checks.map((c) => `${c.name} ${c.ok ? 'ok' : 'failed'}`).join(', ')}`);
      process.stdout.write(`${lines.join('\n')}\n`);
      if (check && !check.ok) process.exitCode = 2;
    });
}
