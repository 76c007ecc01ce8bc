import { Type } from '@sinclair/typebox';

/** The outcome document is shared with every outcome sink: it lives in the kernel. */
export { AgentUsage, OutcomeBody } from '../kernel/outcome.js';

export const OutcomeAccepted = Type.Object({ accepted: Type.Literal(true), decisionId: Type.String() });
