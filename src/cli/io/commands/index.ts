/** qemu-io's page-safe commands (the CLI adds open, close, reopen, abort and sigraise: io/main.ts). */
import type { Cmd } from '../types.js';
import { helpCmd } from './help.js';
import { aioFlushCmd, aioReadCmd, aioWriteCmd, readCmd, readvCmd, writeCmd, writevCmd } from './rw.js';
import {
  allocCmd, breakCmd, discardCmd, flushCmd, infoCmd, lengthCmd, mapCmd, quitCmd, removeBreakCmd, resumeCmd, sleepCmd, truncateCmd, waitBreakCmd,
} from './misc.js';

export const CORE_COMMANDS: Cmd[] = [
  { name: 'aio_flush', oneline: 'completes all outstanding aio requests', argmin: 0, argmax: 0, fn: aioFlushCmd },
  { name: 'aio_read', args: '[-Ciqv] [-P pattern] off len [len..]', oneline: 'asynchronously reads a number of bytes', argmin: 2, argmax: -1, fn: aioReadCmd },
  { name: 'aio_write', args: '[-Cfiquz] [-P pattern] off len [len..]', oneline: 'asynchronously writes a number of bytes', argmin: 2, argmax: -1, write: true, fn: aioWriteCmd },
  { name: 'alloc', args: 'offset [count]', oneline: 'checks if offset is allocated in the file', argmin: 1, argmax: 2, fn: allocCmd },
  { name: 'break', args: 'event tag', oneline: 'sets a breakpoint on event and tags the stopped request as tag', argmin: 2, argmax: 2, fn: breakCmd },
  { name: 'discard', alt: 'd', args: '[-Cq] off len', oneline: 'discards a number of bytes at a specified offset', argmin: 2, argmax: -1, write: true, fn: discardCmd },
  { name: 'flush', alt: 'f', oneline: 'flush all in-core file state to disk', argmin: 0, argmax: 0, fn: flushCmd },
  { name: 'help', alt: '?', args: '[command]', oneline: 'help for one or all commands', argmin: 0, argmax: 1, noFile: true, fn: helpCmd },
  { name: 'info', alt: 'i', oneline: 'prints information about the current file', argmin: 0, argmax: 0, fn: infoCmd },
  { name: 'length', alt: 'l', oneline: 'gets the length of the current file', argmin: 0, argmax: 0, fn: lengthCmd },
  { name: 'map', alt: 'm', args: '', oneline: 'prints the allocated areas of a file', argmin: 0, argmax: 0, fn: mapCmd },
  { name: 'quit', alt: 'q', oneline: 'exit the program', argmin: 0, argmax: 0, noFile: true, fn: quitCmd },
  {
    name: 'read', alt: 'r', args: '[-abCqv] [-P pattern [-s off] [-l len]] off len', oneline: 'reads a number of bytes at a specified offset', argmin: 2, argmax: -1, fn: readCmd,
  },
  { name: 'readv', args: '[-Cqv] [-P pattern] off len [len..]', oneline: 'reads a number of bytes at a specified offset', argmin: 2, argmax: -1, fn: (s, a) => readvCmd(s, a) },
  { name: 'remove_break', args: 'tag', oneline: 'remove a breakpoint by tag', argmin: 1, argmax: 1, fn: removeBreakCmd },
  { name: 'resume', args: 'tag', oneline: 'resumes the request tagged as tag', argmin: 1, argmax: 1, fn: resumeCmd },
  { name: 'sleep', oneline: 'waits for the given value in milliseconds', argmin: 1, argmax: 1, noFile: true, fn: sleepCmd },
  { name: 'truncate', alt: 't', args: '[-m prealloc_mode] off', oneline: 'truncates the current file at the given offset', argmin: 1, argmax: 3, write: true, fn: truncateCmd },
  { name: 'wait_break', args: 'tag', oneline: 'waits for the suspension of a request', argmin: 1, argmax: 1, fn: waitBreakCmd },
  {
    name: 'write', alt: 'w', args: '[-bcCfnquz] [-P pattern | -s source_file] off len', oneline: 'writes a number of bytes at a specified offset', argmin: 2, argmax: -1, write: true, fn: writeCmd,
  },
  { name: 'writev', args: '[-Cfq] [-P pattern] off len [len..]', oneline: 'writes a number of bytes at a specified offset', argmin: 2, argmax: -1, write: true, fn: (s, a) => writevCmd(s, a) },
];
