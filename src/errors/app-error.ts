import { ERROR_CATALOG, type ErrorCode } from './catalog.js';

/** An error the API answers with a stable body `{ statusCode, code, error, message }`. */
export class AppError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: ErrorCode,
    message?: string,
    /** Extra fields merged into the response body (e.g. the scope that denied a reservation). */
    readonly details?: Readonly<Record<string, unknown>>,
  ) {
    super(message ?? ERROR_CATALOG[code].message);
    this.name = 'AppError';
    this.statusCode = ERROR_CATALOG[code].status;
  }
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}
