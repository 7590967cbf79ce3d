/**
 * Makes sure the local Redis and MongoDB-wire server run (scripts/services.sh, which
 * installs them when missing) and hands their URLs to every test file.
 */
import { ensureServices } from '../../scripts/services-env.js';

export default function setup(): void {
  Object.assign(process.env, ensureServices());
}
