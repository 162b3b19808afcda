/**
 * The one place where request credentials are built: HTTP headers and the envelope's `auth` field.
 * Issue 7 adds the per-node bearer credential here; until then requests carry none.
 */
export interface RequestAuth {
  httpHeaders(): Record<string, string>;
  envelopeAuth(): string | undefined;
}

export const noAuth: RequestAuth = {
  httpHeaders: () => ({}),
  envelopeAuth: () => undefined,
};
