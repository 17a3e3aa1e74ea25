# Picks the board layer: the unix port is the simulator, anything else is an ESP32.
import sys


def make():
    if sys.platform in ("linux", "darwin"):
        import board_sim
        return board_sim.Board()
    import board_esp32
    return board_esp32.Board()
