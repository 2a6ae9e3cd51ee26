/** What this installation runs on: versions, devices, threads (`vmat-native info`, run folders, reports). */
import os from 'node:os';

import { loadNativeWithPath } from './native/loader.js';
import { VERSION } from './version.js';

export interface RuntimeReport {
  vmatNativeVersion: string;
  addonPath: string;
  libtorchVersion: string;
  cuda: { compiled: boolean; libtorchHasCuda: boolean; available: boolean; version: string | null };
  cudnn: { available: boolean; version: string | null };
  devices: { index: number; name: string; memoryGiB: number; computeCapability: string }[];
  threads: { libtorch: number; interop: number; cpuCores: number };
  /** c10d backends for data-parallel training ([] when built without libtorch's c10d headers). */
  distributedBackends: string[];
  node: string;
  platform: string;
}

export function runtimeReport(): RuntimeReport {
  const { addon, path } = loadNativeWithPath();
  const info = addon.info();
  return {
    vmatNativeVersion: VERSION,
    addonPath: path,
    libtorchVersion: info.libtorchVersion,
    cuda: {
      compiled: info.cudaCompiled,
      libtorchHasCuda: info.torchCudaCompiled,
      available: info.cudaAvailable,
      version: info.cudaVersion || null,
    },
    cudnn: { available: info.cudnnAvailable, version: info.cudnnVersion ? formatCudnn(info.cudnnVersion) : null },
    devices: [
      ...info.devices.map((device) => ({
        index: device.index,
        name: device.name,
        memoryGiB: Math.round((device.totalMemoryBytes / 2 ** 30) * 10) / 10,
        computeCapability: device.computeCapability,
      })),
    ],
    threads: { libtorch: info.threads, interop: info.interopThreads, cpuCores: os.availableParallelism() },
    distributedBackends: info.distributedBackends,
    node: process.versions.node,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  };
}

/** cuDNN reports 90190 for 9.19.0 (and 8902 for 8.9.2 in the older scheme). */
function formatCudnn(version: number): string {
  if (version >= 10000) return `${Math.floor(version / 10000)}.${Math.floor((version % 10000) / 100)}.${version % 100}`;
  return `${Math.floor(version / 1000)}.${Math.floor((version % 1000) / 100)}.${version % 100}`;
}
