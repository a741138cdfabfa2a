import { createHash, randomBytes } from 'node:crypto';

/** 128 random bits, base64url: 22 characters. */
export function newSessionToken(): string {
  return randomBytes(16).toString('base64url');
}

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{22}$/;

export function isWellFormedToken(token: string): boolean {
  return TOKEN_SHAPE.test(token);
}

/**
 * What identifies a session everywhere but in the client's hands: the first 40 hex characters
 * of sha256(token). It fits a label value (63 characters at most), it is what logs show, and
 * it cannot be turned back into the token, so a reader of labels or logs cannot hijack a session.
 */
export function sessionHash(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 40);
}
