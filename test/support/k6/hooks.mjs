// Module resolution hooks (node:module register): `k6` and `k6/http` resolve to
// the stand-ins beside this file, so a k6 script loads in Node without k6.
const STAND_INS = { k6: './k6.mjs', 'k6/http': './http.mjs' };

export async function resolve(specifier, context, nextResolve) {
  const standIn = STAND_INS[specifier];
  if (standIn !== undefined) {
    return { url: new URL(standIn, import.meta.url).href, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
