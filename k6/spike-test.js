// The reference spike for a Spillway cluster: ramp to 10,000 virtual users,
// hold, ramp down; each VU posts one event, waits for the answer, then thinks.
// Stages, thresholds and think time come from spike-profile.json (or, with
// PROFILE=flood, flood-profile.json), which the
// local load runner reads too, so the two cannot drift.
//
//   INGEST_URL=http://localhost:30000 [INGEST_API_KEY=…] k6 run k6/spike-test.js
//
// THRESHOLDS=reference|spillway|both (default both): the reference report's
// pass criteria, Spillway's tighter ones, or all of them.
// THINK_TIME_MS overrides the profile's mean think time (a shorter one offers
// more load with the same VUs; the jitter stays the profile's).
// PROFILE=spike|flood (default spike): the reference spike, or the flood
// (flood-profile.json: 10,000 VUs offering about twice what the database
// takes for a minute, so a backlog builds in the stream and then drains).
// PREFER_WAIT=N (whole seconds): each post asks to wait for the database
// (`Prefer: wait=N`, RFC 7240): ingest answers 201 once the event is committed,
// or the usual 202 after N s. Both count as accepted; the check "committed
// within the wait (201)" tells how many were committed in time. Latencies are
// then the commit's, not ingest's: pair it with THRESHOLDS=reference.
import { check, sleep } from 'k6';
import http from 'k6/http';
import { paddingText } from './padding.js';

const PROFILES = ['spike', 'flood'];
const profileName = __ENV.PROFILE || 'spike';
if (!PROFILES.includes(profileName)) {
  throw new Error(`PROFILE=${profileName} is not one of ${PROFILES.join(', ')}`);
}
const profile = JSON.parse(open(`./${profileName}-profile.json`));
// Events of a realistic size: the profile's payloadBytes characters of padding in the data
// (k6/padding.js: characters that look like data, the same as the local VU runner's).
const PADDING = profile.event.payloadBytes
  ? { payload: paddingText(profile.event.payloadBytes) }
  : {};

const THRESHOLD_SETS = {
  reference: ['reference'],
  spillway: ['spillway'],
  both: ['reference', 'spillway'],
};

/** Merges the chosen threshold sets into k6's shape: metric -> expressions. */
export function thresholdsFor(choice) {
  const sets = THRESHOLD_SETS[choice];
  if (!sets) {
    throw new Error(`THRESHOLDS=${choice} is not one of ${Object.keys(THRESHOLD_SETS).join(', ')}`);
  }
  const merged = {};
  for (const set of sets) {
    for (const [metric, expressions] of Object.entries(profile.thresholds[set])) {
      merged[metric] = [...(merged[metric] ?? []), ...expressions];
    }
  }
  return merged;
}

export const options = {
  // One VU per simulated user, ramped through the profile's stages (k6's
  // ramping-vus executor: what the `stages` shortcut means, written out).
  scenarios: {
    spike: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: profile.stages,
      gracefulRampDown: '30s',
    },
  },
  thresholds: thresholdsFor(__ENV.THRESHOLDS || 'both'),
  // 10,000 VUs: keep memory for answers we only count, not read.
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

const baseUrl = (__ENV.INGEST_URL || '').replace(/\/+$/, '');
const headers = { 'Content-Type': 'application/json' };
if (__ENV.INGEST_API_KEY) {
  headers.Authorization = `Bearer ${__ENV.INGEST_API_KEY}`;
}
const preferWait = __ENV.PREFER_WAIT || '';
if (preferWait) {
  headers.Prefer = `wait=${preferWait}`;
}

export function setup() {
  if (!baseUrl) {
    throw new Error(
      'INGEST_URL is not set; e.g. INGEST_URL=http://localhost:30000 (cluster/up.sh prints it)',
    );
  }
  if (__ENV.THINK_TIME_MS && !(Number(__ENV.THINK_TIME_MS) >= 0)) {
    throw new Error(`THINK_TIME_MS=${__ENV.THINK_TIME_MS} is not a number of milliseconds`);
  }
  if (preferWait && !/^[1-9][0-9]{0,3}$/.test(preferWait)) {
    throw new Error(`PREFER_WAIT=${preferWait} is not a whole number of seconds`);
  }
}

/** What counts as accepted: 202; asking to wait, 201 (committed in time) or 202. */
const CHECKS = preferWait
  ? {
      'accepted (201 or 202)': (r) => r.status === 201 || r.status === 202,
      'committed within the wait (201)': (r) => r.status === 201,
    }
  : { 'accepted (202)': (r) => r.status === 202 };

/** Think time in seconds: the profile's mean, spread uniformly by ± jitter. */
export function thinkTimeSec() {
  const { jitter } = profile.thinkTimeMs;
  const mean = __ENV.THINK_TIME_MS ? Number(__ENV.THINK_TIME_MS) : profile.thinkTimeMs.mean;
  return (mean * (1 + jitter * (2 * Math.random() - 1))) / 1000;
}

export default function () {
  const event = {
    type: profile.event.type,
    source: profile.event.source,
    subject: `${profile.event.subjectPrefix}${__VU}`,
    data: { vu: __VU, iteration: __ITER, sentAt: new Date().toISOString(), ...PADDING },
  };
  const response = http.post(`${baseUrl}/events`, JSON.stringify(event), { headers });
  check(response, CHECKS);
  sleep(thinkTimeSec());
}
