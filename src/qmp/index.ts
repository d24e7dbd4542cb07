/**
 * The QMP control plane: the command dispatcher with QEMU 7.2's block
 * commands, argument checks and events, shared by the daemon and the worker.
 */
export { BlockQmp, type QmpVersion } from './block-qmp.js';
export { QmpDispatcher, errorReply, type QmpCommand, type QmpReply } from './dispatcher.js';
export { QmpError, genericError, toQmpError, type QmpErrorClass } from './errors.js';
export { QmpEvents, type QmpEvent } from './events.js';
export { QmpSession, type QmpGreeting } from './session.js';
export { addBlockdev } from './commands-nodes.js';
