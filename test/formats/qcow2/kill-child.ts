/**
 * The child process of the kill test (kill.ts): runs the crash workload on a
 * node-file qcow2 image until it is killed. Arguments: image path, seed and
 * the workload shape as JSON. Prints "ready" when the image is open and
 * "flushed N" each time the flush after requests [0, N) has completed (stdout
 * to a pipe is synchronous on Linux: a line the parent reads was printed
 * after its flush had completed).
 */
import { BlockBackend, BlockGraph, nodeFileDriver, qcow2Driver, rawDriver } from '../../../src/node.js';
import { crashOps, runCrashOps, type CrashShape } from './crash-workload.js';

const [file, seedArg, shapeArg, inFlightArg] = process.argv.slice(2);
const shape = JSON.parse(shapeArg!) as CrashShape;
const ops = crashOps(shape, Number(seedArg));
const graph = new BlockGraph([nodeFileDriver, rawDriver, qcow2Driver], 'file');
const bb = await BlockBackend.open(graph, { driver: 'qcow2', file: { filename: file! }, discard: 'unmap' });
process.stdout.write('ready\n');
await runCrashOps(bb, ops, shape.cs, Number(inFlightArg), { flushed: (n) => process.stdout.write(`flushed ${n}\n`) });
await bb.close();
process.stdout.write('done\n');
