// Stand-in for k6's `k6` module: records what the script asks of it.
export const calls = [];

export function check(value, checks) {
  const results = {};
  for (const [name, predicate] of Object.entries(checks)) results[name] = predicate(value);
  calls.push({ fn: 'check', results });
  return Object.values(results).every(Boolean);
}

export function sleep(seconds) {
  calls.push({ fn: 'sleep', seconds });
}
