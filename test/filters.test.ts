import { expect } from 'chai';
import { loadConfig } from '../lib/config.ts';
import { filterFromConfig, isUnfiltered, matchesFilter, serverSideFilter, type EventFilter } from '../lib/filters.ts';

/** The filters as the agent builds them from PROJECT/STAGE/SERVICE_FILTER. */
function filterOf(env: { PROJECT_FILTER?: string; STAGE_FILTER?: string; SERVICE_FILTER?: string }): EventFilter {
  return filterFromConfig(loadConfig({
    env: { KEPTN_API_ENDPOINT: 'https://keptn.example.com/api', PUBSUB_TOPIC: 'sh.keptn.event.test.triggered', ...env },
  }));
}

const DATA = { project: 'my-project', stage: 'my-stage', service: 'my-service' };

describe('filters', () => {
  // spec §14.8: the reference's Test_matchesFilter, case for case.
  describe('Test_matchesFilter (the reference’s 14 cases)', () => {
    const cases: Array<{ name: string; env: Parameters<typeof filterOf>[0]; data?: Record<string, string>; match: boolean }> = [
      { name: '1. no filters', env: {}, match: true },
      { name: '2. project filter', env: { PROJECT_FILTER: 'my-project' }, match: true },
      { name: '3. project filter, list', env: { PROJECT_FILTER: 'my-project,my-project-2,my-project-3' }, match: true },
      { name: '4. other project', env: { PROJECT_FILTER: 'my-other-project' }, match: false },
      { name: '5. other projects, list', env: { PROJECT_FILTER: 'my-other-project,my-second-project' }, match: false },
      { name: '6. stage filter', env: { STAGE_FILTER: 'my-stage' }, match: true },
      { name: '7. stage filter, list', env: { STAGE_FILTER: 'my-first-stage,my-stage' }, match: true },
      { name: '8. other stage', env: { STAGE_FILTER: 'my-other-stage' }, match: false },
      { name: '9. service filter', env: { SERVICE_FILTER: 'my-service' }, match: true },
      { name: '10. service filter, list', env: { SERVICE_FILTER: 'my-other-service,my-service' }, match: true },
      { name: '11. other service', env: { SERVICE_FILTER: 'my-other-service' }, match: false },
      {
        name: '12. all three match', env: { PROJECT_FILTER: 'my-project', STAGE_FILTER: 'my-stage', SERVICE_FILTER: 'my-service' }, match: true,
      },
      {
        name: '13. project wrong, stage and service right',
        env: { PROJECT_FILTER: 'my-other-project', STAGE_FILTER: 'my-stage', SERVICE_FILTER: 'my-service' }, match: false,
      },
      {
        name: '14. no substring matching',
        env: { PROJECT_FILTER: 'my-project,project-1', STAGE_FILTER: 'my-stage', SERVICE_FILTER: 'my-service' },
        data: { ...DATA, project: 'project' }, match: false,
      },
    ];
    for (const { name, env, data = DATA, match } of cases) {
      it(name, () => {
        expect(matchesFilter({ data }, filterOf(env))).to.equal(match);
      });
    }
  });

  describe('events that lack a field, and other departures from 0.8.7 (fail-closed, as 0.10+)', () => {
    const cases: Array<{ name: string; env: Parameters<typeof filterOf>[0]; event: { data?: unknown }; match: boolean }> = [
      { name: 'no filter: an event without data matches', env: {}, event: {}, match: true },
      { name: 'no filter: data that is a string matches', env: {}, event: { data: 'text' }, match: true },
      { name: 'project filter: no project field', env: { PROJECT_FILTER: 'a,b' }, event: { data: { stage: 'dev' } }, match: false },
      { name: 'project filter: empty project', env: { PROJECT_FILTER: 'a,b' }, event: { data: { project: '' } }, match: false },
      { name: 'project filter: no data at all', env: { PROJECT_FILTER: 'a' }, event: {}, match: false },
      { name: 'project filter: data is null', env: { PROJECT_FILTER: 'a' }, event: { data: null }, match: false },
      { name: 'project filter: data is a string (0.8.7 let it through)', env: { PROJECT_FILTER: 'a' }, event: { data: 'a' }, match: false },
      { name: 'project filter: data is an array', env: { PROJECT_FILTER: 'a' }, event: { data: ['a'] }, match: false },
      { name: 'project filter: project is a number', env: { PROJECT_FILTER: '1' }, event: { data: { project: 1 } }, match: false },
      { name: 'trailing comma no longer matches a missing field', env: { PROJECT_FILTER: 'a,' }, event: { data: {} }, match: false },
      { name: 'trailing comma still matches a listed project', env: { PROJECT_FILTER: 'a,' }, event: { data: { project: 'a' } }, match: true },
      { name: 'blanks around commas are trimmed (0.8.7 did not)', env: { PROJECT_FILTER: 'a, b' }, event: { data: { project: 'b' } }, match: true },
      { name: 'case-sensitive', env: { PROJECT_FILTER: 'Sockshop' }, event: { data: { project: 'sockshop' } }, match: false },
      {
        name: 'stage filter alone ignores a missing project',
        env: { STAGE_FILTER: 'dev' }, event: { data: { stage: 'dev' } }, match: true,
      },
      {
        name: 'every non-empty filter must match: service missing',
        env: { PROJECT_FILTER: 'p', SERVICE_FILTER: 's' }, event: { data: { project: 'p' } }, match: false,
      },
      { name: 'a filter of only commas is no filter', env: { PROJECT_FILTER: ',,' }, event: { data: {} }, match: true },
    ];
    for (const { name, env, event, match } of cases) {
      it(name, () => {
        expect(matchesFilter(event, filterOf(env))).to.equal(match);
      });
    }
  });

  it('isUnfiltered: true only when every filter is empty', () => {
    expect(isUnfiltered(filterOf({}))).to.equal(true);
    expect(isUnfiltered(filterOf({ SERVICE_FILTER: 'carts' }))).to.equal(false);
  });

  it('serverSideFilter: each field with exactly one value, else none', () => {
    expect(serverSideFilter(filterOf({ PROJECT_FILTER: 'sockshop' }))).to.deep.equal({ project: 'sockshop' });
    expect(serverSideFilter(filterOf({ PROJECT_FILTER: 'a,b', STAGE_FILTER: 'dev', SERVICE_FILTER: 'carts' })))
      .to.deep.equal({ stage: 'dev', service: 'carts' });
    expect(serverSideFilter(filterOf({}))).to.deep.equal({});
  });
});
