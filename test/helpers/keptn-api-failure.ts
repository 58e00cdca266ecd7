import { expect } from 'chai';
import { KeptnApiError } from '../../lib/keptn-api.ts';

/** The `KeptnApiError` that `promise` rejects with; fails the test if it resolves or rejects with anything else. */
export async function keptnApiFailure(promise: Promise<unknown>): Promise<KeptnApiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(KeptnApiError);
    return error as KeptnApiError;
  }
  throw new Error('expected a KeptnApiError');
}
