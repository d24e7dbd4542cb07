/** Damaged sparse vmdk files (headers, footers, grain tables, compressed grains): see malformed-cases.ts. */
import { malformedSuite } from './malformed-cases.js';

malformedSuite(false);
