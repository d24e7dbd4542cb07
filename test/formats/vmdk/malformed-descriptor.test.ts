/** Damaged vmdk descriptors (types, extent lines, sizes, missing files): see malformed-cases.ts. */
import { malformedSuite } from './malformed-cases.js';

malformedSuite(true);
