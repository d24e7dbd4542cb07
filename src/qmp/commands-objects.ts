/**
 * object-add and object-del (QEMU 7.2's qom/qom-qmp-cmds.c) for the object
 * types a block graph uses: throttle-group (then named by throttle nodes'
 * `throttle-group` option and block_set_io_throttle's `group`), secret
 * (images' key-secret / encrypt.key-secret) and iothread (taken, unused:
 * the graph has one I/O thread); QEMU's other user-creatable types take
 * their id only. The checks and messages are `--object`'s (src/qmp/objects.ts).
 */
import { createObject, deleteObject } from './objects.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpCommand } from './dispatcher.js';
import { isObject, m, struct, type QapiCustom } from './schema.js';
import { genericError } from './errors.js';

/** ObjectOptions, a flat union on qom-type: checked member by member where the object is made. */
const objectOptions: QapiCustom = {
  custom: 'ObjectOptions',
  check(value) {
    if (!isObject(value)) throw genericError("Invalid parameter type for 'qom-type', expected: string");
  },
};

/** object-add and object-del on `q`'s graph. */
export function objectCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'object-add',
      args: objectOptions,
      // The properties are checked where the object is made, with QEMU's number kinds.
      rawNumbers: true,
      run: (args) => {
        createObject(q.graph, args, 'json', { iothread: true });
      },
    },
    {
      name: 'object-del',
      args: struct('object-del', [m('id', 'str')]),
      run: (args) => {
        deleteObject(q.graph, args['id'] as string);
      },
    },
  ];
}
