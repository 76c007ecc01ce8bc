// Resolves the mirrored learner files' `../strategies/types.js` import (the server's file of that name declares the same).
export type { Features } from '../../types.js';
