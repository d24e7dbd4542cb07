/**
 * The block worker entry: hosts one block graph and exposes
 * {@link BlockWorkerService} through Comlink. Started by the page client
 * (src/client/index.ts) with `new Worker(new URL(...), { type: 'module' })`.
 */
import { expose } from 'comlink';
import { BlockWorkerService } from './service.js';
import '../src/client/transfer.js';

export type { BlockWorkerService } from './service.js';
export type { DiskService } from './disk-service.js';

const service = new BlockWorkerService();
expose(service);
