import { expect } from 'chai';
import { decideMassSilence, onlineCountNeeded, type MassSilenceSettings } from '../../shared/domain/mass-silence.js';

const settings: MassSilenceSettings = { enabled: true, share: 0.5, minNodes: 10, holdMs: 60_000 };
const free = { heldSince: null, eventId: null };
const T0 = Date.UTC(2026, 0, 1);

describe('mass-silence guard (decided apart from its effects)', () => {
  it('needs no fleet count while too few nodes are silent to trip it, or when it is off', () => {
    expect(onlineCountNeeded(5, settings)).to.equal(0);
    expect(onlineCountNeeded(6, settings)).to.equal(13);
    expect(onlineCountNeeded(600, { ...settings, enabled: false })).to.equal(0);
  });

  it('proceeds while the silent nodes are at most the share of the ONLINE ones, or the fleet is below the minimum', () => {
    expect(decideMassSilence(6, 12, free, T0, settings)).to.deep.equal({ action: 'proceed', release: false });
    expect(decideMassSilence(6, 9, free, T0, settings)).to.deep.equal({ action: 'proceed', release: false });
  });

  it('trips once when more than the share fall silent at once, then holds until the hold time has passed', () => {
    const tripped = decideMassSilence(7, 12, free, T0, settings);
    expect(tripped).to.deep.equal({ action: 'hold', trip: { heldSince: new Date(T0), heldUntil: new Date(T0 + 60_000) } });

    const held = { heldSince: new Date(T0), eventId: 'e' };
    expect(decideMassSilence(7, 12, held, T0 + 59_999, settings)).to.deep.equal({ action: 'hold', trip: null });
    expect(decideMassSilence(7, 12, held, T0 + 60_000, settings)).to.deep.equal({ action: 'proceed', release: false });
  });

  it('releases a held guard once the silence is no longer massive', () => {
    expect(decideMassSilence(1, 12, { heldSince: new Date(T0), eventId: 'e' }, T0 + 1000, settings)).to.deep.equal({ action: 'proceed', release: true });
  });

  it('never trips when turned off', () => {
    expect(decideMassSilence(100, 101, free, T0, { ...settings, enabled: false })).to.deep.equal({ action: 'proceed', release: false });
  });
});
