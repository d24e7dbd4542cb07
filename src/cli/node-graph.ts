/**
 * The block graph the command-line tools open images in: Node's drivers, with
 * QEMU's rule for backing files. A library graph keeps a backing file on its
 * image's own protocol unless told otherwise (an image from the web must not
 * make the page connect elsewhere); qemu-img follows whatever protocol the
 * image names (an overlay over `nbd+unix://...`, `null-co://`), and so do the
 * tools that speak its language.
 */
import type { BlockGraph } from '../core/graph.js';
import { createNodeGraph } from '../node.js';

export function createCliGraph(): BlockGraph {
  const graph = createNodeGraph();
  graph.backingPolicy.allowedProtocols = graph
    .listDrivers()
    .filter((d) => d.kind === 'protocol')
    .map((d) => d.name);
  return graph;
}
