# Battery gauge for a single Li-ion cell on an ADC divider. One ADC read is noisy (the
# ESP32's ADC wanders by tens of mV, more while the radio transmits), so readings are
# averaged, and "low" has hysteresis so the LED does not flap around the threshold.

EMPTY_MV = 3300
FULL_MV = 4200


def percent(mv):
    return max(0, min(100, (mv - EMPTY_MV) * 100 // (FULL_MV - EMPTY_MV)))


class Smoother:
    """Exponential average of millivolt readings (weight 1/8 per new reading)."""

    def __init__(self):
        self.mv = None

    def feed(self, mv):
        if self.mv is None:
            self.mv = mv
        else:
            self.mv += (mv - self.mv) // 8
        return self.mv


def low_flag(was_low, pct, low_pct, band=5):
    """Low below low_pct; back to normal only above low_pct + band. None = no gauge."""
    if pct is None:
        return False
    if was_low:
        return pct < low_pct + band
    return pct < low_pct
