// Stand-in for k6's `k6/http`: records each request and answers with the
// status the harness was told to answer (K6_STATUS, default 202).
import { calls } from './k6.mjs';

export default {
  post(url, body, params) {
    calls.push({ fn: 'http.post', url, body, params });
    return { status: Number(process.env.K6_STATUS ?? 202), body: null };
  },
};
