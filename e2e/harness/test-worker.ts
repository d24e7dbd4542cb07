/**
 * The block worker of the e2e harness: the production service plus test
 * hooks, so that the hooks stay out of the worker the library ships.
 */
import { expose } from 'comlink';
import { BlockWorkerService } from '../../workers/service.js';
import { opfsTestHooks } from '../../src/protocols/opfs.js';
import '../../src/client/transfer.js';

/** The service with the hooks the specs use. */
export class TestBlockWorker extends BlockWorkerService {
  /** A quota for OPFS writes smaller than the browser's (undefined to lift it). */
  setTestQuota(bytes: number | undefined): void {
    if (bytes === undefined) delete opfsTestHooks.quotaBytes;
    else opfsTestHooks.quotaBytes = bytes;
  }
}

expose(new TestBlockWorker());
