# ESP32 `esp32` for the stand-in: deep-sleep wake sources.
WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True
_wake = []


def wake_on_ext0(pin, level):
    _wake[:] = [pin, level]


def wake_on_ext1(pins, level):
    pass


def mcu_temperature():
    return 40
