import { expect } from 'chai';
import { RecentIds } from '../../lib/nats/recent-ids.ts';

describe('nats/recent-ids', () => {
  it('says whether an id is new, and remembers it', () => {
    const recent = new RecentIds(10);
    expect(recent.add('a')).to.equal(true);
    expect(recent.add('a')).to.equal(false);
    expect(recent.add('b')).to.equal(true);
  });

  it('is bounded: the oldest id is forgotten first', () => {
    const recent = new RecentIds(2);
    recent.add('a');
    recent.add('b');
    recent.add('c');
    expect(recent.size).to.equal(2);
    expect(recent.add('b')).to.equal(false);
    expect(recent.add('a')).to.equal(true);
  });

  it('forgets an id on request (a failed dispatch), so its next arrival counts', () => {
    const recent = new RecentIds(10);
    recent.add('a');
    recent.delete('a');
    expect(recent.add('a')).to.equal(true);
  });
});
