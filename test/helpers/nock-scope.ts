/**
 * nock only inside the suites that use it. Importing nock intercepts every
 * `http.request` of the process from then on, even passed-through ones,
 * through sockets of its own: a real agent's keep-alive reuse
 * (`request.reusedSocket`) then never happens. So nock starts switched off
 * here, and `useNock()` switches it on for one `describe`, with connections
 * allowed to 127.0.0.1 only.
 */
import nock from 'nock';

nock.restore();

export function useNock(): void {
  before(() => {
    if (!nock.isActive()) nock.activate();
    nock.disableNetConnect();
    nock.enableNetConnect('127.0.0.1');
  });
  after(() => {
    nock.enableNetConnect();
    nock.restore();
  });
}
