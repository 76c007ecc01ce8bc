// Resolves the mirrored learner files' `../errors/app-error.js` import: a declaration error with its stable code
// (the server answers it as a 4xx; in the SDK only validation, which local evaluation never runs, throws it).
export class AppError extends Error {
  constructor(
    readonly code: string,
    message?: string,
  ) {
    super(message ?? code);
    this.name = 'AppError';
  }
}
