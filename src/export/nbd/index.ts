/**
 * The NBD server: page-safe parts (server, exports, the transport contract).
 * The Node listener is in node-listen.ts (exported from src/node.ts).
 */
export { NbdServer, type NbdSession, type NbdConnectionEnd } from './server.js';
export { createExport, releaseExport, type NbdExport, type NbdExportOptions } from './export.js';
export type { NbdTransport } from './transport.js';
